"""Where the next root is built and what is handed over, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """The paths of one switch; tests give their own."""

    newroot: Path = Path("/newroot")
    state: Path = Path("/run/ramboot")  # moved with /run: the new root sees it too
    inittab: Path = Path("/etc/inittab")
    switch_script: Path = Path("/usr/lib/ramboot/switch-root")
    booted_script: Path = Path("/usr/share/ramboot/report-booted")
    resolv_conf: Path = Path("/etc/resolv.conf")

    @property
    def layers(self) -> Path:
        return self.state / "root"

    @property
    def lower(self) -> Path:
        """The read-only network root (NFS, NBD) or the squashfs image, mounted."""
        return self.layers / "lower"

    @property
    def rw(self) -> Path:
        """The overlay's writable side: a tmpfs or a partition, holding upper/ and work/."""
        return self.layers / "rw"

    @property
    def ram(self) -> Path:
        """ramroot's tmpfs: the downloaded image, and the tree or the overlay's upper."""
        return self.layers / "ram"

    @property
    def request(self) -> Path:
        """What /usr/lib/ramboot/switch-root reads: new root, init, its arguments."""
        return self.state / "switch-root.request"

    @property
    def run_dir(self) -> Path:
        """/run itself, where the klibc-style net-IFACE.conf files go."""
        return self.state.parent
