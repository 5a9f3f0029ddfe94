"""A small TFTP client: RFC 1350 read requests with the RFC 2347 option
extension, RFC 2348 `blksize`, RFC 2349 `tsize` and `timeout`.

Only downloads ("RRQ", octet mode). Every wait is bounded: each packet is
retransmitted at most `retransmits` times, and the whole transfer stops at
`deadline` seconds. Packets are untrusted: `Transfer` turns each one into
the reply to send, or a TftpError; nothing a server sends raises anything
else. An option the server gets wrong costs that option: a malformed
`tsize` or `timeout` is ignored, an unusable `blksize` (or a server that
refuses options) makes the client ask again without options, in plain
RFC 1350 with 512-byte blocks.
"""

from __future__ import annotations

import logging
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from ramboot_agent.errors import AgentError
from ramboot_agent.log import sanitise

log = logging.getLogger("ramboot.tftp")

RRQ, DATA, ACK, ERROR, OACK = 1, 3, 4, 5, 6
DEFAULT_PORT = 69
# Fits a 1500-byte Ethernet frame: 1500 - 20 (IP) - 8 (UDP) - 4 (TFTP header).
DEFAULT_BLKSIZE = 1468
PLAIN_BLKSIZE = 512  # RFC 1350, when no blksize was agreed
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464
OPTION_NEGOTIATION_FAILED = 8
MAX_SERVER_TEXT = 200  # characters of a server's error message we repeat

# TFTP error codes after which another attempt cannot succeed.
FATAL_ERROR_CODES = {1: "file not found", 2: "access violation", 4: "illegal operation"}
_NUMBER = re.compile(r"[0-9]{1,12}", re.ASCII)


class TftpError(AgentError):
    """A TFTP transfer failed; `retryable` tells whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class _WithoutOptions(TftpError):
    """The server cannot negotiate our options: ask again without them."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


@dataclass(frozen=True)
class TftpResult:
    size: int
    blksize: int
    tsize: int | None  # the size the server announced, when it supports RFC 2349


def _packet_error(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode() + b"\0"


def _server_text(raw: bytes) -> str:
    """A server's text, safe to repeat on a console: one line, no controls, short."""
    return sanitise(raw.decode("utf-8", "replace"))[:MAX_SERVER_TEXT]


def parse_options(payload: bytes) -> dict[str, str]:
    """An OACK's `name\\0value\\0` pairs (names lowercased); a dangling name is dropped."""
    fields = payload.split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    if len(fields) % 2:
        log.warning("tftp: option %s without a value in the OACK; ignored",
                    _server_text(fields[-1]))
        fields.pop()
    return {
        fields[i].decode("ascii", "replace").lower(): fields[i + 1].decode("ascii", "replace")
        for i in range(0, len(fields), 2)
    }


def read_request(filename: str, options: dict[str, str]) -> bytes:
    if "\0" in filename:
        raise TftpError("a TFTP file name cannot contain NUL", retryable=False)
    request = struct.pack("!H", RRQ) + filename.encode("utf-8", "surrogateescape") + b"\0octet\0"
    return request + b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                              for k, v in options.items())


class Transfer:
    """The client side of one read request, one packet at a time, without I/O.

    `receive(packet)` returns the packet to send back (None: nothing) and
    sets `done` after the last block; it raises TftpError when the transfer
    cannot go on, or _WithoutOptions when it should start again without
    options (an ERROR 8 to send first is in `refusal`).
    """

    def __init__(self, write: Callable[[bytes], None], *, options: dict[str, str],
                 on_size: Callable[[int], None] | None = None) -> None:
        self.write = write
        self.options = options
        self.on_size = on_size
        self.blksize = PLAIN_BLKSIZE
        self.tsize: int | None = None
        self.expected = 1  # next DATA block number (wraps at 65536)
        self.received = 0
        self.done = False
        self.refusal: bytes | None = None

    def receive(self, packet: bytes) -> bytes | None:
        if len(packet) < 4:
            return None  # too short to be anything: ignored, the timer resends
        opcode, number = struct.unpack("!HH", packet[:4])
        if opcode == ERROR:
            return self._error(number, packet[4:])
        if opcode == OACK and self.received == 0 and self.expected == 1:
            return self._acknowledge_options(packet[2:])
        if opcode != DATA:
            return None
        if number == self.expected:
            return self._data(number, packet[4:])
        if number == (self.expected - 1) & 0xFFFF:
            # Our ACK was lost: the server repeated the previous block; ACK it again.
            return struct.pack("!HH", ACK, number)
        return None

    def _error(self, code: int, raw: bytes) -> bytes | None:
        message = _server_text(raw.split(b"\0", 1)[0])
        if code == OPTION_NEGOTIATION_FAILED and self.options and self.received == 0:
            raise _WithoutOptions(f"server refused the options ({message or 'error 8'})")
        meaning = FATAL_ERROR_CODES.get(code)
        raise TftpError(f"server error {code}: {message or meaning or 'unspecified'}",
                        retryable=meaning is None)

    def _refuse(self, why: str) -> None:
        self.refusal = _packet_error(OPTION_NEGOTIATION_FAILED, "bad option")
        if not self.options:  # already asked without options: nothing left to drop
            raise TftpError(why, retryable=False)
        raise _WithoutOptions(why)

    def _acknowledge_options(self, payload: bytes) -> bytes:
        acked = parse_options(payload)
        unknown = sorted(set(acked) - set(self.options))
        if unknown:
            log.warning("tftp: the server sent options it was not asked for (%s); ignored",
                        _server_text(", ".join(unknown).encode()))
        if "blksize" in acked:
            value = acked["blksize"].strip()
            wanted = int(self.options.get("blksize", PLAIN_BLKSIZE))
            if not _NUMBER.fullmatch(value) or not MIN_BLKSIZE <= int(value) <= wanted:
                self._refuse(f"server chose blksize {_server_text(value.encode())!r}, "
                             f"not {MIN_BLKSIZE}..{wanted}")
            self.blksize = int(value)
        if "tsize" in acked:
            value = acked["tsize"].strip()
            if _NUMBER.fullmatch(value):
                self.tsize = int(value)
                if self.on_size is not None:
                    self.on_size(self.tsize)
            else:
                log.warning("tftp: malformed tsize %r from the server; ignored",
                            _server_text(value.encode()))
        if "timeout" in acked:
            value = acked["timeout"].strip()
            if not (_NUMBER.fullmatch(value) and 1 <= int(value) <= 255):
                log.warning("tftp: malformed timeout %r from the server; ignored",
                            _server_text(value.encode()))
        return struct.pack("!HH", ACK, 0)

    def _data(self, number: int, block: bytes) -> bytes:
        if len(block) > self.blksize:
            raise TftpError(f"block {number} larger than blksize {self.blksize}", retryable=True)
        if block:
            self.write(block)
        self.received += len(block)
        reply = struct.pack("!HH", ACK, number)
        if len(block) < self.blksize:
            if self.tsize is not None and self.tsize != self.received:
                raise TftpError(f"got {self.received} bytes, server announced {self.tsize}",
                                retryable=True)
            self.done = True
        self.expected = (self.expected + 1) & 0xFFFF  # block numbers roll over to 0
        return reply


def fetch(
    host: str,
    filename: str,
    write: Callable[[bytes], None],
    *,
    port: int = DEFAULT_PORT,
    timeout: float = 2.0,
    retransmits: int = 5,
    deadline: float = 300.0,
    blksize: int = DEFAULT_BLKSIZE,
    on_size: Callable[[int], None] | None = None,
) -> TftpResult:
    """Download `filename` from `host`, passing each data block to `write`.

    `on_size` is called with the server's announced `tsize` before any data is
    written, so the caller can refuse a file that would not fit.
    """
    if not MIN_BLKSIZE <= blksize <= MAX_BLKSIZE:
        raise ValueError(f"blksize {blksize} outside {MIN_BLKSIZE}..{MAX_BLKSIZE}")
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    give_up_at = time.monotonic() + deadline
    options = {
        "blksize": str(blksize),
        "tsize": "0",
        "timeout": str(max(1, min(255, round(timeout)))),
    }
    where = f"{host}:{port}"

    def attempt(asked: dict[str, str]) -> TftpResult:
        return _transfer(family, address, filename, options=asked, write=write,
                         on_size=on_size, timeout=timeout, retransmits=retransmits,
                         give_up_at=give_up_at, deadline=deadline, where=where)

    try:
        return attempt(options)
    except _WithoutOptions as why:
        log.warning("tftp %s: %s; asking again without options", where, why)
        return attempt({})


def _transfer(family: int, address: tuple[object, ...], filename: str, *,
              write: Callable[[bytes], None], options: dict[str, str],
              on_size: Callable[[int], None] | None, timeout: float, retransmits: int,
              give_up_at: float, deadline: float, where: str) -> TftpResult:
    transfer = Transfer(write, options=options, on_size=on_size)
    request = read_request(filename, options)
    server_ip = address[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        last_sent = request
        sock.sendto(request, address)
        peer: tuple[object, ...] | None = None  # the server's transfer ID (ip, port)
        misses = 0
        while True:
            left = give_up_at - time.monotonic()
            if left <= 0:
                raise TftpError(f"transfer took longer than {deadline:.0f}s", retryable=True)
            sock.settimeout(min(timeout, left))
            try:
                packet, source = sock.recvfrom(65536)
            except TimeoutError:
                misses += 1
                if misses > retransmits:
                    what = ("no answer" if peer is None
                            else f"stalled after {transfer.received} bytes")
                    raise TftpError(f"{what} from {where} ({retransmits} retransmissions)",
                                    retryable=True) from None
                log.debug("tftp: timeout, retransmitting (%d/%d)", misses, retransmits)
                sock.sendto(last_sent, peer or address)
                continue
            if source[0] != server_ip or (peer is not None and source[:2] != peer[:2]):
                # RFC 1350: a packet from another transfer ID gets an error, ours goes on.
                sock.sendto(_packet_error(5, "Unknown transfer ID"), source)
                continue
            if len(packet) < 4:
                continue
            if peer is None:
                peer = source
            try:
                reply = transfer.receive(packet)
            except TftpError:
                if transfer.refusal is not None:
                    sock.sendto(transfer.refusal, peer)
                raise
            except Exception:
                # The caller's write or on_size refused (no space, too large): tell the server.
                sock.sendto(_packet_error(3, "disk full or allocation exceeded"), peer)
                raise
            if reply is None:
                continue
            last_sent = reply
            sock.sendto(reply, peer)
            misses = 0
            if transfer.done:
                return TftpResult(transfer.received, transfer.blksize, transfer.tsize)
