"""overlay/usr/lib/ramboot/switch-root, run as PID 1 without a VM.

A new PID and mount namespace (`unshare`) makes the script PID 1, as busybox
init's ::restart: action does; a tmpfs chroot with busybox stands in for the
initramfs, so busybox's own switch_root runs for real: it empties the
"initramfs", moves the new root onto it and execs the new init. Nothing
leaves the namespaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "overlay/usr/lib/ramboot/switch-root"
BUSYBOX = Path("/bin/busybox")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or not BUSYBOX.is_file(),
    reason="needs root, unshare and busybox-static")

# Runs as PID 1 of the new namespaces, before the script: the RAM system's
# mounts inside a tmpfs "initramfs", then the script in its place.
SETUP = r"""
set -eu
ram=$1
mount -t tmpfs -o size=64m ramfs-stand-in "$ram"
mkdir -p "$ram/bin" "$ram/sbin" "$ram/usr/lib/ramboot" "$ram/proc" "$ram/sys" \
	"$ram/dev" "$ram/run" "$ram/tmp" "$ram/newroot"
cp /bin/busybox "$ram/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ -e "$ram/bin/$applet" ] || ln -s busybox "$ram/bin/$applet"
done
cp "$2" "$ram/usr/lib/ramboot/switch-root"
printf '#!/bin/sh\n' > "$ram/init"  # the initramfs' /init, which busybox switch_root wants
printf '#!/bin/sh\necho "RAM-SYSTEM-INIT again, status $(cat /run/ramboot/agent-status)"\n' \
	> "$ram/sbin/init"
chmod 755 "$ram/sbin/init" "$ram/usr/lib/ramboot/switch-root"
mount -t proc proc "$ram/proc"
mount -t tmpfs tmpfs "$ram/run"
mount -t tmpfs tmpfs "$ram/dev"
mount -t tmpfs tmpfs "$ram/tmp"
mkdir -p "$ram/run/ramboot"
touch "$ram/tmp/ram-system-file"
# The new root, as the agent leaves it.
mount -t tmpfs tmpfs "$ram/newroot"
mkdir -p "$ram/newroot/bin" "$ram/newroot/sbin" "$ram/newroot/dev" "$ram/newroot/proc" \
	"$ram/newroot/sys" "$ram/newroot/run"
cp /bin/busybox "$ram/newroot/bin/busybox"
ln -s busybox "$ram/newroot/bin/sh"
printf '%s\n' "$3" > "$ram/newroot/sbin/init"
chmod 755 "$ram/newroot/sbin/init"
printf '%s\n' "$4" > "$ram/run/ramboot/switch-root.request"
[ -n "$5" ] && rm -f "$ram/newroot/sbin/init"
exec chroot "$ram" /usr/lib/ramboot/switch-root
"""

NEW_INIT = r"""#!/bin/sh
/bin/busybox echo "NEW-INIT pid=$$ args=[$*] PATH=$PATH"
for tree in /dev /proc /run; do
	/bin/busybox awk -v t="$tree" '$5 == t { found = 1 } END { exit !found }' \
		/proc/self/mountinfo && /bin/busybox echo "NEW-INIT has $tree"
done
/bin/busybox ls /run/ramboot
[ -e /tmp/ram-system-file ] && /bin/busybox echo "NEW-INIT sees the RAM system's /tmp"
[ -e /usr/lib/ramboot/switch-root ] && /bin/busybox echo "NEW-INIT sees the initramfs"
exit 0
"""

REQUEST = "\n".join(["# ramboot switch-root request 1", "newroot=/newroot", "init=/sbin/init",
                     "check=/sbin/init", "root=nfs://192.0.2.1/srv/root", "arg=first",
                     "arg=two words"])


def run_as_pid1(tmp_path: Path, *, remove_init: bool = False) -> str:
    ram = tmp_path / "ram"
    ram.mkdir()
    done = subprocess.run(
        ["unshare", "--fork", "--pid", "--mount", "--propagation", "private",
         "sh", "-c", SETUP, "setup", str(ram), str(SCRIPT), NEW_INIT, REQUEST,
         "yes" if remove_init else ""],
        capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def test_the_script_switches_to_the_new_init_as_pid_1(tmp_path: Path) -> None:
    out = run_as_pid1(tmp_path)
    assert "ramboot: switching to /sbin/init on nfs://192.0.2.1/srv/root" in out, out
    assert "NEW-INIT pid=1 args=[first two words] PATH=/usr/sbin:/usr/bin:/sbin:/bin" in out
    for tree in ("/dev", "/proc", "/run"):
        assert f"NEW-INIT has {tree}" in out, out
    assert "switch-root.request" in out  # /run moved with its files
    # The RAM system's /tmp was detached, the initramfs emptied by switch_root.
    assert "sees the RAM system's /tmp" not in out
    assert "sees the initramfs" not in out


def test_a_missing_init_goes_back_to_the_ram_systems_init(tmp_path: Path) -> None:
    out = run_as_pid1(tmp_path, remove_init=True)
    assert "ramboot: cannot switch to the new root: /sbin/init is missing or not executable " \
           "in the new root" in out, out
    assert "RAM-SYSTEM-INIT again, status 1" in out
    assert "NEW-INIT" not in out
