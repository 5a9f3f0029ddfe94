"""ICMP echo (ping) and bounded name resolution, standard library only.

As root the agent opens a raw ICMP socket; otherwise (run-script on a
workstation) an unprivileged "ping socket" (SOCK_DGRAM, net.ipv4.ping_group_range),
where the kernel fills in the identifier. Every wait is bounded.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

RESOLVE_TIMEOUT = 15.0
_ECHO: dict[int, tuple[int, int]] = {socket.AF_INET: (8, 0), socket.AF_INET6: (128, 129)}
_ECHO_REPLY: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 129}
IPV4 = int(socket.AF_INET)
_IPPROTO_ICMPV6 = getattr(socket, "IPPROTO_ICMPV6", 58)


class PingError(OSError):
    """No socket could be opened, or the name did not resolve."""


class ResolveError(PingError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"could not resolve {name}: {reason}")
        self.name, self.reason = name, reason


def resolve(name: str, *, timeout: float = RESOLVE_TIMEOUT,
            family: int = socket.AF_UNSPEC) -> tuple[int, str]:
    """(address family, address) of `name`, IPv4 first; raises PingError.

    getaddrinfo cannot be interrupted, so it runs in a daemon thread that is
    abandoned (and finishes on its own) when `timeout` passes.
    """
    found: list[tuple[int, str]] = []
    failure: list[str] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(name, None, family, socket.SOCK_RAW)
        except (OSError, UnicodeError) as error:
            failure.append(str(error))
            return
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        found.extend((info[0], str(info[4][0])) for info in infos
                     if info[0] in (socket.AF_INET, socket.AF_INET6))

    worker = threading.Thread(target=lookup, name=f"resolve {name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ResolveError(name, f"no answer within {timeout:g}s")
    if not found:
        raise ResolveError(name, failure[0] if failure else "no address")
    return found[0]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def payload(size: int) -> bytes:
    """iPXE's pinger payload: byte i is i (mod 256)."""
    return bytes(i & 0xFF for i in range(size))


@dataclass(frozen=True)
class Reply:
    sequence: int
    size: int  # payload bytes received; 0 when the ping timed out
    source: str | None
    error: str | None = None  # "Connection timed out", ...


class Pinger:
    """Echo requests to one address; `send` then `wait` per sequence number."""

    def __init__(self, family: int, address: str) -> None:
        self.family, self.address = family, address
        proto = socket.IPPROTO_ICMP if family == socket.AF_INET else _IPPROTO_ICMPV6
        self.raw = os.geteuid() == 0
        try:
            kind = socket.SOCK_RAW if self.raw else socket.SOCK_DGRAM
            self.sock = socket.socket(family, kind, proto)
        except OSError as error:
            raise PingError(f"cannot open an ICMP socket: {error.strerror}") from None
        self.ident = os.getpid() & 0xFFFF

    def close(self) -> None:
        self.sock.close()

    def send(self, sequence: int, data: bytes) -> None:
        kind = _ECHO[self.family][0]
        header = struct.pack("!BBHHH", kind, 0, 0, self.ident, sequence & 0xFFFF)
        checksum = _checksum(header + data) if self.family == socket.AF_INET else 0
        packet = struct.pack("!BBHHH", kind, 0, checksum, self.ident, sequence & 0xFFFF) + data
        try:
            self.sock.sendto(packet, (self.address, 0))
        except OSError as error:
            raise PingError(f"cannot send to {self.address}: {error.strerror}") from None

    def _parse(self, packet: bytes) -> tuple[int, int, bytes] | None:
        if self.family == socket.AF_INET and self.raw:
            packet = packet[(packet[0] & 0x0F) * 4:]  # a raw IPv4 socket includes the IP header
        if len(packet) < 8:
            return None
        kind, _code, _sum, ident, sequence = struct.unpack("!BBHHH", packet[:8])
        if kind != _ECHO_REPLY[self.family] or (self.raw and ident != self.ident):
            return None
        return sequence, ident, packet[8:]

    def wait(self, sequence: int, data: bytes, timeout: float) -> Reply:
        """The reply to `sequence`, or a timed-out Reply after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                break
            try:
                packet, source = self.sock.recvfrom(65535)
            except OSError:
                continue
            parsed = self._parse(packet)
            if parsed is None or parsed[0] != sequence & 0xFFFF:
                continue  # another process's echo, or a late reply
            body = parsed[2]
            error = None if body == data else "Protocol error (wrong payload)"
            return Reply(sequence, len(body), str(source[0]), error)
        return Reply(sequence, 0, None, "Connection timed out")


def ping(address: str, family: int, *, count: int, size: int, interval: float,
         on_reply: Callable[[Reply], None]) -> bool:
    """Send `count` echo requests, one per `interval` (or sooner when answered);
    True when at least one correct reply came back, as iPXE's pinger."""
    pinger = Pinger(family, address)
    data = payload(size)
    answered = False
    try:
        for sequence in range(1, count + 1):
            started = time.monotonic()
            pinger.send(sequence, data)
            reply = pinger.wait(sequence, data, interval)
            on_reply(reply)
            answered = answered or reply.error is None
            if sequence < count:
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        pinger.close()
    return answered
