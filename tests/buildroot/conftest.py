"""Fixtures for the tests of the Buildroot external tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
