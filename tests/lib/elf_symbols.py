"""The dynamic symbols an ELF file needs and provides (.dynsym), in pure Python.

Enough for "does every symbol this image's programs and libraries need have a
definition in it": names only, versions ignored, weak references not needed.
Both classes and byte orders, so one host reads either board's files.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SHT_DYNSYM = 11
STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 1, 2, 10
SHN_UNDEF = 0


@dataclass(frozen=True)
class Symbols:
    needed: frozenset[str]  # undefined, non-weak
    provided: frozenset[str]  # defined, global, weak or unique


def dynamic_symbols(data: bytes) -> Symbols:
    """The .dynsym of an ELF image; ValueError if it is not one."""
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    wide = {1: False, 2: True}[data[4]]
    order = {1: "<", 2: ">"}[data[5]]
    if wide:
        shoff, = struct.unpack_from(order + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(order + "HH", data, 0x3A)
        section = order + "IIQQQQIIQQ"
    else:
        shoff, = struct.unpack_from(order + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(order + "HH", data, 0x2E)
        section = order + "IIIIIIIIII"
    sections = [struct.unpack_from(section, data, shoff + i * shentsize) for i in range(shnum)]
    needed: set[str] = set()
    provided: set[str] = set()
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != SHT_DYNSYM or not entsize:
            continue
        strings_offset = sections[link][4]
        for start in range(offset + entsize, offset + size, entsize):  # entry 0 is null
            if wide:
                name, info, _other, shndx = struct.unpack_from(order + "IBBH", data, start)
            else:
                name, _value, _size, info, _other, shndx = struct.unpack_from(
                    order + "IIIBBH", data, start)
            end = data.index(b"\0", strings_offset + name)
            symbol = data[strings_offset + name:end].decode("ascii", "replace")
            binding = info >> 4
            if not symbol:
                continue
            if shndx == SHN_UNDEF:
                if binding != STB_WEAK:
                    needed.add(symbol)
            elif binding in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE):
                provided.add(symbol)
    return Symbols(frozenset(needed), frozenset(provided))
