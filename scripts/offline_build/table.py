"""The substitution table (scripts/offline-build.toml), parsed and checked."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ORIGINS = ("debian", "pool", "pypi", "vendor", "host_file", "firmware")
SHA256 = re.compile(r"[0-9a-f]{64}")
MK_VARIABLE = re.compile(r"[A-Z0-9_]+")
REPACK_FORMATS = ("tar.gz", "tar.bz2", "tar.xz", "cpio.gz")


class SubstitutionError(Exception):
    """A substitution that cannot be made; the message names it."""


@dataclass(frozen=True)
class Repack:
    top: str
    subdir: str = ""
    format: str = ""


@dataclass(frozen=True)
class Source:
    """One file of a Buildroot download directory, taken from Debian."""

    package: str
    file: str
    identical: bool
    sha256: str
    origin: str
    spec: str
    debian_file: str = ""
    host_package: str = ""
    firmware_dirs: tuple[str, ...] = ()
    firmware: tuple[str, ...] = ()
    repack: Repack | None = None
    set: dict[str, str] = field(default_factory=dict)
    mk_package: str = ""
    prepend: tuple[str, ...] = ()
    drop_patches: tuple[str, ...] = ()
    why: str = ""

    @property
    def name(self) -> str:
        return f"{self.package}/{self.file}"

    def output_format(self) -> str:
        if self.repack and self.repack.format:
            return self.repack.format
        for suffix in REPACK_FORMATS:
            if self.file.endswith("." + suffix):
                return suffix
        return ""


@dataclass(frozen=True)
class HostTool:
    """A host package Buildroot would build, linked from the host instead."""

    package: str
    programs: tuple[str, ...]
    host_package: str
    why: str


@dataclass(frozen=True)
class Board:
    name: str
    defconfig: str
    triplet: str
    debian_arch: str
    compiler_host_packages: tuple[str, ...]
    compiler_debs: tuple[str, ...]
    sysroot_debs: tuple[str, ...]
    drop: tuple[str, ...]
    add: tuple[str, ...]
    replace: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    buildroot_tarball: str
    sources: tuple[Source, ...]
    host_tools: tuple[HostTool, ...]
    boards: dict[str, Board]

    def board(self, name: str) -> Board:
        try:
            return self.boards[name]
        except KeyError:
            known = ", ".join(sorted(self.boards))
            raise SubstitutionError(f"no board {name!r} in the table (known: {known})") from None

    def for_package(self, package: str) -> list[Source]:
        return [s for s in self.sources if s.package == package]


def _strings(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SubstitutionError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _string(entry: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise SubstitutionError(f"{where}: {key} must be a non-empty string")
    return value


def parse_source(entry: dict[str, Any], index: int) -> Source:
    where = f"[[source]] #{index + 1} ({entry.get('package', '?')}/{entry.get('file', '?')})"
    known = {
        "package", "file", "identical", "sha256", "debian_file", "host_package",
        "firmware_dirs", "repack", "set", "mk_package", "prepend", "drop_patches", "why", *ORIGINS,
    }
    unknown = sorted(set(entry) - known)
    if unknown:
        raise SubstitutionError(f"{where}: unknown field(s) {', '.join(unknown)}")
    origins = [o for o in ORIGINS if o in entry]
    if len(origins) != 1:
        raise SubstitutionError(f"{where}: needs exactly one of {', '.join(ORIGINS)}")
    origin = origins[0]
    identical = entry.get("identical")
    if not isinstance(identical, bool):
        raise SubstitutionError(f"{where}: identical must be true or false")
    sha256 = _string(entry, "sha256", where)
    if not SHA256.fullmatch(sha256):
        raise SubstitutionError(f"{where}: sha256 {sha256!r} is not 64 hex digits")
    why = _string(entry, "why", where, required=not identical)
    firmware: tuple[str, ...] = ()
    spec = ""
    if origin == "firmware":
        firmware = _strings(entry, "firmware", where)
        if not firmware or not entry.get("firmware_dirs"):
            raise SubstitutionError(f"{where}: firmware needs packages and firmware_dirs")
    else:
        spec = _string(entry, origin, where)
    debian_file = _string(entry, "debian_file", where, required=origin == "debian")
    host_package = _string(entry, "host_package", where, required=origin == "host_file")
    repack = None
    if "repack" in entry:
        raw = entry["repack"]
        if not isinstance(raw, dict) or not isinstance(raw.get("top"), str):
            raise SubstitutionError(f"{where}: repack needs top = \"<directory>\"")
        repack = Repack(top=raw["top"], subdir=raw.get("subdir", ""), format=raw.get("format", ""))
        if repack.format and repack.format not in REPACK_FORMATS:
            raise SubstitutionError(f"{where}: repack format {repack.format!r} is not one of "
                                    f"{', '.join(REPACK_FORMATS)}")
    settings = entry.get("set", {})
    if not isinstance(settings, dict) or not all(
        isinstance(k, str) and MK_VARIABLE.fullmatch(k) and isinstance(v, str)
        for k, v in settings.items()
    ):
        raise SubstitutionError(f"{where}: set must map make variables to strings")
    source = Source(
        package=_string(entry, "package", where),
        file=_string(entry, "file", where),
        identical=identical,
        sha256=sha256,
        origin=origin,
        spec=spec,
        debian_file=debian_file,
        host_package=host_package,
        firmware_dirs=_strings(entry, "firmware_dirs", where),
        firmware=firmware,
        repack=repack,
        set=dict(settings),
        mk_package=_string(entry, "mk_package", where, required=False),
        prepend=_strings(entry, "prepend", where),
        drop_patches=_strings(entry, "drop_patches", where),
        why=why,
    )
    if "/" in source.file or not source.output_format():
        raise SubstitutionError(f"{where}: file must be a plain name ending in one of "
                                f"{', '.join(REPACK_FORMATS)}")
    if identical and (repack or source.set or source.prepend or source.drop_patches):
        raise SubstitutionError(f"{where}: an identical file needs no repack or edits")
    return source


def parse_host_tool(entry: dict[str, Any], index: int) -> HostTool:
    where = f"[[host_tool]] #{index + 1} ({entry.get('package', '?')})"
    return HostTool(
        package=_string(entry, "package", where),
        programs=_strings(entry, "programs", where),
        host_package=_string(entry, "host_package", where),
        why=_string(entry, "why", where),
    )


def parse_board(name: str, entry: dict[str, Any]) -> Board:
    where = f"[board.{name}]"
    replace = entry.get("replace", {})
    if not isinstance(replace, dict):
        raise SubstitutionError(f"{where}: replace must map config prefixes to lines")
    board = Board(
        name=name,
        defconfig=_string(entry, "defconfig", where),
        triplet=_string(entry, "triplet", where),
        debian_arch=_string(entry, "debian_arch", where),
        compiler_host_packages=_strings(entry, "compiler_host_packages", where),
        compiler_debs=_strings(entry, "compiler_debs", where),
        sysroot_debs=_strings(entry, "sysroot_debs", where),
        drop=_strings(entry, "drop", where),
        add=_strings(entry, "add", where),
        replace=dict(replace),
    )
    if not board.compiler_host_packages and not board.compiler_debs:
        raise SubstitutionError(f"{where}: needs compiler_host_packages or compiler_debs")
    if board.defconfig.endswith("_defconfig_defconfig") or not board.defconfig.endswith(
        "_defconfig"
    ):
        raise SubstitutionError(f"{where}: defconfig {board.defconfig!r} must end in _defconfig")
    return board


def parse(data: dict[str, Any]) -> Table:
    buildroot = data.get("buildroot", {})
    tarball = buildroot.get("tarball") if isinstance(buildroot, dict) else None
    if not isinstance(tarball, str):
        raise SubstitutionError("[buildroot]: tarball must name the vendored Buildroot tarball")
    sources = tuple(parse_source(e, i) for i, e in enumerate(data.get("source", [])))
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise SubstitutionError(f"{source.name} is listed twice")
        seen.add(source.name)
    tools = tuple(parse_host_tool(e, i) for i, e in enumerate(data.get("host_tool", [])))
    boards = {name: parse_board(name, e) for name, e in data.get("board", {}).items()}
    return Table(buildroot_tarball=tarball, sources=sources, host_tools=tools, boards=boards)


def load(path: Path) -> Table:
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SubstitutionError(f"{path}: {error}") from error
    try:
        return parse(data)
    except SubstitutionError as error:
        raise SubstitutionError(f"{path}: {error}") from error
