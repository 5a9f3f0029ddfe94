"""Checks that run Buildroot's own tools (BUILDROOT_DIR), offline and fast."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import BOARDS, REPO, defconfig_lines

pytestmark = pytest.mark.buildroot

# The control's copy: the Buildroot glue and the overlay.
TREE_FILES = ("external.desc", "Config.in", "external.mk", "configs", "package", "board",
              "overlay", ".flake8")


def check_package_python() -> str:
    """A python that has check-package's modules (python-magic, flake8)."""
    for python in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(
            [python, "-c", "import magic, flake8"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return python
    pytest.skip("utils/check-package needs python3-magic and python3-flake8")


def tracked_files(root: Path) -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                            check=True).stdout.decode().split("\0")
    return sorted(name for name in listed if name and (root / name).is_file())


def check_package(buildroot: Path, root: Path,
                  files: list[str]) -> subprocess.CompletedProcess[str]:
    """utils/check-package in br2-external mode (-b): every file it knows a check for
    (Config.in, .mk, .hash, defconfigs, init scripts, shell and Python scripts) is checked."""
    return subprocess.run(
        [check_package_python(), str(buildroot / "utils/check-package"), "-b", *files],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_check_package_clean(buildroot_dir: Path) -> None:
    """Over every file of the checkout, the overlay's init and shell scripts included."""
    files = tracked_files(REPO)
    assert "overlay/etc/init.d/S10coldplug" in files
    result = check_package(buildroot_dir, REPO, files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 warnings generated" in result.stderr + result.stdout


def test_check_package_catches_a_defect(buildroot_dir: Path, tmp_path: Path) -> None:
    """Control: the same run on a copy with defects does report them, the overlay's too."""
    copy = tmp_path / "tree"
    for name in TREE_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, copy / name)
        else:
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, copy / name)
    mk = copy / "package/ipxe/ipxe.mk"
    mk.write_text(mk.read_text().replace("IPXE_INSTALL_IMAGES = YES", "IPXE_INSTALL_IMAGES = YES "))
    coldplug = copy / "overlay/etc/init.d/S10coldplug"
    coldplug.write_text(coldplug.read_text().replace('DAEMON="coldplug"', ""))
    files = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file())
    result = check_package(buildroot_dir, copy, files)
    output = result.stdout + result.stderr
    assert "package/ipxe/ipxe.mk" in output
    assert "overlay/etc/init.d/S10coldplug:0: DAEMON variable not defined" in output
    assert "0 warnings generated" not in output


@pytest.fixture(scope="module")
def kconfig_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One O= directory for every board: kconfig's host tools are built once."""
    return tmp_path_factory.mktemp("output")


@pytest.mark.slow  # savedefconfig parses every package's .mk: ~15 s per board
@pytest.mark.parametrize("board", BOARDS)
def test_defconfig_survives_savedefconfig(
    buildroot_dir: Path, kconfig_output: Path, tmp_path: Path, board: str
) -> None:
    """Every line of the defconfig is a live symbol with the value it asks for.

    Buildroot's kconfig drops unknown symbols and values whose dependencies
    are unmet; savedefconfig then no longer lists them. Offline: kconfig only.
    """
    out = kconfig_output
    saved = tmp_path / "saved_defconfig"
    make = ["make", "-s", "-C", str(buildroot_dir), f"O={out}", f"BR2_EXTERNAL={REPO}"]
    for target in ([f"{board}_pxe_defconfig"], ["savedefconfig", f"BR2_DEFCONFIG={saved}"]):
        result = subprocess.run(
            [*make, *target], capture_output=True, text=True, check=False, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
    wanted = set(defconfig_lines(board))
    kept = {line for line in saved.read_text().splitlines() if line.strip()}
    assert not wanted - kept, f"dropped by kconfig: {sorted(wanted - kept)}"
    assert not kept - wanted, f"not in configs/{board}_pxe_defconfig: {sorted(kept - wanted)}"


@pytest.mark.slow
def test_top_level_makefile_configures_a_board_out_of_tree(
    buildroot_dir: Path, tmp_path: Path
) -> None:
    """`make x86_64-defconfig` with BUILDROOT_DIR: Buildroot configured in OUTPUT/x86_64
    with this external; nothing is written into the Buildroot tree or the checkout."""
    result = subprocess.run(
        ["make", "-s", "-C", str(REPO), f"BUILDROOT_DIR={buildroot_dir}",
         f"OUTPUT={tmp_path}", "x86_64-defconfig"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = (tmp_path / "x86_64" / ".config").read_text().splitlines()
    for line in ("BR2_PACKAGE_RAMBOOT_AGENT=y", "BR2_PACKAGE_IPXE=y",
                 "BR2_TARGET_ROOTFS_CPIO_ZSTD=y", "BR2_PACKAGE_PYTHON3_SSL=y"):
        assert line in config
    external = (tmp_path / "x86_64" / ".br2-external.mk").read_text().splitlines()
    assert f"export BR2_EXTERNAL_RAMBOOT_PATH = {REPO}" in external
    assert not (buildroot_dir / ".config").exists(), "configured in the Buildroot tree"


def test_top_level_makefile_refuses_a_directory_that_is_not_buildroot(tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "-s", "-C", str(REPO), f"BUILDROOT_DIR={tmp_path}", f"OUTPUT={tmp_path}",
         "rpi4-defconfig"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode != 0
    assert f"BUILDROOT_DIR={tmp_path} is not a Buildroot tree" in result.stderr
