"""Block-device primitives the disk actions share: open, size, flush, re-read, read back."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import mmap
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterable

from ramboot_agent.errors import AgentError

log = logging.getLogger("ramboot.plan")

# <linux/fs.h>
BLKRRPART = 0x125F
BLKFLSBUF = 0x1261
BLKGETSIZE64 = 0x80081272
READ_BACK_BUFFER = 8 << 20
ALIGN = 4096


class DeviceError(AgentError):
    """A block device could not be opened, written, flushed or read."""


def open_exclusive(path: str, *, write: bool = True) -> int:
    """`path` opened O_EXCL: the kernel refuses it while mounted or held by another."""
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_EXCL | os.O_CLOEXEC
    try:
        return os.open(path, flags)
    except OSError as error:
        if error.errno == errno.EBUSY:
            raise DeviceError(f"{path} is in use (mounted, swap, or held by another "
                              "device or program): refusing it") from None
        raise DeviceError(f"cannot open {path}: {error.strerror}") from None


def device_size(fd: int) -> int:
    try:
        buffer = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
        return int(struct.unpack("Q", buffer)[0])
    except OSError:
        return os.lseek(fd, 0, os.SEEK_END)  # a regular file standing in for a disk


def flush(fd: int, path: str) -> None:
    try:
        os.fsync(fd)
    except OSError as error:
        raise DeviceError(f"{path}: fsync failed: {error.strerror}") from None


def drop_cache(fd: int) -> None:
    """Forget the cached pages, so a read-back reads the medium, not memory."""
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    with contextlib.suppress(OSError):  # not a block device (tests with plain files)
        fcntl.ioctl(fd, BLKFLSBUF)


def reread_partitions(fd: int, path: str,
                      run_tool: Callable[[list[str]], object] | None = None) -> str:
    """Make the kernel show the partition table on disk: BLKRRPART, then `partx -u`.

    BLKRRPART can succeed without the partitions appearing (seen on loop
    devices), and fails while a partition is in use; `partx -u` adds,
    resizes and removes them one by one. Returns what worked.
    """
    done = []
    try:
        fcntl.ioctl(fd, BLKRRPART)
        done.append("BLKRRPART")
    except OSError as error:
        first = error.strerror or str(error)
        log.debug("%s: BLKRRPART: %s", path, first)
    if run_tool is not None:
        try:
            run_tool(["partx", "-u", path])
            done.append("partx -u")
        except AgentError as error:
            (log.debug if done else log.warning)("%s: partx -u: %s", path, error)
    return " + ".join(done) or "not re-read"


def zero(fd: int, offset: int, length: int) -> None:
    chunk = bytes(min(length, 1 << 20))
    end = offset + length
    while offset < end:
        offset += os.pwrite(fd, chunk[:end - offset], offset)


def _aligned_buffers(count: int, size: int) -> list[mmap.mmap]:
    return [mmap.mmap(-1, size) for _ in range(count)]  # page-aligned, as O_DIRECT wants


def read_back(path: str, spans: Iterable[tuple[int, int]], algorithm: str,
              *, on_bytes: Callable[[int], None] | None = None,
              check: Callable[[], None] | None = None) -> list[str]:
    """The digest of each (offset, length) span of `path`, read from the medium.

    O_DIRECT (the page cache would answer with what was just written) with
    two buffers: one is read while the other is hashed.
    """
    spans = list(spans)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
        direct = True
    except OSError:
        fd, direct = os.open(path, os.O_RDONLY | os.O_CLOEXEC), False
    try:
        drop_cache(fd)
        buffers = _aligned_buffers(2, READ_BACK_BUFFER)
        free: queue.Queue[int] = queue.Queue()
        filled: queue.Queue[tuple[int, int, int, int] | BaseException | None] = queue.Queue()
        for index in range(len(buffers)):
            free.put(index)
        stop = threading.Event()

        def reader() -> None:
            try:
                for span_index, (offset, length) in enumerate(spans):
                    end = offset + length
                    position = offset - offset % ALIGN if direct else offset
                    while position < end:
                        index = free.get()
                        if stop.is_set():
                            return
                        want = min(READ_BACK_BUFFER, end - position)
                        if direct:
                            want = -(-want // ALIGN) * ALIGN
                        got = os.preadv(fd, [memoryview(buffers[index])[:want]], position)
                        if got <= 0:
                            raise DeviceError(f"{path}: the device ends at {position}, "
                                              f"before {end}")
                        filled.put((span_index, index, max(offset - position, 0),
                                    min(got, end - position)))
                        position += got
                filled.put(None)
            except BaseException as error:
                filled.put(error)

        thread = threading.Thread(target=reader, name="read-back", daemon=True)
        thread.start()
        digests = [hashlib.new(algorithm) for _ in spans]
        try:
            while True:
                item = filled.get()
                if item is None:
                    break
                if isinstance(item, OSError):
                    raise DeviceError(f"{path}: read-back failed: {item.strerror}")
                if isinstance(item, BaseException):
                    raise item
                span_index, index, low, high = item
                digests[span_index].update(memoryview(buffers[index])[low:high])
                free.put(index)
                if on_bytes is not None:
                    on_bytes(high - low)
                if check is not None:
                    check()
        finally:
            stop.set()
            for index in range(len(buffers)):
                free.put(index)
            thread.join(timeout=10)
        return [digest.hexdigest() for digest in digests]
    finally:
        os.close(fd)
