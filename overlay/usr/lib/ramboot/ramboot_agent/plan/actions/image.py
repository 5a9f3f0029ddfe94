"""`image`: stream a disk image from a URL to a whole disk, verified, resumable, sparse.

Keys: `url`, `target` (a disk selector), `digest` (of the file as served);
optional `image_digest` (of the image as written: the decompressed bytes),
`bmap` (URL of a bmaptool v2 block map: only mapped ranges are written,
each checked), `bmap_digest` (of the bmap file: an authenticated bmap proves
every byte written, so `digest` may then be left out), `verify` (read the
written bytes back from the disk and check them). See docs/plans.md for the
guarantees.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any

from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.disks import human_size
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import DiskSelector, Fields
from ramboot_agent.plan.refs import disk_selector

log = logging.getLogger("ramboot.plan")

MAX_BMAP_DOWNLOAD = 32 << 20
INVALIDATE_BYTES = 1 << 20  # zeroed at the start of a disk whose image failed


Digest = tuple[str, str]  # (algorithm, lowercase hex)


@dataclass(frozen=True)
class ImageSpec:
    url: str
    digest: Digest | None  # None only with an authenticated bmap (bmap_digest)
    target: DiskSelector
    image_digest: Digest | None = None
    bmap: str | None = None
    verify: bool = False
    bmap_digest: Digest | None = None


class Image(ActionKind[ImageSpec]):
    required = ("url", "target")  # and `digest`, unless `bmap` with `bmap_digest`
    optional = ("digest", "image_digest", "bmap", "bmap_digest", "verify")
    default_timeout = 3600.0

    def parse(self, fields: Fields) -> ImageSpec | None:
        nodes = fields.nodes
        url = nodes["url"].url() if "url" in nodes else None
        digest = nodes["digest"].digest() if "digest" in nodes else None
        target = disk_selector(nodes["target"], fields.disks) if "target" in nodes else None
        digests = {key: nodes[key].digest() if key in nodes else None
                   for key in ("image_digest", "bmap_digest")}
        bmap = nodes["bmap"].url() if "bmap" in nodes else None
        verify = nodes["verify"].boolean() if "verify" in nodes else False
        unproved = "digest" not in nodes and not ("bmap" in nodes and "bmap_digest" in nodes)
        if unproved:
            node = fields.node
            node.errors.add(node.child_path("digest"), 'required, unless "bmap" and '
                            '"bmap_digest" are given (an authenticated bmap)')
        if "bmap_digest" in nodes and "bmap" not in nodes:
            nodes["bmap_digest"].error('only with "bmap" (the digest of the bmap file)')
        if unproved or url is None or target is None or verify is None \
                or ("bmap_digest" in nodes and "bmap" not in nodes) \
                or any(key in nodes and value is None for key, value in digests.items()) \
                or ("digest" in nodes and digest is None) \
                or ("bmap" in nodes and bmap is None):
            return None
        return ImageSpec(url, digest, target, digests["image_digest"], bmap, verify,
                         digests["bmap_digest"])

    def describe(self, spec: ImageSpec, ctx: Context) -> str:
        from ramboot_agent.fetch import redact, resolve_url  # noqa: PLC0415
        from ramboot_agent.plan.target import resolve_disk  # noqa: PLC0415

        disk = resolve_disk(ctx, spec.target)
        url = redact(resolve_url(ctx.base_url, spec.url))
        checked = f"{spec.digest[0]} checked" if spec.digest else "every range checked " \
            "against the bmap, which is checked against bmap_digest"
        what = f"would stream {url} ({checked}) to {disk.describe()}"
        if spec.bmap is not None:
            bmap = _fetch_bmap(ctx, spec.bmap, spec.bmap_digest)
            what += (f", writing only the {len(bmap.ranges)} mapped ranges of its bmap "
                     f"({bmap.mapped_bytes} of {bmap.image_size} bytes)")
            if bmap.image_size > disk.size:
                what += f"; but the image ({bmap.image_size} bytes) is larger than the disk"
        if spec.verify:
            what += ", then read it back to verify"
        return what

    def run(self, spec: ImageSpec, ctx: Context) -> Result:
        return write_image(spec, ctx)


def _fetch_bmap(ctx: Context, reference: str, digest: Digest | None) -> Any:
    """The bmap, checked against `digest` (when the plan has one) before it is parsed."""
    import hashlib  # noqa: PLC0415

    from ramboot_agent.fetch import redact, resolve_url  # noqa: PLC0415
    from ramboot_agent.plan.bmap import parse_bmap  # noqa: PLC0415

    url = resolve_url(ctx.base_url, reference)
    fetched = ctx.fetcher.fetch_bytes(url, max_size=MAX_BMAP_DOWNLOAD, origin=ctx.base_url,
                                      deadline=ctx.remaining())
    data = fetched.data or b""
    if digest is not None:
        actual = hashlib.new(digest[0], data).hexdigest()
        if actual != digest[1]:
            raise ActionError(f"{redact(url)}: {digest[0]} is {actual}, the plan's "
                              f"bmap_digest is {digest[1]}: refusing the bmap")
    return parse_bmap(data, url)


def write_image(spec: ImageSpec, ctx: Context) -> dict[str, Any]:
    """Stream, check, flush, re-read, and optionally read back; the action-done details."""
    from ramboot_agent.fetch import redact, resolve_url  # noqa: PLC0415
    from ramboot_agent.plan import blockdev  # noqa: PLC0415
    from ramboot_agent.plan.imagewrite import (  # noqa: PLC0415
        BmapWriter,
        DeviceWriter,
        ImageSink,
        spans_of,
    )
    from ramboot_agent.plan.target import resolve_disk  # noqa: PLC0415

    disk = resolve_disk(ctx, spec.target)
    url = resolve_url(ctx.base_url, spec.url)
    bmap = _fetch_bmap(ctx, spec.bmap, spec.bmap_digest) if spec.bmap is not None else None
    # No digest: the authenticated bmap proves the image (every range, zeros between).
    algorithm, expected = spec.digest if spec.digest is not None else (None, None)
    # What the read-back compares with: the plan's image digest, else what was written.
    image_algorithm = spec.image_digest[0] if spec.image_digest else "sha256"
    hash_image = spec.image_digest is not None or (spec.verify and bmap is None)
    ctx.say(f"writing {redact(url)} to {disk.describe()}")
    fd = blockdev.open_exclusive(disk.path)
    started = ctx.clock()
    sink: ImageSink | None = None
    wrote_anything = False
    try:
        size = blockdev.device_size(fd)
        writer: DeviceWriter = (
            BmapWriter(fd, disk.path, size, bmap,
                       image_hash=image_algorithm if spec.image_digest else None)
            if bmap is not None else
            DeviceWriter(fd, disk.path, size, image_hash=image_algorithm if hash_image else None))
        # A raw image with a bmap is fetched by ranges: its holes are not downloaded.
        spans = spans_of(bmap) if bmap is not None and (
            spec.image_digest is None or algorithm in (None, spec.image_digest[0])) else None
        sink = ImageSink(redact(url), writer, algorithm, spans)

        def progress(done: int, total: int | None) -> None:
            ctx.progress(done, total, started=started, written=writer.written,
                         restarts=sink.restarts if sink else 0)
            ctx.check_deadline()

        fetched = _download(ctx, url, sink, progress)
        wrote_anything = writer.written > 0
        sink.finish()
        wrote_anything = writer.written > 0
        actual = sink.served_digest()
        if algorithm is not None and actual != expected:
            holes = " (counting the holes between the bmap's ranges as zeros)" \
                if sink.spans is not None else ""
            raise ActionError(f"{redact(url)}: {algorithm} is {actual}{holes}, the plan "
                              f"expects {expected}")
        if isinstance(writer, BmapWriter):
            writer.check_complete()
        image_hex = writer.image_hash.hexdigest() if writer.image_hash is not None else None
        if spec.image_digest is not None and image_hex != spec.image_digest[1]:
            raise ActionError(f"the image from {redact(url)} ({writer.position} bytes) has "
                              f"{image_algorithm} {image_hex}, the plan expects "
                              f"{spec.image_digest[1]}")
        blockdev.flush(fd, disk.path)
        reread = blockdev.reread_partitions(fd, disk.path, ctx.run_tool)
        details: dict[str, Any] = {
            "disk": disk.path, "url": redact(url), "format": sink.format,
            "served_bytes": fetched.size, "image_bytes": writer.position,
            "written_bytes": writer.written, "restarts": sink.restarts, "partitions": reread,
            "seconds_streaming": round(ctx.clock() - started, 3),
        }
        if algorithm is not None:
            details[algorithm] = actual
        if bmap is not None:
            details.update(bmap_ranges=len(bmap.ranges), mapped_bytes=bmap.mapped_bytes)
        if image_hex is not None:
            details[f"image_{image_algorithm}"] = image_hex
        ctx.progress(fetched.size, fetched.size, started=started, force=True,
                     written=writer.written, restarts=sink.restarts)
        if spec.verify:
            details["verified"] = _verify(
                ctx, disk.path, writer, bmap,
                (image_algorithm, spec.image_digest[1] if spec.image_digest else image_hex))
    except BaseException:
        if sink is not None:
            sink.abort()
        if wrote_anything or (sink is not None and sink.writer.written):
            _invalidate(fd, disk.path)
        raise
    finally:
        os.close(fd)
    ctx.say(f"{disk.path}: {human_size(writer.position)} image written"
            f"{' and verified' if spec.verify else ''}")
    return details


def _download(ctx: Context, url: str, sink: Any, progress: Any) -> Any:
    """The whole file in one download, or (raw image with a bmap) span by span."""
    from ramboot_agent.plan.imagewrite import SpanDone  # noqa: PLC0415

    if sink.spans is None:
        return ctx.fetcher.fetch_into(url, sink, on_progress=progress, origin=ctx.base_url,
                                      deadline=ctx.remaining())
    fetched, served, index = None, 0, 0
    while sink.spans is not None and index < len(sink.spans):
        sink.begin_span(index)
        before = sink.size
        with contextlib.suppress(SpanDone):  # the normal end of a span
            fetched = ctx.fetcher.fetch_into(url, sink, on_progress=progress,
                                             origin=ctx.base_url, deadline=ctx.remaining())
        served += sink.size - before
        index += 1
    if sink.spans is None:  # the server sent the whole file: it was streamed
        return fetched
    sink.end_spans()
    log.info("%s: %d bytes fetched in %d ranges", url, served, len(sink.spans))
    return _Fetched(served)


@dataclass(frozen=True)
class _Fetched:
    size: int


def _invalidate(fd: int, path: str) -> None:
    """A disk whose image failed must not boot half of it: zero its first MiB."""
    from ramboot_agent.plan import blockdev  # noqa: PLC0415

    with contextlib.suppress(OSError, ActionError):
        blockdev.zero(fd, 0, INVALIDATE_BYTES)
        os.fsync(fd)
        log.warning("%s: the image did not complete; its first %d bytes were zeroed so "
                    "that nothing boots a partial image", path, INVALIDATE_BYTES)


def _verify(ctx: Context, path: str, writer: Any, bmap: Any,
            digest: tuple[str, str | None]) -> str:
    """Read back what was written, from the medium, and compare."""
    from ramboot_agent.plan import blockdev  # noqa: PLC0415

    algorithm, expected = digest
    started = ctx.clock()
    done = [0]

    def counted(count: int) -> None:
        done[0] += count
        ctx.progress(done[0], total, started=started, phase="verify")

    if bmap is not None:
        spans = [(item.start, item.length) for item in bmap.ranges]
        total = bmap.mapped_bytes
        digests = blockdev.read_back(path, spans, "sha256", on_bytes=counted,
                                     check=ctx.check_deadline)
        for index, (item, actual) in enumerate(zip(bmap.ranges, digests, strict=True)):
            if actual != item.sha256:
                raise ActionError(f"verification failed: {path} bytes {item.start}-"
                                  f"{item.end - 1} (bmap range {index}) read back with "
                                  f"sha256 {actual}, the bmap says {item.sha256}")
        return f"{len(digests)} bmap ranges ({total} bytes) read back, sha256 matches"
    total = writer.position
    (actual,) = blockdev.read_back(path, [(0, total)], algorithm, on_bytes=counted,
                                   check=ctx.check_deadline)
    if actual != expected:
        raise ActionError(f"verification failed: the first {total} bytes of {path} read back "
                          f"with {algorithm} {actual}, {expected} was written")
    return f"{total} bytes read back, {algorithm} {actual}"
