#!/usr/bin/env python3
"""Remove the shared libraries of /lib and /usr/lib that nothing in the image links.

`prune-libraries.py TARGET_DIR [--dry-run]`. The roots are every ELF file
outside those two directories (executables, Python extension modules, OpenSSL
providers, ...); a library stays when a root or a kept library names it in
DT_NEEDED (or as its program interpreter), or when glibc loads it by name at
run time (KEPT_BY_NAME). Packages pull libraries in as build dependencies
that their programs never link (Buildroot's nbd brings glib2 and pcre2 for a
server the image does not install). The agent loads no library by name
(no ctypes), so DT_NEEDED is the whole story for it. ELF parsing is elf.py's,
beside it: standard library only, no pyelftools on the build host.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from elf import PT_DYNAMIC, PT_INTERP, ElfFile, ElfFormatError, NotElfError

LIBRARY_DIRS = ("lib", "usr/lib", "lib64", "usr/lib64")
LIBRARY_NAME = "lib*.so*"
# dlopen()ed by glibc itself: name service modules (getaddrinfo, getpwnam),
# libgcc_s (pthread_cancel and backtraces unwind through it).
KEPT_BY_NAME = ("libnss_*", "libgcc_s.so*", "ld-linux*", "ld64.so*", "libc.so*")

DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME = 0, 1, 5, 14


class ElfError(Exception):
    pass


@dataclass(frozen=True)
class Elf:
    needed: tuple[str, ...]
    soname: str | None
    interpreter: str | None


def read_elf(path: Path) -> Elf | None:
    """DT_NEEDED, DT_SONAME and PT_INTERP of an ELF file; None if not ELF."""
    data = path.read_bytes()
    try:
        return _parse(ElfFile(data))
    except NotElfError:
        return None
    except (ElfFormatError, ElfError) as error:
        raise ElfError(f"{path}: malformed ELF ({error})") from error


def _parse(image: ElfFile) -> Elf:
    dynamic = None
    interpreter = None
    for segment in image.segments:
        if segment.kind == PT_DYNAMIC:
            dynamic = segment
        elif segment.kind == PT_INTERP:
            interpreter = image.read(segment.offset, segment.filesz).split(b"\0")[0].decode()
    if dynamic is None:
        return Elf((), None, interpreter)
    layout, size = ("qQ", 16) if image.wide else ("iI", 8)
    tags: list[tuple[int, int]] = []
    for position in range(dynamic.offset, dynamic.offset + dynamic.filesz - size + 1, size):
        tag, value = image.unpack(layout, position)
        if tag == DT_NULL:
            break
        tags.append((tag, value))
    strtab = next((value for tag, value in tags if tag == DT_STRTAB), None)
    if strtab is None:
        raise ElfError("a dynamic section without DT_STRTAB")
    base = image.file_offset(strtab)
    if base is None:
        raise ElfError("DT_STRTAB outside every PT_LOAD segment")

    def string(at: int) -> str:
        return image.string(base + at).decode()

    needed = tuple(string(value) for tag, value in tags if tag == DT_NEEDED)
    soname = next((string(value) for tag, value in tags if tag == DT_SONAME), None)
    return Elf(needed, soname, interpreter)


@dataclass
class Image:
    root: Path
    libraries: dict[str, Path] = field(default_factory=dict)  # name -> real file
    elves: dict[Path, Elf] = field(default_factory=dict)

    def is_library_dir_file(self, path: Path) -> bool:
        return str(path.parent.relative_to(self.root)) in LIBRARY_DIRS


def scan(root: Path) -> Image:
    root = root.resolve()  # library symlinks resolve to absolute paths
    image = Image(root)
    for walked, subdirectories, files in os.walk(root):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(walked) / name
            if path.is_symlink() or not path.is_file():
                continue
            elf = read_elf(path)
            if elf is not None:
                image.elves[path] = elf
    for relative in LIBRARY_DIRS:
        directory = root / relative
        if not directory.is_dir() or directory.is_symlink():
            continue
        for path in sorted(directory.iterdir()):
            real = path.resolve()
            if real in image.elves:
                image.libraries.setdefault(path.name, real)
                soname = image.elves[real].soname
                if soname:
                    image.libraries.setdefault(soname, real)
    return image


def unused(image: Image) -> list[Path]:
    """The library files (and their symlinks) in the library directories that nothing needs."""
    candidates = {path for path in image.elves
                  if image.is_library_dir_file(path) and fnmatch.fnmatch(path.name, LIBRARY_NAME)}
    kept = {path for path in candidates
            if any(fnmatch.fnmatch(path.name, p) for p in KEPT_BY_NAME)}
    queue = [path for path in image.elves if path not in candidates] + sorted(kept)
    seen = set(queue)
    while queue:
        elf = image.elves[queue.pop()]
        names = list(elf.needed)
        if elf.interpreter:
            names.append(Path(elf.interpreter).name)
        for name in names:
            library = image.libraries.get(name)
            if library is not None and library not in seen:
                seen.add(library)
                queue.append(library)
    removed = sorted(candidates - seen)
    links = []
    for relative in LIBRARY_DIRS:
        directory = image.root / relative
        if directory.is_dir() and not directory.is_symlink():
            links += [p for p in directory.iterdir()
                      if p.is_symlink() and p.resolve() in removed]
    return removed + sorted(links)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    try:
        paths = unused(scan(args.target))
        size = sum(p.lstat().st_size for p in paths)
    except ElfError as error:
        # What it links is unknown, so any library may be its: remove none.
        print(f"prune-libraries: {error}: removing no library", file=sys.stderr)
        return 0
    except OSError as error:
        print(f"prune-libraries: {error}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"prune-libraries: {'would remove' if args.dry_run else 'removing'}"
              f" /{path.relative_to(args.target.resolve())}", file=sys.stderr)
        if not args.dry_run:
            path.unlink()
    print(f"prune-libraries: {len(paths)} files, {size / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
