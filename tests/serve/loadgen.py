"""Simulated machines booting at once against one serve, speaking its protocol.

Each machine, on its own keep-alive HTTP/1.1 connection: stage 1 (as iPXE
asks it), its first events, stage 2 (as the agent asks it), then the events
of a plan. It checks that each stage answer is its own host's, and keeps
every event it got a 2xx for. Like the agent, it retries an event whose
answer did not come (connection refused or reset) with a short back-off,
until `deadline`. A tiny client on asyncio streams, so the generator costs
little of the CPU it shares with serve.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ramboot.tokens import host_token

PLAN_EVENTS = ("script-fetched", "plan-start", "action-start")
TAIL_EVENTS = ("action-done", "plan-done")


@dataclass(frozen=True)
class Sim:
    host: str
    mac: str
    token: str
    boot_id: str


@dataclass
class Stats:
    boot: list[float] = field(default_factory=list)
    event: list[float] = field(default_factory=list)
    acked: set[tuple[str, int]] = field(default_factory=set)
    sent: dict[str, int] = field(default_factory=dict)  # boot_id -> events it meant to send
    wrong: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retries: int = 0
    started: float = 0.0
    finished: float = 0.0


def sims(count: int, secret: bytes, prefix: str = "m") -> list[Sim]:
    names = [f"{prefix}{index:04d}" for index in range(count)]
    return [Sim(name, storm_mac(index), host_token(secret, name), str(uuid.uuid4()))
            for index, name in enumerate(names)]


def storm_mac(index: int) -> str:
    return f"52:54:01:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:{index & 255:02x}"


def storm_inventory(count: int, prefix: str = "m") -> str:
    parts = ['[servers]\ntftp = "192.0.2.1"\nhttp_base = "http://192.0.2.1:8080"\n'
             '[network]\nsubnet = "192.0.2.0/24"\npool = ["192.0.2.100", "192.0.2.199"]\n'
             '[profiles.second]\nkind = "kexec"\nkernel = "x86_64/bzImage"\n'
             'initrds = ["http://192.0.2.1:8080/second/second-stage.cpio.gz"]\n']
    for index in range(count):
        parts.append(f'[[hosts]]\nname = "{prefix}{index:04d}"\nfamily = "x86_64"\n'
                     f'macs = ["{storm_mac(index)}"]\nprofile = "second"\n')
    return "\n".join(parts)


def answer_of(host: str, stage: str) -> bytes:
    """What names `host` in its stage 1 script (targets.py's template) or stage 2 plan."""
    if not stage:
        return f"# ramboot host '{host}' (x86_64), stage 1".encode()
    return f'"description": "{host}: '.encode()


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, token: str,
                      body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Authorization: Bearer {token}\r\nUser-Agent: loadgen\r\n")
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        try:
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionResetError("closed")
            status = int(status_line.split()[1])
            length = 0
            while True:
                line = await self.reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            return status, await self.reader.readexactly(length)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def event_bytes(sim: Sim, name: str, seq: int, **details: object) -> bytes:
    return json.dumps({"event": name, "boot_id": sim.boot_id, "seq": seq,
                       "monotonic": round(seq * 0.1, 3), "time": "2026-11-22T13:30:24.123Z",
                       "identity": {"mac": sim.mac, "buildarch": "x86_64"},
                       "details": details}).encode()


async def _with_retry(stats: Stats, deadline: float, call: Callable[[], object]) -> object:
    delay = 0.05
    while True:
        try:
            return await call()  # type: ignore[misc]
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
            if time.monotonic() > deadline:
                stats.errors.append(f"gave up: {type(error).__name__}: {error}")
                raise
            stats.retries += 1
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)


class RoundRobin:
    """One connection per serve replica; each request goes to the next one."""

    def __init__(self, host: str, ports: list[int]) -> None:
        self.connections = [Connection(host, port) for port in ports]
        self.turn = 0

    async def request(self, method: str, path: str, token: str,
                      body: bytes = b"") -> tuple[int, bytes]:
        connection = self.connections[self.turn % len(self.connections)]
        self.turn += 1
        return await connection.request(method, path, token, body)

    def close(self) -> None:
        for connection in self.connections:
            connection.close()


async def machine(sim: Sim, host: str, ports: list[int], stats: Stats, *, progress: int,
                  deadline: float, start: asyncio.Event, pace: float = 0.0) -> None:
    connection = RoundRobin(host, ports)
    names = ["kernel-started", "agent-started", "network-up", *PLAN_EVENTS,
             *(["progress"] * progress), *TAIL_EVENTS]
    stats.sent[sim.boot_id] = len(names)
    await start.wait()
    rng = random.Random(sim.boot_id)
    try:
        async def ask(stage: str) -> None:
            began = time.perf_counter()
            query = f"/boot?mac={sim.mac}&buildarch=x86_64{stage}"
            status, body = await connection.request("GET", query, sim.token)
            stats.boot.append(time.perf_counter() - began)
            if status != 200 or answer_of(sim.host, stage) not in body:
                stats.wrong.append(f"{sim.host}{stage}: HTTP {status} {body[:80]!r}")

        await _with_retry(stats, deadline, lambda: ask(""))
        for seq, name in enumerate(names, start=1):
            if seq == 4:
                await _with_retry(stats, deadline, lambda: ask("&stage=agent"))
            body = event_bytes(sim, name, seq, index=0, bytes=seq * 1000)

            async def post(body: bytes = body, seq: int = seq) -> None:
                began = time.perf_counter()
                status, reply = await connection.request("POST", "/events", sim.token, body)
                if status in (200, 201):
                    stats.event.append(time.perf_counter() - began)
                    stats.acked.add((sim.boot_id, seq))
                elif status >= 500:
                    raise ValueError(f"HTTP {status}")  # retried, as the agent does
                else:
                    stats.wrong.append(f"{sim.host} seq {seq}: HTTP {status} {reply[:80]!r}")

            await _with_retry(stats, deadline, post)
            if pace:  # an agent reports as things happen, not back to back
                await asyncio.sleep(rng.uniform(0.5 * pace, 1.5 * pace))
    except Exception as error:
        stats.errors.append(f"{sim.host}: {type(error).__name__}: {error}")
    finally:
        connection.close()


async def storm(machines: list[Sim], host: str, port: int | list[int], *, progress: int = 10,
                seconds: float = 120.0, stats: Stats | None = None, pace: float = 0.0) -> Stats:
    """Boot every machine at once; returns when all are done or `seconds` passed.

    pace=0: each machine sends its events back to back (a throughput test);
    pace=S: about S seconds between one machine's events, as real agents report.
    Several ports: each machine sends its requests to the replicas in turn.
    """
    ports = port if isinstance(port, list) else [port]
    stats = stats or Stats()
    start = asyncio.Event()
    deadline = time.monotonic() + seconds
    tasks = [asyncio.create_task(machine(sim, host, ports, stats, progress=progress,
                                         deadline=deadline, start=start, pace=pace))
             for sim in machines]
    await asyncio.sleep(0)
    stats.started = time.perf_counter()
    start.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 30)
    stats.finished = time.perf_counter()
    return stats


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
