"""Tiny newc ("070701") cpio archives for test initrds, as the kernel unpacks them."""

from __future__ import annotations

from collections.abc import Mapping

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
