"""Fixtures for the tests of the Buildroot external tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ramboot.check.buildroot import BuildrootKconfig

REPO = Path(__file__).resolve().parents[2]
BOARDS = ("rpi4", "x86_64")


@pytest.fixture(scope="session")
def buildroot_dir() -> Path:
    """The Buildroot 2026.02.x tree named by BUILDROOT_DIR; skip without one."""
    value = os.environ.get("BUILDROOT_DIR")
    if not value:
        pytest.skip("BUILDROOT_DIR is not set (a Buildroot 2026.02.x tree)")
    path = Path(value)
    if not (path / "Makefile").is_file() or not (path / "Config.in").is_file():
        pytest.fail(f"BUILDROOT_DIR={value} is not a Buildroot tree")
    return path


def defconfig_lines(board: str) -> list[str]:
    """The non-empty lines of configs/<board>_pxe_defconfig."""
    text = (REPO / "configs" / f"{board}_pxe_defconfig").read_text()
    return [line for line in text.splitlines() if line.strip()]


def defconfig_values(board: str) -> dict[str, str]:
    """Symbol -> value (quotes kept) of the `BR2_x=value` lines of a defconfig."""
    values = {}
    for line in defconfig_lines(board):
        if line.startswith("BR2_"):
            symbol, _, value = line.partition("=")
            values[symbol] = value
    return values


def expand_external(value: str) -> Path:
    """A defconfig path value with $(BR2_EXTERNAL_RAMBOOT_PATH) resolved."""
    return Path(value.strip('"').replace("$(BR2_EXTERNAL_RAMBOOT_PATH)", str(REPO)))


@pytest.fixture(scope="session")
def buildroot_kconfig(buildroot_dir: Path) -> BuildrootKconfig:
    """Buildroot's Kconfig with this external, parsed once (kconfiglib, a few seconds)."""
    return BuildrootKconfig(buildroot_dir, REPO)


def resolved_config(tree: BuildrootKconfig, board: str, *also_y: str) -> dict[str, str]:
    """Every symbol's value once configs/<board>_pxe_defconfig (plus `also_y`) is loaded:
    what `make <board>_pxe_defconfig` writes to .config, selects and defaults included."""
    tree.kconf.load_config(str(REPO / "configs" / f"{board}_pxe_defconfig"), replace=True)
    for name in also_y:
        symbol = tree.kconf.syms[name]
        symbol.set_value("y")
        assert symbol.str_value == "y", f"{name}=y does not stick on {board}"
    return {sym.name: sym.str_value for sym in tree.kconf.unique_defined_syms}
