"""Classes 6 and 7 of issue 12 over TFTP: one odd option costs that option, a
broken transfer starts over, and no packet makes the client raise anything
but a clean error.

A TFTP server on 127.0.0.1 whose routes decide every packet: malformed and
unrequested options, option refusals, error texts with terminal escapes, a
server that vanishes mid-file and serves another file on the next attempt.
Then hypothesis feeds arbitrary packets to the client's state machine, and
arbitrary packet sequences to the real client over UDP.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramboot_agent import tftp
from ramboot_agent.errors import AgentError, FetchError
from ramboot_agent.fetch import Fetcher
from tests.agent.io.hostile import TftpPeer, TftpRequest, TftpSite, tftp_server

FILE = random.Random(21).randbytes(40_000 + 7)
OTHER = random.Random(22).randbytes(40_000 + 7)


def fetcher(sleeps: list[float], **kwargs: object) -> Fetcher:
    kwargs.setdefault("timeout", 0.5)
    return Fetcher(sleep=sleeps.append, rng=random.Random(1), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def site() -> Iterator[TftpSite]:
    with tftp_server() as running:
        yield running


def oack_then_file(options: dict[str, str], blksize: int = 512):  # type: ignore[no-untyped-def]
    def route(request: TftpRequest, peer: TftpPeer) -> None:
        if request.options:
            reply = peer.oack(options)
            if reply is None or reply[:2] != struct.pack("!H", tftp.ACK):
                return  # the client refused the OACK (an ERROR) and will ask again
            peer.send_file(FILE, blksize)
        else:
            peer.send_file(FILE, 512)
    return route


@pytest.mark.parametrize("options", [
    {"blksize": "1024", "tsize": "12x"},  # a tsize that is not a number: ignored
    {"blksize": "1024", "tsize": str(len(FILE)), "timeout": "never"},
    {"blksize": "1024", "windowsize": "8", "color": "blue"},  # not asked for: ignored
])
def test_an_odd_option_costs_that_option(site: TftpSite, sleeps: list[float],
                                         options: dict[str, str]) -> None:
    site.routes["f"] = oack_then_file(options, 1024)
    got = fetcher(sleeps).fetch_bytes(site.url("f"), max_size=len(FILE))
    assert got.data == FILE and sleeps == []
    assert site.hits("f") == 1


@pytest.mark.parametrize("blksize", ["abc", "0", "99999", "-5", ""])
def test_an_unusable_blksize_means_asking_again_without_options(
        site: TftpSite, sleeps: list[float], blksize: str) -> None:
    site.routes["f"] = oack_then_file({"blksize": blksize})
    got = fetcher(sleeps).fetch_bytes(site.url("f"), max_size=len(FILE))
    assert got.data == FILE and sleeps == []
    assert [request.options for request in site.requests] == [
        {"blksize": "1468", "tsize": "0", "timeout": "1"}, {}]


def test_a_server_refusing_the_options_is_asked_again_without(site: TftpSite,
                                                              sleeps: list[float]) -> None:
    def refusing(request: TftpRequest, peer: TftpPeer) -> None:
        if request.options:
            peer.error(8, b"options not supported")
        else:
            peer.send_file(FILE)
    site.routes["f"] = refusing
    assert fetcher(sleeps).fetch_bytes(site.url("f"), max_size=len(FILE)).data == FILE
    assert site.hits("f") == 2 and sleeps == []


def test_a_servers_error_text_cannot_drive_the_terminal(site: TftpSite,
                                                        sleeps: list[float]) -> None:
    site.routes["f"] = lambda request, peer: peer.error(2, b"no\x1b]0;owned\x07\r\nway")
    with pytest.raises(FetchError) as caught:
        fetcher(sleeps).fetch_bytes(site.url("f"), max_size=10)
    assert str(caught.value).endswith("server error 2: no\\x1b]0;owned\\x07\\x0d\\x0away")


def test_a_broken_transfer_starts_over_and_never_splices(site: TftpSite, sleeps: list[float],
                                                         tmp_path: Path) -> None:
    def vanishing(request: TftpRequest, peer: TftpPeer) -> None:
        if site.hits("f") == 1:
            peer.send_file(FILE, stop_after=20_000)  # then silence: the client times out
        else:
            peer.send_file(OTHER)
    site.routes["f"] = vanishing
    got = fetcher(sleeps).fetch_file(site.url("f"), tmp_path, name="kernel")
    assert (tmp_path / "kernel").read_bytes() == OTHER
    assert got.sha256 == hashlib.sha256(OTHER).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel"]
    assert len(sleeps) == 1  # one retry, from byte 0


def test_a_tsize_that_lies_is_caught(site: TftpSite, sleeps: list[float]) -> None:
    site.routes["f"] = oack_then_file({"tsize": str(len(FILE) + 1)})
    with pytest.raises(FetchError, match=rf"got {len(FILE)} bytes, server announced"):
        fetcher(sleeps, retries=1).fetch_bytes(site.url("f"), max_size=len(FILE) + 1)


# -- fuzz ---------------------------------------------------------------------------

OPCODES = st.sampled_from([tftp.RRQ, tftp.DATA, tftp.ACK, tftp.ERROR, tftp.OACK, 0, 7, 65535])
OPTION_TEXT = st.sampled_from([b"blksize", b"tsize", b"timeout", b"BLKSIZE", b"x", b"", b"8",
                               b"512", b"1468", b"99999", b"-1", b"abc", b"\xff", b"1e3"])
PACKETS = st.one_of(
    st.binary(max_size=24),
    st.builds(lambda op, number, rest: struct.pack("!HH", op, number) + rest,
              OPCODES, st.integers(0, 65535), st.binary(max_size=600)),
    st.builds(lambda fields: struct.pack("!H", tftp.OACK) + b"\0".join(fields),
              st.lists(OPTION_TEXT, max_size=7)),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(PACKETS, max_size=12), st.booleans())
def test_no_packet_sequence_makes_the_client_raise_anything_but_tftp_errors(
        packets: list[bytes], with_options: bool) -> None:
    received = bytearray()
    transfer = tftp.Transfer(received.extend, on_size=lambda _size: None,
                             options={"blksize": "1468", "tsize": "0", "timeout": "1"}
                             if with_options else {})
    for packet in packets:
        try:
            reply = transfer.receive(packet)
        except tftp.TftpError:
            return
        assert reply is None or reply[:2] in (struct.pack("!H", tftp.ACK),)
        if transfer.done:
            break
    assert len(received) == transfer.received


@pytest.fixture(scope="module")
def fuzz_site() -> Iterator[TftpSite]:
    with tftp_server() as running:
        running.peer_timeout = 0.05
        yield running


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(PACKETS, min_size=1, max_size=5))
def test_any_server_conversation_ends_in_data_or_a_tftp_error(
        fuzz_site: TftpSite, packets: list[bytes]) -> None:
    """The real client over UDP; the few retransmissions keep each example short."""
    def route(request: TftpRequest, peer: TftpPeer) -> None:
        for packet in packets:
            peer.send(packet)
            peer.receive()
    fuzz_site.routes["f"] = route
    received = bytearray()
    try:
        tftp.fetch(fuzz_site.host, "f", received.extend, port=fuzz_site.port, timeout=0.05,
                   retransmits=1, deadline=1.0, on_size=lambda _size: None)
    except AgentError as error:
        assert isinstance(error, tftp.TftpError)
