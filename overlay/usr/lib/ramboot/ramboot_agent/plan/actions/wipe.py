"""`wipe`: remove every signature from a disk (wipefs) and discard its blocks where supported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ramboot_agent.plan.context import Context
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import DiskSelector, Fields
from ramboot_agent.plan.refs import disk_selector

WIPEFS_TIMEOUT = 120.0
DISCARD_TIMEOUT = 1800.0  # discarding a large SSD can take minutes


@dataclass(frozen=True)
class WipeSpec:
    target: DiskSelector
    discard: bool = True


class Wipe(ActionKind[WipeSpec]):
    required = ("target",)
    optional = ("discard",)
    default_timeout = 1800.0

    def parse(self, fields: Fields) -> WipeSpec | None:
        nodes = fields.nodes
        target = disk_selector(nodes["target"], fields.disks) if "target" in nodes else None
        discard = nodes["discard"].boolean() if "discard" in nodes else True
        if target is None or discard is None:
            return None
        return WipeSpec(target, discard)

    def describe(self, spec: WipeSpec, ctx: Context) -> str:
        from ramboot_agent.plan.target import resolve_disk  # noqa: PLC0415

        disk = resolve_disk(ctx, spec.target)
        parts = ", ".join(p.path for p in disk.partitions) or "no partitions"
        discard = ("then discard all its blocks" if spec.discard and disk.discard
                   else "no discard (the disk does not support it)" if spec.discard
                   else "no discard")
        return f"would wipe every signature on {disk.describe()} ({parts}), {discard}"

    def run(self, spec: WipeSpec, ctx: Context) -> Result:
        return wipe_disk(spec, ctx)


def wipe_disk(spec: WipeSpec, ctx: Context) -> dict[str, Any]:
    from ramboot_agent.plan import blockdev  # noqa: PLC0415
    from ramboot_agent.plan.target import resolve_disk  # noqa: PLC0415

    disk = resolve_disk(ctx, spec.target)
    # Partitions first: their filesystems would reappear with a recreated table.
    for part in disk.partitions:
        ctx.run_tool(["wipefs", "--all", "--force", part.path], timeout=WIPEFS_TIMEOUT)
    ctx.run_tool(["wipefs", "--all", "--force", disk.path], timeout=WIPEFS_TIMEOUT)
    discarded = False
    if spec.discard and disk.discard:
        ctx.run_tool(["blkdiscard", "--force", disk.path], timeout=DISCARD_TIMEOUT)
        discarded = True
    fd = blockdev.open_exclusive(disk.path)
    try:
        reread = blockdev.reread_partitions(fd, disk.path, ctx.run_tool)
    finally:
        import os  # noqa: PLC0415

        os.close(fd)
    ctx.say(f"{disk.path}: wiped{' and discarded' if discarded else ''}")
    return {"disk": disk.path, "partitions_wiped": len(disk.partitions),
            "discarded": discarded, "partitions": reread}
