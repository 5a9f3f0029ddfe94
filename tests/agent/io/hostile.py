"""Servers that misbehave on purpose, on 127.0.0.1, for the hardening tests.

`raw_http()` answers each request with whatever bytes a route writes to the
socket: headers no HTTP library would send, bodies that drip one byte at a
time or never end. `tftp_server()` runs a TFTP server whose routes decide
every packet it sends. Both record what they saw, run in daemon threads, and
stop (every loop bounded in count and time) when their block ends.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

STOP_AFTER = 120.0  # no route outlives this, whatever the client does


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: bytes = b""


@dataclass
class RawSite:
    """A running raw HTTP server: routes by path, requests seen, per-path hits."""

    base: str
    routes: dict[str, Callable[[Request, socket.socket], None]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    hits: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    stopping: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return self.base + path


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _parse(raw: bytes) -> Request:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    method, _, rest = lines[0].partition(" ")
    path = rest.rpartition(" ")[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method, path, headers, raw)


@contextlib.contextmanager
def raw_http() -> Iterator[RawSite]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    site = RawSite(f"http://127.0.0.1:{listener.getsockname()[1]}")

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                request = _parse(_read_head(conn))
                if request.method == "POST":
                    length = int(request.headers.get("content-length", "0") or 0)
                    body = request.raw.split(b"\r\n\r\n", 1)[1]
                    while len(body) < length:
                        chunk = conn.recv(length - len(body))
                        if not chunk:
                            break
                        body += chunk
                    request.body = body
                path = request.path.split("?", 1)[0]
                site.requests.append(request)
                site.hits[path] += 1
                route = site.routes.get(path)
                if route is None:
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                else:
                    route(request, conn)
            except OSError:
                pass  # the client gave up: that is what these servers test

    def serve() -> None:
        deadline = time.monotonic() + STOP_AFTER * 5
        while not site.stopping.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.stopping.set()
        thread.join(timeout=5)
        listener.close()


def drip(conn: socket.socket, data: bytes, *, every: float, stopping: threading.Event) -> None:
    """Send `data` one byte at a time, `every` seconds apart (bounded by STOP_AFTER)."""
    started = time.monotonic()
    for byte in data:
        if stopping.is_set() or time.monotonic() - started > STOP_AFTER:
            return
        conn.sendall(bytes([byte]))
        time.sleep(every)


def endless(conn: socket.socket, *, stopping: threading.Event, chunk: int = 65536) -> int:
    """Send zeros until the peer stops reading (bounded by STOP_AFTER); bytes sent."""
    started, sent = time.monotonic(), 0
    block = b"\0" * chunk
    conn.settimeout(2)
    with contextlib.suppress(OSError):
        while not stopping.is_set() and time.monotonic() - started < STOP_AFTER:
            conn.sendall(block)
            sent += chunk
    return sent


# -- TFTP -----------------------------------------------------------------------

RRQ, DATA, ACK, ERROR, OACK = 1, 3, 4, 5, 6


@dataclass
class TftpRequest:
    filename: str
    options: dict[str, str]


class TftpPeer:
    """One transfer's socket (the server's transfer ID), with helpers for routes."""

    def __init__(self, client: tuple[str, int], stopping: threading.Event,
                 timeout: float = 3.0) -> None:
        self.client = client
        self.stopping = stopping
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(timeout)

    def send(self, packet: bytes) -> None:
        self.sock.sendto(packet, self.client)

    def oack(self, options: dict[str, str]) -> bytes | None:
        self.send(struct.pack("!H", OACK) + b"".join(
            k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items()))
        return self.receive()

    def error(self, code: int, message: bytes) -> None:
        self.send(struct.pack("!HH", ERROR, code) + message + b"\0")

    def receive(self) -> bytes | None:
        try:
            packet, _ = self.sock.recvfrom(65536)
        except OSError:
            return None
        return packet

    def send_file(self, data: bytes, blksize: int = 512, *, stop_after: int | None = None,
                  delay: float = 0.0) -> int:
        """DATA blocks with ACKs; returns the bytes sent (stopping early when asked)."""
        sent, number = 0, 1
        for start in range(0, len(data) + 1, blksize):
            if self.stopping.is_set():
                return sent
            block = data[start:start + blksize]
            if stop_after is not None and sent + len(block) > stop_after:
                return sent  # vanish mid-transfer
            time.sleep(delay)
            packet = struct.pack("!HH", DATA, number & 0xFFFF) + block
            for _ in range(5):
                self.send(packet)
                reply = self.receive()
                if reply and reply[:4] == struct.pack("!HH", ACK, number & 0xFFFF):
                    break
                if reply and reply[:2] == struct.pack("!H", ERROR):
                    return sent
            else:
                return sent
            sent += len(block)
            number += 1
            if len(block) < blksize:
                break
        return sent

    def close(self) -> None:
        self.sock.close()


@dataclass
class TftpSite:
    host: str
    port: int
    routes: dict[str, Callable[[TftpRequest, TftpPeer], None]] = field(default_factory=dict)
    requests: list[TftpRequest] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    peer_timeout: float = 3.0  # how long a route waits for each of the client's packets

    def url(self, filename: str) -> str:
        return f"tftp://{self.host}:{self.port}/{filename}"

    def hits(self, filename: str) -> int:
        return sum(1 for request in self.requests if request.filename == filename)


def _parse_rrq(packet: bytes) -> TftpRequest | None:
    if packet[:2] != struct.pack("!H", RRQ):
        return None
    fields = packet[2:].split(b"\0")
    if len(fields) < 2:
        return None
    options = {fields[i].decode().lower(): fields[i + 1].decode()
               for i in range(2, len(fields) - 1, 2) if fields[i]}
    return TftpRequest(fields[0].decode(errors="replace"), options)


@contextlib.contextmanager
def tftp_server() -> Iterator[TftpSite]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.1)
    site = TftpSite("127.0.0.1", listener.getsockname()[1])

    def transfer(request: TftpRequest, client: tuple[str, int]) -> None:
        peer = TftpPeer(client, site.stopping, site.peer_timeout)
        try:
            route = site.routes.get(request.filename)
            if route is None:
                peer.error(1, b"File not found")
            else:
                route(request, peer)
        except OSError:
            pass
        finally:
            peer.close()

    def serve() -> None:
        deadline = time.monotonic() + STOP_AFTER * 5
        while not site.stopping.is_set() and time.monotonic() < deadline:
            try:
                packet, client = listener.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            request = _parse_rrq(packet)
            if request is not None:
                site.requests.append(request)
                threading.Thread(target=transfer, args=(request, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.stopping.set()
        thread.join(timeout=5)
        listener.close()
