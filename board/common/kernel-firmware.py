#!/usr/bin/env python3
"""Keep only the firmware files that the image's kernel drivers can request.

`kernel-firmware.py TARGET_DIR [--dry-run]`. A driver names the files it
loads with MODULE_FIRMWARE: built-in drivers in the kernel's
modules.builtin.modinfo, modules in their .modinfo section. Run after
kernel-modules.py, so that the firmware of removed modules goes too. A file
of /lib/firmware that no driver of this kernel names is never loaded, and is
removed (Debian's firmware-bnx2x carries every firmware version the driver
ever used). Of names that differ only in a dotted version, the newest present
stays: a driver declaring several (bnx2x: the current one and the one before)
loads the newest it finds and falls back only when it is missing. Symbolic links
that a kept name resolves through stay, as do the licence files that must
travel with firmware. Without a kernel (no lib/modules) nothing is removed:
what drivers ask for is unknown.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from elf import ElfFile, ElfFormatError, NotElfError

FIRMWARE_DIR = "lib/firmware"
# Redistribution terms ship with the files they cover.
LICENCE_PREFIXES = ("LICENCE", "LICENSE", "WHENCE", "GPL")
VERSION = re.compile(r"\d+(?:\.\d+)+")


class FirmwareError(Exception):
    pass


def firmware_names(modinfo: bytes) -> Iterator[str]:
    """The firmware= values of NUL-separated modinfo strings (either form:
    `firmware=...` in a module, `module.firmware=...` in the built-in list)."""
    for entry in modinfo.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and (key == b"firmware" or key.endswith(b".firmware")) and value:
            yield value.decode("utf-8", "replace")


# Imported when a module needs them: Buildroot's host python3 may lack _lzma.
DECOMPRESSORS = {".ko.xz": "lzma", ".ko.gz": "gzip"}


def module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".ko"):
        return data
    suffix = next((s for s in DECOMPRESSORS if path.name.endswith(s)), None)
    if suffix is None:
        raise FirmwareError(f"{path}: compressed module of a kind this script cannot read")
    try:
        decompress = importlib.import_module(DECOMPRESSORS[suffix]).decompress
    except ImportError as error:
        raise FirmwareError(f"{path}: this python3 cannot decompress it ({error})") from None
    result: bytes = decompress(data)
    return result


def modinfo_section(path: Path) -> bytes:
    """The .modinfo section of an ELF kernel module."""
    data = module_bytes(path)
    try:
        module = ElfFile(data)
        section = module.section(".modinfo")
        return module.contents(section) if section else b""
    except NotElfError:
        raise FirmwareError(f"{path}: not an ELF file") from None
    except ElfFormatError as error:
        raise FirmwareError(f"{path}: malformed ELF ({error})") from error


def requested(version_dir: Path) -> set[str]:
    """Every firmware path the kernel's built-in drivers and modules name."""
    names: set[str] = set()
    builtin = version_dir / "modules.builtin.modinfo"
    if builtin.is_file():
        names.update(firmware_names(builtin.read_bytes()))
    for module in sorted(version_dir.rglob("*.ko*")):
        if module.is_file():
            names.update(firmware_names(modinfo_section(module)))
    return names


def kept_paths(target: Path, names: Iterable[str]) -> set[Path]:
    """The files and links under /lib/firmware that requesting `names` reads."""
    firmware = target / FIRMWARE_DIR
    kept: set[Path] = set()
    for name in names:
        path = Path(os.path.normpath(firmware / name))
        for _hop in range(40):  # a chain of links, each hop kept; loops end
            if not path.is_relative_to(firmware) or not (path.is_file() or path.is_symlink()):
                break
            kept.add(path)
            if not path.is_symlink():
                break
            link = path.readlink()
            hop = target / link.relative_to("/") if link.is_absolute() else path.parent / link
            path = Path(os.path.normpath(hop))
    return kept


def version_of(name: str) -> tuple[int, ...]:
    """The dotted numbers of a name, in order, for comparing versions."""
    return tuple(int(part) for match in VERSION.findall(name) for part in match.split("."))


def newest_of_each(names: Iterable[str], present: Callable[[str], bool]) -> set[str]:
    """`names` without the older versions of a name whose newer version is present."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(VERSION.sub("#", name), []).append(name)
    kept: set[str] = set()
    for members in groups.values():
        versions = [m for m in members if VERSION.search(m) and present(m)]
        if len(versions) < 2:
            kept.update(members)
            continue
        kept.add(max(versions, key=version_of))
        kept.update(m for m in members if m not in versions)
    return kept


def plan(target: Path) -> tuple[set[Path], set[Path]]:
    """(firmware files kept, firmware files removed)."""
    firmware = target / FIRMWARE_DIR
    modules = target / "lib/modules"
    versions = sorted(p for p in modules.iterdir() if p.is_dir()) if modules.is_dir() else []
    if not firmware.is_dir() or not versions:
        return set(), set()
    if len(versions) != 1:
        raise FirmwareError(f"{modules}: one kernel expected, found "
                            + ", ".join(p.name for p in versions))
    names = newest_of_each(requested(versions[0]), lambda name: (firmware / name).exists())
    kept = kept_paths(target, names)
    present = {p for p in firmware.rglob("*") if p.is_file() or p.is_symlink()}
    licences = {p for p in present if p.name.startswith(LICENCE_PREFIXES)}
    return kept | licences, present - kept - licences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="only print what would go")
    args = parser.parse_args(argv)
    try:
        kept, removed = plan(args.target)
    except (FirmwareError, OSError) as error:
        print(f"kernel-firmware: {error}", file=sys.stderr)
        return 1
    firmware = args.target / FIRMWARE_DIR
    for path in sorted(removed):
        if args.dry_run:
            print(path.relative_to(args.target))
        else:
            path.unlink()
    if not args.dry_run and firmware.is_dir():
        for directory in sorted((p for p in firmware.rglob("*") if p.is_dir()), reverse=True):
            if not any(directory.iterdir()):
                directory.rmdir()
    if kept or removed:
        print(f"kernel-firmware: kept {len(kept)} of {len(kept) + len(removed)} files"
              f" under /{FIRMWARE_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
