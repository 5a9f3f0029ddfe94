"""Mounting a partition for an action, and putting files inside it without escaping it."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ramboot_agent.plan.context import ActionError, Context

log = logging.getLogger("ramboot.plan")

MOUNT_TIMEOUT = 60.0


def filesystem_type(ctx: Context, device: str) -> str:
    """What the superblock of `device` says ("" when nothing known)."""
    from ramboot_agent.plan.probe import probe  # noqa: PLC0415

    return probe(device).fstype


def _ensure_filesystem(ctx: Context, fstype: str) -> None:
    """Load the filesystem's module when the kernel lacks it (no autoloading here)."""
    try:
        known = Path("/proc/filesystems").read_text()
    except OSError:
        return
    if fstype and fstype not in known.split():
        with contextlib.suppress(ActionError):  # mount says it clearly if this did not help
            ctx.run_tool(["modprobe", "-q", fstype], timeout=30, check=False)


@contextlib.contextmanager
def mounted(ctx: Context, device: str, *, read_only: bool = False,
            fstype: str | None = None, replay: bool = True) -> Iterator[Path]:
    """`device` mounted on a private directory for the block; always unmounted after.

    `replay=False` (dry runs) keeps ext3/ext4 from replaying their journal,
    which even a read-only mount does: looking must change nothing.
    """
    fstype = fstype or filesystem_type(ctx, device)
    if not fstype:
        raise ActionError(f"{device} holds no filesystem blkid recognises")
    _ensure_filesystem(ctx, "vfat" if fstype in ("vfat", "msdos") else fstype)
    base = ctx.runtime_dir / "mnt"
    base.mkdir(parents=True, exist_ok=True)
    point = base / f"{Path(device).name}-{os.getpid()}"
    point.mkdir(exist_ok=True)
    options = "ro,nosuid,nodev,noexec" if read_only else "nosuid,nodev"
    if read_only and not replay and fstype in ("ext3", "ext4"):
        options += ",noload"
    try:
        ctx.run_tool(["mount", "-t", fstype, "-o", options, device, str(point)],
                     timeout=MOUNT_TIMEOUT)
    except BaseException:
        point.rmdir()
        raise
    try:
        yield point
    finally:
        try:
            ctx.run_tool(["umount", str(point)], timeout=MOUNT_TIMEOUT)
        except ActionError:
            log.error("%s: could not unmount %s", device, point)
            raise
        with contextlib.suppress(OSError):
            point.rmdir()


def _open_directory(root: Path, parts: list[str], *, create: bool, mode: int = 0o755) -> int:
    """A descriptor of root/parts, walked without following any symlink."""
    fd = os.open(root, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=fd)
            try:
                child = os.open(part, os.O_DIRECTORY | os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=fd)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ActionError(f"{part!r} in the path is a symlink or not a directory: "
                                      "refusing to leave the filesystem") from None
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def write_inside(root: Path, relative: str, data: bytes, *, mode: int, uid: int, gid: int,
                 make_parents: bool = True) -> None:
    """Write `root/relative` atomically (temp file, fsync, rename), never through a symlink."""
    parts = [part for part in relative.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ActionError(f"{relative!r}: not a plain path inside the filesystem")
    directory = _open_directory(root, parts[:-1], create=make_parents)
    name, temporary = parts[-1], f".{parts[-1]}.ramboot-{os.getpid()}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=directory)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
        os.fsync(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory)
        raise
    finally:
        os.close(directory)


def read_inside(root: Path, relative: str, *, limit: int = 1 << 20) -> bytes | None:
    """`root/relative` read without following symlinks out of `root` (None: absent)."""
    parts = [part for part in relative.split("/") if part and part != "."]
    if not parts or ".." in parts:
        return None
    try:
        directory = _open_directory(root, parts[:-1], create=False)
    except (OSError, ActionError):
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    except OSError:
        return None
    finally:
        os.close(directory)
    with os.fdopen(fd, "rb") as stream:
        return stream.read(limit)
