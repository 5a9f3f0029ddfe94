"""Shared helpers for the render tests: a fake image set, rendering, snapshots."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

from ramboot.inventory import load_inventory
from ramboot.render.tree import RenderResult, render_tree

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"
FLEET = FIXTURES / "fleet.toml"
# Only targets whose plan actions the agent has today: renders with validation.
LANDED = FIXTURES / "landed.toml"

IMAGE_FILES = (
    "rpi4/Image", "rpi4/rootfs.cpio.zst", "rpi4/bcm2711-rpi-4-b.dtb",
    "rpi4/bcm2711-rpi-400.dtb", "rpi4/bcm2711-rpi-cm4-io.dtb", "rpi4/rpi-firmware/start4.elf",
    "rpi4/rpi-firmware/fixup4.dat", "rpi4/rpi-firmware/overlays/miniuart-bt.dtbo",
    "x86_64/bzImage", "x86_64/rootfs.cpio.zst", "ipxe/undionly.kpxe", "ipxe/ipxe.efi",
)


def make_images(root: Path) -> Path:
    """A stand-in --images tree: each file's bytes name it, so a mix-up shows."""
    for relative in IMAGE_FILES:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        # Binary-looking content with every byte value, to catch text-mode transfers.
        path.write_bytes(relative.encode() + b"\n" + bytes(range(256)) * 4)
    return root


def render_fleet(images: Path, out: Path, inventory: Path = FLEET) -> RenderResult:
    return render_tree(load_inventory(inventory), images, out)


def snapshot(root: Path) -> list[str]:
    """One line per entry: path, kind, mode bits, and content hash or link target."""
    lines = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        info = path.lstat()
        mode = f"{stat.S_IMODE(info.st_mode):04o}"
        if path.is_symlink():
            lines.append(f"{relative} link -> {path.readlink()}")
        elif path.is_dir():
            lines.append(f"{relative} dir {mode}")
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            lines.append(f"{relative} file {mode} {digest}")
    return lines


def kea_for_test(path: Path, workdir: Path) -> dict[str, Any]:
    """A rendered kea-dhcp4.json with this machine's paths for leases and logs only."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("//"))
    config: dict[str, Any] = json.loads(text)
    dhcp4 = config["Dhcp4"]
    dhcp4["lease-database"]["name"] = str(workdir / "kea-leases4.csv")
    dhcp4["loggers"] = [{
        "name": "kea-dhcp4", "severity": "INFO",
        "output_options": [{"output": str(workdir / "kea.log")}],
    }]
    return config


def render_text(text: str, images: Path, out: Path, workdir: Path) -> RenderResult:
    """Render the inventory `text` (written to workdir/fleet.toml) into `out`."""
    inventory = workdir / "fleet.toml"
    inventory.write_text(text)
    return render_fleet(images, out, inventory)
