"""Project-wide pytest configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo() -> Path:
    """The root of this checkout."""
    return REPO


@pytest.fixture(scope="session")
def ramboot_cache() -> Path:
    """Where scripts/install-deps leaves downloaded peers (iPXE builds, Debian debs)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ramboot"
    return Path(os.environ.get("RAMBOOT_CACHE", default))
