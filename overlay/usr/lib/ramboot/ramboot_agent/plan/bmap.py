"""bmaptool's block map (`.bmap`, format version 2): which ranges of an image hold data.

A bmap lists the image's size, its block size and the mapped block ranges,
each with the sha256 of its bytes; the rest of the image is holes (zeros)
that need not be written. The file carries its own checksum (sha256 of the
file with that field zeroed), checked here. The document is untrusted: no
DTD or entities, bounded size and range count.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from ramboot_agent.errors import AgentError

MAX_BMAP_SIZE = 32 << 20
MAX_RANGES = 1 << 20
_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


class BmapError(AgentError):
    pass


@dataclass(frozen=True)
class Range:
    start: int  # byte offsets in the image, end exclusive
    end: int
    sha256: str

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Bmap:
    image_size: int
    block_size: int
    ranges: tuple[Range, ...]

    @property
    def mapped_bytes(self) -> int:
        return sum(item.length for item in self.ranges)


def parse_bmap(data: bytes, source: str) -> Bmap:
    """The block map in `data`; BmapError naming `source` and the problem."""
    import xml.etree.ElementTree as ET  # noqa: PLC0415 (only plans with a bmap need it)

    def fail(message: str) -> BmapError:
        return BmapError(f"{source}: {message}")

    if len(data) > MAX_BMAP_SIZE:
        raise fail(f"larger than {MAX_BMAP_SIZE} bytes")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise fail("a bmap has no DTD or entities")
    try:
        root = ET.fromstring(data)  # noqa: S314 (no DTD or entities: refused above)
    except ET.ParseError as error:
        raise fail(f"not XML: {error}") from None
    if root.tag != "bmap":
        raise fail(f"the root element is <{root.tag}>, not <bmap>")
    version = root.get("version", "")
    if not re.fullmatch(r"2\.\d+", version):
        raise fail(f"bmap format version {version!r} is not supported (2.x is)")
    _check_own_checksum(data, (root.findtext("BmapFileChecksum") or "").strip(), fail)

    def number(tag: str) -> int:
        text = (root.findtext(tag) or "").strip()
        if not text.isdigit():
            raise fail(f"<{tag}> must be a number, not {text[:40]!r}")
        return int(text)

    image_size, block_size = number("ImageSize"), number("BlockSize")
    blocks, mapped = number("BlocksCount"), number("MappedBlocksCount")
    if block_size <= 0 or block_size & (block_size - 1):
        raise fail(f"<BlockSize> {block_size} is not a power of two")
    if blocks != -(-image_size // block_size):
        raise fail(f"<BlocksCount> {blocks} does not match <ImageSize> {image_size}")
    checksum_type = (root.findtext("ChecksumType") or "").strip()
    if checksum_type != "sha256":
        raise fail(f"<ChecksumType> {checksum_type!r} is not supported (sha256 is)")
    block_map = root.find("BlockMap")
    if block_map is None:
        raise fail("no <BlockMap>")
    ranges: list[Range] = []
    counted = 0
    for element in block_map.findall("Range"):
        if len(ranges) >= MAX_RANGES:
            raise fail(f"more than {MAX_RANGES} ranges")
        match = _RANGE.fullmatch(element.text or "")
        digest = (element.get("chksum") or "").lower()
        if match is None:
            raise fail(f"<Range> {(element.text or '')[:40]!r} is not 'FIRST-LAST' or 'BLOCK'")
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise fail(f"<Range> {match.group(0).strip()}: chksum is not a sha256")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        if last < first or last >= blocks:
            raise fail(f"<Range> {first}-{last} is outside the image's {blocks} blocks")
        start = first * block_size
        if ranges and start < ranges[-1].end:
            raise fail(f"<Range> {first}-{last} overlaps or precedes the one before it")
        counted += last - first + 1
        ranges.append(Range(start, min((last + 1) * block_size, image_size), digest))
    if counted != mapped:
        raise fail(f"<MappedBlocksCount> is {mapped} but the ranges map {counted} blocks")
    return Bmap(image_size, block_size, tuple(ranges))


def _check_own_checksum(data: bytes, expected: str, fail: Callable[[str], BmapError]) -> None:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", expected):
        raise fail(f"<BmapFileChecksum> {expected[:70]!r} is not a sha256")
    zeroed = data.replace(expected.encode(), b"0" * 64, 1)
    actual = hashlib.sha256(zeroed).hexdigest()
    if actual != expected.lower():
        raise fail(f"the bmap's own checksum does not match (file damaged or edited): "
                   f"sha256 {actual}, it says {expected.lower()}")
