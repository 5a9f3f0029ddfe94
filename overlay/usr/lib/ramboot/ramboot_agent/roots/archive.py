"""Root images by their first bytes: the compression, then squashfs, tar or cpio.

Used by the agent (to choose how to install an image) and by the unpack
helper (to read it): standard library only, no agent imports. Python's own
decompressors are used when this Python has them, the `gzip`, `xz`,
`zstd` or `bzip2` programs otherwise (Python 3.11 has no zstd module;
Buildroot's Python may lack bz2).
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

COMPRESSIONS = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
)
FORMATS = ("squashfs", "tar", "cpio")
# What `head` must hold to tell the formats apart (tar's magic is at 257).
HEAD_SIZE = 512
# The programs, and how they decompress to stdout (busybox has bunzip2, not bzip2).
TOOLS = {"gzip": ("gzip", "-dc"), "xz": ("xz", "-dc"), "zstd": ("zstd", "-dc"),
         "bzip2": ("bunzip2", "-c")}
TOOL_EXIT_TIMEOUT = 30.0
PIPE_BUFFER = 1 << 20  # tarfile reads a pipe in 10 KiB records: serve them from memory


class ArchiveError(Exception):
    """An image that cannot be read: unknown format, missing decompressor."""


def compression_of(head: bytes) -> str:
    """"gzip", "xz", "zstd", "bzip2", or "none"."""
    for magic, name in COMPRESSIONS:
        if head.startswith(magic):
            return name
    if head[:4] == b"\x04\x22\x4d\x18":
        raise ArchiveError("lz4-compressed images are not supported (use zstd, xz or gzip)")
    return "none"


def format_of(head: bytes) -> str | None:
    """"squashfs", "tar", "cpio" (newc), or None when the bytes are none of them."""
    if head[:4] == b"hsqs":
        return "squashfs"
    if head[:6] in (b"070701", b"070702"):
        return "cpio"
    if head[:6] == b"070707" or head[:2] in (b"\xc7\x71", b"\x71\xc7"):
        raise ArchiveError("an old-format cpio archive: write it as newc (cpio -H newc)")
    if head[257:262] == b"ustar":
        return "tar"
    return None


def _module_stream(compression: str, path: Path) -> IO[bytes] | None:
    """Python's own decompressor for `compression`, when this Python has one."""
    names = {"gzip": "gzip", "xz": "lzma", "bzip2": "bz2", "zstd": "compression.zstd"}
    try:
        module: Any = importlib.import_module(names[compression])
    except ImportError:
        return None
    stream: IO[bytes] = module.open(path, "rb")
    return stream


@contextlib.contextmanager
def open_image(path: Path, compression: str, *, whole: bool = True) -> Iterator[IO[bytes]]:
    """The image's decompressed bytes as a stream.

    With `whole`, the caller reads to the end and a decompressing program
    that fails is an error when the stream closes; without it the caller
    reads what it needs and the program is stopped.
    """
    if compression == "none":
        with path.open("rb") as plain:
            yield plain
        return
    stream = _module_stream(compression, path)
    if stream is not None:
        with stream:
            yield stream
        return
    program, *flags = TOOLS[compression]
    tool = shutil.which(program)
    if tool is None:
        raise ArchiveError(f"cannot decompress {compression}: this Python has no module "
                           f"for it and there is no {program} program")
    process = subprocess.Popen([tool, *flags, str(path)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               bufsize=PIPE_BUFFER)
    assert process.stdout is not None
    finished = False
    try:
        yield process.stdout
        finished = whole
    finally:
        if not finished:
            process.kill()
        process.stdout.close()
        try:
            _, errors = process.communicate(timeout=TOOL_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate()
        if finished and process.returncode != 0:
            message = errors.decode(errors="replace").strip()[-500:]
            raise ArchiveError(f"{' '.join(TOOLS[compression])} failed with status "
                               f"{process.returncode}: {message or 'no output'}")


def read_head(stream: IO[bytes], size: int = HEAD_SIZE) -> bytes:
    """Up to `size` bytes (a decompressor may return fewer per read)."""
    chunks, have = [], 0
    while have < size:
        chunk = stream.read(size - have)
        if not chunk:
            break
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


def detect(path: Path) -> tuple[str, str | None]:
    """(compression, format) of the image at `path`; format None when unknown."""
    with path.open("rb") as raw:
        compression = compression_of(raw.read(16))
    try:
        with open_image(path, compression, whole=False) as stream:
            head = read_head(stream)
    except ArchiveError:
        raise
    except Exception as error:  # each decompressor has its own error class
        raise ArchiveError(f"cannot read the {compression} data: {error}") from None
    return compression, format_of(head)
