"""Tiny newc ("070701") cpio archives for test initrds, as the kernel unpacks them."""

from __future__ import annotations

import gzip
import lzma
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

DIRECTORY = 0o040755
EXECUTABLE = 0o100755
FILE = 0o100644


def _entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
    head = header + encoded
    return head + b"\0" * (-len(head) % 4) + data + b"\0" * (-len(data) % 4)


def newc(entries: Mapping[str, tuple[int, bytes]]) -> bytes:
    """An archive of `entries` (path -> (mode, contents)), in order, with its trailer."""
    out = b"".join(_entry(name, mode, data, index + 1)
                   for index, (name, (mode, data)) in enumerate(entries.items()))
    return out + _entry("TRAILER!!!", 0, b"", 0)


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    data: bytes  # a file's contents, a symlink's target, empty otherwise
    ino: int
    nlink: int

    @property
    def kind(self) -> int:
        return self.mode & 0o170000


REGULAR, SYMLINK, DIRECTORY_TYPE = 0o100000, 0o120000, 0o040000


def read_newc(archive: bytes) -> Iterator[Entry]:
    """The entries of a newc archive (as gunzipped), in order, up to its trailer.

    Several archives may follow each other, as in a kernel initramfs.
    """
    offset = 0
    while offset < len(archive):
        if archive[offset:offset + 4] == b"\0\0\0\0":  # padding between archives
            offset += 4
            continue
        magic = archive[offset:offset + 6]
        if magic not in (b"070701", b"070702"):
            raise ValueError(f"cpio: no newc header at offset {offset} ({magic!r})")
        fields = [int(archive[offset + 6 + 8 * i:offset + 14 + 8 * i], 16) for i in range(13)]
        ino, mode, nlink, size, namesize = fields[0], fields[1], fields[4], fields[6], fields[11]
        start = offset + 110
        name = archive[start:start + namesize - 1].decode("utf-8", "surrogateescape")
        data_start = start + namesize + (-(110 + namesize) % 4)
        data = archive[data_start:data_start + size]
        if len(data) != size:
            raise ValueError(f"cpio: {name}: truncated ({len(data)} of {size} bytes)")
        offset = data_start + size + (-size % 4)
        if name == "TRAILER!!!":
            continue
        yield Entry(name, mode, data, ino, nlink)


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"


def decompressed(data: bytes) -> bytes:
    """`data` unpacked by its magic (zstd, gzip, xz), as the kernel's initramfs loader does.

    zstd goes through the zstd program: the host's Python (3.11) has no
    compression.zstd.
    """
    if data.startswith(ZSTD_MAGIC):
        return subprocess.run(["zstd", "-dcq"], input=data, capture_output=True,
                              check=True).stdout
    if data.startswith(GZIP_MAGIC):
        return gzip.decompress(data)
    if data.startswith(XZ_MAGIC):
        return lzma.decompress(data)
    return data


def zstd_compressed(data: bytes, level: int = 19) -> bytes:
    """`data` compressed as Buildroot's BR2_TARGET_ROOTFS_CPIO_ZSTD does (`zstd -19`)."""
    return subprocess.run(["zstd", f"-{level}", "-cq", "-T0"], input=data, capture_output=True,
                          check=True).stdout
