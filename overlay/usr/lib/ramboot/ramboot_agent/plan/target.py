"""Disks and partitions as a running plan sees them: resolved once, checked every time.

A selector is resolved the first time an action uses it; later actions get
the same disk (by kernel name), re-read from sysfs so they see its new
partitions, and checked again before anything is written to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.disks import Disk, DiskError, in_use, read_disk, refusals
from ramboot_agent.plan.disks import select_disk as _select
from ramboot_agent.plan.model import DiskSelector, PartitionRef

BLKID_TIMEOUT = 30.0
PARTITION_WAIT = 5.0  # for the kernel to create a new partition's device node


def sysroot(ctx: Context) -> Path:
    """Where /sys, /proc and /dev are read (a fixture tree in some tests)."""
    return Path(ctx.shared.get("sysroot", "/"))


def blkid_lookup(ctx: Context) -> Callable[[str, str], str | None]:
    def lookup(tag: str, value: str) -> str | None:
        done = ctx.run_tool(["blkid", "-c", "/dev/null", "-l", "-o", "device", "-t",
                             f"{tag}={value}"], timeout=BLKID_TIMEOUT, check=False)
        device = done.stdout.strip()
        return Path(device).name if done.returncode == 0 and device else None
    return lookup


def resolve_disk(ctx: Context, selector: DiskSelector, *, writing: bool = True) -> Disk:
    """The disk `selector` names in this run; ActionError when there is none or it is busy."""
    root = sysroot(ctx)
    chosen: dict[tuple[object, ...], str] = ctx.shared.setdefault("disks", {})
    busy = in_use(root, blkid_lookup(ctx))
    name = chosen.get(selector.key)
    try:
        if name is None:
            disk = _select(selector, root=root, busy=busy) if writing \
                else _select_any(selector, root)
            chosen[selector.key] = disk.name
            return disk
        found = read_disk(root, name)
        if found is None:
            raise DiskError(f"/dev/{name} ({selector.describe()}) is gone")
        if writing:
            refused = refusals(found, busy)
            if refused:
                raise DiskError(f"refusing {found.describe()}: " + "; ".join(refused))
        return found
    except DiskError as error:
        raise ActionError(str(error)) from None


def _select_any(selector: DiskSelector, root: Path) -> Disk:
    """For reading only (localboot): a disk in use is fine."""
    from ramboot_agent.plan.disks import InUse  # noqa: PLC0415

    return _select(selector, root=root, busy=InUse())


def resolve_partition(ctx: Context, ref: PartitionRef, *, writing: bool = True) -> str:
    """The device path of partition `ref`; waits briefly for a new partition's node."""
    if ref.disk is not None and ref.number is not None:
        disk = resolve_disk(ctx, ref.disk, writing=writing)
        deadline = time.monotonic() + PARTITION_WAIT
        while True:
            part = disk.partition(ref.number)
            node = sysroot(ctx) / "dev" / part.name if part else None
            if part is not None and node is not None and node.exists():
                return part.path
            if time.monotonic() >= deadline:
                have = ", ".join(str(p.number) for p in disk.partitions) or "none"
                raise ActionError(f"{disk.path} has no partition {ref.number} "
                                  f"(partitions: {have})")
            time.sleep(0.1)
            disk = read_disk(sysroot(ctx), disk.name) or disk
    for tag in ("label", "partlabel", "uuid", "partuuid"):
        value = getattr(ref, tag)
        if value is None:
            continue
        done = ctx.run_tool(["blkid", "-c", "/dev/null", "-o", "device", "-t",
                             f"{tag.upper()}={value}"], timeout=BLKID_TIMEOUT, check=False)
        devices = sorted(set(done.stdout.split()))
        if not devices:
            raise ActionError(f"no partition has {tag.upper()}={value}")
        if len(devices) > 1:
            raise ActionError(f"{len(devices)} partitions have {tag.upper()}={value}: "
                              + ", ".join(devices))
        return devices[0]
    raise ActionError("the partition reference names no partition")
