"""Root filesystems and the servers that offer them, for the netroot/ramroot tests.

The roots are assembled from the image set's own busybox (the second-stage
initramfs holds a static one for the guest's architecture) with an init
script that proves what the new system received: it prints markers, writes
a file (which must land in the copy-on-write layer, never in the export),
reports `booted` with the script the agent handed over, and powers off.

The servers are the real ones, run inside a test's network namespace:
nfs-ganesha (user-space NFS, VFS backend, NFSv4) and nbd-server.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import stat
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from tests.lib.images import ImageSet
from tests.lib.netlab import Namespace, wait_for

ROOT_MARKER = "RAMBOOT-NEW-ROOT"
NBD_PORT = 10809

# The new root's /sbin/init: every line it prints starts with ROOT_MARKER.
INIT_SCRIPT = """#!/bin/sh
PATH=/bin:/sbin
export PATH
m={marker}
echo "$m init pid=$$ args=[$*]"
echo "$m root $(awk '$2 == "/" {{ print $3 }}' /proc/mounts | tail -n 1)"
for tree in /dev /proc /sys /run; do
	awk -v t="$tree" '$2 == t {{ found = 1 }} END {{ exit !found }}' /proc/mounts &&
		echo "$m mounted $tree"
done
others=0
for dir in /proc/[0-9]*; do
	pid=${{dir#/proc/}}
	[ "$pid" = 1 ] || [ "$pid" = "$$" ] && continue
	readlink "$dir/exe" > /dev/null 2>&1 && others=$((others + 1))
done
echo "$m other-processes $others"
# A failing `.` would end this shell, PID 1: source only what is there.
RAMBOOT_INTERFACE=none
if [ -f /run/ramboot/root.env ]; then
	. /run/ramboot/root.env
	echo "$m root.env action=$RAMBOOT_ROOT_ACTION root=$RAMBOOT_ROOT"
fi
if [ -f /run/ramboot/network.env ]; then
	. /run/ramboot/network.env
	echo "$m network.env ip=$RAMBOOT_IP iface=$RAMBOOT_INTERFACE"
fi
[ -f "/run/net-$RAMBOOT_INTERFACE.conf" ] && echo "$m klibc net-$RAMBOOT_INTERFACE.conf"
echo "$m ip $(ip -4 -o addr show dev "$RAMBOOT_INTERFACE" | awk '{{ print $4 }}')"
if [ -f /persist-count ]; then
	count=$(($(cat /persist-count) + 1))
else
	count=1
fi
echo "$count" > /persist-count
echo "$m persist-count $count"
echo "written by the new root" > /written-by-new-root
sync
echo "$m written $(cat /written-by-new-root)"
sh /run/ramboot/report-booted && echo "$m booted-reported"
echo "$m done"
sync
poweroff -f
"""


def busybox_of(images: ImageSet, dest: Path) -> Path:
    """The static busybox of the image set's second stage (the guest's architecture)."""
    with gzip.open(images.second_stage) as stream:
        data = stream.read()
    offset = 0
    while offset + 110 <= len(data):
        header = data[offset:offset + 110]
        size, namesize = int(header[54:62], 16), int(header[94:102], 16)
        name_start = offset + 110
        name = data[name_start:name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        if name == "bin/busybox":
            dest.write_bytes(data[data_start:data_start + size])
            dest.chmod(0o755)
            return dest
        if name == "TRAILER!!!":
            break
        offset = data_start + size + (-size % 4)
    raise RuntimeError(f"{images.second_stage} has no bin/busybox")


def busybox_root(images: ImageSet, dest: Path, *, init: str = "/sbin/init",
                 make_init: bool = True) -> Path:
    """A minimal root: busybox and its applets, /sbin/init the marker script."""
    for rel in ("bin", "sbin", "dev", "proc", "sys", "run", "tmp", "etc", "var/log"):
        (dest / rel).mkdir(parents=True, exist_ok=True)
    busybox = busybox_of(images, dest / "bin/busybox")
    applets = subprocess.run(["busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    assert busybox.is_file()
    (dest / "etc/hostname").write_text("newroot\n")
    if make_init:
        script = dest / init.lstrip("/")
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(INIT_SCRIPT.format(marker=ROOT_MARKER))
        script.chmod(0o755)
    return dest


def tree_digest(root: Path) -> str:
    """A digest of every path, type, mode and content under `root`."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest.update(f"{path.relative_to(root)} {stat.S_IFMT(info.st_mode):o} "
                      f"{stat.S_IMODE(info.st_mode):o}\n".encode())
        if path.is_symlink():
            digest.update(str(path.readlink()).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- images ------------------------------------------------------------------------------


def ext4_image(tree: Path, dest: Path, *, size_mb: int = 64, label: str = "root") -> Path:
    """An ext4 image holding `tree` (mke2fs -d: no mount needed)."""
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, "-E", "root_owner=0:0",
                    "-d", str(tree), str(dest), f"{size_mb}M"], check=True,
                   capture_output=True)
    return dest


def partitioned_ext4(tree: Path, dest: Path, *, size_mb: int = 64) -> Path:
    """A disk image: an MBR with one partition (at 1 MiB) holding an ext4 of `tree`."""
    with dest.open("wb") as image:
        image.truncate((size_mb + 1) << 20)
    subprocess.run(["sfdisk", "-q", str(dest)], input=b"start=2048, type=83\n", check=True,
                   capture_output=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-E", "offset=1048576",
                    "-d", str(tree), str(dest), f"{size_mb}M"], check=True,
                   capture_output=True)
    return dest


def empty_ext4(dest: Path, *, size_mb: int, label: str) -> Path:
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, str(dest), f"{size_mb}M"],
                   check=True, capture_output=True)
    return dest


def squashfs_image(tree: Path, dest: Path, *, compression: str = "xz") -> Path:
    subprocess.run(["mksquashfs", str(tree), str(dest), "-noappend", "-quiet", "-all-root",
                    "-comp", compression], check=True, capture_output=True)
    return dest


def tar_image(tree: Path, dest: Path, *, compression: str = "gz") -> Path:
    """A tar of `tree` owned by root, compressed with gzip, xz or none."""
    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    mode = {"gz": "w:gz", "xz": "w:xz", "": "w"}[compression]
    with tarfile.open(dest, mode, format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(tree.iterdir()):
            tar.add(path, arcname=f"./{path.name}", filter=owned_by_root)
    return dest


def cpio_image(tree: Path, dest: Path) -> Path:
    """A newc cpio (gzip) of `tree`, as `find | cpio -o -H newc` writes it."""
    names = [".", *sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))]
    listing = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"],
                             input="\n".join(names).encode(), cwd=tree, capture_output=True,
                             check=True).stdout
    dest.write_bytes(gzip.compress(listing))
    return dest


def debugfs_cat(image: Path, path: str) -> str | None:
    """A file's text from an ext4 image (debugfs: no mount needed); None if absent."""
    done = subprocess.run(["debugfs", "-R", f"cat {path}", str(image)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0 or "File not found" in done.stderr:
        return None
    return done.stdout


# --- servers ------------------------------------------------------------------------------


GANESHA_CONFIG = """
NFS_CORE_PARAM {{
    Protocols = 4;
    NFS_Port = 2049;
    Enable_NLM = false;
    Enable_RQUOTA = false;
}}
NFSv4 {{
    # Owners as numbers: the RAM system has no idmapper for user@domain names.
    Only_Numeric_Owners = true;
    Graceless = true;
    RecoveryRoot = "{workdir}/recovery";
}}
EXPORT {{
    Export_Id = 1;
    Path = "{export}";
    Pseudo = "{pseudo}";
    Access_Type = {access};
    Squash = No_Root_Squash;
    SecType = sys;
    Protocols = 4;
    Transports = TCP;
    FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"""


def start_ganesha(ns: Namespace, export: Path, workdir: Path, *, pseudo: str = "/srv/root",
                  access: str = "RO", timeout: float = 30) -> subprocess.Popen[Any]:
    """nfs-ganesha serving `export` as `pseudo` (NFSv4) inside `ns`; returns once ready."""
    if shutil.which("ganesha.nfsd") is None:
        import pytest

        pytest.skip("nfs-ganesha is not installed (scripts/install-deps)")
    config = workdir / "ganesha.conf"
    config.write_text(GANESHA_CONFIG.format(workdir=workdir, export=export, pseudo=pseudo,
                                            access=access))
    log = workdir / "ganesha.log"
    process = ns.popen(["ganesha.nfsd", "-F", "-L", str(log), "-f", str(config),
                        "-p", str(workdir / "ganesha.pid")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready() -> bool:
        if process.poll() is not None:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"ganesha.nfsd exited {process.returncode}:\n{text[-3000:]}")
        return log.exists() and "NFS SERVER INITIALIZED" in log.read_text()

    wait_for(ready, timeout=timeout, what="nfs-ganesha to start")
    return process


NBD_CONFIG = """[generic]
\tlistenaddr = {address}
\tport = {port}
\tallowlist = true
[{name}]
\texportname = {image}
\treadonly = {readonly}
"""


def start_nbd_server(ns: Namespace, image: Path, workdir: Path, *, address: str,
                     name: str = "root", readonly: bool = True,
                     timeout: float = 20) -> subprocess.Popen[Any]:
    """nbd-server exporting `image` as `name` inside `ns`, in the foreground."""
    config = workdir / "nbd-server.conf"
    config.write_text(NBD_CONFIG.format(address=address, port=NBD_PORT, name=name,
                                        image=image, readonly=str(readonly).lower()))
    log = (workdir / "nbd-server.log").open("w")
    process = ns.popen(["nbd-server", "-C", str(config), "-p", str(workdir / "nbd.pid")],
                       stdout=log, stderr=log)
    deadline = time.monotonic() + timeout
    while True:
        listening = ns.run(["ss", "-Hltn", f"sport = :{NBD_PORT}"], check=False).stdout
        if listening.strip():
            return process
        if time.monotonic() > deadline:
            raise TimeoutError(f"nbd-server did not listen: {(workdir / 'nbd-server.log')}")
        time.sleep(0.1)


def plan(*actions: dict[str, Any], **top: Any) -> bytes:
    import json

    return json.dumps({"ramboot-plan": 1, "actions": list(actions), **top}, indent=1).encode()
