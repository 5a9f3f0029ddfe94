"""Manifests: the path, size, mode and sha256 of every entry of a tree.

A tree of a large fleet holds tens of thousands of entries, so paths stay
plain strings (no pathlib objects per entry) and the manifest is serialised
once per deploy, one entry per line through json's C encoder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ramboot.errors import RambootError
from ramboot.treelinks import check_links

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_VERSION = 1
MODES = (0o644, 0o755)
_CHUNK = 1 << 20
_HASH_THREADS = 4
_HASH_BATCH = 256
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"size", "mode", "sha256", "target"}


@dataclass(frozen=True, slots=True)
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


def file_sha256(path: Path | str, on_bytes: Callable[[int], None] | None = None) -> str:
    """sha256 of the regular file at `path` (a symlink there is refused, not followed)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        digest = hashlib.sha256()
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
        return digest.hexdigest()
    finally:
        os.close(fd)


def check_name(name: str, where: str) -> None:
    """An entry name that can be published and listed: printable, valid text."""
    if not name.isprintable() or "\\" in name:
        raise RambootError(f"{where}: {name!r}: file names with control characters, "
                           "backslashes or undecodable bytes are not published")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise RambootError(f"{where}: {name!r}: file name is not valid UTF-8") from None


def scan_tree(tree: Path) -> Manifest:
    """Describe every regular file and symlink below `tree` (not hashing yet).

    Symlinks are decided on the path they resolve to (`treelinks`): each must
    stay inside its top-level directory, however many in-tree links it passes.
    """
    if not tree.is_dir():
        raise RambootError(f"{tree}: not a directory")
    manifest: Manifest = {}
    links: dict[str, str] = {}
    pending = [(str(tree), "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except OSError as error:
            raise RambootError(f"{directory}: cannot read: {error.strerror}") from None
        for entry in entries:
            relative = prefix + entry.name
            check_name(entry.name, f"{tree}/{prefix}".rstrip("/"))
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(entry.path)  # noqa: PTH115 - str paths, fast
                check_name(target, f"{tree}/{relative}")
                links[relative] = target
                manifest[relative] = Entry(target=target)
            elif stat.S_ISDIR(info.st_mode):
                pending.append((entry.path, relative + "/"))
            elif stat.S_ISREG(info.st_mode):
                mode = 0o755 if info.st_mode & 0o111 else 0o644
                manifest[relative] = Entry(size=info.st_size, mode=mode)
            else:
                raise RambootError(f"{entry.path}: not a regular file, directory or symlink")
    check_links(links, f"{tree}/")
    manifest.pop(MANIFEST_NAME, None)
    return dict(sorted(manifest.items()))


def hash_tree(
    tree: Path, manifest: Manifest, on_bytes: Callable[[int], None] | None = None
) -> Manifest:
    """Return `manifest` with the sha256 of every file filled in."""
    base = f"{tree}/"
    files = [path for path, entry in manifest.items() if not entry.is_link]

    def digest(batch: list[str]) -> list[str]:
        return [file_sha256(base + path) for path in batch]

    # Open/read/close of many small files mostly waits in the kernel (and
    # hashlib drops the GIL for large buffers): a few threads overlap that,
    # in batches (one task per file would cost more than the hashing).
    batches = [files[i:i + _HASH_BATCH] for i in range(0, len(files), _HASH_BATCH)]
    with ThreadPoolExecutor(_HASH_THREADS, thread_name_prefix="ramboot-hash") as pool:
        results = [digest for batch in pool.map(digest, batches) for digest in batch]
    digests = dict(zip(files, results, strict=True))
    hashed: Manifest = {}
    for path, entry in manifest.items():
        if entry.is_link:
            hashed[path] = entry
        else:
            hashed[path] = Entry(size=entry.size, mode=entry.mode, sha256=digests[path])
            if on_bytes:
                on_bytes(entry.size)
    return hashed


def _fields(entry: Entry) -> dict[str, Any]:
    if entry.is_link:
        return {"size": 0, "target": entry.target}
    fields: dict[str, Any] = {"mode": entry.mode, "sha256": entry.sha256, "size": entry.size}
    return fields


def dumps(manifest: Manifest) -> str:
    """The manifest as JSON: one entry per line, keys sorted, same bytes for the same tree."""
    encode = json.JSONEncoder(sort_keys=True, separators=(", ", ": ")).encode
    lines = ",\n".join(
        f"  {encode(path)}: {encode(_fields(entry))}" for path, entry in sorted(manifest.items())
    )
    body = f"{{\n{lines}\n }}" if manifest else "{}"
    return f'{{"files": {body},\n "version": {MANIFEST_VERSION}}}\n'


def digest_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_digest(manifest: Manifest) -> str:
    return digest_text(dumps(manifest))


def check_path(name: object) -> str:
    """A manifest path: relative, plain components, nothing that leaves the tree."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"path {name!r} is not a non-empty string")
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts) \
            or not name.isprintable() or name == MANIFEST_NAME:
        raise ValueError(f"path {name!r} is not a plain relative path inside the tree")
    return name


def _entry(fields: object) -> Entry:
    if not isinstance(fields, dict) or not set(fields) <= _FIELDS:
        raise ValueError(f"entry {fields!r} is not an object of {', '.join(sorted(_FIELDS))}")
    size, mode = fields.get("size", 0), fields.get("mode", 0o644)
    sha256, target = fields.get("sha256", ""), fields.get("target", "")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"size {size!r} is not a byte count")
    if not isinstance(target, str) or not isinstance(sha256, str):
        raise ValueError("sha256 and target must be strings")
    if target:
        if sha256 or "mode" in fields or "\x00" in target:
            raise ValueError(f"symlink to {target!r} with a sha256, a mode or a NUL")
        return Entry(target=target)
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"sha256 {sha256!r} is not 64 lower-case hex digits")
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not 0o644 or 0o755")
    return Entry(size=size, mode=mode, sha256=sha256)


def parse(text: str, where: str) -> Manifest:
    """Validate a manifest document; RambootError names `where` and the fault."""
    try:
        document = json.loads(text)
        if not isinstance(document, dict) or set(document) != {"files", "version"}:
            raise ValueError("not an object of 'files' and 'version'")
        if document["version"] != MANIFEST_VERSION:
            raise ValueError(f"unsupported version {document['version']!r}")
        files = document["files"]
        if not isinstance(files, dict):
            raise ValueError("'files' is not an object")
        manifest: Manifest = {}
        for name, fields in files.items():
            try:
                manifest[check_path(name)] = _entry(fields)
            except ValueError as error:
                raise ValueError(f"{name!r}: {error}") from None
    except RecursionError:
        raise RambootError(f"{where}: corrupt manifest: nested too deeply") from None
    except ValueError as error:
        raise RambootError(f"{where}: corrupt manifest: {error}") from None
    return manifest


def load(path: Path) -> Manifest:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RambootError(f"{path}: cannot read the manifest: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise RambootError(f"{path}: corrupt manifest: not UTF-8 ({error.reason})") from None
    return parse(text, str(path))
