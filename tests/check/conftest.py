"""Fixtures for `ramboot check`: real Buildroot/kernel trees, small fixture externals."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ramboot.check.buildroot import BuildrootKconfig
from ramboot.check.kernel import KernelKconfigs

REPO = Path(__file__).resolve().parents[2]
LINUX_SOURCE = Path(
    os.environ.get(
        "RAMBOOT_LINUX_SOURCE",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "ramboot" / "linux-source-6.12",
    )
)

# A minimal valid ramboot defconfig, exactly as `make savedefconfig` keeps it.
GOOD_DEFCONFIG = """\
BR2_x86_64=y
BR2_TOOLCHAIN_EXTERNAL=y
BR2_TOOLCHAIN_EXTERNAL_BOOTLIN_X86_64_GLIBC_STABLE=y
BR2_ROOTFS_OVERLAY="$(BR2_EXTERNAL_RAMBOOT_PATH)/overlay"
BR2_PACKAGE_PYTHON3=y
BR2_TARGET_ROOTFS_CPIO=y
BR2_TARGET_ROOTFS_CPIO_ZSTD=y
# BR2_TARGET_ROOTFS_TAR is not set
BR2_PACKAGE_RAMBOOT_AGENT=y
"""


def make_external(root: Path) -> Path:
    """A tiny BR2_EXTERNAL named RAMBOOT with one package, like this tree's glue."""
    (root / "configs").mkdir(parents=True)
    package = root / "package" / "ramboot-agent"
    package.mkdir(parents=True)
    (root / "external.desc").write_text("name: RAMBOOT\ndesc: check fixture\n")
    (root / "external.mk").write_text(
        "include $(sort $(wildcard $(BR2_EXTERNAL_RAMBOOT_PATH)/package/*/*.mk))\n"
    )
    (root / "Config.in").write_text(
        'source "$BR2_EXTERNAL_RAMBOOT_PATH/package/ramboot-agent/Config.in"\n'
    )
    (package / "Config.in").write_text(
        'config BR2_PACKAGE_RAMBOOT_AGENT\n\tbool "ramboot-agent"\n'
        "\tdepends on BR2_PACKAGE_PYTHON3\n"
    )
    (root / "configs" / "good_defconfig").write_text(GOOD_DEFCONFIG)
    return root


@pytest.fixture(scope="session")
def buildroot_dir() -> Path:
    value = os.environ.get("BUILDROOT_DIR")
    if not value:
        pytest.skip("BUILDROOT_DIR is not set: no Buildroot tree to check against")
    return Path(value)


@pytest.fixture(scope="session")
def fixture_external(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_external(tmp_path_factory.mktemp("external"))


@pytest.fixture(scope="session")
def fixture_tree(buildroot_dir: Path, fixture_external: Path) -> BuildrootKconfig:
    """Buildroot's Kconfig parsed once with the fixture external."""
    return BuildrootKconfig(buildroot_dir, fixture_external)


@pytest.fixture(scope="session")
def repo_tree(buildroot_dir: Path) -> BuildrootKconfig:
    if not (REPO / "external.desc").is_file():
        pytest.skip("this checkout has no external.desc yet")
    return BuildrootKconfig(buildroot_dir, REPO)


@pytest.fixture
def write_defconfig(tmp_path: Path) -> Callable[[str], Path]:
    """Write a variant of the good defconfig; returns its path."""

    def write(text: str, name: str = "variant_defconfig") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def kernels() -> KernelKconfigs:
    if not (LINUX_SOURCE / "Kconfig").is_file():
        pytest.skip(f"no kernel tree at {LINUX_SOURCE} (scripts/install-deps unpacks it)")
    return KernelKconfigs(LINUX_SOURCE)
