"""Getting files from Debian's archive, PyPI and the vendor directory."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from .table import SubstitutionError

DEBIAN_POOL = "http://deb.debian.org/debian/pool/"

# Source packages only (deb-src): the host's binary sources stay as they are.
# sid is pinned to 1 so that nothing is ever installed from it.
APT_SOURCES = Path("/etc/apt/sources.list.d/ramboot-offline-build.sources")
APT_SOURCES_TEXT = """\
# Written by ramboot's scripts/offline-build: Debian sources whose orig
# tarballs stand in for Buildroot's downloads (source packages only), and
# Debian's firmware packages (downloaded and unpacked, never installed).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-backports trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-backports
Components: non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
APT_PIN = Path("/etc/apt/preferences.d/ramboot-offline-build-sid")
APT_PIN_TEXT = """\
# Written by ramboot's scripts/offline-build: sid is for sources only.
Package: *
Pin: release n=sid
Pin-Priority: 1
"""


def sha256_of(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def find_vendor(top: Path) -> Path:
    """The shared/vendor directory beside the checkout or above it."""
    env = os.environ.get("RAMBOOT_VENDOR")
    if env:
        return Path(env)
    for parent in top.parents:
        candidate = parent / "shared" / "vendor"
        if (candidate / "SHA256SUMS").is_file():
            return candidate
    raise SubstitutionError(
        "no shared/vendor/SHA256SUMS above the checkout (set RAMBOOT_VENDOR or --vendor):"
        " the offline build needs the vendored Buildroot tarball"
    )


def vendor_file(vendor: Path, name: str) -> Path:
    """A vendored file, checked against the vendor directory's SHA256SUMS."""
    sums = {}
    for line in (vendor / "SHA256SUMS").read_text().splitlines():
        digest, _, listed = line.partition("  ")
        sums[listed.strip()] = digest
    path = vendor / name
    if name not in sums:
        raise SubstitutionError(f"{name} is not listed in {vendor}/SHA256SUMS")
    if not path.is_file():
        raise SubstitutionError(f"{path} is missing")
    if sha256_of(path) != sums[name]:
        raise SubstitutionError(f"{path} does not match {vendor}/SHA256SUMS")
    return path


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def ensure_apt_sources() -> None:
    """Add the deb-src entries once (as root); apt-get update when they change."""
    if APT_SOURCES.is_file() and APT_SOURCES.read_text() == APT_SOURCES_TEXT and (
        APT_PIN.is_file() and APT_PIN.read_text() == APT_PIN_TEXT
    ):
        return
    if os.geteuid() != 0:
        raise SubstitutionError(
            f"{APT_SOURCES} and {APT_PIN} are missing or out of date; run once as root"
            " (they add Debian's deb-src entries for bookworm, bookworm-backports, trixie"
            " and sid, sid pinned to priority 1)"
        )
    changed = _write_if_changed(APT_SOURCES, APT_SOURCES_TEXT)
    changed = _write_if_changed(APT_PIN, APT_PIN_TEXT) or changed
    if changed:
        run(["apt-get", "update", "-qq"], what="apt-get update")


def run(command: list[str], *, what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SubstitutionError(
            f"{what}: {' '.join(command)} failed ({result.returncode}):\n"
            + (result.stderr or result.stdout).strip()
        )


def verified(path: Path, sha256: str, what: str) -> Path:
    """PATH, if its sha256 is the one the table gives for WHAT."""
    actual = sha256_of(path)
    if actual != sha256:
        name = path.name.removesuffix(".part")
        raise SubstitutionError(f"{what}: {name} has sha256 {actual}, the table says {sha256}")
    return path


def debian_source_file(spec: str, filename: str, store: Path) -> Path:
    """One file of a Debian source package (apt-get source --download-only).

    apt checks each file against the signed Sources index. The archive here
    may lack a package's other files (its .dsc or Debian diff): the orig
    tarball is what counts.
    """
    target = store / filename
    if target.is_file():
        return target
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store) as tmp:
        result = subprocess.run(
            ["apt-get", "source", "--download-only", "-qq", spec],
            cwd=tmp, capture_output=True, text=True, check=False,
        )
        got = Path(tmp) / filename
        if not got.is_file():
            raise SubstitutionError(
                f"apt-get source --download-only {spec} did not give {filename}:\n"
                + result.stderr.strip()
            )
        got.replace(target)
    return target


def debian_pool_file(path: str, store: Path) -> Path:
    """A file from Debian's pool that the current index no longer lists."""
    target = store / Path(path).name
    if target.is_file():
        return target
    store.mkdir(parents=True, exist_ok=True)
    url = DEBIAN_POOL + path
    partial = target.with_suffix(target.suffix + ".part")
    try:
        # A fixed http:// URL of Debian's archive; the table pins the sha256.
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
            partial.write_bytes(response.read())
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise SubstitutionError(f"{url}: {error}") from error
    partial.replace(target)
    return target


def pypi_sdist(requirement: str, filename: str, store: Path) -> Path:
    """A source distribution from PyPI (pip download, no build)."""
    target = store / filename
    if target.is_file():
        return target
    store.mkdir(parents=True, exist_ok=True)
    run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
         "--dest", str(store), requirement],
        what=f"pip download {requirement}",
    )
    if not target.is_file():
        raise SubstitutionError(f"pip download {requirement} did not give {filename}")
    return target


def debian_binary(spec: str, store: Path) -> Path:
    """A Debian binary package (apt-get download SPEC): unpacked, never installed.

    Each spec gets its own directory, so a cached .deb is found again whatever
    its version.
    """
    where = store / spec.replace("/", "@").replace(":", "_").replace("=", "_")
    found = sorted(where.glob("*.deb"))
    if len(found) == 1:
        return found[0]
    shutil.rmtree(where, ignore_errors=True)
    partial = where.with_name(where.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    run(["apt-get", "download", "-qq", spec], what=f"apt-get download {spec}", cwd=partial)
    found = sorted(partial.glob("*.deb"))
    if len(found) != 1:
        raise SubstitutionError(f"apt-get download {spec} gave {len(found)} .deb files")
    partial.replace(where)
    return where / found[0].name


def require_host_packages(packages: list[str] | tuple[str, ...], what: str) -> None:
    """Fail naming the Debian packages WHAT needs that the host lacks."""
    missing = []
    for package in packages:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True, text=True, check=False,
        ).stdout
        if status != "install ok installed":
            missing.append(package)
    if missing:
        raise SubstitutionError(
            f"{what} needs the Debian package(s) {' '.join(missing)}: apt-get install them"
        )
