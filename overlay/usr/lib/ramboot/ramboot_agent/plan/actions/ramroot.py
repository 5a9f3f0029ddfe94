"""`ramroot`: fetch a root image over HTTP into a tmpfs, then switch_root into it.

The image (its digest checked before anything reads it) lands in a tmpfs
of `size` at /run/ramboot/root/ram. By its first bytes, after any gzip,
xz, zstd or bzip2 compression: a squashfs is loop-mounted read-only with a
tmpfs overlay on the same tmpfs (as MAAS's ephemeral environment does), a
tar or newc cpio archive is unpacked there (then removed) and bound to
/newroot. tmpfs, not ramfs: size-limited and swappable.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ramboot_agent.plan.actions import rootswitch
from ramboot_agent.plan.actions.kexec import verify_fetched
from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import Fields
from ramboot_agent.roots import archive, keys, layers
from ramboot_agent.roots.helpers import helper_argv
from ramboot_agent.roots.keys import ExtraMount
from ramboot_agent.roots.layout import Layout
from ramboot_agent.roots.mounts import Mounts

log = logging.getLogger("ramboot.roots")

IMAGE_NAME = "image"
UNPACK_TIMEOUT = 1800.0


@dataclass(frozen=True)
class RamrootSpec:
    url: str
    digest: tuple[str, str]  # (algorithm, hex)
    size: str  # tmpfs size=
    format: str | None  # None: by the image's first bytes
    init: str
    init_args: tuple[str, ...]
    mounts: tuple[ExtraMount, ...]


class Ramroot(ActionKind[RamrootSpec]):
    required = ("url", "digest")
    optional = ("size", "format", "init", "init_args", "mounts")
    terminal = True
    default_timeout = 1800.0
    layout = Layout()

    def parse(self, fields: Fields) -> RamrootSpec | None:
        nodes = fields.nodes
        url = nodes["url"].url(("http", "https")) if "url" in nodes else None
        digest = nodes["digest"].digest() if "digest" in nodes else None
        size = keys.tmpfs_size(nodes["size"]) if "size" in nodes else keys.DEFAULT_TMPFS_SIZE
        image_format = nodes["format"].choice(archive.FORMATS) if "format" in nodes else None
        init = keys.init_path(nodes.get("init"))
        init_args = keys.init_args(nodes.get("init_args"))
        mounts = keys.extra_mounts(nodes.get("mounts"))
        if url is None or digest is None or size is None or init is None \
                or init_args is None or mounts is None \
                or ("format" in nodes and image_format is None):
            return None
        return RamrootSpec(url, digest, size, image_format, init, init_args, mounts)

    def describe(self, spec: RamrootSpec, ctx: Context) -> str:
        from ramboot_agent.fetch import redact, resolve_url  # noqa: PLC0415

        url = redact(resolve_url(ctx.base_url, spec.url))
        kind = spec.format or "tar, cpio or squashfs (by its first bytes)"
        text = (f"would download {url} ({spec.digest[0]} checked) into a tmpfs of "
                f"size={spec.size} at {self.layout.ram}, install it as {kind} on "
                f"{self.layout.newroot}")
        return text + rootswitch.describe_switch(spec.mounts, spec.init, self.layout)

    def run(self, spec: RamrootSpec, ctx: Context) -> Result:
        from ramboot_agent.fetch import resolve_url  # noqa: PLC0415

        layout = self.layout
        rootswitch.check_can_switch(layout)
        url = resolve_url(ctx.base_url, spec.url)

        def mount_root(mounts: Mounts) -> dict[str, str]:
            layers.tmpfs(mounts, layout.ram, spec.size)
            image = self._fetch(spec, url, ctx, layout.ram)
            return self._install(spec, image, ctx, mounts, layout)

        return rootswitch.switch_into(
            ctx, layout, action="ramroot", root=url, init=spec.init,
            init_args=spec.init_args, mounts=spec.mounts, mount_root=mount_root)

    def _fetch(self, spec: RamrootSpec, url: str, ctx: Context, directory: Path) -> Path:
        """Download into the tmpfs; the digest is checked before anything reads the image."""
        started = ctx.clock()

        def progress(done: int, total: int | None) -> None:
            ctx.progress(done, total, started=started)

        fetched = ctx.fetcher.fetch_file(url, directory, name=IMAGE_NAME,
                                         on_progress=progress, origin=ctx.base_url)
        ctx.reporter.emit("fetch", url=url, bytes=fetched.size, sha256=fetched.sha256,
                          seconds=round(fetched.seconds, 3))
        verify_fetched(url, fetched, spec.digest)
        return Path(fetched.path)

    def _install(self, spec: RamrootSpec, image: Path, ctx: Context, mounts: Mounts,
                 layout: Layout) -> dict[str, str]:
        try:
            compression, found = archive.detect(image)
        except archive.ArchiveError as error:
            raise ActionError(f"{image}: {error}") from None
        image_format = spec.format or found
        if image_format is None:
            raise ActionError("the image is neither a squashfs, a tar nor a newc cpio archive"
                              + (f" (after {compression} decompression)"
                                 if compression != "none" else ""))
        if found is not None and spec.format is not None and found != spec.format:
            raise ActionError(f"the plan says {spec.format}, the image is a {found}")
        log.info("root image: %s%s", image_format,
                 f", {compression}-compressed" if compression != "none" else "")
        variables = {"RAMBOOT_IMAGE_FORMAT": image_format, "RAMBOOT_IMAGE_COMPRESSION":
                     compression, "RAMBOOT_RAM": str(layout.ram)}
        if image_format == "squashfs":
            squashfs = image
            if compression != "none":
                squashfs = self._decompress(image, compression)
            mounts.modprobe("loop", "squashfs")
            mounts.require_filesystem("squashfs", "CONFIG_SQUASHFS")
            mounts.mount(str(squashfs), layout.lower, fstype="squashfs",
                         options=["ro", "loop"])
            upper = layout.ram / "upper"
            work = layout.ram / "work"
            upper.mkdir(mode=0o755)
            work.mkdir(mode=0o755)
            layers.overlay(mounts, layout.lower, layers.Upper(upper, work), layout.newroot)
            variables.update({"RAMBOOT_LOWER": str(layout.lower), "RAMBOOT_UPPER": str(upper),
                              "RAMBOOT_IMAGE": str(squashfs)})
            return variables
        tree = layout.ram / "root"
        tree.mkdir(mode=0o755)
        argv = helper_argv("unpack", "--format", image_format, "--compression", compression,
                           str(image), str(tree))
        done = ctx.run_tool(argv, timeout=UNPACK_TIMEOUT, check=False)
        image.unlink(missing_ok=True)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()[-500:]
            raise ActionError(f"unpacking the {image_format} image failed: "
                              f"{detail or 'no output'}")
        try:
            counts = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            counts = {}
        log.info("unpacked %s entries (%s bytes)", counts.get("entries"), counts.get("bytes"))
        mounts.bind(tree, layout.newroot)
        variables["RAMBOOT_TREE"] = str(tree)
        return variables

    @staticmethod
    def _decompress(image: Path, compression: str) -> Path:
        """A compressed squashfs, decompressed beside it (then the original removed)."""
        target = image.with_name(IMAGE_NAME + ".squashfs")
        try:
            with archive.open_image(image, compression) as stream, target.open("wb") as out:
                while chunk := stream.read(1 << 20):
                    out.write(chunk)
        except (archive.ArchiveError, OSError) as error:
            target.unlink(missing_ok=True)
            raise ActionError(f"cannot decompress the squashfs image: {error}") from None
        finally:
            image.unlink(missing_ok=True)
        return target

