"""Setting the clock before anything checks a certificate.

A Raspberry Pi has no RTC: it starts in 1970, when every certificate is "not
yet valid". After the network is up the agent asks NTP servers (those of
`ramboot.ntp=`, else DHCP option 42) with busybox `ntpd -q -n -p SERVER`;
where no ntpd exists it makes the same SNTP query itself (RFC 4330, one UDP
exchange, its own transmit time checked in the answer). Failing both, the
clock is moved forward to the image's build date (written at build time to
BUILD_DATE_FILE), never back. Each outcome is a `clock` event.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("ramboot.clock")

BUILD_DATE_FILE = Path(__file__).resolve().parents[1] / "build-date"  # /usr/lib/ramboot
OPTION_NTP_SERVERS = 42
NTPD = "ntpd"  # busybox's applet
NTPD_TIMEOUT = 15.0
SNTP_TIMEOUT = 2.0
SNTP_TRIES = 3
NTP_PORT = 123
NTP_EPOCH_OFFSET = 2208988800  # 1900-01-01 to 1970-01-01


class Reporter(Protocol):
    def emit(self, event: str, **details: Any) -> None: ...


class ClockError(Exception):
    pass


def build_date(path: Path = BUILD_DATE_FILE) -> int | None:
    """The image's build time (seconds since the epoch), when it carries one."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def servers_from(configured: Sequence[str], option_42: bytes | None) -> list[str]:
    """`ramboot.ntp=` wins; else the IPv4 addresses of DHCP option 42."""
    if configured:
        return list(configured)
    raw = option_42 or b""
    return [socket.inet_ntoa(raw[i:i + 4]) for i in range(0, len(raw) - len(raw) % 4, 4)]


def _ntp_time(raw: bytes, at: int) -> float:
    seconds, fraction = struct.unpack("!II", raw[at:at + 8])
    return float(seconds - NTP_EPOCH_OFFSET + fraction / 2**32)


def sntp_offset(server: str, *, timeout: float = SNTP_TIMEOUT, port: int = NTP_PORT) -> float:
    """Seconds to add to the clock, from one SNTP exchange with `server`."""
    infos = socket.getaddrinfo(server, port, socket.AF_INET, socket.SOCK_DGRAM)
    if not infos:
        raise ClockError(f"{server}: no address")
    address = infos[0][4]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sent = time.time()
        whole = int(sent) + NTP_EPOCH_OFFSET
        stamp = struct.pack("!II", whole & 0xFFFFFFFF, int((sent % 1) * 2**32))
        request = b"\x23" + b"\0" * 39 + stamp  # LI 0, version 4, mode 3 (client)
        sock.sendto(request, address)
        while True:
            reply, source = sock.recvfrom(512)
            if source[0] == address[0]:
                break
        received = time.time()
    if len(reply) < 48:
        raise ClockError(f"{server}: a {len(reply)}-byte answer is not NTP")
    leap, mode, stratum = reply[0] >> 6, reply[0] & 7, reply[1]
    if mode != 4 or leap == 3 or not 1 <= stratum <= 15:
        raise ClockError(f"{server}: unsynchronised or not a server (mode {mode}, "
                         f"stratum {stratum}, leap {leap})")
    if reply[24:32] != stamp:
        raise ClockError(f"{server}: the answer does not echo our request")
    server_received, server_sent = _ntp_time(reply, 32), _ntp_time(reply, 40)
    return ((server_received - sent) + (server_sent - received)) / 2


def _ntpd(server: str) -> str | None:
    """busybox ntpd once (-q) in the foreground (-n): None when it set the clock, else why not."""
    argv = [NTPD, "-q", "-n", "-p", server]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=NTPD_TIMEOUT,
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"no answer within {NTPD_TIMEOUT:g}s"
    except OSError as error:
        return error.strerror or str(error)
    if done.returncode == 0:
        return None
    return " ".join((done.stderr or done.stdout).split())[-200:] or \
        f"exit status {done.returncode}"


def _set(seconds: float) -> None:
    time.clock_settime(time.CLOCK_REALTIME, seconds)


def set_from(server: str, *, use_ntpd: bool | None = None,
             port: int | None = None) -> tuple[str, float | None]:
    """Set the clock from one server: by busybox ntpd where it exists, else by SNTP
    (SNTP_TRIES exchanges). The method and the SNTP offset; ClockError says why not."""
    if shutil.which(NTPD) is not None if use_ntpd is None else use_ntpd:
        failure = _ntpd(server)
        if failure is not None:
            raise ClockError(f"{server}: {failure}")
        return "ntpd", None
    reason = "no answer"
    for _ in range(SNTP_TRIES):
        try:
            offset = sntp_offset(server, port=port or NTP_PORT)
        except (OSError, ClockError) as error:
            reason = str(error) if isinstance(error, ClockError) else \
                (error.strerror or type(error).__name__)
            continue
        _set(time.time() + offset)
        return "sntp", offset
    raise ClockError(f"{server}: {reason}")


def set_clock(servers: Sequence[str], reporter: Reporter | None, *,
              build_date_file: Path = BUILD_DATE_FILE, use_ntpd: bool | None = None,
              port: int | None = None) -> str:
    """Set the clock from `servers`, else not earlier than the build date; the method used."""
    before = time.time()
    failures = []
    for server in servers:
        try:
            method, offset = set_from(server, use_ntpd=use_ntpd, port=port)
        except ClockError as error:
            failures.append(str(error))
            continue
        measured = {} if offset is None else {"offset": round(offset, 3)}
        return _report(reporter, method, before, server=server, **measured)
    floor = build_date(build_date_file)
    details: dict[str, Any] = {"failures": failures} if failures else {}
    if failures:
        log.warning("no NTP server answered: %s", "; ".join(failures))
    if floor is not None and time.time() < floor:
        _set(float(floor))
        return _report(reporter, "build-date", before, build_date=floor, **details)
    return _report(reporter, "unchanged", before, build_date=floor,
                   servers=list(servers), **details)


def _report(reporter: Reporter | None, method: str, before: float, **details: Any) -> str:
    after = time.time()
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(after))
    text = {"ntpd": "set by NTP", "sntp": "set by SNTP", "build-date":
            "no NTP answer: moved forward to the image's build date",
            "unchanged": "not set (no NTP server, and not before the build date)"}[method]
    log.info("clock %s: %s", text, shown)
    if reporter is not None:
        with contextlib.suppress(Exception):  # reporting never breaks the boot
            reporter.emit("clock", method=method, before=round(before, 3),
                          after=round(after, 3), **details)
    return method
