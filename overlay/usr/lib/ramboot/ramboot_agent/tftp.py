"""A small TFTP client: RFC 1350 read requests with the RFC 2347 option
extension, RFC 2348 `blksize`, RFC 2349 `tsize` and `timeout`.

Only downloads ("RRQ", octet mode). Every wait is bounded: each packet is
retransmitted at most `retransmits` times, and the whole transfer stops at
`deadline` seconds.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("ramboot.tftp")

RRQ, DATA, ACK, ERROR, OACK = 1, 3, 4, 5, 6
DEFAULT_PORT = 69
# Fits a 1500-byte Ethernet frame: 1500 - 20 (IP) - 8 (UDP) - 4 (TFTP header).
DEFAULT_BLKSIZE = 1468
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464

# TFTP error codes after which another attempt cannot succeed.
FATAL_ERROR_CODES = {1: "file not found", 2: "access violation", 4: "illegal operation"}


class TftpError(Exception):
    """A TFTP transfer failed; `retryable` tells whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class TftpResult:
    size: int
    blksize: int
    tsize: int | None  # the size the server announced, when it supports RFC 2349


def _packet_error(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode() + b"\0"


def _parse_options(payload: bytes) -> dict[str, str]:
    fields = payload.split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    if len(fields) % 2:
        raise TftpError("malformed OACK from server", retryable=True)
    return {
        fields[i].decode("ascii", "replace").lower(): fields[i + 1].decode("ascii", "replace")
        for i in range(0, len(fields), 2)
    }


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
    server_ip = address[0]
    options = {
        "blksize": str(blksize),
        "tsize": "0",
        "timeout": str(max(1, min(255, round(timeout)))),
    }
    request = struct.pack("!H", RRQ) + filename.encode() + b"\0octet\0"
    request += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items())

    give_up_at = time.monotonic() + deadline
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        last_sent = request
        sock.sendto(request, address)
        peer: tuple[object, ...] | None = None  # the server's transfer ID (ip, port)
        current_blksize = 512
        tsize: int | None = None
        expected = 1  # next DATA block number (wraps at 65536)
        received = 0
        misses = 0
        while True:
            if time.monotonic() > give_up_at:
                raise TftpError(f"transfer took longer than {deadline:.0f}s", retryable=True)
            try:
                packet, source = sock.recvfrom(65536)
            except TimeoutError:
                misses += 1
                if misses > retransmits:
                    what = "no answer" if peer is None else f"stalled after {received} bytes"
                    raise TftpError(
                        f"{what} from {host}:{port} ({retransmits} retransmissions)",
                        retryable=True,
                    ) from None
                log.debug("tftp: timeout, retransmitting (%d/%d)", misses, retransmits)
                sock.sendto(last_sent, peer or address)
                continue
            if source[0] != server_ip or (peer is not None and source[:2] != peer[:2]):
                # RFC 1350: a packet from another transfer ID gets an error, ours goes on.
                sock.sendto(_packet_error(5, "Unknown transfer ID"), source)
                continue
            if len(packet) < 4:
                continue
            opcode, number = struct.unpack("!HH", packet[:4])
            if opcode == ERROR:
                message = packet[4:].split(b"\0", 1)[0].decode("utf-8", "replace")
                meaning = FATAL_ERROR_CODES.get(number)
                raise TftpError(
                    f"server error {number}: {message or meaning or 'unspecified'}",
                    retryable=meaning is None,
                )
            if peer is None:
                peer = source
            if opcode == OACK and received == 0 and expected == 1:
                acked = _parse_options(packet[2:])
                unknown = set(acked) - set(options)
                if unknown:
                    sock.sendto(_packet_error(8, "unrequested option"), peer)
                    raise TftpError(f"server sent unrequested options {sorted(unknown)}",
                                    retryable=False)
                if "blksize" in acked:
                    agreed = int(acked["blksize"])
                    if not MIN_BLKSIZE <= agreed <= blksize:
                        sock.sendto(_packet_error(8, "bad blksize"), peer)
                        raise TftpError(f"server chose blksize {agreed} > {blksize}",
                                        retryable=False)
                    current_blksize = agreed
                if "tsize" in acked:
                    tsize = int(acked["tsize"])
                    if on_size is not None:
                        try:
                            on_size(tsize)
                        except Exception:
                            sock.sendto(_packet_error(3, "disk full"), peer)
                            raise
                last_sent = struct.pack("!HH", ACK, 0)
                sock.sendto(last_sent, peer)
                misses = 0
                continue
            if opcode != DATA:
                continue
            if number == expected:
                block = packet[4:]
                if len(block) > current_blksize:
                    raise TftpError(f"block {number} larger than blksize", retryable=True)
                if block:
                    write(block)
                received += len(block)
                last_sent = struct.pack("!HH", ACK, number)
                sock.sendto(last_sent, peer)
                misses = 0
                if len(block) < current_blksize:
                    if tsize is not None and tsize != received:
                        raise TftpError(f"got {received} bytes, server announced {tsize}",
                                        retryable=True)
                    return TftpResult(received, current_blksize, tsize)
                expected = (expected + 1) & 0xFFFF  # block numbers roll over to 0
            elif number == (expected - 1) & 0xFFFF:
                # Our ACK was lost: the server repeated the previous block; ACK it again.
                sock.sendto(struct.pack("!HH", ACK, number), peer)
