"""The file, section and program headers of an ELF file, in pure Python.

Buildroot's host python3 has no pyelftools, so the board scripts (and the
tests, which read either board's files on one host) parse ELF here. Both
classes and byte orders.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

MAGIC = b"\x7fELF"
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
SHT_NOBITS, SHT_DYNSYM = 8, 11
SHN_UNDEF, SHN_XINDEX = 0, 0xFFFF


class ElfFormatError(ValueError):
    """Not an ELF file, or one whose headers do not fit in it."""


class NotElfError(ElfFormatError):
    """No ELF magic number: some other kind of file."""


@dataclass(frozen=True)
class Section:
    name: str
    kind: int  # sh_type
    flags: int
    address: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    entsize: int


@dataclass(frozen=True)
class Segment:
    kind: int  # p_type
    flags: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    align: int


class ElfFile:
    """An ELF image; its section and program headers are read when first used,
    so that a file with a damaged table of one kind still yields the other."""

    def __init__(self, data: bytes) -> None:
        if data[:4] != MAGIC:
            raise NotElfError("not an ELF file")
        if len(data) < 6 or data[4] not in (1, 2) or data[5] not in (1, 2):
            raise ElfFormatError("unknown class or byte order")
        self.data = data
        self.wide = data[4] == 2  # ELFCLASS64
        self.order = "<" if data[5] == 1 else ">"
        header = self.unpack("HHIQQQIHHHHHH" if self.wide else "HHIIIIIHHHHHH", 0x10)
        self.type, self.machine = header[:2]
        self._phoff, self._shoff = header[4:6]
        self._phentsize, self._phnum, self._shentsize, self._shnum, self._shstrndx = header[8:]

    def unpack(self, layout: str, offset: int) -> tuple[int, ...]:
        """struct.unpack_from in the file's byte order, standard sizes."""
        try:
            return struct.unpack_from(self.order + layout, self.data, offset)
        except struct.error as error:
            raise ElfFormatError(str(error)) from None

    def _table(self, offset: int, entsize: int, count: int, layout: str) -> list[tuple[int, ...]]:
        if count and entsize < struct.calcsize(self.order + layout):
            raise ElfFormatError(f"header table entries of {entsize} bytes")
        return [self.unpack(layout, offset + index * entsize) for index in range(count)]

    @cached_property
    def sections(self) -> tuple[Section, ...]:
        if not self._shoff:
            return ()
        layout = "IIQQQQIIQQ" if self.wide else "IIIIIIIIII"
        count, names = self._shnum, self._shstrndx
        if not count or names == SHN_XINDEX:  # past 0xff00 sections: kept in entry 0
            first = self._table(self._shoff, self._shentsize, 1, layout)[0]
            count = count or first[5]
            names = first[6] if names == SHN_XINDEX else names
        rows = self._table(self._shoff, self._shentsize, count, layout)
        if names == SHN_UNDEF:
            return tuple(Section("", *row[1:]) for row in rows)
        if names >= len(rows):
            raise ElfFormatError(f"section name table {names} of {len(rows)} sections")
        base = rows[names][4]
        return tuple(Section(self.string(base + row[0]).decode("utf-8", "replace"), *row[1:])
                     for row in rows)

    @cached_property
    def segments(self) -> tuple[Segment, ...]:
        if not self._phoff:
            return ()
        if self.wide:
            return tuple(Segment(*row) for row in self._table(
                self._phoff, self._phentsize, self._phnum, "IIQQQQQQ"))
        # p_flags comes after p_memsz in the 32-bit layout.
        return tuple(Segment(kind, flags, offset, vaddr, paddr, filesz, memsz, align)
                     for kind, offset, vaddr, paddr, filesz, memsz, flags, align in self._table(
                         self._phoff, self._phentsize, self._phnum, "IIIIIIII"))

    def section(self, name: str) -> Section | None:
        """The first section called `name`."""
        return next((s for s in self.sections if s.name == name), None)

    def contents(self, section: Section) -> bytes:
        """A section's bytes; none for SHT_NOBITS (.bss), which has none in the file."""
        return b"" if section.kind == SHT_NOBITS else self.read(section.offset, section.size)

    def read(self, offset: int, size: int) -> bytes:
        """`size` bytes at `offset`, all inside the file."""
        if offset + size > len(self.data):
            raise ElfFormatError(f"{size} bytes at {offset} past the end of the file")
        return self.data[offset:offset + size]

    def string(self, offset: int) -> bytes:
        """The NUL-terminated string at `offset`, without its NUL."""
        end = self.data.find(b"\0", offset)
        if end < 0:
            raise ElfFormatError(f"no NUL-terminated string at {offset}")
        return self.data[offset:end]

    def file_offset(self, address: int) -> int | None:
        """Where a virtual address's byte is in the file: through its PT_LOAD segment."""
        return next((s.offset + address - s.vaddr for s in self.segments
                     if s.kind == PT_LOAD and s.vaddr <= address < s.vaddr + s.filesz), None)
