"""The release store: staging, switching, listing and pruning releases.

What a store may delete: only entries it names itself, `releases/<id>` (the
pattern below) when pruning and `releases/.staging-*` / `.current.new` left by
an interrupted run. Anything else in ROOT or releases/ is never touched.

Reusing live files (hardlinks) is decided on the live file itself, not on
the old manifest's word: before a live file is linked into a new release it
is checked to be a regular file of the manifest's size and mode and hashed
(once per inode); a file that differs (edited, damaged) is reported and the
new release gets a fresh copy from the source instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ramboot.deploy import faults
from ramboot.deploy.manifest import (
    MANIFEST_NAME,
    Entry,
    Manifest,
    digest_text,
    dumps,
    file_sha256,
    load,
)
from ramboot.errors import RambootError

CURRENT = "current"
RELEASES = "releases"
STAGING_PREFIX = ".staging-"
RELEASE_ID = re.compile(r"(\d{4,})-\d{8}T\d{6}Z-[0-9a-f]{8}")
_CHUNK = 1 << 20
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def fsync_path(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def release_sequence(release: str) -> int:
    return int(release.split("-", 1)[0])


@dataclass
class StageReport:
    """What staging found: live files that no longer match their manifest."""

    damaged: list[str] = field(default_factory=list)


@dataclass
class ReleaseStore:
    root: Path

    @property
    def releases_dir(self) -> Path:
        return self.root / RELEASES

    @property
    def current_link(self) -> Path:
        return self.root / CURRENT

    def is_store(self) -> bool:
        return self.releases_dir.is_dir() or os.path.lexists(self.current_link)

    def require_store(self) -> None:
        """For commands that only work on an existing store: a typo'd --root is named."""
        if not self.root.is_dir():
            raise RambootError(f"{self.root}: no such directory (a typo in --root?)")
        if not self.is_store():
            raise RambootError(f"{self.root}: not a ramboot release store (no {RELEASES}/ "
                               "or current); check --root")

    def prepare(self) -> None:
        """For deploy: ROOT is a store, an empty directory, or new in an existing parent."""
        if self.root.is_symlink() and not self.root.is_dir():
            raise RambootError(f"{self.root}: --root is a dangling symlink")
        if not self.root.exists():
            if not self.root.parent.is_dir():
                raise RambootError(
                    f"{self.root}: its parent {self.root.parent} does not exist (a typo in "
                    "--root?); create it first"
                )
            return
        if not self.root.is_dir():
            raise RambootError(f"{self.root}: --root is not a directory")
        if not self.is_store() and any(p.name != ".lock" for p in self.root.iterdir()):
            raise RambootError(
                f"{self.root}: not a ramboot release store and not empty: refusing to "
                "publish into it (give a new or empty directory, or the store's own --root)"
            )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock: one deploy or rollback at a time."""
        try:
            self.root.mkdir(exist_ok=True)
            self.releases_dir.mkdir(exist_ok=True)
            lock = (self.root / ".lock").open("a")
        except OSError as error:
            raise RambootError(f"{self.root}: cannot open the store: {error.strerror}") from None
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RambootError(f"{self.root}: another deploy or rollback is running") from None
            yield

    def releases(self) -> list[str]:
        """Complete releases, oldest first: by sequence number, numerically."""
        if not self.releases_dir.is_dir():
            return []
        found = [
            entry.name for entry in os.scandir(self.releases_dir)
            if RELEASE_ID.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
            and os.path.isfile(f"{entry.path}/{MANIFEST_NAME}")  # noqa: PTH113 - str paths
        ]
        return sorted(found, key=lambda name: (release_sequence(name), name))

    def current(self) -> str | None:
        if not self.current_link.is_symlink():
            if self.current_link.exists():
                raise RambootError(
                    f"{self.current_link}: exists but is not a symlink; move it aside first"
                )
            return None
        target = os.readlink(self.current_link)  # noqa: PTH115 - a str is wanted
        name = target.removeprefix(f"{RELEASES}/")
        if not RELEASE_ID.fullmatch(name):
            raise RambootError(
                f"{self.current_link}: points at {target!r}, not at a release in {RELEASES}/"
            )
        return name

    def manifest(self, release: str) -> Manifest:
        return load(self.releases_dir / release / MANIFEST_NAME)

    def clean_staging(self) -> None:
        """Remove what an interrupted deploy left behind (never a live tree)."""
        for path in self.releases_dir.glob(f"{STAGING_PREFIX}*"):
            _make_writable(path)
            shutil.rmtree(path)
        with contextlib.suppress(FileNotFoundError):
            (self.root / f".{CURRENT}.new").unlink()

    def new_release_id(self, manifest_text: str) -> str:
        """`<sequence>-<UTC time>-<digest>`: ordered by sequence whatever the
        clock does, and says when and what at a glance."""
        sequence = max((release_sequence(r) for r in self.releases()), default=0) + 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return f"{sequence:04d}-{stamp}-{digest_text(manifest_text)[:8]}"

    def stage(
        self,
        source: Path,
        manifest: Manifest,
        release: str,
        *,
        live: Manifest | None = None,
        manifest_text: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> tuple[Path, StageReport]:
        """Build `release` from `source`, sharing files with the live release
        by hardlink where the content is identical; durable before return.
        On any failure (a full disk) the staging directory is removed."""
        staging = self.releases_dir / f"{STAGING_PREFIX}{release}"
        report = StageReport()
        try:
            staging.mkdir()
            staging.chmod(0o755)
            self._fill(staging, source, manifest, live or {}, report=report, on_bytes=on_bytes)
            text = manifest_text if manifest_text is not None else dumps(manifest)
            manifest_path = staging / MANIFEST_NAME
            with manifest_path.open("x", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            faults.checkpoint("staged-tree")
            final = self.releases_dir / release
            staging.rename(final)
            fsync_path(self.releases_dir)
        except OSError as error:
            _remove(staging)
            what = f" ({error.filename})" if error.filename else ""
            raise RambootError(
                f"{self.root}: cannot stage release {release}: {error.strerror}{what}; "
                "nothing was published and the live release is unchanged"
            ) from None
        faults.checkpoint("release-renamed")
        return final, report

    def _fill(
        self, staging: Path, source: Path, manifest: Manifest, live: Manifest, *,
        report: StageReport, on_bytes: Callable[[int], None] | None,
    ) -> None:
        current = self.current() if live else None
        reuse = _LiveFiles(self.releases_dir / current if current else None, live)
        reuse.prefetch(manifest)
        created: dict[str, int] = {}  # directory (relative) -> open descriptor
        root_fd = os.open(staging, _DIRECTORY)
        created[""] = root_fd
        copied: dict[tuple[str, int], str] = {}  # content -> first path in this release
        base = str(staging)
        source_base = f"{source}/"
        try:
            for path, entry in manifest.items():
                directory, _, name = path.rpartition("/")
                dir_fd = created.get(directory)
                if dir_fd is None:
                    dir_fd = _make_dirs(created, directory)
                if entry.is_link:
                    os.symlink(entry.target, name, dir_fd=dir_fd)
                elif (shared := copied.get((entry.sha256, entry.mode))) is not None:
                    os.link(f"{base}/{shared}", name, src_dir_fd=None, dst_dir_fd=dir_fd,
                            follow_symlinks=False)
                    if on_bytes:
                        on_bytes(entry.size)
                elif (live_path := reuse.matching(entry, report)) is not None:
                    os.link(live_path, name, dst_dir_fd=dir_fd, follow_symlinks=False)
                    copied[(entry.sha256, entry.mode)] = path
                    if on_bytes:
                        on_bytes(entry.size)
                else:
                    _copy_durably(source_base + path, name, dir_fd, entry, on_bytes)
                    copied[(entry.sha256, entry.mode)] = path
                faults.checkpoint("staged-file")
            # Deepest first, so each directory is durable before its parent names it.
            for directory in sorted(created, key=lambda d: d.count("/") + bool(d), reverse=True):
                os.fsync(created[directory])
        finally:
            for fd in created.values():
                os.close(fd)

    def check_space(self, manifest: Manifest, live: Manifest, manifest_text: str) -> None:
        """Refuse up front when the new release cannot fit (bytes or inodes)."""
        reusable = {(e.sha256, e.mode) for e in live.values() if not e.is_link}
        new_content: dict[tuple[str, int], int] = {}
        for entry in manifest.values():
            key = (entry.sha256, entry.mode)
            if not entry.is_link and key not in reusable:
                new_content[key] = entry.size
        try:
            fs = os.statvfs(self.releases_dir)
        except OSError as error:
            raise RambootError(f"{self.releases_dir}: {error.strerror}") from None
        block = fs.f_frsize or 4096
        needed = sum(-(-size // block) * block for size in new_content.values())
        needed += len(manifest_text.encode()) + block
        free = fs.f_bavail * fs.f_frsize
        directories = {path.rpartition("/")[0] for path in manifest}
        inodes = len(new_content) + len(directories) + 2 + sum(
            1 for entry in manifest.values() if entry.is_link)
        if needed > free:
            raise RambootError(
                f"{self.releases_dir}: not enough space for the new release: needs "
                f"{_mib(needed)}, {_mib(free)} free; prune with a smaller --keep or free space"
            )
        if fs.f_files and inodes > fs.f_favail:
            raise RambootError(
                f"{self.releases_dir}: not enough inodes for the new release: needs {inodes}, "
                f"{fs.f_favail} free"
            )

    def switch(self, release: str, *, verify: bool = True) -> None:
        """Point `current` at `release` with one atomic rename (after checking
        its manifest, unless this process has just written it)."""
        if not (self.releases_dir / release / MANIFEST_NAME).is_file():
            raise RambootError(f"{self.releases_dir / release}: no such complete release")
        if verify:
            self.manifest(release)  # a corrupt manifest is named before it goes live
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
            _remove(trash)
        return doomed


class _LiveFiles:
    """Files of the live release by content, each checked before it is shared."""

    def __init__(self, base: Path | None, live: Manifest) -> None:
        self.base = f"{base}/" if base is not None else ""
        self.by_content: dict[tuple[str, int], list[tuple[str, Entry]]] = {}
        if base is not None:
            for path, entry in live.items():
                if not entry.is_link:
                    self.by_content.setdefault((entry.sha256, entry.mode), []).append(
                        (path, entry))
        self._verified: dict[tuple[int, int], str] = {}  # (dev, inode) -> sha256

    def prefetch(self, wanted: Manifest) -> None:
        """Hash, a few threads at a time, the first live candidate of each wanted content."""
        paths = []
        for entry in wanted.values():
            candidates = self.by_content.get((entry.sha256, entry.mode))
            if not entry.is_link and candidates:
                paths.append(candidates[0][0])
        paths = sorted(set(paths))
        batches = [paths[i:i + 256] for i in range(0, len(paths), 256)]

        def verify(batch: list[str]) -> None:
            for path in batch:
                with contextlib.suppress(OSError):
                    info = os.lstat(self.base + path)
                    if stat.S_ISREG(info.st_mode):
                        self._verified[(info.st_dev, info.st_ino)] = file_sha256(self.base + path)

        with ThreadPoolExecutor(4, thread_name_prefix="ramboot-verify") as pool:
            list(pool.map(verify, batches))

    def matching(self, entry: Entry, report: StageReport) -> str | None:
        """A live file with `entry`'s content and mode, verified; None if there is none."""
        candidates = self.by_content.get((entry.sha256, entry.mode))
        while candidates:
            path, recorded = candidates[0]
            absolute = self.base + path
            if self._is_intact(absolute, recorded):
                return absolute
            report.damaged.append(path)
            candidates.pop(0)
        return None

    def _is_intact(self, path: str, recorded: Entry) -> bool:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_size != recorded.size \
                or stat.S_IMODE(info.st_mode) != recorded.mode & 0o555:
            return False
        key = (info.st_dev, info.st_ino)
        digest = self._verified.get(key)
        if digest is None:
            digest = self._verified[key] = file_sha256(path)
        return digest == recorded.sha256


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def _make_dirs(created: dict[str, int], directory: str) -> int:
    parent, _, name = directory.rpartition("/")
    parent_fd = created.get(parent)
    if parent_fd is None:
        parent_fd = _make_dirs(created, parent)
    os.mkdir(name, 0o755, dir_fd=parent_fd)
    os.chmod(name, 0o755, dir_fd=parent_fd, follow_symlinks=False)  # noqa: S103 - not umask
    fd = created[directory] = os.open(name, _DIRECTORY, dir_fd=parent_fd)
    return fd


def _copy_durably(
    source: str, name: str, dir_fd: int, entry: Entry, on_bytes: Callable[[int], None] | None
) -> None:
    # Releases are read-only so that a hardlinked file can never be edited in
    # place, which would silently change every release sharing it.
    reader = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(reader).st_size != entry.size:
            raise RambootError(f"{source}: changed while being deployed; deploy again")
        writer = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         entry.mode & 0o555, dir_fd=dir_fd)
        try:
            remaining = entry.size
            while remaining > 0:
                sent = os.sendfile(writer, reader, None, min(remaining, 1 << 30))
                if sent == 0:
                    raise OSError(errno.EIO, f"{source} shrank while being copied")
                remaining -= sent
                if on_bytes:
                    on_bytes(sent)
            os.fchmod(writer, entry.mode & 0o555)
            os.fsync(writer)
        finally:
            os.close(writer)
    finally:
        os.close(reader)


def _make_writable(tree: Path) -> None:
    for dirpath, _dirnames, _filenames in os.walk(tree):
        Path(dirpath).chmod(0o755)


def _remove(tree: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        _make_writable(tree)
        shutil.rmtree(tree)
