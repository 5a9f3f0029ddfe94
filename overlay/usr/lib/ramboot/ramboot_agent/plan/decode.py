"""Decompressing a streamed image on its way to the disk: raw, gzip, xz, zstd by magic.

The bytes as served are fed in the order they arrive (`feed`); a worker
thread decompresses them and hands the image's bytes to `emit` in order.
gzip and xz use zlib and lzma; zstd uses Python's `compression.zstd` (3.14)
when present, else the `zstd` binary through pipes. Output is produced in
bounded pieces whatever the compression ratio. A decoder survives a dropped
connection (the input resumes where it stopped); `abort` ends it at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import logging
import os
import queue
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from ramboot_agent.errors import AgentError

log = logging.getLogger("ramboot.plan")

PIECE = 4 << 20  # at most this much decompressed output per step
QUEUE_DEPTH = 64  # input chunks in flight (64 KiB each from the fetcher)
PIPE_READ = 1 << 20
F_SETPIPE_SZ = 1031  # <linux/fcntl.h>
ZSTD_EXIT_TIMEOUT = 30.0

GZIP, XZ, ZSTD, BZIP2 = b"\x1f\x8b", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"BZh"
MAGIC_BYTES = 6


class DecodeError(AgentError):
    """The image's compressed data is damaged or not what its magic says."""


def detect(head: bytes) -> str:
    """"gzip", "xz", "zstd" or "raw" from the first bytes; bzip2 is refused by name."""
    if head.startswith(GZIP):
        return "gzip"
    if head.startswith(XZ):
        return "xz"
    if head.startswith(ZSTD) or (len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18"
                                 and head[0] & 0xF0 == 0x50):
        return "zstd"
    if head.startswith(BZIP2) and head[3:4].isdigit():
        raise DecodeError("bzip2 images are not supported: recompress with zstd, xz or gzip")
    return "raw"


def zstd_frame_content_size(head: bytes) -> int | None:
    """The decompressed size the first zstd frame announces, when it does."""
    if len(head) < 6 or not head.startswith(ZSTD):
        return None
    descriptor = head[4]
    size_flag, single_segment = descriptor >> 6, (descriptor >> 5) & 1
    dict_id_bytes = (0, 1, 2, 4)[descriptor & 3]
    position = 5 + (0 if single_segment else 1) + dict_id_bytes
    width = (1 if single_segment else 0, 2, 4, 8)[size_flag]
    if width == 0 or len(head) < position + width:
        return None
    value = int.from_bytes(head[position:position + width], "little")
    return value + 256 if width == 2 else value


def zstd_module() -> Any:
    """Python 3.14's compression.zstd, or None."""
    try:
        return importlib.import_module("compression.zstd")
    except ImportError:
        return None


Emit = Callable[[memoryview], None]
Input = bytes | memoryview | list[bytes] | int  # see Decoder.feed
# Moves image bytes from a pipe straight to the disk (splice): returns the count, 0 at EOF.
Splice = Callable[[int], int]


class Decoder:
    """Base: a worker thread turns fed chunks into image bytes for `emit`."""

    name = "raw"
    batched = True  # input is queued to the worker: worth gathering into large pieces

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.error: BaseException | None = None
        self.output = 0  # image bytes emitted
        self._stop = threading.Event()
        self._queue: queue.Queue[bytes | list[bytes] | int | None] = queue.Queue(QUEUE_DEPTH)
        self.on_skip: Callable[[int], None] | None = None  # raw images fetched by ranges
        self._thread = threading.Thread(target=self._run, name=f"decode-{self.name}",
                                        daemon=True)
        self._thread.start()

    # --- the feeding side (the download) ---------------------------------------------

    def feed(self, chunk: Input) -> None:
        """Served bytes (or a list of pieces, in order); or (an int) that many bytes not
        fetched, known to be holes.

        A memoryview is only valid during the call (the caller reuses its buffer).
        """
        self._raise_if_failed()
        if isinstance(chunk, memoryview):
            chunk = chunk.tobytes()
        while True:
            try:
                self._queue.put(chunk, timeout=0.5)
                return
            except queue.Full:
                self._raise_if_failed()

    def close(self) -> None:
        """End of input: wait until every image byte is emitted; raise what went wrong."""
        self.feed_end()
        self._thread.join()
        self._raise_if_failed()

    def feed_end(self) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.5)
                return
            except queue.Full:
                self._raise_if_failed()

    def abort(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout=10)

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    # --- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._queue.get()
                if chunk is None:
                    self._finish()
                    return
                if isinstance(chunk, int):
                    assert self.on_skip is not None, "holes are for raw images only"
                    self.output += chunk
                    self.on_skip(chunk)
                    continue
                for piece in chunk if isinstance(chunk, list) else (chunk,):
                    self._decode(piece)
        except BaseException as error:
            self.error = error

    def _out(self, data: bytes | memoryview) -> None:
        if data:
            self.output += len(data)
            self.emit(memoryview(data))

    def _decode(self, chunk: bytes) -> None:
        self._out(chunk)

    def _finish(self) -> None:
        pass


class _IncrementalDecoder(Decoder):
    """gzip, xz and (3.14) zstd: several members/streams/frames, bounded output steps."""

    def __init__(self, emit: Emit) -> None:
        self._current: Any = None
        self._ended = False  # the last member/stream/frame is complete
        super().__init__(emit)

    def _new(self) -> Any:
        raise NotImplementedError

    def _decode(self, chunk: bytes) -> None:
        data = chunk
        while data and not self._stop.is_set():
            if self._current is None or self._current.eof:
                self._current = self._new()
            self._ended = False
            data = self._step(data)

    def _step(self, data: bytes) -> bytes:
        """Feed `data`, emit what comes out; return the unused input (next member)."""
        decoder = self._current
        try:
            self._out(decoder.decompress(data, PIECE))
            while not decoder.eof and not decoder.needs_input:
                self._out(decoder.decompress(b"", PIECE))
        except (OSError, ValueError, EOFError) as error:
            raise DecodeError(f"the {self.name} data is damaged at image byte "
                              f"{self.output}: {error}") from None
        except Exception as error:
            raise DecodeError(f"the {self.name} data is damaged at image byte "
                              f"{self.output}: {error}") from None
        if decoder.eof:
            self._ended = True
            return bytes(decoder.unused_data)
        return b""

    def _finish(self) -> None:
        if self._current is None or not self._ended:
            raise DecodeError(f"the {self.name} data ends early, after {self.output} "
                              "image bytes (truncated file?)")


class _Lzma(_IncrementalDecoder):
    name = "xz"

    def _new(self) -> Any:
        import lzma  # noqa: PLC0415

        return lzma.LZMADecompressor(lzma.FORMAT_XZ)


class _ZstdModule(_IncrementalDecoder):
    name = "zstd"

    def _new(self) -> Any:
        return zstd_module().ZstdDecompressor()


class _Gzip(_IncrementalDecoder):
    """zlib's decompressobj has no needs_input/eof pair like lzma's: adapt it."""

    name = "gzip"

    def _new(self) -> Any:
        return _ZlibAdapter()


class _ZlibAdapter:
    def __init__(self) -> None:
        import zlib  # noqa: PLC0415

        self._zlib = zlib
        self._object = zlib.decompressobj(16 + zlib.MAX_WBITS)

    @property
    def eof(self) -> bool:
        return bool(self._object.eof)

    @property
    def needs_input(self) -> bool:
        return not self._object.unconsumed_tail

    @property
    def unused_data(self) -> bytes:
        return bytes(self._object.unused_data)

    def decompress(self, data: bytes, max_length: int) -> bytes:
        try:
            return bytes(self._object.decompress(self._object.unconsumed_tail + data,
                                                 max_length))
        except self._zlib.error as error:
            raise ValueError(str(error)) from None


class _ZstdProcess(Decoder):
    """The `zstd` binary: fed through its stdin, read from its stdout by the worker.

    Its input is written from the caller's buffer as it is (no copies, no batching:
    the pipe gathers it). Its output goes to the disk by `splice` when the writer
    can take it that way (nothing to hash in Python): pipe to page cache, no copy
    through Python; otherwise it is read and emitted.
    """

    name = "zstd"
    batched = False

    def __init__(self, emit: Emit, binary: str = "zstd", splice: Splice | None = None) -> None:
        try:
            self._process = subprocess.Popen(
                [binary, "-d", "-c", "-q", "--no-progress"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        except OSError as error:
            raise DecodeError(f"a zstd image needs the zstd program ({binary}: "
                              f"{error.strerror}) or Python 3.14") from None
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin, self._stdout = self._process.stdin, self._process.stdout
        for stream in (self._stdin, self._stdout):
            # Larger pipes: fewer, larger reads and writes, fewer switches to zstd.
            with contextlib.suppress(OSError):
                fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, PIPE_READ)
        self._splice = splice
        super().__init__(emit)

    def feed(self, chunk: Input) -> None:
        self._raise_if_failed()
        assert not isinstance(chunk, int), "holes are for raw images only"
        fd = self._stdin.fileno()
        try:
            for piece in chunk if isinstance(chunk, list) else (chunk,):
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view):]
        except BrokenPipeError:
            self._thread.join(timeout=ZSTD_EXIT_TIMEOUT)
            self._raise_if_failed()
            raise DecodeError(self._zstd_failure()) from None
        except OSError as error:
            raise DecodeError(f"writing to zstd failed: {error.strerror}") from None

    def feed_end(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()

    def close(self) -> None:
        self.feed_end()
        self._thread.join()
        self._raise_if_failed()
        try:
            status = self._process.wait(timeout=ZSTD_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            raise DecodeError("zstd did not exit after the end of its input") from None
        if status != 0:
            raise DecodeError(self._zstd_failure())

    def _zstd_failure(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=ZSTD_EXIT_TIMEOUT)
        assert self._process.stderr is not None
        message = self._process.stderr.read(4096).decode(errors="replace").strip()
        return (f"the zstd data is damaged (zstd exited {self._process.returncode} after "
                f"{self.output} image bytes: {message or 'no message'})")

    def abort(self) -> None:
        self._stop.set()
        if self._process.poll() is None:
            self._process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=10)
        for stream in (self._stdin, self._stdout, self._process.stderr):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        fd = self._stdout.fileno()
        try:
            if self._splice is not None and self._spliced(fd):
                return
            while not self._stop.is_set():
                data = os.read(fd, PIPE_READ)
                if not data:
                    return
                self._out(data)
        except BaseException as error:
            self.error = error
            if self._process.poll() is None:
                self._process.kill()

    def _spliced(self, fd: int) -> bool:
        """Splice the output to the disk until EOF (True); False if splice is refused."""
        assert self._splice is not None
        while not self._stop.is_set():
            try:
                count = self._splice(fd)
            except OSError as error:  # only EINVAL/ENOSYS come through: splice refused
                if self.output == 0:
                    log.debug("splice to the disk refused (%s): reading instead",
                              error.strerror)
                    return False
                raise DecodeError(f"splicing to the disk failed after {self.output} "
                                  f"image bytes: {error.strerror}") from None
            if count == 0:
                break
            self.output += count
        return True


def make_decoder(kind: str, emit: Emit, splice: Splice | None = None) -> Decoder:
    """A decoder for `kind`; `splice` (optional) may take the output from a pipe instead."""
    if kind == "gzip":
        return _Gzip(emit)
    if kind == "xz":
        return _Lzma(emit)
    if kind == "zstd":
        return _ZstdModule(emit) if zstd_module() is not None \
            else _ZstdProcess(emit, splice=splice)
    return Decoder(emit)
