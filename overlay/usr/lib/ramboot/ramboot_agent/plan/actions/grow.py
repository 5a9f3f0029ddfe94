"""`grow`: extend a disk's last partition to the end of the disk, then its filesystem."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import DiskSelector, Fields
from ramboot_agent.plan.refs import disk_selector

TOOL_TIMEOUT = 1800.0
E2FSCK_OK = (0, 1)  # 1: errors corrected; anything else stops the grow


@dataclass(frozen=True)
class GrowSpec:
    target: DiskSelector


class Grow(ActionKind[GrowSpec]):
    required = ("target",)
    default_timeout = TOOL_TIMEOUT

    def parse(self, fields: Fields) -> GrowSpec | None:
        node = fields.nodes.get("target")
        target = disk_selector(node, fields.disks) if node is not None else None
        return GrowSpec(target) if target is not None else None

    def describe(self, spec: GrowSpec, ctx: Context) -> str:
        from ramboot_agent.plan.target import resolve_disk  # noqa: PLC0415

        disk = resolve_disk(ctx, spec.target)
        if not disk.partitions:
            return f"would fail: {disk.describe()} has no partitions"
        last = max(disk.partitions, key=lambda p: p.start)
        return (f"would grow {last.path} (partition {last.number}) to the end of "
                f"{disk.describe()}, then its filesystem")

    def run(self, spec: GrowSpec, ctx: Context) -> Result:
        return grow(spec, ctx)


def grow(spec: GrowSpec, ctx: Context) -> dict[str, Any]:
    import os  # noqa: PLC0415

    from ramboot_agent.plan import blockdev  # noqa: PLC0415
    from ramboot_agent.plan.disks import read_disk  # noqa: PLC0415
    from ramboot_agent.plan.mounts import filesystem_type, mounted  # noqa: PLC0415
    from ramboot_agent.plan.target import resolve_disk, sysroot  # noqa: PLC0415

    disk = resolve_disk(ctx, spec.target)
    if not disk.partitions:
        raise ActionError(f"{disk.path} has no partitions to grow")
    last = max(disk.partitions, key=lambda p: p.start)
    table = ctx.run_tool(["sfdisk", "--dump", disk.path], timeout=60).stdout
    if "label: gpt" in table:
        # An image written to a larger disk has its backup GPT in the middle.
        ctx.run_tool(["sfdisk", "--relocate", "gpt-bak-std", disk.path], timeout=60)
    ctx.run_tool(["sfdisk", "--no-reread", "--quiet", "-N", str(last.number), disk.path],
                 input_text=", +\n", timeout=120)
    fd = blockdev.open_exclusive(disk.path)
    try:
        reread = blockdev.reread_partitions(fd, disk.path, ctx.run_tool)
    finally:
        os.close(fd)
    grown = read_disk(sysroot(ctx), disk.name) or disk
    part = grown.partition(last.number) or last
    fstype = filesystem_type(ctx, part.path)
    if fstype in ("ext2", "ext3", "ext4"):
        check = ctx.run_tool(["e2fsck", "-f", "-p", part.path], timeout=TOOL_TIMEOUT,
                             check=False)
        if check.returncode not in E2FSCK_OK:
            raise ActionError(f"e2fsck -f -p {part.path} exited {check.returncode}: "
                              f"{(check.stdout + check.stderr).strip()[-500:]}")
        ctx.run_tool(["resize2fs", part.path], timeout=TOOL_TIMEOUT)
    elif fstype == "xfs":
        with mounted(ctx, part.path, fstype="xfs") as point:
            ctx.run_tool(["xfs_growfs", str(point)], timeout=TOOL_TIMEOUT)
    elif fstype == "btrfs":
        with mounted(ctx, part.path, fstype="btrfs") as point:
            ctx.run_tool(["btrfs", "filesystem", "resize", "max", str(point)],
                         timeout=TOOL_TIMEOUT)
    elif fstype:
        raise ActionError(f"{part.path}: the partition grew, but a {fstype} filesystem "
                          "cannot be grown here (ext2/3/4, xfs and btrfs can)")
    ctx.say(f"{part.path}: {last.size} -> {part.size} bytes{', ' + fstype if fstype else ''}")
    return {"partition": part.path, "old_size": last.size, "new_size": part.size,
            "fs": fstype or None, "partitions": reread}
