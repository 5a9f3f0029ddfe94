"""200 machines booting at once against one serve; serve killed with SIGKILL mid-storm.

Correctness only (every machine gets its own answers, every acknowledged event
is stored exactly once); the timings are bench/serve_storm.py's job.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.serve.harness import running_serve, write_keys
from tests.serve.loadgen import Stats, sims, storm, storm_inventory

pytestmark = pytest.mark.slow
MACHINES = 200


def stored(database: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(database) as connection:
        return [(str(b), int(s)) for b, s in
                connection.execute("SELECT boot_id, seq FROM events ORDER BY boot_id, seq")]


def test_storm_every_machine_its_own_target_every_event_once(tmp_path: Path) -> None:
    keys = write_keys(tmp_path)
    database = tmp_path / "serve.db"
    with running_serve(tmp_path / "s", f"sqlite://{database}", keys=keys,
                       inventory=storm_inventory(MACHINES)) as serve:
        machines = sims(MACHINES, keys[2])
        stats = asyncio.run(storm(machines, "127.0.0.1", serve.port, progress=5, seconds=240))
        assert stats.wrong == [] and stats.errors == []
        assert len(stats.boot) == 2 * MACHINES
        expected = {(boot, seq) for boot, count in stats.sent.items()
                    for seq in range(1, count + 1)}
        assert stats.acked == expected
        rows = stored(database)
        assert len(rows) == len(set(rows)) == len(expected)
        assert set(rows) == expected
        fleet = serve.admin("GET", "/api/fleet").json()
        assert fleet["counts"]["provisioned"] == MACHINES


def test_sigkill_mid_storm_loses_no_acknowledged_event(tmp_path: Path) -> None:
    keys = write_keys(tmp_path)
    database = tmp_path / "serve.db"
    inventory = storm_inventory(MACHINES)
    machines = sims(MACHINES, keys[2])
    stats = Stats()
    outcome: dict[str, object] = {}
    with running_serve(tmp_path / "s", f"sqlite://{database}", keys=keys,
                       inventory=inventory) as serve:
        port = serve.port

        def generate() -> None:
            try:
                asyncio.run(storm(machines, "127.0.0.1", port, progress=20, seconds=240,
                                  stats=stats))
            except Exception as error:  # reported by the main thread
                outcome["error"] = error

        thread = threading.Thread(target=generate, daemon=True)
        thread.start()
        deadline = time.monotonic() + 120
        while len(stats.acked) < 1500:
            assert time.monotonic() < deadline, f"only {len(stats.acked)} events acknowledged"
            time.sleep(0.01)
        serve.kill()  # SIGKILL: no shutdown, no flush
        acknowledged = set(stats.acked)
        on_disk = set(stored(database))
        lost = acknowledged - on_disk
        assert not lost, f"{len(lost)} acknowledged events are not in the database"
        print(f"killed after {len(acknowledged)} acknowledged events; {len(on_disk)} on disk")
    # serve comes back on the same port and database; the machines' retries go through.
    with running_serve(tmp_path / "s", f"sqlite://{database}", keys=keys, inventory=inventory,
                       port=port):
        thread.join(timeout=240)
        assert not thread.is_alive()
    assert "error" not in outcome, outcome
    assert stats.wrong == [] and stats.errors == []
    assert stats.retries > 0
    rows = stored(database)
    expected = {(boot, seq) for boot, count in stats.sent.items() for seq in range(1, count + 1)}
    assert len(rows) == len(set(rows)) == len(expected)  # none twice, none lost
    assert set(rows) == expected == stats.acked
