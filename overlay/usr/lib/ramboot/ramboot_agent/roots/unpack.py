"""Unpack a root archive (tar or newc cpio) into a directory, from inside it.

Run as a helper process (helpers.helper_argv("unpack", ...)):

    unpack --format tar|cpio --compression gzip|xz|zstd|bzip2|none IMAGE DEST

The archive is opened first, then the process chroots into DEST: every name
and every symlink in the archive, absolute or with `..`, resolves inside
the new root, so nothing can be written outside it, while owners, modes
(setuid included), device nodes, hard and absolute symbolic links come
out as a root filesystem needs them. Prints a JSON summary on success.
"""
# ruff: noqa: PTH101, PTH102, PTH103, PTH106, PTH108, PTH112, PTH114, PTH120, PTH208, PTH211
# (inside the chroot, plain os calls on str paths say what they do)

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ramboot_agent.roots import archive

CPIO_HEADER = 110
CPIO_TRAILER = "TRAILER!!!"
CHUNK = 1 << 20


class UnpackError(Exception):
    pass


# --- tar ----------------------------------------------------------------------


def unpack_tar(stream: IO[bytes]) -> dict[str, int]:
    counts = {"entries": 0, "bytes": 0}

    def counted(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        for member in tar:
            counts["entries"] += 1
            counts["bytes"] += member.size if member.isreg() else 0
            yield member

    options: dict[str, object] = {}
    if hasattr(tarfile, "fully_trusted_filter"):
        # Contained by the chroot: a root filesystem needs absolute links and devices.
        options["filter"] = "fully_trusted"
    # A file or a Python decompressor can be read in place ("r:", member after
    # member, never seeking back); a pipe from a decompressing program only as a
    # stream, whose reads archive.open_image buffers.
    if stream.seekable():
        with tarfile.open(fileobj=stream, mode="r:", errorlevel=2) as tar:
            tar.extractall("/", members=counted(tar), numeric_owner=True, **options)  # type: ignore[arg-type]  # noqa: S202
        return counts
    with tarfile.open(fileobj=stream, mode="r|", errorlevel=2) as tar:
        tar.extractall("/", members=counted(tar), numeric_owner=True, **options)  # type: ignore[arg-type]  # noqa: S202
    return counts


# --- cpio (newc, as the kernel's initramfs unpacker reads it) ------------------


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    data = archive.read_head(stream, size)
    if len(data) != size:
        raise UnpackError(f"the cpio archive ends early ({len(data)} of {size} bytes)")
    return data


def _skip_padding(stream: IO[bytes], consumed: int) -> None:
    pad = -consumed % 4
    if pad:
        _read_exact(stream, pad)


def _safe_name(raw: bytes) -> str:
    name = raw.decode("utf-8", errors="surrogateescape").lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    return "/" + name if name not in ("", ".") else "/"


def _remove(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        if os.listdir(path):
            raise UnpackError(f"{path}: the archive replaces a non-empty directory")
        os.rmdir(path)
    else:
        os.unlink(path)


def unpack_cpio(stream: IO[bytes]) -> dict[str, int]:
    counts = {"entries": 0, "bytes": 0}
    links: dict[tuple[int, int, int], str] = {}
    directories: list[tuple[str, int]] = []
    while True:
        header = _read_exact(stream, CPIO_HEADER)
        if header[:6] not in (b"070701", b"070702"):
            raise UnpackError(f"not a newc cpio header: {header[:6]!r}")
        try:
            fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise UnpackError("a cpio header with non-hex fields") from None
        ino, mode, uid, gid, nlink, mtime, size, devmajor, devminor, rmajor, rminor, namesize = \
            fields[:12]
        raw_name = _read_exact(stream, namesize)
        _skip_padding(stream, CPIO_HEADER + namesize)
        if raw_name.rstrip(b"\0").decode(errors="replace") == CPIO_TRAILER:
            break
        name = _safe_name(raw_name.rstrip(b"\0"))
        counts["entries"] += 1
        kind = stat.S_IFMT(mode)
        if name == "/" and kind == stat.S_IFDIR:
            directories.append((name, mode))
            os.chmod(name, stat.S_IMODE(mode))
            os.chown(name, uid, gid)
            _skip_data(stream, size)
            continue
        parent = os.path.dirname(name)
        os.makedirs(parent, exist_ok=True)
        if kind == stat.S_IFDIR:
            if not os.path.isdir(name) or os.path.islink(name):
                _remove(name)
                os.mkdir(name, 0o700)
            directories.append((name, mode))
        elif kind == stat.S_IFREG:
            _remove(name)
            # Hard links as the kernel's unpacker makes them: the names of one
            # inode share the data, whichever of them carries it.
            key = (devmajor, devminor, ino)
            linked = nlink >= 2 and key in links
            if linked:
                os.link(links[key], name)
            elif nlink >= 2:
                links[key] = name
            with open(name, "r+b" if linked else "wb") as out:  # noqa: PTH123
                remaining = size
                while remaining:
                    chunk = stream.read(min(CHUNK, remaining))
                    if not chunk:
                        raise UnpackError(f"the cpio archive ends inside {name}")
                    out.write(chunk)
                    remaining -= len(chunk)
            _skip_padding(stream, size)
            counts["bytes"] += size
            size = 0
        elif kind == stat.S_IFLNK:
            target = _read_exact(stream, size).decode("utf-8", errors="surrogateescape")
            _skip_padding(stream, size)
            size = 0
            _remove(name)
            os.symlink(target, name)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
            _remove(name)
            os.mknod(name, kind | 0o600, os.makedev(rmajor, rminor))
        else:
            raise UnpackError(f"{name}: unknown file type {kind:o} in the cpio archive")
        _skip_data(stream, size)
        os.lchown(name, uid, gid)
        if kind != stat.S_IFLNK:
            os.chmod(name, stat.S_IMODE(mode))
            if kind != stat.S_IFDIR:
                os.utime(name, (mtime, mtime))
    for name, mode in reversed(directories):
        os.chmod(name, stat.S_IMODE(mode))
    return counts


def _skip_data(stream: IO[bytes], size: int) -> None:
    if size:
        remaining = size
        while remaining:
            chunk = stream.read(min(CHUNK, remaining))
            if not chunk:
                raise UnpackError("the cpio archive ends inside an entry")
            remaining -= len(chunk)
        _skip_padding(stream, size)


# --- the helper ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unpack")
    parser.add_argument("--format", choices=("tar", "cpio"), required=True)
    parser.add_argument("--compression", choices=("none", *archive.TOOLS), required=True)
    parser.add_argument("image", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    unpackers = {"tar": unpack_tar, "cpio": unpack_cpio}
    try:
        with archive.open_image(args.image, args.compression) as stream:
            # From here on every path is inside the new root.
            os.chroot(args.dest)
            os.chdir("/")
            os.umask(0)
            counts = unpackers[args.format](stream)
    except Exception as error:  # one line for the agent, whatever went wrong
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
