"""`write-file`: mount a partition, write one file inside it (mode, owner), unmount."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import Fields, PartitionRef
from ramboot_agent.plan.refs import partition_ref

MAX_CONTENT = 1 << 20
PATH = r"(/[^/\x00-\x1f\x7f]+)+"
MODE = r"0?[0-7]{3,4}"
OWNER = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}"


@dataclass(frozen=True)
class WriteFileSpec:
    partition: PartitionRef
    path: str
    content: bytes
    mode: int = 0o644
    owner: str = "0"
    group: str = "0"


class WriteFile(ActionKind[WriteFileSpec]):
    required = ("partition", "path")
    optional = ("content", "content_base64", "mode", "owner", "group")
    default_timeout = 120.0

    def parse(self, fields: Fields) -> WriteFileSpec | None:
        nodes = fields.nodes
        part = partition_ref(nodes["partition"], fields.disks) if "partition" in nodes else None
        path = nodes["path"].string(pattern=PATH, max_length=1024,
                                    what="an absolute path inside the filesystem") \
            if "path" in nodes else None
        if path is not None and any(p in (".", "..") for p in path.split("/")):
            nodes["path"].error("'.' and '..' are not allowed: the path stays inside the "
                                "filesystem")
            path = None
        content: bytes | None = None
        if ("content" in nodes) == ("content_base64" in nodes):
            fields.node.error("give exactly one of content and content_base64")
        elif "content" in nodes:
            text = nodes["content"].string(max_length=MAX_CONTENT, allow_empty=True)
            content = text.encode() if text is not None else None
        else:
            encoded = nodes["content_base64"].string(max_length=MAX_CONTENT * 4 // 3 + 4,
                                                     allow_empty=True)
            try:
                content = base64.b64decode(encoded or "", validate=True) \
                    if encoded is not None else None
            except (binascii.Error, ValueError):
                nodes["content_base64"].error("is not base64")
        mode = 0o644
        if "mode" in nodes:
            text = nodes["mode"].string(pattern=MODE, what="an octal mode such as '0644'")
            mode = int(text, 8) if text is not None else -1
        owner = nodes["owner"].string(pattern=OWNER, what="a user name or number") \
            if "owner" in nodes else "0"
        group = nodes["group"].string(pattern=OWNER, what="a group name or number") \
            if "group" in nodes else "0"
        if part is None or path is None or content is None or mode < 0 or owner is None \
                or group is None:
            return None
        return WriteFileSpec(part, path, content, mode, owner, group)

    def describe(self, spec: WriteFileSpec, ctx: Context) -> str:
        return (f"would write {len(spec.content)} bytes to {spec.path} (mode {spec.mode:04o}, "
                f"owner {spec.owner}:{spec.group}) on {spec.partition.describe()}")

    def run(self, spec: WriteFileSpec, ctx: Context) -> Result:
        return write_file(spec, ctx)


def _id(name: str, table: bytes | None, what: str) -> int:
    """A numeric id, or a name looked up in the installed system's passwd/group."""
    if name.isdigit():
        return int(name)
    for line in (table or b"").decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    table_name = "passwd" if what == "user" else "group"
    raise ActionError(f"no {what} {name!r} in the filesystem's /etc/{table_name}")


def write_file(spec: WriteFileSpec, ctx: Context) -> dict[str, Any]:
    from ramboot_agent.plan.mounts import mounted, read_inside, write_inside  # noqa: PLC0415
    from ramboot_agent.plan.target import resolve_partition  # noqa: PLC0415

    device = resolve_partition(ctx, spec.partition)
    with mounted(ctx, device) as root:
        uid = _id(spec.owner, read_inside(root, "etc/passwd"), "user")
        gid = _id(spec.group, read_inside(root, "etc/group"), "group")
        write_inside(root, spec.path, spec.content, mode=spec.mode, uid=uid, gid=gid)
    ctx.say(f"{device}: wrote {spec.path} ({len(spec.content)} bytes)")
    return {"device": device, "path": spec.path, "bytes": len(spec.content),
            "mode": f"{spec.mode:04o}", "uid": uid, "gid": gid}



