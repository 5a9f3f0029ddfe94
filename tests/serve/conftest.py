"""Fixtures of the serve tests: each runs against SQLite and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lib import postgres
from tests.serve.harness import Serve, running_serve


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[str]:
    with postgres.cluster(port=54329) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'serve.db'}"
    url: str = request.getfixturevalue("postgres_cluster")
    postgres.reset(url)
    return url


@pytest.fixture
def serve(tmp_path: Path, database_url: str) -> Iterator[Serve]:
    with running_serve(tmp_path / "serve", database_url) as running:
        yield running
