"""iPXE's cpio wrapping of an initrd with arguments (ramboot_agent/ipxe/cpio.py).

Byte-for-byte agreement with real iPXE is test_differential.py's (the
"cpio-wrapped" boot); these pin the rules: which headers, names and modes.
"""

from __future__ import annotations

import pytest

from ramboot_agent.ipxe.cpio import headers


def _entries(data: bytes) -> list[tuple[str, int, int]]:
    """(name, mode, filesize) of each header, walking newc as the kernel does."""
    found, offset = [], 0
    while offset < len(data):
        assert data[offset:offset + 6] == b"070701"
        fields = [int(data[offset + 6 + 8 * i:offset + 14 + 8 * i], 16) for i in range(13)]
        name_size = fields[11]
        name = data[offset + 110:offset + 110 + name_size - 1].decode()
        assert data[offset + 110 + name_size - 1] == 0
        found.append((name, fields[1], fields[6]))
        offset += 110 + name_size
        offset += -offset % 4
    return found


@pytest.mark.parametrize(("arguments", "expected"), [
    ("/etc/app.conf", [("/etc/app.conf", 0o100644, 9)]),
    ("/etc/app.conf mode=600", [("/etc/app.conf", 0o100600, 9)]),
    ("a/b/c mkdir=1", [("a/b", 0o040755, 0), ("a/b/c", 0o100644, 9)]),
    ("/a/b/c mkdir=-1", [("/a", 0o040755, 0), ("/a/b", 0o040755, 0), ("/a/b/c", 0o100644, 9)]),
    ("/a mkdir=5", [("/a", 0o100644, 9)]),  # no more parents than there are
    ("/dir/ mode=700", [("/dir", 0o040755, 9)]),  # iPXE: the last one is the image
    ("//x//y", [("//x//y", 0o100644, 9)]),
])
def test_headers(arguments: str, expected: list[tuple[str, int, int]]) -> None:
    assert _entries(headers(arguments, 9)) == expected


def test_no_arguments_no_headers() -> None:
    assert headers(None, 9) == headers("", 9) == headers("/", 9) == b""
