"""`partition`: write a new partition table (GPT or DOS) from a list of partitions, with sfdisk."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import DiskSelector, Fields
from ramboot_agent.plan.refs import UUID, disk_selector
from ramboot_agent.plan.schema import Node

SFDISK_TIMEOUT = 120.0
MAX_PARTITIONS = 128
PARTITION_KEYS = ("size", "start", "type", "name", "uuid", "bootable")
# sfdisk's type shortcuts (both labels) and the names we accept for them.
TYPE_ALIASES = {"linux": "L", "swap": "S", "uefi": "U", "esp": "U", "extended": "E",
                "home": "H", "lvm": "V", "raid": "R", "xbootldr": "X"}
GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
DOS_TYPE = r"(0x)?[0-9A-Fa-f]{1,2}"
NAME = r"[^\x00-\x1f\x7f\"\\]{1,36}"
APPEAR_TIMEOUT = 10.0


@dataclass(frozen=True)
class PartitionSpec:
    size: int | None  # bytes; None: the rest of the disk (last partition only)
    start: int | None
    type: str
    name: str | None
    uuid: str | None
    bootable: bool


@dataclass(frozen=True)
class TableSpec:
    target: DiskSelector
    label: str
    partitions: tuple[PartitionSpec, ...]

    def script(self) -> str:
        """The sfdisk script (sizes in 512-byte sectors)."""
        lines = [f"label: {self.label}"]
        for part in self.partitions:
            fields = []
            if part.start is not None:
                fields.append(f"start={part.start // 512}")
            if part.size is not None:
                fields.append(f"size={part.size // 512}")
            fields.append(f"type={part.type}")
            if part.name is not None:
                fields.append(f'name="{part.name}"')
            if part.uuid is not None:
                fields.append(f"uuid={part.uuid}")
            if part.bootable:
                fields.append("bootable")
            lines.append(", ".join(fields))
        return "\n".join(lines) + "\n"


def _partition(node: Node, label: str | None, last: bool) -> PartitionSpec | None:
    before = len(node.errors.messages)
    fields = node.object(optional=PARTITION_KEYS)
    if fields is None:
        return None
    size = fields["size"].size(minimum=512) if "size" in fields else None
    start = fields["start"].size(minimum=512) if "start" in fields else None
    for key, value in (("size", size), ("start", start)):
        if value is not None and value % 512:
            fields[key].error(f"must be a multiple of 512 bytes, not {value}")
    if size is None and "size" not in fields and not last:
        node.error("only the last partition may leave out its size (it takes the rest)")
    kind = "linux"
    if "type" in fields:
        kind = fields["type"].string(max_length=40) or ""
        if kind and kind.lower() not in TYPE_ALIASES and not _type_ok(kind, label):
            fields["type"].error(f"{kind!r} is not one of {', '.join(TYPE_ALIASES)}, "
                                 + ("a GPT type GUID" if label == "gpt" else
                                    "a DOS type such as 83 or 0xef"))
    name = fields["name"].string(pattern=NAME, what="a partition name (at most 36 characters,"
                                 " no quotes)") if "name" in fields else None
    if name is not None and label == "dos":
        fields["name"].error("DOS partition tables have no partition names")
    uuid = fields["uuid"].string(pattern=UUID, what="a UUID") if "uuid" in fields else None
    bootable = fields["bootable"].boolean() if "bootable" in fields else False
    if bootable and label == "gpt":
        fields["bootable"].error("GPT has no bootable flag (use type \"uefi\" for an ESP)")
    if len(node.errors.messages) > before or bootable is None:
        return None
    kind = TYPE_ALIASES.get(kind.lower(), kind)
    return PartitionSpec(size, start, kind, name, uuid, bootable)


def _type_ok(kind: str, label: str | None) -> bool:
    import re  # noqa: PLC0415

    if label == "gpt":
        return re.fullmatch(GUID, kind) is not None
    return re.fullmatch(DOS_TYPE, kind) is not None


class Partition(ActionKind[TableSpec]):
    required = ("target", "partitions")
    optional = ("label",)
    default_timeout = 300.0

    def parse(self, fields: Fields) -> TableSpec | None:
        nodes = fields.nodes
        target = disk_selector(nodes["target"], fields.disks) if "target" in nodes else None
        label = nodes["label"].choice(("gpt", "dos")) if "label" in nodes else "gpt"
        parts: list[PartitionSpec | None] = []
        if "partitions" in nodes:
            items = list(nodes["partitions"].items(min_items=1, max_items=MAX_PARTITIONS))
            parts = [_partition(item, label, index == len(items) - 1)
                     for index, item in enumerate(items)]
        if target is None or label is None or not parts or any(p is None for p in parts):
            return None
        return TableSpec(target, label, tuple(p for p in parts if p is not None))

    def describe(self, spec: TableSpec, ctx: Context) -> str:
        from ramboot_agent.plan.target import resolve_disk  # noqa: PLC0415

        disk = resolve_disk(ctx, spec.target)
        script = spec.script().strip().replace("\n", "; ")
        return f"would write a new {spec.label} partition table on {disk.describe()}: {script}"

    def run(self, spec: TableSpec, ctx: Context) -> Result:
        return write_table(spec, ctx)


def write_table(spec: TableSpec, ctx: Context) -> dict[str, Any]:
    import os  # noqa: PLC0415

    from ramboot_agent.plan import blockdev  # noqa: PLC0415
    from ramboot_agent.plan.disks import read_disk  # noqa: PLC0415
    from ramboot_agent.plan.target import resolve_disk, sysroot  # noqa: PLC0415

    disk = resolve_disk(ctx, spec.target)
    ctx.run_tool(["sfdisk", "--wipe", "always", "--wipe-partitions", "always", "--quiet",
                  disk.path], input_text=spec.script(), timeout=SFDISK_TIMEOUT)
    fd = blockdev.open_exclusive(disk.path)
    try:
        blockdev.reread_partitions(fd, disk.path, ctx.run_tool)
    finally:
        os.close(fd)
    deadline = time.monotonic() + APPEAR_TIMEOUT
    while True:
        found = read_disk(sysroot(ctx), disk.name) or disk
        nodes = [sysroot(ctx) / "dev" / part.name for part in found.partitions]
        if len(found.partitions) == len(spec.partitions) and all(n.exists() for n in nodes):
            break
        if time.monotonic() >= deadline:
            raise ActionError(f"{disk.path}: sfdisk wrote {len(spec.partitions)} partitions "
                              f"but the kernel shows {len(found.partitions)}")
        time.sleep(0.1)
    ctx.say(f"{disk.path}: {spec.label} table with {len(found.partitions)} partitions")
    return {"disk": disk.path, "label": spec.label,
            "partitions": [{"path": p.path, "number": p.number, "start": p.start,
                            "size": p.size} for p in found.partitions]}
