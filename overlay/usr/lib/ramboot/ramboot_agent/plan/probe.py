"""Which filesystem a partition holds, from its superblock (what blkid -p reads).

Only the filesystems the disk actions handle: ext2/3/4, vfat, xfs, btrfs and
swap. Reading the magic numbers here keeps localboot and grow independent of
which blkid the image has (busybox's cannot print one value).
"""

from __future__ import annotations

import os
import uuid as uuidlib
from dataclasses import dataclass

PROBE_BYTES = 0x10100  # btrfs's superblock is at 64 KiB
EXT_MAGIC = b"\x53\xef"
EXT3_JOURNAL = 0x4
EXT4_INCOMPAT = 0x2C0 | 0x80 | 0x10000  # extents, 64bit, flex_bg, inline data...


@dataclass(frozen=True)
class Probed:
    fstype: str  # "" when nothing known
    uuid: str = ""
    label: str = ""


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()


def probe_bytes(head: bytes) -> Probed:
    """The filesystem whose superblock starts `head` (the device's first bytes)."""
    ext = head[1024:2048]
    if len(ext) >= 256 and ext[56:58] == EXT_MAGIC:
        compat = int.from_bytes(ext[92:96], "little")
        incompat = int.from_bytes(ext[96:100], "little")
        kind = "ext4" if incompat & EXT4_INCOMPAT else "ext3" if compat & EXT3_JOURNAL \
            else "ext2"
        return Probed(kind, str(uuidlib.UUID(bytes=ext[104:120])), _text(ext[120:136]))
    if head[:4] == b"XFSB":
        return Probed("xfs", str(uuidlib.UUID(bytes=head[32:48])), _text(head[108:120]))
    if head[0x10040:0x10048] == b"_BHRfS_M":
        return Probed("btrfs", str(uuidlib.UUID(bytes=head[0x10020:0x10030])),
                      _text(head[0x1012B:0x1022B]))
    for page in (4096, 8192, 16384, 65536):
        if head[page - 10:page] in (b"SWAPSPACE2", b"SWAP-SPACE"):
            return Probed("swap", str(uuidlib.UUID(bytes=head[1024 + 12:1024 + 28])),
                          _text(head[1024 + 28:1024 + 44]))
    if head[510:512] == b"\x55\xaa":
        for type_at, serial_at, label_at in ((82, 67, 71), (54, 39, 43)):
            if head[type_at:type_at + 3] == b"FAT":
                serial = int.from_bytes(head[serial_at:serial_at + 4], "little")
                label = _text(head[label_at:label_at + 11])
                return Probed("vfat", f"{serial >> 16:04X}-{serial & 0xFFFF:04X}",
                              "" if label == "NO NAME" else label)
    return Probed("")


def probe(device: str) -> Probed:
    """What `device` holds; Probed("") when it cannot be read or holds nothing known."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return Probed("")
    try:
        return probe_bytes(os.pread(fd, PROBE_BYTES, 0))
    except OSError:
        return Probed("")
    finally:
        os.close(fd)
