"""`netroot`: an NFS or NBD root with a copy-on-write layer, then switch_root into it.

The network root is mounted read-only at /run/ramboot/root/lower; the
overlay's writable layer (a tmpfs by default, or a local partition found by
label, for persistence) at /run/ramboot/root/rw; the overlay at /newroot.
With `"overlay": "none"` the root itself is mounted at /newroot (read-only
unless the options say `rw`). docs/roots.md tells the whole story.
"""

from __future__ import annotations

from dataclasses import dataclass

from ramboot_agent.plan.actions import rootswitch
from ramboot_agent.plan.context import Context
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import Fields
from ramboot_agent.roots import keys, layers, nbd, nfs
from ramboot_agent.roots.keys import ExtraMount, Overlay
from ramboot_agent.roots.layout import Layout
from ramboot_agent.roots.mounts import Mounts

# Filesystems an NBD root may hold (modules loaded when the kernel has them so).
NBD_FILESYSTEMS = (*layers.DISK_FILESYSTEMS, "squashfs", "erofs")
DEFAULT_IO_TIMEOUT = 60.0


@dataclass(frozen=True)
class NetrootSpec:
    root: str
    protocol: str  # "nfs" or "nbd"
    overlay: Overlay
    init: str
    init_args: tuple[str, ...]
    mount_options: str | None
    partition: int | None  # nbd: the partition of the device that holds the root
    io_timeout: float  # nbd: seconds before a request to a silent server fails
    mounts: tuple[ExtraMount, ...]

    @property
    def read_only(self) -> bool:
        return self.overlay.kind != "none" or not keys.has_option(self.mount_options, "rw")


class Netroot(ActionKind[NetrootSpec]):
    required = ("root",)
    optional = ("overlay", "init", "init_args", "mount_options", "partition", "io_timeout",
                "mounts")
    terminal = True
    default_timeout = 300.0
    layout = Layout()

    def parse(self, fields: Fields) -> NetrootSpec | None:
        nodes = fields.nodes
        root = nodes["root"].string(
            pattern=f"({keys.NFS_URL})|({keys.NBD_URL})", max_length=8192,
            what="nfs://SERVER[:PORT]/EXPORT/PATH or nbd://SERVER[:PORT]/EXPORTNAME") \
            if "root" in nodes else None
        protocol = root.split(":", 1)[0] if root else None
        overlay = keys.overlay(nodes.get("overlay"))
        init = keys.init_path(nodes.get("init"))
        init_args = keys.init_args(nodes.get("init_args"))
        options = keys.mount_options(nodes["mount_options"]) if "mount_options" in nodes \
            else None
        mounts = keys.extra_mounts(nodes.get("mounts"))
        partition, io_timeout = None, DEFAULT_IO_TIMEOUT
        for key in ("partition", "io_timeout"):
            if key in nodes and protocol == "nfs":
                nodes[key].error("only for an nbd:// root")
        if "partition" in nodes:
            partition = nodes["partition"].integer(minimum=1, maximum=16)
        if "io_timeout" in nodes:
            seconds = nodes["io_timeout"].number(minimum=0, maximum=86400)
            io_timeout = DEFAULT_IO_TIMEOUT if seconds is None else seconds
        if overlay is not None and overlay.kind != "none" and keys.has_option(options, "rw"):
            nodes["mount_options"].error("rw: the root under an overlay is read-only (use "
                                         "\"overlay\": \"none\" for a writable root)")
            return None
        if root is None or protocol is None or overlay is None or init is None \
                or init_args is None or mounts is None:
            return None
        return NetrootSpec(root, protocol, overlay, init, init_args, options, partition,
                           io_timeout, mounts)

    def describe(self, spec: NetrootSpec, ctx: Context) -> str:
        layout = self.layout
        where = layout.lower if spec.overlay.kind != "none" else layout.newroot
        mode = "read-only" if spec.read_only else "read-write"
        text = f"would mount {spec.root} {mode} on {where}"
        if spec.overlay.kind != "none":
            text += f", with {spec.overlay.describe()} on {layout.newroot}"
        return text + rootswitch.describe_switch(spec.mounts, spec.init, layout)

    def run(self, spec: NetrootSpec, ctx: Context) -> Result:
        layout = self.layout
        rootswitch.check_can_switch(layout)
        return rootswitch.switch_into(
            ctx, layout, action="netroot", root=spec.root, init=spec.init,
            init_args=spec.init_args, mounts=spec.mounts,
            mount_root=lambda mounts: self._mount_root(spec, mounts, layout))

    def _mount_root(self, spec: NetrootSpec, mounts: Mounts, layout: Layout) -> dict[str, str]:
        """The network root (and its overlay) at /newroot; the RAMBOOT_* it adds."""
        target = layout.lower if spec.overlay.kind != "none" else layout.newroot
        variables = {"RAMBOOT_OVERLAY": spec.overlay.kind}
        if spec.protocol == "nfs":
            version = nfs.mount(mounts, nfs.parse_url(spec.root), target,
                                read_only=spec.read_only, options=spec.mount_options)
            variables["RAMBOOT_NFS_VERSION"] = version
        else:
            url = nbd.parse_url(spec.root)
            device = nbd.attach(mounts, url, read_only=spec.read_only,
                                io_timeout=spec.io_timeout, partition=spec.partition)
            mounts.modprobe(*NBD_FILESYSTEMS)
            options = ["ro"] if spec.read_only else []
            if spec.mount_options:
                options += spec.mount_options.split(",")
            mounts.mount(str(device), target, options=options)
            variables["RAMBOOT_ROOT_DEVICE"] = str(device)
        if spec.overlay.kind == "none":
            return variables
        upper = layers.writable_layer(mounts, layout, spec.overlay, spec.root)
        layers.overlay(mounts, layout.lower, upper, layout.newroot)
        variables.update({"RAMBOOT_LOWER": str(layout.lower), "RAMBOOT_UPPER": str(upper.upper)})
        if upper.device:
            variables["RAMBOOT_OVERLAY_DEVICE"] = upper.device
        return variables
