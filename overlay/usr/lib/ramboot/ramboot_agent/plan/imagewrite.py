"""Streaming an image onto a block device: the fetcher's sink, the writer, the bmap filter.

The download feeds `ImageSink` (a fetch sink): it hashes the bytes as served,
detects the format from the first bytes, and feeds a decoder, whose worker
thread hands the image's bytes to `DeviceWriter` in order. The writer
buffers them into large `pwrite`s at their offsets, never past the end of
the device. With a bmap, only mapped ranges are written; each range's
sha256 is checked as it completes; bytes outside the ranges must be zeros
(or the bmap does not describe this image).

Resume: a dropped connection leaves the sink, decoder and writer as they
are; the fetcher continues the download at the byte it stopped at (HTTP
Range, guarded by the server's validator), so nothing on disk is written
twice. When the server sends the whole object again instead, the sink
starts over from byte 0 (`reset`): a new decoder and a writer at offset 0,
so an image is never spliced from two responses. With a bmap, ranges
already written and verified are not written again, only re-checked.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
from dataclasses import dataclass, field

from ramboot_agent.fetch import Sink
from ramboot_agent.plan.bmap import Bmap
from ramboot_agent.plan.context import ActionError
from ramboot_agent.plan.decode import (
    MAGIC_BYTES,
    Decoder,
    detect,
    make_decoder,
    zstd_frame_content_size,
)
from ramboot_agent.plan.disks import human_size

log = logging.getLogger("ramboot.plan")

WRITE_BUFFER = 4 << 20  # small pieces are gathered up to this; larger ones go straight out
# Written bytes are handed to writeback every this much (see DeviceWriter._written):
# otherwise a GiB waits in the page cache until the final fsync writes it all at once.
WRITEBACK_EVERY = 32 << 20
DIRECT_WRITE = 1 << 20
SPLICE_BYTES = 1 << 20  # one splice at most: the size of the decoder's pipe
FEED_BATCH = 1 << 20  # served bytes handed to the decoder at once (fewer thread hand-offs)
_ZEROS = bytes(1 << 20)


def _zero_span(view: memoryview, start: int, length: int) -> bool:
    """Are view[start:start+length] all zeros? Counted in place when the view is whole."""
    base = view.obj
    if isinstance(base, bytes | bytearray) and len(base) == view.nbytes:
        return base.count(0, start, start + length) == length
    return _is_zero(view[start:start + length])


def _is_zero(data: memoryview) -> bool:
    # bytes == bytes is a memcmp; memoryview == bytes compares item by item.
    for start in range(0, len(data), len(_ZEROS)):
        piece = data[start:start + len(_ZEROS)].tobytes()
        if piece != (_ZEROS if len(piece) == len(_ZEROS) else bytes(len(piece))):
            return False
    return True


class DeviceWriter:
    """Image bytes in order -> `pwrite`s at their offsets, in large buffered writes."""

    def __init__(self, fd: int, path: str, device_size: int, *,
                 image_hash: str | None = None) -> None:
        self.fd = fd
        self.path = path
        self.device_size = device_size
        self.image_hash_name = image_hash
        self.requested_hash = image_hash  # what the caller asked for (spans may add one)
        self.position = 0  # image bytes accepted
        self.written = 0  # bytes written to the device (all attempts)
        # Allocated once: a buffer grown and freed per write faults its pages in every time.
        self._buffer = memoryview(bytearray(WRITE_BUFFER))
        self._filled = 0
        self._buffer_at = 0
        self._dirty: tuple[int, int] | None = None  # written, writeback not started yet
        self._dirty_bytes = 0
        self.image_hash = hashlib.new(image_hash) if image_hash else None

    def reset(self) -> None:
        # What is buffered was accepted (a bmap range may count it as written): write it.
        self.flush_buffer()
        self.position = self._buffer_at = 0
        if self.image_hash_name:
            self.image_hash = hashlib.new(self.image_hash_name)

    def too_large(self, size: int) -> ActionError:
        return ActionError(f"the image is larger than the target {self.path} "
                           f"({human_size(self.device_size)}, {self.device_size} bytes): "
                           f"{size} bytes or more")

    def accept(self, data: memoryview) -> None:
        """The next image bytes (from the decoder's thread)."""
        end = self.position + len(data)
        if end > self.device_size:
            raise self.too_large(end)
        if self.image_hash is not None:
            self.image_hash.update(data)
        self.store(data, self.position)
        self.position = end

    def store(self, data: memoryview, offset: int) -> None:
        """Write `data` at `offset` (buffered while contiguous)."""
        if self._filled and self._buffer_at + self._filled != offset:
            self.flush_buffer()
        if not self._filled:
            self._buffer_at = offset
            if len(data) >= DIRECT_WRITE:
                self._pwrite(data, offset)
                return
        while data:
            take = min(len(data), WRITE_BUFFER - self._filled)
            self._buffer[self._filled:self._filled + take] = data[:take]
            self._filled += take
            data = data[take:]
            if self._filled == WRITE_BUFFER:
                self.flush_buffer()  # the rest continues right after it

    def flush_buffer(self) -> None:
        if self._filled:
            self._pwrite(self._buffer[:self._filled], self._buffer_at)
            self._buffer_at += self._filled
            self._filled = 0

    @property
    def can_splice(self) -> bool:
        """Image bytes may go from a pipe to the disk without Python seeing them."""
        return type(self) is DeviceWriter and self.image_hash is None

    def splice_from(self, pipe: int) -> int:
        """Move the next image bytes from `pipe` to the disk at their offset; 0 at EOF.

        Raises OSError (EINVAL, ENOSYS) when this kernel or target cannot splice:
        the caller reads instead.
        """
        room = self.device_size - self.position
        if room <= 0:  # the disk is full: any further byte is one too many
            if os.read(pipe, 1):
                raise self.too_large(self.position + 1)
            return 0
        try:
            count = os.splice(pipe, self.fd, min(SPLICE_BYTES, room),
                              offset_dst=self.position)
        except OSError as error:
            if error.errno in (errno.EINVAL, errno.ENOSYS):
                raise
            raise ActionError(f"{self.path}: write at byte {self.position} failed: "
                              f"{error.strerror}") from None
        self.position += count
        self._written(self.position - count, count)
        return count

    def _pwrite(self, data: memoryview, offset: int) -> None:
        done = 0
        while done < len(data):
            try:
                count = os.pwrite(self.fd, data[done:], offset + done)
            except OSError as error:
                raise ActionError(f"{self.path}: write at byte {offset + done} failed: "
                                  f"{error.strerror}") from None
            if count <= 0:
                raise ActionError(f"{self.path}: write at byte {offset + done} wrote nothing")
            done += count
        self._written(offset, len(data))

    def _written(self, offset: int, length: int) -> None:
        """Count a write; start the writeback of what was written since the last start.

        POSIX_FADV_DONTNEED starts writing dirty pages back without waiting for them
        (WB_SYNC_NONE) and drops the clean ones, so the disk works while the download
        goes on and the final fsync has little left to do. As bmaptool lowers the
        device's dirty ratio for the same reason.
        """
        self.written += length
        low = min(self._dirty[0], offset) if self._dirty else offset
        high = max(self._dirty[1], offset + length) if self._dirty else offset + length
        self._dirty = (low, high)
        self._dirty_bytes += length
        if self._dirty_bytes >= WRITEBACK_EVERY:
            with contextlib.suppress(OSError):  # advice only: fsync still makes it durable
                os.posix_fadvise(self.fd, low, high - low, os.POSIX_FADV_DONTNEED)
            self._dirty, self._dirty_bytes = None, 0


@dataclass
class RangeState:
    verified: set[int] = field(default_factory=set)  # range indices written and checked
    index: int = 0  # the range the stream is in, or the next one
    hasher: hashlib._Hash | None = None


class BmapWriter(DeviceWriter):
    """Only the bmap's ranges reach the disk; each is checked; the gaps must be zeros."""

    def __init__(self, fd: int, path: str, device_size: int, bmap: Bmap, *,
                 image_hash: str | None = None) -> None:
        super().__init__(fd, path, device_size, image_hash=image_hash)
        self.bmap = bmap
        self.state = RangeState()
        if bmap.image_size > device_size:
            raise self.too_large(bmap.image_size)

    def reset(self) -> None:
        super().reset()
        self.state.index, self.state.hasher = 0, None  # verified ranges stay verified

    def accept(self, data: memoryview) -> None:
        end = self.position + len(data)
        if end > self.bmap.image_size:
            raise ActionError(f"the image is longer than the {self.bmap.image_size} bytes "
                              "its bmap describes")
        if self.image_hash is not None:
            self.image_hash.update(data)
        ranges, state = self.bmap.ranges, self.state
        # Positions within `data`, not slices: gaps are checked in place.
        at, offset, length = 0, self.position, len(data)
        while at < length:
            current = ranges[state.index] if state.index < len(ranges) else None
            if current is None or offset < current.start:
                gap = length - at if current is None else min(length - at,
                                                              current.start - offset)
                if not _zero_span(data, at, gap):
                    raise ActionError(f"image bytes {offset}-{offset + gap - 1} are outside "
                                      "the bmap's ranges but not zeros: the bmap does not "
                                      "describe this image")
                at, offset = at + gap, offset + gap
                continue
            take = min(length - at, current.end - offset)
            piece = data[at:at + take]
            if state.hasher is None:
                state.hasher = hashlib.sha256()
            state.hasher.update(piece)
            if state.index not in state.verified:
                self.store(piece, offset)
            at, offset = at + take, offset + take
            if offset == current.end:
                self._range_done(state.index, state.hasher.hexdigest())
                state.index, state.hasher = state.index + 1, None
        self.position = end

    def skip(self, length: int) -> None:
        """`length` image bytes that were not fetched: holes between the bmap's ranges."""
        end = self.position + length
        current = self.bmap.ranges[self.state.index] if self.state.index < len(
            self.bmap.ranges) else None
        if (current is not None and end > current.start) or end > self.bmap.image_size:
            raise ActionError(f"internal: a hole {self.position}-{end} over bmap range "
                              f"{self.state.index}")
        if self.image_hash is not None:
            for start in range(self.position, end, len(_ZEROS)):
                self.image_hash.update(memoryview(_ZEROS)[:min(len(_ZEROS), end - start)])
        self.position = end

    def _range_done(self, index: int, actual: str) -> None:
        item = self.bmap.ranges[index]
        if actual != item.sha256:
            raise ActionError(f"bmap range {index} (image bytes {item.start}-{item.end - 1}): "
                              f"sha256 is {actual}, the bmap says {item.sha256}")
        self.state.verified.add(index)

    def check_complete(self) -> None:
        if self.position != self.bmap.image_size:
            raise ActionError(f"the image has {self.position} bytes, its bmap says "
                              f"{self.bmap.image_size}")


MAX_SPANS = 4096
SPAN_JOIN = 4 << 20  # ranges closer than this are fetched as one span, the gap read through


class SpanDone(Exception):
    """The sink has the whole span it asked for: the download of it stops here."""


def spans_of(bmap: Bmap) -> list[tuple[int, int]]:
    """The byte spans to fetch for `bmap`'s ranges, neighbours joined."""
    spans: list[tuple[int, int]] = []
    for item in bmap.ranges:
        if spans and item.start - spans[-1][1] < SPAN_JOIN:
            spans[-1] = (spans[-1][0], item.end)
        else:
            spans.append((item.start, item.end))
    return spans


class ImageSink(Sink):
    """The fetch sink of the `image` action: served bytes -> digest, decoder, writer.

    With a bmap of a raw image, `spans` lists the byte spans to fetch, one
    ranged request each (the holes between are not downloaded; the digest of
    the file counts them as the zeros they are): `begin_span` before each
    download, which ends with SpanDone. A server that answers a span with the
    whole file (reset) turns it back into one streamed download.
    """

    def __init__(self, url: str, writer: DeviceWriter, algorithm: str | None,
                 spans: list[tuple[int, int]] | None = None) -> None:
        super().__init__(url)
        self.spans = spans if spans and spans[0][0] == 0 and len(spans) <= MAX_SPANS else None
        self.span = 0
        if self.spans is not None and algorithm is not None:
            # The file's digest is the image's: fetched bytes and holes, in order.
            writer.image_hash_name = algorithm
            writer.image_hash = hashlib.new(algorithm)
        self.writer = writer
        self.algorithm = algorithm  # None: no digest of the file (an authenticated bmap)
        # sha256 is what the fetcher's own hasher computes: no second hasher for it, and
        # the fetcher's is not fed when the file's digest is another or none.
        self.extra: hashlib._Hash | None = None if algorithm in (None, "sha256") \
            else hashlib.new(algorithm)
        self.decoder: Decoder | None = None
        self.format: str | None = None
        self.announced: int | None = None
        self.restarts = 0
        self._head = b""
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._batched = True  # the decoder wants large pieces (not a pipe it writes into)

    @property
    def hashed(self) -> bool:
        return self.algorithm == "sha256" and not (self.spans is not None
                                                    and self.format == "raw")

    def served_digest(self) -> str | None:
        if self.algorithm is None:
            return None
        if self.spans is not None:
            assert self.writer.image_hash is not None
            return self.writer.image_hash.hexdigest()
        return self.hasher.hexdigest() if self.extra is None else self.extra.hexdigest()

    def begin_span(self, index: int) -> None:
        """Make the next download fetch span `index` (ranged, from its first byte)."""
        assert self.spans is not None
        self.span = index
        if index:
            start, previous_end = self.spans[index][0], self.spans[index - 1][1]
            self._feed()
            assert self.decoder is not None
            self.decoder.feed(start - previous_end)  # the hole before it
            self.size = start  # the fetcher asks for bytes=start- (If-Range: validator)

    def end_spans(self) -> None:
        """After the last span: the image's tail is a hole up to its full size."""
        assert self.spans is not None and self.decoder is not None
        tail = (self.announced or 0) - self.spans[-1][1]
        self._feed()
        if tail > 0:
            self.decoder.feed(tail)

    def expect(self, total: int) -> None:
        self.announced = total

    def write(self, chunk: bytes) -> None:
        if self.algorithm is None or (self.spans is not None and self.format == "raw"):
            # No digest of the file, or the writer's (holes included): count only.
            self.size += len(chunk)
        elif self.extra is not None:  # sha512: only its own hasher
            self.size += len(chunk)
            self.extra.update(chunk)
        else:
            super().write(chunk)
        if self.decoder is None:
            self._head += chunk
            if len(self._head) < MAGIC_BYTES and (self.announced is None
                                                 or self.size < self.announced):
                return
            self._start(self._head)
            chunk, self._head = self._head, b""
        done = False
        if self.spans is not None:
            span_end = self.spans[self.span][1]
            keep = span_end - (self.size - len(chunk))
            if keep <= len(chunk):
                chunk, done = chunk[:max(keep, 0)], True
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= FEED_BATCH or done or not self._batched:
            self._feed()
        if done:
            raise SpanDone

    def _feed(self) -> None:
        assert self.decoder is not None
        if self._pending:
            # A list, not a join: joining 1 MiB costs a copy and fresh pages every time.
            batch = self._pending[0] if len(self._pending) == 1 else self._pending
            self._pending, self._pending_bytes = [], 0
            self.decoder.feed(batch)

    def _start(self, head: bytes) -> None:
        self.format = detect(head)
        if self.format != "raw" and self.spans is not None:
            self._stream_whole()
        known = self.announced if self.format == "raw" else zstd_frame_content_size(head)
        if known is not None and known > self.writer.device_size:
            raise self.writer.too_large(known)
        log.info("%s: %s image%s", self.url, self.format,
                 f" of {known} bytes" if known is not None else "")
        self.decoder = make_decoder(
            self.format, self.writer.accept,
            splice=self.writer.splice_from if self.writer.can_splice else None)
        self._batched = self.decoder.batched
        if self.spans is not None and isinstance(self.writer, BmapWriter):
            self.decoder.on_skip = self.writer.skip

    def _stream_whole(self) -> None:
        """Back to one download of the whole file (compressed, or Range refused)."""
        self.spans = None
        self.writer.image_hash_name = self.writer.requested_hash
        self.writer.image_hash = hashlib.new(self.writer.requested_hash) \
            if self.writer.requested_hash else None

    def reset(self) -> None:
        super().reset()
        if self.spans is not None:
            log.warning("%s: the server did not send the range asked for: streaming the "
                        "whole image instead", self.url)
            self._stream_whole()
        if self.extra is not None and self.algorithm is not None:
            self.extra = hashlib.new(self.algorithm)
        if self.decoder is not None:
            self.decoder.abort()
            self.decoder = None
            self.restarts += 1
            log.warning("%s: starting the image over from its first byte", self.url)
        self._head = b""
        self._pending, self._pending_bytes = [], 0
        self.writer.reset()

    def finish(self) -> None:
        """The download is complete: drain the decoder, write what is buffered."""
        if self.decoder is None:
            if not self._head:
                raise ActionError(f"{self.url}: the image is empty")
            self._start(self._head)
            self._pending.append(self._head)
            self._head = b""
        self._feed()
        assert self.decoder is not None
        self.decoder.close()
        self.writer.flush_buffer()

    def abort(self) -> None:
        if self.decoder is not None:
            self.decoder.abort()
