"""The dynamic symbols an ELF file needs and provides (.dynsym), in pure Python.

Enough for "does every symbol this image's programs and libraries need have a
definition in it": names only, versions ignored, weak references not needed.
Both classes and byte orders, so one host reads either board's files.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

# The board scripts' ELF reader, imported as they import it: from their directory.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "board/common"))
from elf import SHT_DYNSYM, ElfFile

STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 1, 2, 10
SHN_UNDEF = 0


@dataclass(frozen=True)
class Symbols:
    needed: frozenset[str]  # undefined, non-weak
    provided: frozenset[str]  # defined, global, weak or unique


def dynamic_symbols(data: bytes) -> Symbols:
    """The .dynsym of an ELF image; ValueError if it is not one."""
    image = ElfFile(data)
    # (st_name, ..., st_info, st_other, st_shndx): 32-bit has st_value, st_size first.
    layout = "IBBH" if image.wide else "IIIBBH"
    needed: set[str] = set()
    provided: set[str] = set()
    for section in image.sections:
        if section.kind != SHT_DYNSYM or not section.entsize:
            continue
        strings_offset = image.sections[section.link].offset
        end = section.offset + section.size
        for start in range(section.offset + section.entsize, end, section.entsize):  # 0 is null
            fields = image.unpack(layout, start)
            name, info, shndx = fields[0], fields[-3], fields[-1]
            symbol = image.string(strings_offset + name).decode("ascii", "replace")
            binding = info >> 4
            if not symbol:
                continue
            if shndx == SHN_UNDEF:
                if binding != STB_WEAK:
                    needed.add(symbol)
            elif binding in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE):
                provided.add(symbol)
    return Symbols(frozenset(needed), frozenset(provided))
