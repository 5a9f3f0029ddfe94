"""Putting every substituted file into the Buildroot download directory."""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO

from . import fetch
from .table import Source, SubstitutionError, Table

Compressor = gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile


def compressor(raw: IO[bytes], fmt: str, name: str) -> Compressor:
    """A compressing stream into RAW for FMT, reproducible (no time stamp)."""
    if fmt.endswith("gz"):
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
    if fmt.endswith("bz2"):
        return bz2.BZ2File(raw, "wb")
    if fmt.endswith("xz"):
        return lzma.LZMAFile(raw, "wb", preset=6)
    raise SubstitutionError(f"{name}: no compressor for {fmt}")


@contextmanager
def compressed_writer(path: Path, fmt: str) -> Iterator[Compressor]:
    """A byte stream into PATH compressed as FMT."""
    with path.open("wb") as raw, compressor(raw, fmt, path.name) as stream:
        yield stream


def renamed(member: tarfile.TarInfo, source: Source) -> str | None:
    """MEMBER's name under the repacked top directory, or None to leave it out."""
    assert source.repack is not None
    name = member.name.strip("/")
    if source.repack.subdir:
        prefix = source.repack.subdir.strip("/")
        if name != prefix and not name.startswith(prefix + "/"):
            return None
        rest = name[len(prefix):].lstrip("/")
    else:
        rest = name.partition("/")[2]
    return f"{source.repack.top}/{rest}" if rest else source.repack.top


def repack_tar(origin: Path, target: Path, source: Source) -> None:
    """ORIGIN's members under a new top directory, as a tarball."""
    fmt = source.output_format()
    with tarfile.open(origin) as tar_in, compressed_writer(target, fmt) as out, \
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar_out:
        for member in tar_in:
            name = renamed(member, source)
            if name is None:
                continue
            member.name = name
            if member.islnk():
                linked = renamed(tarfile.TarInfo(member.linkname), source)
                member.linkname = linked or member.linkname
            data = tar_in.extractfile(member) if member.isfile() else None
            tar_out.addfile(member, data)


def repack_cpio(origin: Path, target: Path, source: Source) -> None:
    """ORIGIN as a gzipped newc cpio archive (host-tar unpacks with cpio)."""
    assert source.repack is not None
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "tar"
        as_tar = replace(
            source, file="staged.tar.gz", repack=replace(source.repack, format="tar.gz")
        )
        repack_tar(origin, staged, as_tar)
        with tarfile.open(staged) as tar:
            tar.extractall(tmp, filter="tar")
        names = subprocess.run(
            ["find", source.repack.top], cwd=tmp, capture_output=True, check=True
        ).stdout.splitlines()
        listing = b"\n".join(sorted(names)) + b"\n"
        archive = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--reproducible", "--quiet"],
            cwd=tmp, input=listing, capture_output=True, check=True,
        ).stdout
    with compressed_writer(target, "cpio.gz") as out:
        out.write(archive)


FIRMWARE_BASES = ("lib/firmware", "usr/lib/firmware")


def firmware_paths(entry: str) -> tuple[list[str], str]:
    """Where a firmware_dirs entry is looked for in a package, and where it goes.

    "bnx2x": lib/firmware/bnx2x or usr/lib/firmware/bnx2x, to bnx2x/;
    "usr/lib/raspi-firmware:boot": that directory of the package, to boot/.
    """
    if ":" in entry:
        origin, _, dest = entry.partition(":")
        return [origin], dest
    return [f"{base}/{entry}" for base in FIRMWARE_BASES], entry


def firmware_standin(source: Source, store: Path, target: Path) -> None:
    """A firmware tarball holding only the directories the board selects, from
    Debian's firmware packages (unpacked, never installed)."""
    suffix = "." + source.output_format()
    top = source.file.removesuffix(suffix)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / top
        root.mkdir()
        found: set[str] = set()
        for spec in source.firmware:
            deb = fetch.debian_binary(spec, store)
            unpacked = Path(tmp) / "debs" / deb.stem
            unpacked.mkdir(parents=True)
            fetch.run(["dpkg-deb", "-x", str(deb), str(unpacked)], what=f"dpkg-deb -x {deb}")
            for entry in source.firmware_dirs:
                origins, dest = firmware_paths(entry)
                for origin in origins:
                    if (unpacked / origin).is_dir():
                        shutil.copytree(unpacked / origin, root / dest, symlinks=True,
                                        dirs_exist_ok=True)
                        found.add(entry)
        missing = [d for d in source.firmware_dirs if d not in found]
        if missing:
            raise SubstitutionError(
                f"{source.name}: no {', '.join(missing)} in {', '.join(source.firmware)}"
            )
        (root / "WHENCE").write_text(
            "A stand-in made by ramboot's scripts/offline-build from Debian's\n"
            f"{', '.join(source.firmware)}: only {', '.join(source.firmware_dirs)}.\n"
        )
        write_tree(Path(tmp), top, target, source.output_format())


def write_tree(base: Path, top: str, target: Path, fmt: str) -> None:
    """BASE/TOP as a reproducible tarball: sorted, owned by root, time 0."""
    with compressed_writer(target, fmt) as out, \
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in [base / top, *sorted((base / top).rglob("*"))]:
            info = tar.gettarinfo(str(path), str(path.relative_to(base)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if info.isfile():
                with path.open("rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)


def origin_file(source: Source, vendor: Path, store: Path) -> Path:
    """The file SOURCE is made from, fetched into the cache if need be."""
    if source.origin == "debian":
        return fetch.debian_source_file(source.spec, source.debian_file, store / "debian")
    if source.origin == "pool":
        return fetch.debian_pool_file(source.spec, store / "debian")
    if source.origin == "pypi":
        return fetch.pypi_sdist(source.spec, source.file, store / "pypi")
    if source.origin == "vendor":
        return fetch.vendor_file(vendor, source.spec)
    if source.origin == "host_file":
        fetch.require_host_packages([source.host_package], f"{source.name}")
        path = Path(source.spec)
        if not path.is_file():
            raise SubstitutionError(f"{source.name}: {path} is missing ({source.host_package})")
        return path
    raise SubstitutionError(f"{source.name}: cannot fetch from {source.origin}")


def place(source: Source, vendor: Path, store: Path, dl_dir: Path) -> Path:
    """dl/<package>/<file> for SOURCE, made once and checked every time."""
    target = dl_dir / source.package / source.file
    if target.is_file() and fetch.sha256_of(target) == source.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    if source.origin == "firmware":
        firmware_standin(source, store / "debs", partial)
    else:
        origin = origin_file(source, vendor, store)
        if source.repack is None:
            shutil.copyfile(origin, partial)
        elif source.output_format() == "cpio.gz":
            repack_cpio(origin, partial, source)
        else:
            repack_tar(origin, partial, source)
    try:
        fetch.verified(partial, source.sha256, source.name)
    except SubstitutionError:
        partial.unlink()
        raise
    partial.replace(target)
    return target


def place_all(table: Table, vendor: Path, cache: Path, dl_dir: Path) -> None:
    """Every file of the table in DL_DIR (shared by the boards), or one error
    naming each file that could not be made."""
    failures = []
    for source in table.sources:
        try:
            place(source, vendor, cache / "sources", dl_dir)
        except SubstitutionError as error:
            failures.append(str(error))
    if failures:
        raise SubstitutionError("cannot substitute:\n  " + "\n  ".join(failures))
