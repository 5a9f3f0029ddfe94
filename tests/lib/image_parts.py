"""What an initramfs (rootfs.cpio.zst) is made of: its files sorted into parts, with sizes.

Each part's unpacked bytes are exact; its compressed share is estimated by
`zstd -19` of the part's file contents alone, in archive order (the
compressor of the image; parts share little, so the estimates add up to
within a few per cent of the whole archive).
Used by tests/image/test_budget.py and bench/image-size.py.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from tests.lib.cpio import REGULAR, Entry, decompressed, read_newc, zstd_compressed

MiB = 1024 * 1024
BUDGET = 10 * MiB  # rootfs.cpio.zst, each board (issue 7)
STRETCH = 8 * MiB

PARTS = ("Python stdlib", "Python extension modules", "libraries", "busybox",
         "other binaries", "kernel modules", "firmware", "agent", "CA certs", "rest")

# (part, patterns) in order: the first match wins. Patterns are fnmatch on
# the path without its leading "./"; "*" crosses "/".
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("agent", ("usr/lib/ramboot/*", "usr/bin/ramboot-agent", "usr/share/ramboot/*")),
    ("kernel modules", ("lib/modules/*",)),
    ("firmware", ("lib/firmware/*",)),
    ("CA certs", ("etc/ssl/*", "usr/share/ca-certificates/*", "usr/lib/ssl/*")),
    ("Python extension modules", ("usr/lib/python3.*/lib-dynload/*",)),
    ("Python stdlib", ("usr/lib/python3.*",)),
    ("busybox", ("bin/busybox",)),
    ("libraries", ("lib/*.so*", "usr/lib/*.so*", "lib64/*.so*", "usr/lib64/*.so*")),
)


def part_of(entry: Entry) -> str:
    name = entry.name.removeprefix("./")
    for part, patterns in RULES:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            return part
    if entry.kind == REGULAR and entry.data[:4] == b"\x7fELF":
        return "other binaries"
    return "rest"


@dataclass
class Part:
    name: str
    files: int = 0
    unpacked: int = 0
    contents: list[bytes] = field(default_factory=list)

    def compressed(self) -> int:
        """zstd -19 of this part's contents alone."""
        return len(zstd_compressed(b"".join(self.contents))) if self.contents else 0


@dataclass
class Breakdown:
    path: Path
    compressed: int  # the rootfs.cpio.zst file
    unpacked: int  # the archive, decompressed
    parts: dict[str, Part]
    paths: set[str]

    def table(self, title: str) -> str:
        estimates = {name: part.compressed() for name, part in self.parts.items()}
        total_estimate = sum(estimates.values()) or 1
        lines = [f"### {title}", "",
                 f"{self.path.name} {self.compressed:,} B"
                 f" ({self.compressed / MiB:.2f} MiB; budget {BUDGET / MiB:.0f} MiB),"
                 f" {self.unpacked:,} B unpacked, {sum(p.files for p in self.parts.values())}"
                 " files", "",
                 "| part | files | unpacked | zstd -19 alone | share of the archive |",
                 "| --- | ---: | ---: | ---: | ---: |"]
        for name in PARTS:
            part = self.parts[name]
            share = estimates[name] / total_estimate
            lines.append(f"| {name} | {part.files} | {part.unpacked / 1e6:.2f} MB |"
                         f" {estimates[name] / 1e6:.2f} MB | {share:.0%} |")
        return "\n".join(lines) + "\n"


def breakdown(path: Path) -> Breakdown:
    """The parts of the initramfs at `path` (a compressed newc cpio)."""
    raw = path.read_bytes()
    archive = decompressed(raw)
    parts = {name: Part(name) for name in PARTS}
    names = set()
    for entry in read_newc(archive):
        names.add(entry.name.removeprefix("./"))
        if entry.kind != REGULAR:
            continue
        part = parts[part_of(entry)]
        part.files += 1
        part.unpacked += len(entry.data)
        part.contents.append(entry.data)
    return Breakdown(path, len(raw), len(archive), parts, names)
