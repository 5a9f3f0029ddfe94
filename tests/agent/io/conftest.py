"""Fixtures shared by the agent I/O tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.io.servers import Pki, Site, make_pki, serve


@pytest.fixture
def site() -> Iterator[Site]:
    with serve() as running:
        yield running


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("openssl(1) is needed to make a test CA")
    return make_pki(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def sleeps() -> list[float]:
    """Back-off delays a Fetcher asked for (recorded, not slept)."""
    return []
