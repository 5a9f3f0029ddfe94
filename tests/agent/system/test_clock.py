"""The clock: NTP servers from the command line or DHCP, SNTP against real chronyd, and
the build-date floor. Setting the clock itself is left to the QEMU test (the clock of
this machine is shared); here `_set` only records what would be set."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent import clock
from ramboot_agent.cmdline import parse_cmdline
from ramboot_agent.errors import ConfigError
from ramboot_agent.ipxe import Interpreter
from ramboot_agent.ipxe.settings import build_settings
from tests.lib.ntp import start_chronyd

NTP_PORT = 12323


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: str, **details: Any) -> None:
        self.seen.append((event, details))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    set_to: list[float] = []
    monkeypatch.setattr(clock, "_set", set_to.append)
    return set_to


@pytest.fixture
def chronyd(tmp_path: Path) -> Iterator[None]:
    process = start_chronyd(tmp_path, bind="127.0.0.1", port=NTP_PORT)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_ntp_servers_from_the_command_line_win_over_option_42() -> None:
    option_42 = socket.inet_aton("192.0.2.1") + socket.inet_aton("192.0.2.2")
    assert clock.servers_from((), option_42) == ["192.0.2.1", "192.0.2.2"]
    assert clock.servers_from(("ntp.example.net",), option_42) == ["ntp.example.net"]
    assert clock.servers_from((), None) == []
    assert clock.servers_from((), b"\x01\x02\x03") == []  # not a whole address


def test_ramboot_ntp_is_parsed_and_checked() -> None:
    settings = parse_cmdline("ramboot.ntp=0.pool.ntp.org,192.0.2.9")
    assert settings.ntp_servers == ("0.pool.ntp.org", "192.0.2.9")
    with pytest.raises(ConfigError, match=r"ramboot.ntp='a b,;x': 'a b' is not a host name"):
        parse_cmdline('ramboot.ntp="a b,;x"')


def test_build_date(tmp_path: Path) -> None:
    (tmp_path / "build-date").write_text("1764600000\n")
    assert clock.build_date(tmp_path / "build-date") == 1764600000
    assert clock.build_date(tmp_path / "missing") is None
    (tmp_path / "bad").write_text("yesterday")
    assert clock.build_date(tmp_path / "bad") is None


def test_sntp_against_chronyd_gives_this_machines_time(chronyd: None) -> None:
    offset = clock.sntp_offset("127.0.0.1", port=NTP_PORT)
    assert abs(offset) < 1.0


def test_set_clock_by_sntp_reports_the_server(chronyd: None, recorded: list[float]) -> None:
    events = Events()
    assert clock.set_clock(["127.0.0.1"], events, use_ntpd=False, port=NTP_PORT) == "sntp"
    assert len(recorded) == 1 and abs(recorded[0] - time.time()) < 2
    name, details = events.seen[-1]
    assert name == "clock" and details["method"] == "sntp" and details["server"] == "127.0.0.1"


def test_no_server_answers_then_the_clock_moves_to_the_build_date(
        tmp_path: Path, recorded: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "SNTP_TIMEOUT", 0.2)
    floor = int(time.time()) + 86400 * 365  # "built" in the future: this clock is behind it
    (tmp_path / "build-date").write_text(f"{floor}\n")
    events = Events()
    method = clock.set_clock(["127.0.0.1"], events, build_date_file=tmp_path / "build-date",
                             use_ntpd=False, port=NTP_PORT)  # nobody listens there
    assert method == "build-date" and recorded == [float(floor)]
    details = events.seen[-1][1]
    assert details["build_date"] == floor and details["failures"][0].startswith("127.0.0.1:")


def test_a_clock_after_the_build_date_is_left_alone(tmp_path: Path,
                                                    recorded: list[float]) -> None:
    (tmp_path / "build-date").write_text("1000000000\n")
    events = Events()
    assert clock.set_clock([], events, build_date_file=tmp_path / "build-date") == "unchanged"
    assert recorded == []
    assert events.seen[-1][1]["method"] == "unchanged"


def test_busybox_ntpd_is_used_when_present(tmp_path: Path, recorded: list[float],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(clock, "_ntpd", calls.append)  # None: ntpd set the clock
    events = Events()
    assert clock.set_clock(["192.0.2.1"], events, use_ntpd=True) == "ntpd"
    assert calls == ["192.0.2.1"] and recorded == []  # ntpd set the clock itself


def test_ipxes_ntp_command_sets_the_clock_as_the_agent_does(
        chronyd: None, recorded: list[float], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    # `ntp SERVER` in a script goes through clock.set_from: SNTP here (no ntpd on
    # this host's PATH), against real chronyd; a silent server fails the command.
    monkeypatch.setattr(clock, "NTPD", "ramboot-test-no-ntpd")
    monkeypatch.setattr(clock, "NTP_PORT", NTP_PORT)
    monkeypatch.setattr(clock, "SNTP_TIMEOUT", 0.2)
    events = Events()
    interpreter = Interpreter(build_settings({}, None, None), None, lambda _: None,  # type: ignore[arg-type]
                              events, io.StringIO(), download_dir=tmp_path)
    interpreter.run_text("#!ipxe\nntp 127.0.0.1\n", "file:///srv/test.ipxe")
    assert len(recorded) == 1 and abs(recorded[0] - time.time()) < 2
    assert events.seen[-1][0] == "clock-set" and events.seen[-1][1]["server"] == "127.0.0.1"

    out = io.StringIO()
    quiet = Interpreter(build_settings({}, None, None), None, lambda _: None,  # type: ignore[arg-type]
                        events, out, download_dir=tmp_path)
    quiet.run_text("#!ipxe\nntp 127.0.0.2 || echo failed: ${errno}\n", "file:///srv/test.ipxe")
    assert out.getvalue().startswith("failed: ") and len(recorded) == 1
