"""Manifests: the path, size, mode and sha256 of every entry of a tree."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ramboot.errors import RambootError

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_VERSION = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One file (sha256 set) or symlink (target set) of a tree."""

    size: int = 0
    mode: int = 0o644
    sha256: str = ""
    target: str = ""

    @property
    def is_link(self) -> bool:
        return bool(self.target)


Manifest = dict[str, Entry]


def file_sha256(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest()


def _check_link(tree: Path, link: Path, target: str) -> None:
    """Refuse symlinks that are absolute or lead outside the tree: a boot
    server must never be tricked into serving files from elsewhere."""
    if Path(target).is_absolute():
        raise RambootError(f"{link}: symlink to absolute path {target!r} is not allowed")
    resolved = os.path.normpath(link.parent.relative_to(tree) / target)
    if resolved == ".." or resolved.startswith(("../", "/")):
        raise RambootError(f"{link}: symlink {target!r} leads outside {tree}")


def scan_tree(tree: Path) -> Manifest:
    """Describe every regular file and symlink below `tree` (not hashing yet)."""
    if not tree.is_dir():
        raise RambootError(f"{tree}: not a directory")
    manifest: Manifest = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            path = base / name
            relative = path.relative_to(tree).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = str(path.readlink())
                _check_link(tree, path, target)
                manifest[relative] = Entry(target=target)
            elif stat.S_ISREG(info.st_mode):
                mode = 0o755 if info.st_mode & 0o111 else 0o644
                manifest[relative] = Entry(size=info.st_size, mode=mode)
            else:
                raise RambootError(f"{path}: not a regular file or symlink")
    manifest.pop(MANIFEST_NAME, None)
    return manifest


def hash_tree(
    tree: Path, manifest: Manifest, on_bytes: Callable[[int], None] | None = None
) -> Manifest:
    """Return `manifest` with the sha256 of every file filled in."""
    return {
        path: entry if entry.is_link else Entry(
            size=entry.size, mode=entry.mode, sha256=file_sha256(tree / path, on_bytes)
        )
        for path, entry in manifest.items()
    }


def manifest_digest(manifest: Manifest) -> str:
    return hashlib.sha256(dumps(manifest).encode()).hexdigest()


def dumps(manifest: Manifest) -> str:
    files = {path: {k: v for k, v in asdict(entry).items() if v or k == "size"}
             for path, entry in sorted(manifest.items())}
    document = {"version": MANIFEST_VERSION, "files": files}
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def load(path: Path) -> Manifest:
    try:
        document = json.loads(path.read_text())
        if document.get("version") != MANIFEST_VERSION:
            raise RambootError(f"{path}: unsupported manifest version {document.get('version')!r}")
        return {name: Entry(**fields) for name, fields in document["files"].items()}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RambootError(f"{path}: unreadable manifest: {error}") from error
