"""Two serve replicas on one PostgreSQL: every machine's requests alternate between them."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import psycopg
import pytest

from tests.lib import postgres
from tests.serve.harness import running_serve, write_keys
from tests.serve.loadgen import sims, storm, storm_inventory

pytestmark = pytest.mark.slow
MACHINES = 100


def test_two_replicas_share_one_fleet(tmp_path: Path, postgres_cluster: str) -> None:
    postgres.reset(postgres_cluster)
    keys = write_keys(tmp_path)
    inventory = storm_inventory(MACHINES)
    with contextlib.ExitStack() as stack:
        replicas = [stack.enter_context(running_serve(tmp_path / f"r{n}", postgres_cluster,
                                                      keys=keys, inventory=inventory))
                    for n in range(2)]
        machines = sims(MACHINES, keys[2])
        stats = asyncio.run(storm(machines, "127.0.0.1", [r.port for r in replicas],
                                  progress=6, seconds=300))
        assert stats.wrong == [] and stats.errors == []
        expected = {(boot, seq) for boot, count in stats.sent.items()
                    for seq in range(1, count + 1)}
        assert stats.acked == expected
        with psycopg.connect(postgres_cluster) as connection:
            rows = connection.execute("SELECT boot_id, seq FROM events").fetchall()
            states = connection.execute(
                "SELECT state, provisioned, applied_seq FROM machines").fetchall()
        assert len(rows) == len(set(rows)) == len(expected)
        # Each machine's state saw every one of its events, whichever replica took it.
        assert len(states) == MACHINES
        assert {(state, bool(done)) for state, done, _ in states} == {("provisioned", True)}
        assert {seq for _, _, seq in states} == {max(stats.sent.values())}
        # Either replica shows the whole fleet.
        for replica in replicas:
            fleet = replica.admin("GET", "/api/fleet").json()
            assert fleet["counts"]["provisioned"] == MACHINES
