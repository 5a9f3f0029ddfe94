"""The keys `netroot` and `ramroot` share: init, extra mounts, overlays, tmpfs sizes.

Every pattern here is also in docs/plan.schema.json, character for character
(tests/agent/plan/test_schema.py compares them), so that the agent and the
schema accept the same documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ramboot_agent.plan.model import PartitionRef
from ramboot_agent.plan.refs import partition_ref
from ramboot_agent.plan.schema import Node

# An absolute path in the new root: no control characters.
INIT_PATH = r"/[^\x00-\x1f\x7f]{0,4095}"
INIT_ARG = r"[^\x00-\x1f\x7f]{0,4096}"
MAX_INIT_ARGS = 32
# Where an extra mount goes: absolute, normalised (no '.', '..', '//' or
# trailing '/'), and not / itself nor the trees moved in from the RAM system.
MOUNT_TARGET = (r"(?!/(dev|proc|sys|run)(/|$))(?!.*/\.\.?(/|$))"
                r"(/[^\x00-\x1f\x7f/]{1,255}){1,32}")
MAX_MOUNTS = 16
# A directory on a partition: relative, normalised.
RELATIVE_DIR = r"(?!\.\.?(/|$))(?!.*/\.\.?(/|$))[A-Za-z0-9._-]{1,64}(/[A-Za-z0-9._-]{1,64}){0,7}"
# Comma-separated mount options: no spaces, quotes or shell characters.
MOUNT_OPTIONS = r"[A-Za-z0-9_.=:/+-]{1,256}(,[A-Za-z0-9_.=:/+-]{1,256}){0,31}"
# tmpfs size= as a share of RAM.
RAM_SHARE = r"(100|[1-9][0-9]?)%"
DEFAULT_TMPFS_SIZE = "50%"  # the kernel's own default, said out loud

_HOST = r"(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)"
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# nfs://SERVER[:PORT]/EXPORT/PATH (no '.' or '..' segments); nbd://SERVER[:PORT][/EXPORT].
NFS_URL = rf"nfs://{_HOST}(:{_PORT})?(?!.*/\.\.?(/|$))(/[A-Za-z0-9._~+@=:,-]{{1,255}}){{0,32}}/?"
NBD_URL = rf"nbd://{_HOST}(:{_PORT})?(/[A-Za-z0-9._~+@=:,/-]{{0,4096}})?"

OVERLAY_KEYS = ("type", "size", "partition", "directory", "wait")
MOUNT_KEYS = ("type", "target", "source", "size", "options")


@dataclass(frozen=True)
class Overlay:
    """The writable layer over a read-only root."""

    kind: str  # "tmpfs", "partition" or "none"
    size: str = DEFAULT_TMPFS_SIZE  # tmpfs size= (bytes or a share of RAM)
    partition: PartitionRef | None = None
    directory: str = "ramboot-overlay"  # on the partition: holds upper/ and work/
    wait: float = 10.0  # seconds for the partition to appear

    def describe(self) -> str:
        if self.kind == "tmpfs":
            return f"a tmpfs overlay (size={self.size})"
        if self.kind == "partition" and self.partition is not None:
            return f"a persistent overlay in {self.directory}/ on {self.partition.describe()}"
        return "no overlay (the root as mounted)"


@dataclass(frozen=True)
class ExtraMount:
    """A filesystem mounted into the new root before the switch."""

    kind: str  # "tmpfs" or "nfs"
    target: str
    source: str | None = None  # nfs:// URL
    size: str | None = None  # tmpfs size=
    options: str | None = None

    def describe(self) -> str:
        if self.kind == "tmpfs":
            return f"tmpfs on {self.target} (size={self.size or DEFAULT_TMPFS_SIZE})"
        return f"{self.source} on {self.target}"


def tmpfs_size(node: Node) -> str | None:
    """A tmpfs `size=`: bytes (a size) or a share of RAM such as "25%"."""
    if isinstance(node.value, str) and node.value.strip().endswith("%"):
        text = node.string(pattern=RAM_SHARE, what="a share of RAM from 1% to 100%")
        return text
    size = node.size(minimum=1)
    return None if size is None else str(size)


def init_path(node: Node | None) -> str | None:
    if node is None:
        return "/sbin/init"
    return node.string(pattern=INIT_PATH, what="an absolute path (such as /sbin/init)")


def init_args(node: Node | None) -> tuple[str, ...] | None:
    if node is None:
        return ()
    values = [item.string(pattern=INIT_ARG, what="an argument without control characters",
                          allow_empty=True)
              for item in node.items(max_items=MAX_INIT_ARGS)]
    if any(value is None for value in values) or len(values) > MAX_INIT_ARGS:
        return None
    return tuple(value for value in values if value is not None)


def overlay(node: Node | None, *, allow_partition: bool = True) -> Overlay | None:
    """"tmpfs" (default), "none", {"type": "tmpfs", "size": …} or
    {"type": "partition", "partition": {"label": …}, "directory": …, "wait": …}."""
    if node is None:
        return Overlay("tmpfs")
    if isinstance(node.value, str):
        kind = node.choice(("tmpfs", "none"))
        return None if kind is None else Overlay(kind)
    before = len(node.errors.messages)
    fields = node.object(required=("type",), optional=OVERLAY_KEYS)
    if fields is None:
        return None
    kinds = ("tmpfs", "partition") if allow_partition else ("tmpfs",)
    kind = fields["type"].choice(kinds) if "type" in fields else None
    allowed = {"tmpfs": ("type", "size"),
               "partition": ("type", "partition", "directory", "wait")}.get(kind or "", ())
    for key, child in fields.items():
        if kind is not None and key not in allowed:
            child.error(f"not a key of a {kind} overlay (allowed: {', '.join(allowed)})")
    if kind == "tmpfs":
        size = tmpfs_size(fields["size"]) if "size" in fields else DEFAULT_TMPFS_SIZE
        if len(node.errors.messages) > before or size is None:
            return None
        return Overlay("tmpfs", size=size)
    if kind != "partition":
        return None
    ref = None
    if "partition" not in fields:
        node.errors.add(node.child_path("partition"), "required")
    else:
        ref = partition_ref(fields["partition"], {})
        if ref is not None and ref.disk is not None:
            fields["partition"].error("a persistent overlay's partition is found by label, "
                                      "partlabel, uuid or partuuid")
    directory = fields["directory"].string(pattern=RELATIVE_DIR, what="a relative directory") \
        if "directory" in fields else "ramboot-overlay"
    wait = fields["wait"].number(minimum=0, maximum=600) if "wait" in fields else 10.0
    if len(node.errors.messages) > before or ref is None or directory is None or wait is None:
        return None
    return Overlay("partition", partition=ref, directory=directory, wait=wait)


def extra_mounts(node: Node | None) -> tuple[ExtraMount, ...] | None:
    """Up to 16 of {"type": "tmpfs", "target": …, "size": …} or
    {"type": "nfs", "target": …, "source": "nfs://…", "options": …}."""
    if node is None:
        return ()
    mounts = [_extra_mount(item) for item in node.items(max_items=MAX_MOUNTS)]
    if any(mount is None for mount in mounts):
        return None
    return tuple(mount for mount in mounts if mount is not None)


def _extra_mount(node: Node) -> ExtraMount | None:
    before = len(node.errors.messages)
    fields = node.object(required=("type", "target"), optional=MOUNT_KEYS)
    if fields is None:
        return None
    kind = fields["type"].choice(("tmpfs", "nfs")) if "type" in fields else None
    target = fields["target"].string(pattern=MOUNT_TARGET, what=(
        "an absolute, normalised path other than /, /dev, /proc, /sys, /run and below")) \
        if "target" in fields else None
    allowed = {"tmpfs": ("type", "target", "size"),
               "nfs": ("type", "target", "source", "options")}.get(kind or "", MOUNT_KEYS)
    for key, child in fields.items():
        if kind is not None and key not in allowed:
            child.error(f"not a key of a {kind} mount (allowed: {', '.join(allowed)})")
    size = options = source = None
    if kind == "tmpfs" and "size" in fields:
        size = tmpfs_size(fields["size"])
    if kind == "nfs":
        if "source" not in fields:
            node.errors.add(node.child_path("source"), "required")
        else:
            source = fields["source"].string(pattern=NFS_URL, what="an nfs://SERVER/PATH URL",
                                             max_length=8192)
        if "options" in fields:
            options = mount_options(fields["options"])
    if len(node.errors.messages) > before or kind is None or target is None:
        return None
    return ExtraMount(kind, target, source=source, size=size, options=options)


def mount_options(node: Node) -> str | None:
    return node.string(pattern=MOUNT_OPTIONS, what="comma-separated mount options",
                       max_length=4096)


def has_option(options: str | None, *names: str) -> bool:
    """Whether `options` sets any of `names` (as `name` or `name=…`)."""
    if not options:
        return False
    return any(re.fullmatch(rf"({'|'.join(map(re.escape, names))})(=.*)?", option)
               for option in options.split(","))
