"""The release store: staging, switching, listing and pruning releases."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ramboot.deploy import faults
from ramboot.deploy.manifest import MANIFEST_NAME, Entry, Manifest, dumps, load, manifest_digest
from ramboot.errors import RambootError

CURRENT = "current"
RELEASES = "releases"
STAGING_PREFIX = ".staging-"
_CHUNK = 1 << 20


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class ReleaseStore:
    root: Path

    @property
    def releases_dir(self) -> Path:
        return self.root / RELEASES

    @property
    def current_link(self) -> Path:
        return self.root / CURRENT

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock: one deploy or rollback at a time."""
        self.releases_dir.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RambootError(f"{self.root}: another deploy or rollback is running") from None
            yield

    def releases(self) -> list[str]:
        """Complete releases, oldest first (ids sort by creation time)."""
        if not self.releases_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.releases_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_NAME).is_file()
        )

    def current(self) -> str | None:
        if not self.current_link.is_symlink():
            if self.current_link.exists():
                raise RambootError(
                    f"{self.current_link}: exists but is not a symlink; move it aside first"
                )
            return None
        return self.current_link.readlink().name

    def manifest(self, release: str) -> Manifest:
        return load(self.releases_dir / release / MANIFEST_NAME)

    def clean_staging(self) -> None:
        """Remove what an interrupted deploy left behind (never a live tree)."""
        for path in self.releases_dir.glob(f"{STAGING_PREFIX}*"):
            _make_writable(path)
            shutil.rmtree(path)
        with contextlib.suppress(FileNotFoundError):
            (self.root / f".{CURRENT}.new").unlink()

    def new_release_id(self, manifest: Manifest) -> str:
        """`<sequence>-<UTC time>-<digest>`: sorts in creation order whatever
        the clock does, and says when and what at a glance."""
        sequence = max((int(r.split("-", 1)[0]) for r in self.releases()), default=0) + 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return f"{sequence:04d}-{stamp}-{manifest_digest(manifest)[:8]}"

    def stage(
        self,
        source: Path,
        manifest: Manifest,
        release: str,
        on_bytes: Callable[[int], None] | None = None,
    ) -> Path:
        """Build `release` from `source`, sharing files with the live release
        by hardlink where the content is identical; durable before return."""
        staging = self.releases_dir / f"{STAGING_PREFIX}{release}"
        staging.mkdir()
        reusable = self._reusable_files()
        directories = {staging}
        for path, entry in sorted(manifest.items()):
            destination = staging / path
            for parent in reversed(destination.relative_to(staging).parents[:-1]):
                directories.add(staging / parent)
            destination.parent.mkdir(parents=True, exist_ok=True)
            if entry.is_link:
                destination.symlink_to(entry.target)
            elif (shared := reusable.get((entry.sha256, entry.mode))) is not None:
                os.link(shared, destination)
                if on_bytes:
                    on_bytes(entry.size)
            else:
                _copy_durably(source / path, destination, entry, on_bytes)
                reusable[(entry.sha256, entry.mode)] = destination
            faults.checkpoint("staged-file")
        (staging / MANIFEST_NAME).write_text(dumps(manifest))
        fsync_path(staging / MANIFEST_NAME)
        for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
            directory.chmod(0o755)
            fsync_path(directory)
        faults.checkpoint("staged-tree")
        final = self.releases_dir / release
        staging.rename(final)
        fsync_path(self.releases_dir)
        faults.checkpoint("release-renamed")
        return final

    def switch(self, release: str) -> None:
        """Point `current` at `release` with one atomic rename."""
        if not (self.releases_dir / release / MANIFEST_NAME).is_file():
            raise RambootError(f"{self.releases_dir / release}: no such complete release")
        new_link = self.root / f".{CURRENT}.new"
        with contextlib.suppress(FileNotFoundError):
            new_link.unlink()
        new_link.symlink_to(f"{RELEASES}/{release}")
        faults.checkpoint("link-created")
        new_link.rename(self.current_link)
        fsync_path(self.root)
        faults.checkpoint("switched")

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest releases beyond `keep`, never the live one."""
        live = self.current()
        releases = self.releases()
        doomed = [r for r in releases[: max(0, len(releases) - keep)] if r != live]
        for release in doomed:
            path = self.releases_dir / release
            # Rename first so a half-deleted release is never listed as complete.
            trash = self.releases_dir / f"{STAGING_PREFIX}deleted-{release}"
            path.rename(trash)
            _make_writable(trash)
            shutil.rmtree(trash)
        return doomed

    def _reusable_files(self) -> dict[tuple[str, int], Path]:
        """Files of the live release by content, for hardlinking."""
        live = self.current()
        if live is None:
            return {}
        base = self.releases_dir / live
        return {
            (entry.sha256, entry.mode): base / path
            for path, entry in self.manifest(live).items()
            if not entry.is_link and (base / path).is_file()
        }


def _copy_durably(
    source: Path, destination: Path, entry: Entry, on_bytes: Callable[[int], None] | None
) -> None:
    with source.open("rb") as reader, destination.open("xb") as writer:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            if on_bytes:
                on_bytes(len(chunk))
        writer.flush()
        os.fsync(writer.fileno())
    # Releases are read-only so that a hardlinked file can never be edited in
    # place, which would silently change every release sharing it.
    destination.chmod(entry.mode & 0o555)


def _make_writable(tree: Path) -> None:
    for dirpath, _dirnames, _filenames in os.walk(tree):
        Path(dirpath).chmod(0o755)
