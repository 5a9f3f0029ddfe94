"""`mkfs`: make a filesystem (ext4, ext3, ext2, vfat, swap, xfs, btrfs) on a partition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ramboot_agent.plan.context import Context
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import Fields, PartitionRef
from ramboot_agent.plan.refs import UUID, partition_ref

MKFS_TIMEOUT = 900.0
MAX_OPTIONS = 32
# filesystem -> (longest label, the label's allowed characters)
FILESYSTEMS = {
    "ext2": 16, "ext3": 16, "ext4": 16, "vfat": 11, "swap": 16, "xfs": 12, "btrfs": 255,
}
LABEL = r"[A-Za-z0-9._-][A-Za-z0-9 ._-]*"
OPTION = r"[^\x00-\x1f\x7f]{1,256}"


@dataclass(frozen=True)
class MkfsSpec:
    partition: PartitionRef
    fs: str
    label: str | None = None
    uuid: str | None = None
    options: tuple[str, ...] = ()

    def argv(self, device: str) -> list[str]:
        """The mkfs command line: the tool's own flags, then `options`, then the device."""
        label, uuid, extra = self.label, self.uuid, list(self.options)
        if self.fs.startswith("ext"):
            argv = ["mke2fs", "-t", self.fs, "-F", "-q"]
            argv += ["-L", label] if label else []
            argv += ["-U", uuid] if uuid else []
        elif self.fs == "vfat":
            argv = ["mkfs.fat"]
            argv += ["-n", label.upper()] if label else []
            argv += ["-i", uuid.replace("-", "")] if uuid else []
        elif self.fs == "swap":
            argv = ["mkswap", "-f"]
            argv += ["-L", label] if label else []
            argv += ["-U", uuid] if uuid else []
        elif self.fs == "xfs":
            argv = ["mkfs.xfs", "-f", "-q"]
            argv += ["-L", label] if label else []
            argv += ["-m", f"uuid={uuid}"] if uuid else []
        else:
            argv = ["mkfs.btrfs", "-f", "-q"]
            argv += ["-L", label] if label else []
            argv += ["-U", uuid] if uuid else []
        return [*argv, *extra, device]


class Mkfs(ActionKind[MkfsSpec]):
    required = ("partition", "fs")
    optional = ("label", "uuid", "options")
    default_timeout = MKFS_TIMEOUT

    def parse(self, fields: Fields) -> MkfsSpec | None:
        nodes = fields.nodes
        part = partition_ref(nodes["partition"], fields.disks) if "partition" in nodes else None
        fs = nodes["fs"].choice(tuple(FILESYSTEMS)) if "fs" in nodes else None
        label = nodes["label"].string(pattern=LABEL, what="a label (letters, digits, space, "
                                      "'.', '_', '-')") if "label" in nodes else None
        if label is not None and fs is not None and len(label.encode()) > FILESYSTEMS[fs]:
            nodes["label"].error(f"a {fs} label has at most {FILESYSTEMS[fs]} characters")
            label = None
        uuid = nodes["uuid"].string(pattern=UUID, what="a UUID") if "uuid" in nodes else None
        if uuid is not None and fs == "vfat" and len(uuid.replace("-", "")) != 8:
            nodes["uuid"].error("a vfat volume id is 8 hex digits, such as 1234-ABCD")
            uuid = None
        options: list[str | None] = []
        if "options" in nodes:
            options = [item.string(pattern=OPTION, what="a command-line argument")
                       for item in nodes["options"].items(max_items=MAX_OPTIONS)]
        if part is None or fs is None or any(o is None for o in options) \
                or ("label" in nodes and label is None) or ("uuid" in nodes and uuid is None):
            return None
        return MkfsSpec(part, fs, label, uuid, tuple(o for o in options if o is not None))

    def describe(self, spec: MkfsSpec, ctx: Context) -> str:
        import shlex  # noqa: PLC0415

        return (f"would make {spec.fs} on {spec.partition.describe()}: "
                f"{shlex.join(spec.argv('<partition>'))}")

    def run(self, spec: MkfsSpec, ctx: Context) -> Result:
        return make_filesystem(spec, ctx)


def make_filesystem(spec: MkfsSpec, ctx: Context) -> dict[str, Any]:
    from ramboot_agent.plan.target import resolve_partition  # noqa: PLC0415

    device = resolve_partition(ctx, spec.partition)
    ctx.run_tool(spec.argv(device), timeout=MKFS_TIMEOUT)
    ctx.say(f"{device}: {spec.fs}{' ' + repr(spec.label) if spec.label else ''}")
    return {"device": device, "fs": spec.fs, "label": spec.label}
