"""Parsing disk selectors and partition references, shared by the disk actions."""

from __future__ import annotations

from ramboot_agent.plan.model import DiskSelector, PartitionRef
from ramboot_agent.plan.schema import Node

SELECTOR_KEYS = ("path", "by_id", "min_size", "max_size", "model", "serial", "bus",
                 "removable", "rotational", "prefer")
BUSES = ("mmc", "nvme", "sata", "scsi", "usb", "virtio")
DEVICE_PATH = r"/dev/[A-Za-z0-9][A-Za-z0-9._/:+-]*"
BY_ID = r"(/dev/disk/by-id/)?[A-Za-z0-9][A-Za-z0-9._:+@-]*"
LABEL = r"[^\x00-\x1f\x7f/]{1,64}"
UUID = r"[0-9A-Fa-f][0-9A-Fa-f-]{3,35}"


def disk_selector(node: Node, disks: dict[str, DiskSelector]) -> DiskSelector | None:
    """A selector object, or the name of one in the plan's `disks`."""
    if isinstance(node.value, str):
        if node.value not in disks:
            names = ", ".join(sorted(disks)) or "none defined"
            node.error(f"{node.value[:64]!r} is not a disk named in the plan's disks "
                       f"({names})")
            return None
        return disks[node.value]
    before = len(node.errors.messages)
    fields = node.object(optional=SELECTOR_KEYS)
    if fields is None:
        return None
    values: dict[str, object] = {}
    for key, child in fields.items():
        if key == "path":
            values[key] = child.string(pattern=DEVICE_PATH, what="a path under /dev/")
        elif key == "by_id":
            by_id = child.string(pattern=BY_ID, what="a /dev/disk/by-id/ name")
            values[key] = by_id and by_id.removeprefix("/dev/disk/by-id/")
        elif key in ("min_size", "max_size"):
            values[key] = child.size(minimum=1)
        elif key in ("model", "serial"):
            values[key] = child.string(max_length=128)
        elif key == "bus":
            values[key] = child.choice(BUSES)
        elif key in ("removable", "rotational"):
            values[key] = child.boolean()
        elif key == "prefer":
            values[key] = child.choice(("smallest", "largest"))
    if "path" in values and "by_id" in values:
        node.error("give path or by_id, not both")
    low, high = values.get("min_size"), values.get("max_size")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        node.error("min_size is larger than max_size")
    if len(node.errors.messages) > before:
        return None
    return DiskSelector(**values)  # type: ignore[arg-type]


PARTITION_KEYS = ("disk", "number", "label", "partlabel", "uuid", "partuuid")


def partition_ref(node: Node, disks: dict[str, DiskSelector]) -> PartitionRef | None:
    """`{"disk": SELECTOR, "number": N}` or exactly one of label/partlabel/uuid/partuuid."""
    before = len(node.errors.messages)
    fields = node.object(optional=PARTITION_KEYS)
    if fields is None:
        return None
    disk = disk_selector(fields["disk"], disks) if "disk" in fields else None
    number = fields["number"].integer(minimum=1, maximum=256) if "number" in fields else None
    names = {key: fields[key].string(pattern=LABEL if "label" in key else UUID,
                                     what="a label" if "label" in key else "a UUID")
             for key in ("label", "partlabel", "uuid", "partuuid") if key in fields}
    by_number = "disk" in fields or "number" in fields
    if by_number and ("disk" not in fields or "number" not in fields):
        node.error("a partition by number needs both disk and number")
    if by_number + len(names) != 1:
        node.error("name the partition one way: disk + number, label, partlabel, uuid "
                   "or partuuid")
    if len(node.errors.messages) > before:
        return None
    return PartitionRef(disk=disk, number=number, **names)
