"""Consistency of the tree's own files, no Buildroot needed."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .conftest import BOARDS, REPO, defconfig_values, expand_external

FRAGMENT_LINE = re.compile(r"^(#.*|CONFIG_[A-Z0-9_]+=(y|m|\d+|\"[^\"]*\")|)$")
PATH_SYMBOLS = (
    "BR2_ROOTFS_OVERLAY",
    "BR2_ROOTFS_POST_BUILD_SCRIPT",
    "BR2_ROOTFS_POST_IMAGE_SCRIPT",
    "BR2_GLOBAL_PATCH_DIR",
    "BR2_PACKAGE_RPI_FIRMWARE_CONFIG_FILE",
    "BR2_PACKAGE_RPI_FIRMWARE_CMDLINE_FILE",
)


@pytest.mark.parametrize("board", BOARDS)
def test_defconfig_paths_exist(board: str) -> None:
    values = defconfig_values(board)
    paths = [values[s] for s in PATH_SYMBOLS if s in values]
    for fragments in ("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES",
                      "BR2_PACKAGE_BUSYBOX_CONFIG_FRAGMENT_FILES"):
        paths += values[fragments].strip('"').split()
    missing = [p for p in paths if not expand_external(p).exists()]
    assert not missing, f"{board}_pxe_defconfig names missing files: {missing}"


@pytest.mark.parametrize("board", BOARDS)
def test_defconfig_basics(board: str) -> None:
    values = defconfig_values(board)
    assert values["BR2_DOWNLOAD_FORCE_CHECK_HASHES"] == "y"
    assert values["BR2_TARGET_ROOTFS_CPIO"] == "y"
    assert values["BR2_TARGET_ROOTFS_CPIO_ZSTD"] == "y"
    assert values["BR2_PACKAGE_RAMBOOT_AGENT"] == "y"
    assert "BR2_TARGET_ROOTFS_EXT2" not in values
    assert values["BR2_ROOTFS_OVERLAY"] == '"$(BR2_EXTERNAL_RAMBOOT_PATH)/overlay"'


@pytest.mark.parametrize("board", BOARDS)
def test_kernel_tarball_has_a_hash(board: str) -> None:
    """Forced hash checking needs the kernel tarball in <patch dir>/linux/linux.hash."""
    values = defconfig_values(board)
    if "BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE" in values:
        version = values["BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE"].strip('"')
        tarball = f"linux-{version}.tar.xz"
    else:
        tarball = values["BR2_LINUX_KERNEL_CUSTOM_TARBALL_LOCATION"].strip('"').rsplit("/", 1)[1]
    hash_file = expand_external(values["BR2_GLOBAL_PATCH_DIR"]) / "linux" / "linux.hash"
    entries = [line.split() for line in hash_file.read_text().splitlines()]
    assert any(
        e[:1] == ["sha256"] and len(e) == 3 and len(e[1]) == 64 and e[2] == tarball for e in entries
    ), f"{hash_file} has no sha256 for {tarball}"


def test_ipxe_hash_names_the_pinned_tarball() -> None:
    mk = (REPO / "package/ipxe/ipxe.mk").read_text()
    version = re.search(r"^IPXE_VERSION = ([0-9a-f]{40})$", mk, re.MULTILINE)
    assert version, "IPXE_VERSION must be a full commit id"
    hashes = (REPO / "package/ipxe/ipxe.hash").read_text()
    assert f"  ipxe-{version.group(1)}.tar.gz\n" in hashes
    for license_file in ("COPYING", "COPYING.GPLv2", "COPYING.UBDL"):
        assert f"  {license_file}\n" in hashes


@pytest.mark.parametrize("fragment", sorted(REPO.glob("board/**/*.fragment")), ids=lambda p: p.name)
def test_fragment_syntax(fragment) -> None:
    bad = [
        f"{fragment.name}:{n}: {line}"
        for n, line in enumerate(fragment.read_text().splitlines(), 1)
        if not FRAGMENT_LINE.match(line)
    ]
    assert not bad, "not a kernel config line:\n" + "\n".join(bad)


def test_board_scripts_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    scripts = sorted(str(p) for p in REPO.glob("board/**/*.sh"))
    assert scripts
    result = subprocess.run(
        ["shellcheck", "-s", "sh", *scripts], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
