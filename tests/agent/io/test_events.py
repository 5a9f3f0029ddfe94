"""Reporter against a real HTTP collector on 127.0.0.1."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent.events import Reporter, read_boot_id, utc_iso
from tests.agent.io.servers import Handler, Site, serve

IDENTITY = {"mac": "dc:a6:32:01:02:03", "serial": "abcd1234", "buildarch": "arm64"}


class Collector:
    """Receives events on /events; records bodies and content types."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.events: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.authorizations: list[str | None] = []
        self.reject_seq: set[int] = set()
        site.routes["/events"] = self.receive

    @property
    def url(self) -> str:
        return self.site.url("/events")

    def receive(self, handler: Handler) -> None:
        event = json.loads(handler.body())
        self.content_types.append(handler.headers["Content-Type"])
        self.authorizations.append(handler.headers.get("Authorization"))
        if event["seq"] in self.reject_seq:
            handler.send_bytes(b"bad event", status=400)
            return
        self.events.append(event)
        handler.send_bytes(b"", status=204)

    def seqs(self) -> list[int]:
        return [event["seq"] for event in self.events]


@pytest.fixture
def collector(site: Site) -> Collector:
    return Collector(site)


@pytest.fixture
def reporters() -> Iterator[list[Reporter]]:
    made: list[Reporter] = []
    yield made
    for reporter in made:
        reporter.close(0)


def reporter(made: list[Reporter], url: str | None, **kwargs: Any) -> Reporter:
    kwargs.setdefault("backoff", 0.05)
    kwargs.setdefault("max_backoff", 0.2)
    kwargs.setdefault("timeout", 2.0)
    made.append(Reporter(IDENTITY, url, **kwargs))
    return made[-1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_events_arrive_in_order_with_their_format(collector: Collector,
                                                  reporters: list[Reporter]) -> None:
    ticks = iter(float(n) for n in range(100, 200))
    sender = reporter(reporters, collector.url, clock=lambda: next(ticks),
                      wall_clock=lambda: 1795354224.123456)
    for n in range(20):
        sender.emit("fetch", url=f"http://192.0.2.1/{n}", bytes=n)
    assert sender.flush(10) is True
    assert collector.seqs() == list(range(1, 21))
    first = collector.events[0]
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert first == {
        "event": "fetch", "identity": IDENTITY, "boot_id": boot_id, "seq": 1,
        "monotonic": 100.0, "time": "2026-11-22T13:30:24.123Z",
        "details": {"url": "http://192.0.2.1/0", "bytes": 0},
    }
    assert {event["boot_id"] for event in collector.events} == {boot_id}
    assert set(collector.content_types) == {"application/json"}


def test_boot_id_is_given_or_read_or_made_up(tmp_path: Path,
                                             reporters: list[Reporter]) -> None:
    assert reporter(reporters, None, boot_id="b-1").boot_id == "b-1"
    missing = read_boot_id(tmp_path / "no-such-file")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", missing)
    assert read_boot_id(tmp_path / "no-such-file") != missing  # random, per reporter


def test_buffered_while_collector_is_down(reporters: list[Reporter]) -> None:
    port = free_port()
    sender = reporter(reporters, f"http://127.0.0.1:{port}/events")
    for name in ("kernel-started", "agent-started", "network-up"):
        sender.emit(name)
    time.sleep(0.5)  # several refused attempts
    assert sender.pending == 3
    with serve(port=port) as site:
        collector = Collector(site)
        assert sender.flush(10) is True
        sender.emit("script-fetched", url="http://192.0.2.1/boot.ipxe")
        assert sender.flush(10) is True
    assert [e["event"] for e in collector.events] == [
        "kernel-started", "agent-started", "network-up", "script-fetched"]
    assert collector.seqs() == [1, 2, 3, 4]


def test_url_set_later_sends_the_buffer(collector: Collector,
                                        reporters: list[Reporter]) -> None:
    sender = reporter(reporters, None)
    sender.emit("agent-started")
    sender.emit("network-up", ip="192.0.2.100")
    time.sleep(0.2)
    assert collector.events == [] and sender.pending == 2
    sender.set_url(collector.url)
    assert sender.flush(10) is True
    assert collector.seqs() == [1, 2]


def test_spool_limit_drops_the_oldest_and_counts(collector: Collector,
                                                 reporters: list[Reporter]) -> None:
    sender = reporter(reporters, None, spool_limit=5)
    for n in range(12):
        sender.emit("progress", n=n)
    assert sender.dropped == 7 and sender.pending == 5
    sender.set_url(collector.url)
    assert sender.flush(10) is True
    assert collector.seqs() == [8, 9, 10, 11, 12]
    assert {e["dropped"] for e in collector.events} == {7}
    assert len(sender.recent(100)) == 12  # history keeps everything


def test_rejected_event_does_not_block_the_rest(collector: Collector,
                                                reporters: list[Reporter]) -> None:
    collector.reject_seq = {2}
    sender = reporter(reporters, collector.url)
    for name in ("a", "b", "c"):
        sender.emit(name)
    assert sender.flush(10) is True
    assert collector.seqs() == [1, 3]


def test_close_is_bounded_when_the_collector_hangs(site: Site,
                                                   reporters: list[Reporter]) -> None:
    site.routes["/hang"] = lambda h: time.sleep(5)
    sender = reporter(reporters, site.url("/hang"), timeout=30.0)
    sender.emit("boot")
    started = time.monotonic()
    assert sender.close(1.0) is False
    assert time.monotonic() - started < 1.5
    sender.emit("after-close")  # recorded, never raises
    assert [e["event"] for e in sender.recent(5)] == ["boot", "after-close"]


def test_close_is_bounded_when_unreachable(reporters: list[Reporter]) -> None:
    sender = reporter(reporters, f"http://127.0.0.1:{free_port()}/events")
    sender.emit("boot")
    started = time.monotonic()
    assert sender.close(0.5) is False
    assert time.monotonic() - started < 1.0


def test_emit_never_raises(reporters: list[Reporter], caplog: pytest.LogCaptureFixture) -> None:
    sender = reporter(reporters, None)
    sender.set_url("ftp://192.0.2.1/events")  # refused, logged
    sender.emit("odd", path=object(), data=b"\x00\xff", nested={"set": {1, 2}})
    (event,) = sender.recent(1)
    assert event["details"]["path"].startswith("<object object")
    assert "unsupported URL scheme 'ftp' (http, https)" in caplog.text


def test_emit_does_not_wait_for_the_network(site: Site, reporters: list[Reporter]) -> None:
    site.routes["/hang"] = lambda h: time.sleep(2)
    sender = reporter(reporters, site.url("/hang"))
    started = time.monotonic()
    for n in range(50):
        sender.emit("progress", n=n)
    assert time.monotonic() - started < 0.5


def test_timeline_from_event_times(reporters: list[Reporter]) -> None:
    ticks = iter([1.5, 2.0, 4.25, 10.0])
    sender = reporter(reporters, None, clock=lambda: next(ticks), wall_clock=lambda: 0.0)
    for name in ("kernel-started", "network-up", "script-fetched", "kexec-load"):
        sender.emit(name)
    stages = sender.timeline()
    assert [(s["event"], s["since_start"], s["duration"]) for s in stages] == [
        ("kernel-started", 0.0, 0.5), ("network-up", 0.5, 2.25),
        ("script-fetched", 2.75, 5.75), ("kexec-load", 8.5, None)]
    assert stages[0]["time"] == "1970-01-01T00:00:00.000Z"
    text = sender.format_timeline().splitlines()
    assert re.fullmatch(r"\s+4\.250\s+\+\s+2\.750s\s+5\.750s\s+script-fetched", text[2])


def test_identity_updates_apply_to_later_events(collector: Collector,
                                                reporters: list[Reporter]) -> None:
    sender = reporter(reporters, collector.url)
    sender.emit("agent-started")
    sender.update_identity(ip="192.0.2.100")
    sender.emit("network-up")
    assert sender.flush(10)
    assert "ip" not in collector.events[0]["identity"]
    assert collector.events[1]["identity"]["ip"] == "192.0.2.100"


def test_token_is_a_bearer_unless_the_report_url_has_userinfo(
        collector: Collector, reporters: list[Reporter]) -> None:
    token = "0123456789abcdef0123456789abcdef"
    bearer = reporter(reporters, collector.url, token=token)
    bearer.emit("kernel-started")
    assert bearer.flush(10)
    # Credentials in the report URL are the collector's own: they win, as HTTP Basic.
    with_user = collector.url.replace("http://", "http://ramboot:s3cret@")
    basic = reporter(reporters, with_user, token=token)
    basic.emit("kernel-started")
    assert basic.flush(10)
    plain = reporter(reporters, collector.url)
    plain.emit("kernel-started")
    assert plain.flush(10)
    assert collector.authorizations == [f"Bearer {token}", "Basic cmFtYm9vdDpzM2NyZXQ=", None]
    # The token is a credential: never in an event.
    assert all(token not in json.dumps(event) for event in collector.events)


def test_utc_iso() -> None:
    assert utc_iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert utc_iso(1.9999) == "1970-01-01T00:00:01.999Z"
