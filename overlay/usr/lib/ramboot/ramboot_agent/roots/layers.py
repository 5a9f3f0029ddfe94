"""Assembling the new root: the overlay's writable layer, the overlay, the checks.

Shared by `netroot` and `ramroot`. The writable layer is a tmpfs (a size
limit, swappable: never ramfs) or a local partition found by label, with
`upper/` and `work/` side by side on it as overlayfs requires.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.partitions import find_partition
from ramboot_agent.roots import nfs
from ramboot_agent.roots.helpers import helper_argv
from ramboot_agent.roots.keys import DEFAULT_TMPFS_SIZE, ExtraMount, Overlay
from ramboot_agent.roots.layout import Layout
from ramboot_agent.roots.mounts import Mounts

log = logging.getLogger("ramboot.roots")

INSPECT_TIMEOUT = 60.0
# Filesystems overlayfs accepts as its upper layer (xattrs, d_type, tmpfiles).
UPPER_FILESYSTEMS = ("btrfs", "ext2", "ext3", "ext4", "f2fs", "tmpfs", "xfs")
# Loaded before mounting a local partition, where the kernel has them as modules.
DISK_FILESYSTEMS = ("ext4", "xfs", "btrfs", "f2fs")
MOVED_TREES = ("dev", "proc", "sys", "run")
ROOT_MARKER = "root"  # in the persistent layer's directory: which root it was made over


@dataclass(frozen=True)
class Upper:
    upper: Path
    work: Path
    device: str | None = None  # the partition, for a persistent layer


def tmpfs(mounts: Mounts, target: Path, size: str, *, mode: str = "0755") -> None:
    """A tmpfs with a size limit (tmpfs pages can be swapped; ramfs would do neither)."""
    mounts.mount("tmpfs", target, fstype="tmpfs", options=[f"size={size}", f"mode={mode}"])


def writable_layer(mounts: Mounts, layout: Layout, overlay: Overlay, root: str) -> Upper:
    """Mount the overlay's writable side at layout.rw; its upper and work directories."""
    if overlay.kind == "tmpfs":
        tmpfs(mounts, layout.rw, overlay.size)
        base = layout.rw
        device = None
    else:
        assert overlay.partition is not None
        device = find_partition(mounts.ctx, overlay.partition, overlay.wait)
        mounts.modprobe(*DISK_FILESYSTEMS)
        mounts.mount(device, layout.rw, options=["rw"])
        fstype = fstype_of(layout.rw)
        if fstype not in UPPER_FILESYSTEMS:
            raise ActionError(f"{device} holds {fstype or 'an unknown filesystem'}, which "
                              f"overlayfs cannot write to: use one of "
                              f"{', '.join(UPPER_FILESYSTEMS)}")
        base = layout.rw / overlay.directory
        _note_root(base, root, device)
    upper, work = base / "upper", base / "work"
    upper.mkdir(parents=True, exist_ok=True, mode=0o755)
    work.mkdir(parents=True, exist_ok=True, mode=0o755)
    return Upper(upper, work, device)


def _note_root(base: Path, root: str, device: str) -> None:
    """Remember which root the persistent layer belongs to; say so when it changes."""
    base.mkdir(parents=True, exist_ok=True, mode=0o755)
    marker = base / ROOT_MARKER
    try:
        previous = marker.read_text().strip()
    except OSError:
        previous = ""
    if previous and previous != root:
        log.warning("the persistent layer on %s was made over %s; it now lies over %s",
                    device, previous, root)
    if previous != root:
        marker.write_text(root + "\n")


def overlay(mounts: Mounts, lower: Path, upper: Upper, target: Path) -> None:
    mounts.modprobe("overlay")
    mounts.require_filesystem("overlay", "CONFIG_OVERLAY_FS")
    mounts.mount("overlay", target, fstype="overlay", options=[
        f"lowerdir={lower}", f"upperdir={upper.upper}", f"workdir={upper.work}"])


def fstype_of(target: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """The filesystem type mounted at `target` (the last mount there)."""
    found = None
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == str(target) and " - " in line:
            found = line.split(" - ", 1)[1].split()[0]
    return found


@dataclass(frozen=True)
class Inspection:
    resolved: str
    kind: str
    modes: dict[str, int]


def inspect(ctx: Context, layout: Layout, init: str, mounts: tuple[ExtraMount, ...],
            root: str) -> Inspection:
    """Check the new root's init and make its mount points, in a bounded child process."""
    directories = [*MOVED_TREES, *(m.target for m in mounts)]
    argv = helper_argv("inspect", str(layout.newroot), init,
                       *(arg for d in directories for arg in ("--mkdir", d)))
    done = ctx.run_tool(argv, timeout=INSPECT_TIMEOUT, check=False)
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        detail = (done.stderr or done.stdout).strip()[-500:]
        raise ActionError(f"could not check the new root (status {done.returncode}): "
                          f"{detail or 'no output'}") from None
    problems = report.get("problems") or []
    if problems:
        raise ActionError(f"the new root ({root}) cannot be started: " + "; ".join(problems))
    return Inspection(str(report["resolved"]), str(report["kind"]),
                      {str(k): int(v) for k, v in report.get("modes", {}).items()})


def extra_mounts(mounts: Mounts, layout: Layout, extra: tuple[ExtraMount, ...],
                 modes: dict[str, int]) -> None:
    for mount in extra:
        target = layout.newroot / mount.target.lstrip("/")
        if mount.kind == "tmpfs":
            mode = f"{modes.get(mount.target, 0o755):o}"
            tmpfs(mounts, target, mount.size or DEFAULT_TMPFS_SIZE, mode=mode)
        else:
            assert mount.source is not None
            nfs.mount(mounts, nfs.parse_url(mount.source), target, read_only=False,
                      options=mount.options)
