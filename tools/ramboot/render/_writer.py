"""Writes one rendered tree: fixed modes, no path escapes, deterministic bytes."""

from __future__ import annotations

import os
import posixpath
import shutil
from pathlib import Path

from ramboot.errors import RambootError

FILE_MODE = 0o644
DIR_MODE = 0o755


class TreeWriter:
    """Creates files under `root`; every path is relative and checked to stay inside."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: set[Path] = set()

    def _target(self, relative: str) -> str:
        parts = relative.split("/")
        if relative.startswith("/") or ".." in parts or "" in parts or "\x00" in relative:
            raise RambootError(f"refusing to write outside the output tree: {relative!r}")
        if len(parts) > 1:
            self._mkdirs(self.root / posixpath.dirname(relative))
        return f"{self.root}/{relative}"

    def _mkdirs(self, directory: Path) -> None:
        missing = []
        while directory not in self._dirs and directory != self.root:
            missing.append(directory)
            directory = directory.parent
        for path in reversed(missing):
            if not path.is_dir():
                path.mkdir(mode=DIR_MODE)
                path.chmod(DIR_MODE)  # mkdir's mode is filtered by the umask
            self._dirs.add(path)

    def text(self, relative: str, content: str) -> None:
        # os-level calls: this runs tens of thousands of times for a large fleet.
        fd = os.open(self._target(relative), os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # the umask filtered os.open's mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode("utf-8"))

    def copy(self, relative: str, source: Path) -> None:
        target = self._target(relative)
        shutil.copyfile(source, target)
        os.chmod(target, FILE_MODE)  # noqa: PTH101 - str paths are the fast path here

    def copy_tree(self, relative: str, source: Path) -> None:
        """Copy a directory of plain files (e.g. the firmware's overlays/), sorted."""
        for path in sorted(source.rglob("*")):
            if path.is_file() and not path.is_symlink():
                rel = path.relative_to(source).as_posix()
                self.copy(f"{relative}/{rel}", path)

    def symlink(self, relative: str, points_to: str) -> None:
        """A relative symlink; `points_to` must resolve inside the tree."""
        target = self._target(relative)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(relative), points_to))
        if points_to.startswith("/") or resolved.startswith(".."):
            raise RambootError(f"refusing a symlink leaving the tree: {relative} -> {points_to}")
        os.symlink(points_to, target)  # noqa: PTH211 - str paths are the fast path here

    def ensure_dir(self, relative: str) -> None:
        self._mkdirs(self.root / relative)
