"""The offline image set holds this tree's overlay as Buildroot would lay it out.

No boot here: the archive is unpacked on the host and compared with the tree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.lib.cpio import decompressed
from tests.lib.images import BUILDER, REPO, offline_images

pytestmark = pytest.mark.slow
OVERLAY = REPO / "overlay"


def unpack(archive: Path, dest: Path) -> None:
    dest.mkdir()
    # dev/console is a device node: listed, not created.
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames", "-f", "dev/console"],
                   input=decompressed(archive.read_bytes()), cwd=dest, check=True)


def listing(archive: Path) -> list[str]:
    out = subprocess.run(["cpio", "-t", "--quiet"], input=decompressed(archive.read_bytes()),
                         capture_output=True, check=True).stdout
    return out.decode().split()


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_rootfs_is_skeleton_packages_and_overlay(arch: str, tmp_path: Path) -> None:
    images = offline_images(arch)
    root = tmp_path / "root"
    unpack(images / "rootfs.cpio.zst", root)
    assert "dev/console" in listing(images / "rootfs.cpio.zst")
    for path in OVERLAY.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            copy = root / path.relative_to(OVERLAY)
            assert copy.read_bytes() == path.read_bytes(), f"{copy} differs from the overlay"
            assert copy.stat().st_mode & 0o111 == path.stat().st_mode & 0o111, copy
    assert (root / "sbin/init").readlink() == Path("../bin/busybox")
    assert (root / "init").read_text().startswith("#!/bin/sh")
    for program in ("usr/bin/python3", "sbin/kexec", "sbin/udhcpc", "sbin/nbd-client"):
        assert (root / program).exists(), program
    assert (root / "etc/ssl/certs/ca-certificates.crt").read_text().count("BEGIN CERTIFICATE") > 100
    (modules,) = (root / "lib/modules").iterdir()
    deps = (modules / "modules.dep").read_text().splitlines()
    for module in ("virtio_net", "nbd", "nfsv4", "overlay", "squashfs"):
        assert any(line.split(":")[0].endswith(f"/{module}.ko") for line in deps), module
    # The agent is precompiled beside its sources; the stdlib is .pyc only.
    assert list((root / "usr/lib/ramboot/ramboot_agent/__pycache__").glob("daemon.*.pyc"))
    assert (root / "usr/lib/python3.11/json/__init__.pyc").exists()
    assert not (root / "usr/lib/python3.11/json/__init__.py").exists()


def test_second_stage_is_busybox_and_its_init(tmp_path: Path) -> None:
    names = listing(offline_images("x86_64") / "second-stage.cpio.gz")
    assert sorted(names) == ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "init", "proc"]


def test_up_to_date_set_is_not_rebuilt() -> None:
    images = offline_images("x86_64")
    before = (images / "manifest.json").stat().st_mtime_ns
    out = subprocess.run([str(BUILDER), "--arch", "x86_64"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == str(images)
    assert "building" not in out.stderr
    assert (images / "manifest.json").stat().st_mtime_ns == before
