"""`ramboot check` against a real Buildroot tree (BUILDROOT_DIR)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ramboot.check.buildroot import BuildrootKconfig
from tests.check.conftest import GOOD_DEFCONFIG, REPO, make_external

pytestmark = pytest.mark.buildroot

Write = Callable[..., Path]


def messages(tree: BuildrootKconfig, path: Path) -> list[str]:
    return [p.format(relative_to=path.parent) for p in tree.check(path).problems]


def line_of(text: str, symbol: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(symbol + "="))


def test_fixture_defconfig_passes(fixture_tree: BuildrootKconfig, fixture_external: Path) -> None:
    result = fixture_tree.check(fixture_external / "configs" / "good_defconfig")
    assert result.problems == []
    assert result.values["BR2_PACKAGE_RAMBOOT_AGENT"] == "y"


def test_misspelled_symbol(fixture_tree: BuildrootKconfig, write_defconfig: Write) -> None:
    text = GOOD_DEFCONFIG + "BR2_PACKAGE_PYTHON3_SSSL=y\n"
    path = write_defconfig(text)
    assert messages(fixture_tree, path) == [
        f"variant_defconfig:{line_of(text, 'BR2_PACKAGE_PYTHON3_SSSL')}: "
        f"BR2_PACKAGE_PYTHON3_SSSL: unknown symbol (not in Buildroot {fixture_tree.version})"
    ]


def test_package_for_another_architecture(
    fixture_tree: BuildrootKconfig, write_defconfig: Write
) -> None:
    text = GOOD_DEFCONFIG + "BR2_PACKAGE_RPI_FIRMWARE=y\n"
    path = write_defconfig(text)
    assert messages(fixture_tree, path) == [
        f"variant_defconfig:{line_of(text, 'BR2_PACKAGE_RPI_FIRMWARE')}: "
        "BR2_PACKAGE_RPI_FIRMWARE: requested y, actual n "
        "(unmet dependency: BR2_arm || BR2_aarch64)"
    ]


def test_python_module_without_python(
    fixture_tree: BuildrootKconfig, write_defconfig: Write
) -> None:
    text = GOOD_DEFCONFIG.replace("BR2_PACKAGE_PYTHON3=y\n", "") + "BR2_PACKAGE_PYTHON3_SSL=y\n"
    path = write_defconfig(text)
    found = messages(fixture_tree, path)
    assert (
        f"variant_defconfig:{line_of(text, 'BR2_PACKAGE_PYTHON3_SSL')}: BR2_PACKAGE_PYTHON3_SSL: "
        "requested y, actual n (unmet dependency: BR2_PACKAGE_PYTHON3)"
    ) in found
    # The agent needs python3 too, and is required: both say so.
    assert (
        f"variant_defconfig:{line_of(text, 'BR2_PACKAGE_RAMBOOT_AGENT')}: "
        "BR2_PACKAGE_RAMBOOT_AGENT: requested y, actual n (unmet dependency: BR2_PACKAGE_PYTHON3)"
    ) in found
    assert len(found) == 2


def test_legacy_symbol(
    fixture_tree: BuildrootKconfig, buildroot_dir: Path, write_defconfig: Write
) -> None:
    legacy = (buildroot_dir / "Config.in.legacy").read_text()
    match = re.search(r'^config (BR2_PACKAGE_\w+)\n\tbool "([^"]+)"\n\tselect BR2_LEGACY$',
                      legacy, re.MULTILINE)
    assert match, "no legacy package symbol found in Config.in.legacy"
    symbol, prompt = match.groups()
    text = GOOD_DEFCONFIG + f"{symbol}=y\n"
    found = messages(fixture_tree, write_defconfig(text))
    assert found[0] == (
        f"variant_defconfig:{line_of(text, symbol)}: {symbol}: "
        f"legacy symbol, removed from Buildroot: {prompt}"
    )


def test_choice_member_cannot_be_switched_off(
    fixture_tree: BuildrootKconfig, write_defconfig: Write
) -> None:
    text = GOOD_DEFCONFIG + "# BR2_SHARED_LIBS is not set\n"
    assert messages(fixture_tree, write_defconfig(text)) == [
        f"variant_defconfig:{len(text.splitlines())}: BR2_SHARED_LIBS: requested n, actual y "
        "(a choice always has one member set: set another member to y instead)"
    ]


def test_duplicate_assignment(fixture_tree: BuildrootKconfig, write_defconfig: Write) -> None:
    text = GOOD_DEFCONFIG + "BR2_PACKAGE_PYTHON3=y\n"
    found = messages(fixture_tree, write_defconfig(text))
    last = len(text.splitlines())
    assert found == [
        f"variant_defconfig:{last}: BR2_PACKAGE_PYTHON3: assigned again "
        f"(first at line {line_of(GOOD_DEFCONFIG, 'BR2_PACKAGE_PYTHON3')}); the last value wins"
    ]


def test_round_trip_reports_a_line_savedefconfig_drops(
    fixture_tree: BuildrootKconfig, write_defconfig: Write
) -> None:
    # Shared libraries are Buildroot's default: the line is dead weight.
    text = GOOD_DEFCONFIG + "BR2_SHARED_LIBS=y\n"
    assert messages(fixture_tree, write_defconfig(text)) == [
        f"variant_defconfig:{line_of(text, 'BR2_SHARED_LIBS')}: BR2_SHARED_LIBS: "
        "redundant: savedefconfig drops this line (the value is the default)"
    ]


def test_required_options(fixture_tree: BuildrootKconfig, write_defconfig: Write) -> None:
    text = (
        GOOD_DEFCONFIG.replace("BR2_PACKAGE_RAMBOOT_AGENT=y\n", "")
        .replace("BR2_TARGET_ROOTFS_CPIO_ZSTD=y\n", "BR2_TARGET_ROOTFS_CPIO_XZ=y\n")
        .replace("$(BR2_EXTERNAL_RAMBOOT_PATH)/overlay", "board/overlay")
    )
    found = messages(fixture_tree, write_defconfig(text))
    assert found == [
        "variant_defconfig: BR2_PACKAGE_RAMBOOT_AGENT: required by ramboot: must be y, is n",
        "variant_defconfig: BR2_TARGET_ROOTFS_CPIO_ZSTD: required by ramboot: must be y, is n",
        f"variant_defconfig:{line_of(text, 'BR2_ROOTFS_OVERLAY')}: BR2_ROOTFS_OVERLAY: "
        'required by ramboot: must list "$(BR2_EXTERNAL_RAMBOOT_PATH)/overlay"',
    ]


def test_command_prints_like_a_compiler_and_fails(
    buildroot_dir: Path, fixture_external: Path, tmp_path: Path
) -> None:
    bad = fixture_external / "configs" / "bad_defconfig"
    bad.write_text(GOOD_DEFCONFIG + "BR2_FOO=y\n")
    try:
        result = subprocess.run(
            [sys.executable, "-c", "from ramboot.cli import main; main()", "check",
             "--buildroot", str(buildroot_dir)],
            cwd=fixture_external, capture_output=True, text=True, timeout=120, check=False,
        )
    finally:
        bad.unlink()
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    version = BuildrootKconfig.version_of(buildroot_dir)
    assert lines[0] == (
        f"configs/bad_defconfig:{len(GOOD_DEFCONFIG.splitlines()) + 1}: BR2_FOO: "
        f"unknown symbol (not in Buildroot {version})"
    )
    assert lines[-1] == "ramboot check: 2 defconfig(s) checked, 1 error(s), 0 warning(s): FAILED"


def _repo_defconfigs() -> list[Path]:
    return sorted((REPO / "configs").glob("*_defconfig"))


@pytest.mark.parametrize("defconfig", _repo_defconfigs(), ids=lambda p: p.name)
def test_repo_defconfig_passes(repo_tree: BuildrootKconfig, defconfig: Path) -> None:
    result = repo_tree.check(defconfig)
    assert [p.format(REPO) for p in result.problems] == []
    wanted = ["BR2_PACKAGE_PYTHON3", "BR2_PACKAGE_KEXEC", "BR2_PACKAGE_RAMBOOT_AGENT"]
    if result.values["BR2_x86_64"] == "y":
        wanted.append("BR2_PACKAGE_IPXE")
    if result.values["BR2_aarch64"] == "y":
        wanted.append("BR2_PACKAGE_RPI_FIRMWARE")
    assert {name: result.values.get(name) for name in wanted} == dict.fromkeys(wanted, "y")


def test_undefined_symbol_in_the_externals_kconfig(
    buildroot_dir: Path, tmp_path: Path
) -> None:
    external = make_external(tmp_path / "external")
    package = external / "package" / "ramboot-agent" / "Config.in"
    package.write_text(package.read_text() + "\tselect BR2_PACKAGE_PYTHON_REQUESTZ\n")
    tree = BuildrootKconfig(buildroot_dir, external)
    assert [p.format(external) for p in tree.kconfig_problems()] == [
        "package/ramboot-agent/Config.in:1: BR2_PACKAGE_PYTHON_REQUESTZ: "
        "referenced, but no Kconfig defines it"
    ]


def test_repo_kconfig_defines_what_it_uses(repo_tree: BuildrootKconfig) -> None:
    assert [p.format(REPO) for p in repo_tree.kconfig_problems()] == []
