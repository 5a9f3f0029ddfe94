"""Writes one rendered tree: fixed modes, no path escapes, deterministic bytes.

A large fleet means tens of thousands of entries, so the hot paths are plain
os calls relative to an open directory (`dir_fd`): no path is looked up twice,
nothing is stat'ed that this writer created itself, no file is fsync'ed (the
tree is staged and swapped in whole; durability on the servers is deploy's
job), and modes are only chmod'ed when the umask would have changed them.

The many small writes go to a few threads in batches: each metadata call
mostly waits on the filesystem (its journal, a busy disk), and they overlap
well. Directories are still created by the calling thread, in order; `finish()`
waits for every write and raises the first failure.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ramboot.errors import RambootError
from ramboot.treelinks import check_link

FILE_MODE = 0o644
DIR_MODE = 0o755
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_WORKERS = 8  # I/O-bound: overlapping waits, not CPU, is what helps
_BATCH = 256  # writes per task: amortises the hand-over between threads


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_relative(relative: str) -> list[str]:
    parts = relative.split("/")
    if relative.startswith("/") or ".." in parts or "" in parts or "\x00" in relative \
            or "." in parts:
        raise RambootError(f"refusing to write outside the output tree: {relative!r}")
    return parts


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class TreeWriter:
    """Creates entries under `root` (a new, empty directory); paths are checked to stay inside.

    Call `finish()` to complete every write, and `close()` in any case.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        mask = _current_umask()
        self._fix_file_mode = bool(mask & FILE_MODE)
        self._fix_dir_mode = bool(mask & DIR_MODE)
        self._dir_fds: dict[str, int] = {"": os.open(root, _DIRECTORY)}
        self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="ramboot-render")
        self._batch: list[Callable[[], None]] = []
        self._futures: list[Future[None]] = []
        # Every entry created, relative: the ownership record render leaves
        # behind (see tree.py), and what symlinks are resolved against.
        self.created: list[str] = []
        self._links: dict[str, str] = {}

    def _later(self, write: Callable[[], None]) -> None:
        self._batch.append(write)
        if len(self._batch) >= _BATCH:
            self._submit()

    def _submit(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self._futures.append(self._pool.submit(_run_all, batch))

    def finish(self) -> None:
        """Wait for every queued write; raise the first failure."""
        self._submit()
        futures, self._futures = self._futures, []
        for future in futures:
            future.result()

    def close(self) -> None:
        """Stop the writer threads (waiting for them) and close the directories."""
        self._batch.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for fd in self._dir_fds.values():
            os.close(fd)
        self._dir_fds.clear()

    def _dir_fd(self, directory: str) -> int:
        """An open descriptor of `directory` (relative, checked), created if missing."""
        fd = self._dir_fds.get(directory)
        if fd is None:
            parent, name = posixpath.split(directory)
            parent_fd = self._dir_fd(parent)
            self._mkdir(name, parent_fd)
            self.created.append(directory)
            fd = self._dir_fds[directory] = os.open(name, _DIRECTORY, dir_fd=parent_fd)
        return fd

    def _mkdir(self, name: str, parent_fd: int) -> None:
        os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
        if self._fix_dir_mode:  # mkdir's mode is filtered by the umask
            os.chmod(name, DIR_MODE, dir_fd=parent_fd, follow_symlinks=False)

    def _split(self, relative: str) -> tuple[int, str]:
        _check_relative(relative)
        directory, name = posixpath.split(relative)
        return self._dir_fd(directory), name

    def _create(self, name: str, content: bytes, dir_fd: int) -> None:
        fd = os.open(name, _CREATE, FILE_MODE, dir_fd=dir_fd)
        try:
            if self._fix_file_mode:  # the umask filtered os.open's mode
                os.fchmod(fd, FILE_MODE)
            _write_all(fd, content)
        finally:
            os.close(fd)

    def text(self, relative: str, content: str) -> None:
        dir_fd, name = self._split(relative)
        self.created.append(relative)
        data = content.encode("utf-8")
        self._later(lambda: self._create(name, data, dir_fd))

    def copy(self, relative: str, source: Path) -> None:
        # A handful of files (images, firmware): the simple path, with its sendfile().
        self._split(relative)
        self.created.append(relative)
        target = f"{self.root}/{relative}"
        shutil.copyfile(source, target)
        os.chmod(target, FILE_MODE)  # noqa: PTH101 - copyfile's mode follows the umask

    def copy_tree(self, relative: str, source: Path, inside: Path) -> None:
        """Copy a directory of plain files (e.g. the firmware's overlays/), sorted.

        Every name must be printable (it becomes a served path) and every
        file, once resolved, must lie inside `inside` (the --images directory).
        """
        top = inside.resolve()
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source).as_posix()
            if not (rel.isascii() and rel.isprintable()):
                raise RambootError(f"{path}: refusing a file name with control or non-ASCII "
                                   "characters")
            real = path.resolve()
            if not real.is_relative_to(top):
                raise RambootError(f"{path}: symlink leads outside {inside} (to {real})")
            if real.is_dir():
                continue
            if not real.is_file():
                raise RambootError(f"{path}: not a regular file")
            self.copy(f"{relative}/{rel}", path)

    def symlink(self, relative: str, points_to: str) -> None:
        """A relative symlink; `points_to` must resolve inside the tree."""
        dir_fd, name = self._split(relative)
        self._check_link(relative, points_to)
        self.created.append(relative)
        os.symlink(points_to, name, dir_fd=dir_fd)

    def populate(
        self, directory: str, files: Mapping[str, str], links: Mapping[str, str]
    ) -> None:
        """Create `directory` (new) holding `files` (name: text) and `links` (name: target).

        One mkdir, one directory open and then only name-relative calls: this
        is what each of thousands of per-board directories costs. The
        directory's descriptor is closed again (there may be more boards than
        the process may hold descriptors).
        """
        _check_relative(directory)
        for name, points_to in links.items():
            self._check_link(f"{directory}/{_plain_name(name)}", points_to)
        self.created.append(directory)
        self.created += (f"{directory}/{name}" for name in [*files, *links])
        encoded = [(_plain_name(name), text.encode("utf-8")) for name, text in files.items()]
        symlinks = list(links.items())
        parent, base = posixpath.split(directory)
        parent_fd = self._dir_fd(parent)

        def write() -> None:
            self._mkdir(base, parent_fd)
            fd = os.open(base, _DIRECTORY, dir_fd=parent_fd)
            try:
                for name, data in encoded:
                    self._create(name, data, fd)
                for name, points_to in symlinks:
                    os.symlink(points_to, name, dir_fd=fd)
            finally:
                os.close(fd)

        self._later(write)

    def _check_link(self, relative: str, points_to: str) -> None:
        """Decided on the resolved path, through the links made so far, within
        the link's top-level directory (what a boot server serves as its root)."""
        self._links[relative] = points_to
        try:
            check_link(self._links, relative, "")
        except RambootError:
            del self._links[relative]
            raise RambootError(
                f"refusing a symlink leaving the tree: {relative} -> {points_to}"
            ) from None

    def ensure_dir(self, relative: str) -> None:
        _check_relative(relative)
        self._dir_fd(relative)


def _run_all(writes: list[Callable[[], None]]) -> None:
    for write in writes:
        write()


def _plain_name(name: str) -> str:
    if not name or "/" in name or name in {".", ".."} or "\x00" in name:
        raise RambootError(f"refusing a file name that is not a plain name: {name!r}")
    return name
