"""An external Buildroot toolchain made of Debian's gcc-12, binutils and libc."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from . import fetch
from .table import Board, SubstitutionError

COMPILERS = ("gcc", "g++", "cpp")
BINUTILS = (
    "addr2line", "ar", "as", "elfedit", "gprof", "ld", "ld.bfd", "nm", "objcopy",
    "objdump", "ranlib", "readelf", "size", "strings", "strip",
)
GCC_VERSION = "12"

# Buildroot refuses a compiler whose -v output shows --with-sysroot=/ (a
# distribution's toolchain, whose default sysroot is the host): the wrapper
# gives Debian's compiler the sysroot below and leaves that string out of -v.
WRAPPER = """\
#!/bin/sh
# Debian's {tool}-{gcc_version} with a sysroot of Debian's libc (ramboot
# scripts/offline-build).
real={real}
if [ "$#" = 1 ] && [ "$1" = -v ]; then
\t"$real" -v 2>&1 | sed 's| --with-sysroot=/ | |' >&2
\texit 0
fi
exec "$real" --sysroot={sysroot} "$@"
"""


def make_symlinks_relative(root: Path) -> None:
    """Absolute links (Debian's /lib64/ld-linux-x86-64.so.2, lib*.so) point into ROOT."""
    for link in list(root.rglob("*")):
        if not link.is_symlink():
            continue
        target = str(link.readlink())
        if target.startswith("/"):
            inside = root / target.lstrip("/")
            link.unlink()
            link.symlink_to(os.path.relpath(inside, link.parent))


def dereference_asm_headers(root: Path, triplet: str) -> None:
    """linux-libc-dev's <triplet>/asm entries link into usr/lib/linux/uapi,
    which Buildroot's copy of the sysroot leaves out: make them files."""
    asm = root / "usr" / "include" / triplet / "asm"
    if not asm.is_dir():
        raise SubstitutionError(f"sysroot: no usr/include/{triplet}/asm (linux-libc-dev)")
    copy = asm.with_name("asm.copy")
    shutil.copytree(asm, copy, symlinks=False)
    shutil.rmtree(asm) if not asm.is_symlink() else asm.unlink()
    copy.rename(asm)


def fix_sysroot(root: Path, triplet: str) -> None:
    make_symlinks_relative(root)
    dereference_asm_headers(root, triplet)
    # Buildroot copies every ld*.so.* of the sysroot's lib dirs; this directory
    # matches and breaks the copy.
    shutil.rmtree(root / "etc" / "ld.so.conf.d", ignore_errors=True)


def point_at_own_libraries(compiler: Path) -> None:
    """Debian's cross binutils link their own libbfd-<version>-<arch>.so, which
    an unpacked (not installed) copy keeps in usr/lib/<host triplet>: each
    program of usr/bin gets an rpath there."""
    libdirs = sorted(p for p in (compiler / "usr" / "lib").glob("*-linux-gnu") if p.is_dir())
    if not libdirs:
        return
    rpath = ":".join(f"$ORIGIN/../lib/{d.name}" for d in libdirs)
    for program in sorted((compiler / "usr" / "bin").iterdir()):
        if program.is_symlink() or not program.is_file():
            continue
        with program.open("rb") as stream:
            if stream.read(4) != b"\x7fELF":
                continue
        fetch.run(["patchelf", "--set-rpath", rpath, str(program)],
                  what=f"patchelf {program.name}")


def unpack_debs(specs: tuple[str, ...], store: Path, into: Path) -> list[str]:
    into.mkdir(parents=True, exist_ok=True)
    names = []
    for spec in specs:
        deb = fetch.debian_binary(spec, store)
        fetch.run(["dpkg-deb", "-x", str(deb), str(into)], what=f"dpkg-deb -x {deb.name}")
        names.append(deb.name)
    return names


def write_wrappers(bin_dir: Path, board: Board, compiler_bin: Path, sysroot: Path) -> None:
    bin_dir.mkdir(parents=True)
    for tool in COMPILERS:
        real = compiler_bin / f"{board.triplet}-{tool}-{GCC_VERSION}"
        if not real.is_file():
            raise SubstitutionError(f"toolchain {board.name}: {real} is missing")
        wrapper = bin_dir / f"{board.triplet}-{tool}"
        wrapper.write_text(
            WRAPPER.format(tool=tool, gcc_version=GCC_VERSION, real=real, sysroot=sysroot)
        )
        wrapper.chmod(0o755)
    for tool in BINUTILS:
        if not (compiler_bin / f"{board.triplet}-{tool}").exists():
            raise SubstitutionError(
                f"toolchain {board.name}: {compiler_bin}/{board.triplet}-{tool} is missing"
            )
    # Every other program under its unversioned name (gcc-ar, gcov, ld.gold...):
    # Buildroot links what it finds here into output/host/bin.
    for real in sorted(compiler_bin.glob(f"{board.triplet}-*")):
        link = bin_dir / real.name.removesuffix(f"-{GCC_VERSION}")
        if not link.exists():
            link.symlink_to(real)


def inputs(board: Board, directory: Path) -> str:
    return json.dumps(
        {
            "directory": str(directory),
            "host": board.compiler_host_packages,
            "compiler": board.compiler_debs,
            "sysroot": board.sysroot_debs,
            "wrapper": WRAPPER,
            "layout": 2,
        },
        sort_keys=True,
    )


def ensure(board: Board, cache: Path) -> Path:
    """The toolchain directory for BOARD (Buildroot's BR2_TOOLCHAIN_EXTERNAL_PATH)."""
    directory = cache / f"toolchain-{board.name}"
    stamp = directory / ".ramboot-toolchain.json"
    wanted = inputs(board, directory)
    if stamp.is_file() and stamp.read_text() == wanted:
        return directory
    fetch.require_host_packages(board.compiler_host_packages, f"the {board.name} toolchain")
    store = cache / "sources" / "debs"
    partial = directory.with_name(directory.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    sysroot = directory / "sysroot"
    unpack_debs(board.sysroot_debs, store, partial / "sysroot")
    fix_sysroot(partial / "sysroot", board.triplet)
    if board.compiler_debs:
        unpack_debs(board.compiler_debs, store, partial / "compiler")
        point_at_own_libraries(partial / "compiler")
        compiler_bin = directory / "compiler" / "usr" / "bin"
        check_bin = partial / "compiler" / "usr" / "bin"
    else:
        compiler_bin = check_bin = Path("/usr/bin")
    write_wrappers(partial / "bin", board, check_bin, sysroot)
    if check_bin != compiler_bin:
        # The wrappers and links name the final directory, not the partial one.
        for path in (partial / "bin").iterdir():
            if path.is_symlink():
                target = path.readlink()
                path.unlink()
                path.symlink_to(compiler_bin / target.name)
            else:
                path.write_text(path.read_text().replace(str(check_bin), str(compiler_bin)))
    (partial / stamp.name).write_text(wanted)
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    return directory
