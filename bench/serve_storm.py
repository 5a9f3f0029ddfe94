#!/usr/bin/env python3
"""A boot storm against one `ramboot serve`: latency of both stages and of event ingestion.

Usage: .venv/bin/python bench/serve_storm.py [--machines 200] [--progress 40]
           [--database sqlite|postgresql|both]

N simulated machines (tests/serve/loadgen.py: one keep-alive connection each,
the protocol iPXE and the agent speak) boot at once: stage 1, three events,
stage 2, then a plan's events (`--progress` progress events each), either back
to back (the throughput test) or paced as agents report (`--pace`). Printed:
p50/p95/p99 of the boot endpoint and of event ingestion, events stored per
second, the database's group commits, and the load average before and after.
For comparison, the same connections fetch a small static file from serve's
own tree (the same server without the database and the inventory): the floor
any answer costs on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lib import postgres
from tests.serve.harness import running_serve, write_keys
from tests.serve.loadgen import Connection, percentile, sims, storm, storm_inventory


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc): what a request costs, whatever
    the other processes on a shared machine take."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


async def static_floor(port: int, clients: int, requests: int) -> list[float]:
    latencies: list[float] = []

    async def one() -> None:
        connection = Connection("127.0.0.1", port)
        for _ in range(requests):
            began = time.perf_counter()
            status, _ = await connection.request("GET", "/hello.txt", "-")
            assert status == 200
            latencies.append(time.perf_counter() - began)
        connection.close()

    await asyncio.gather(*(one() for _ in range(clients)))
    return latencies


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite://{workdir / 'serve.db'}"
    else:
        with postgres.cluster(port=54331) as url:
            yield url


def run(kind: str, machines: int, progress: int, pace: float) -> None:
    with tempfile.TemporaryDirectory(prefix="rb-storm-") as tmp:
        workdir = Path(tmp)
        tree = workdir / "tree"
        tree.mkdir()
        (tree / "hello.txt").write_text("#!ipxe\necho hello\n")
        (tree / "images" / "x86_64").mkdir(parents=True)  # the kexec target's kernel:
        (tree / "images" / "x86_64" / "bzImage").write_bytes(b"kernel\n")  # checked at load
        keys = write_keys(workdir)
        with database(kind, workdir) as url, running_serve(
                workdir / "s", url, keys=keys, inventory=storm_inventory(machines),
                args=("--tree", str(tree))) as serve:
            load_before = os.getloadavg()[0]
            cpu_before = cpu_seconds(serve.process.pid)
            stats = asyncio.run(storm(sims(machines, keys[2]), "127.0.0.1", serve.port,
                                      progress=progress, seconds=600, pace=pace))
            load_after = os.getloadavg()[0]
            serve_cpu = cpu_seconds(serve.process.pid) - cpu_before
            floor = asyncio.run(static_floor(serve.port, machines, 10))
            seconds = stats.finished - stats.started
            events = len(stats.event)
            assert not stats.wrong and not stats.errors, (stats.wrong[:3], stats.errors[:3])
            if kind == "sqlite":
                with sqlite3.connect(workdir / "serve.db") as connection:
                    rows = connection.execute("SELECT count(*) FROM events").fetchone()[0]
                assert rows == events, (rows, events)
        how = f"an event every ~{pace:g} s" if pace else "events back to back"
        print(f"## {kind}: {machines} machines at once, {progress} progress events each, {how}")
        print(f"load average (1 min) before {load_before:.2f}, after {load_after:.2f}")
        print(f"storm: {seconds:.2f} s, {len(stats.boot)} stage answers, {events} events "
              f"stored ({events / seconds:.0f} events/s, answers included: "
              f"{(events + len(stats.boot)) / seconds:.0f} requests/s), retries {stats.retries}")
        requests = events + len(stats.boot)
        print(f"serve CPU: {serve_cpu:.2f} s for {requests} requests = "
              f"{1e6 * serve_cpu / requests:.0f} us each (one free core: "
              f"~{requests / serve_cpu:.0f} requests/s)")
        for name, values in (("boot endpoint", stats.boot), ("event ingestion", stats.event),
                             ("static file (floor)", floor)):
            print(f"{name:20} p50 {ms(percentile(values, 0.5)):>9}  "
                  f"p95 {ms(percentile(values, 0.95)):>9}  p99 {ms(percentile(values, 0.99)):>9}"
                  f"  ({len(values)} requests)")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--progress", type=int, default=40)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pace", type=float, action="append",
                        help="seconds between one machine's events (repeatable; default: 0 "
                        "(back to back, the throughput test) and 0.25 (agents reporting))")
    args = parser.parse_args()
    kinds = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    for kind in kinds:
        for pace in args.pace or [0.0, 0.25]:
            run(kind, args.machines, args.progress, pace)


if __name__ == "__main__":
    main()
