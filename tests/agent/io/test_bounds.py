"""Class 5 of issue 12: what the network sends is bounded in size, in total time
and in the RAM disk space it leaves behind.

Servers that drip one byte just inside every per-read timeout, send headers
forever or replies without end; downloads that fail half-way; a script that
fetches and frees an image again and again on a RAM disk too small to keep
the copies.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ramboot_agent.errors import FetchError
from ramboot_agent.events import Reporter
from ramboot_agent.fetch import Fetcher
from tests.agent.io.hostile import (
    Request,
    TftpPeer,
    TftpRequest,
    drip,
    endless,
    raw_http,
    tftp_server,
)
from tests.agent.io.servers import Site
from tests.agent.io.test_fetch_isolated import require_root, run_child

IMAGE = random.Random(5).randbytes(1024 * 1024)


def quick(sleeps: list[float], **kwargs: object) -> Fetcher:
    kwargs.setdefault("timeout", 1.0)
    return Fetcher(sleep=sleeps.append, rng=random.Random(1), **kwargs)  # type: ignore[arg-type]


def test_a_body_dripping_inside_every_read_timeout_is_cut_at_the_deadline(
        sleeps: list[float]) -> None:
    with raw_http() as site:
        def slow_body(request: Request, conn: socket.socket) -> None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: \"d\"\r\n\r\n")
            drip(conn, b"x" * 1000, every=0.3, stopping=site.stopping)  # 0.3 s < 1 s timeout

        site.routes["/kernel"] = slow_body
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"gave up, the download's 2 s limit was reached"):
            quick(sleeps).fetch_bytes(site.url("/kernel"), max_size=10_000, deadline=2.0)
    assert time.monotonic() - started < 3.5


def test_headers_that_never_end_are_cut_at_the_deadline(sleeps: list[float]) -> None:
    with raw_http() as site:
        def endless_headers(request: Request, conn: socket.socket) -> None:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            drip(conn, b"X-Slow: " + b"a" * 5000, every=0.2, stopping=site.stopping)

        site.routes["/boot.ipxe"] = endless_headers
        started = time.monotonic()
        with pytest.raises(FetchError, match="limit was reached"):
            quick(sleeps, deadline=1.5).fetch_bytes(site.url("/boot.ipxe"), max_size=100)
    assert time.monotonic() - started < 3.0


def test_a_tls_handshake_that_drips_is_cut_at_the_deadline(sleeps: list[float]) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:  # a handshake record of 16 KiB, sent one byte every 0.3 s
            conn.sendall(b"\x16\x03\x03\x40\x00")
            drip(conn, b"\0" * 100, every=0.3, stopping=stopping)

    threading.Thread(target=serve_one, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(FetchError, match=r"gave up, the download.s 1\.5 s limit was reached"):
            quick(sleeps, timeout=5.0).fetch_bytes(
                f"https://127.0.0.1:{listener.getsockname()[1]}/x", max_size=10, deadline=1.5)
        assert time.monotonic() - started < 2.5
    finally:
        stopping.set()
        listener.close()


def test_retries_and_back_off_stay_inside_the_deadline(sleeps: list[float]) -> None:
    with raw_http() as site:
        def busy(request: Request, conn: socket.socket) -> None:
            conn.sendall(b"HTTP/1.1 503 Busy\r\nRetry-After: 50\r\nContent-Length: 0\r\n\r\n")

        site.routes["/busy"] = busy
        with pytest.raises(FetchError, match="HTTP 503 Busy: gave up, the download's 30 s"):
            quick(sleeps, retries=10).fetch_bytes(site.url("/busy"), max_size=10, deadline=30)
    assert sleeps == []  # a 50 s wait would overrun the 30 s deadline: not even started


@pytest.fixture
def reporters() -> Iterator[list[Reporter]]:
    made: list[Reporter] = []
    yield made
    for reporter in made:
        reporter.close(0)


def test_the_report_servers_endless_reply_is_never_read(reporters: list[Reporter]) -> None:
    sent: list[int] = []
    with raw_http() as site:
        def endless_reply(request: Request, conn: socket.socket) -> None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
            sent.append(endless(conn, stopping=site.stopping))

        site.routes["/events"] = endless_reply
        reporter = Reporter({"mac": "52:54:00:00:00:01"}, site.url("/events"), timeout=2.0)
        reporters.append(reporter)
        started = time.monotonic()
        for n in range(3):
            reporter.emit("progress", n=n)
        assert reporter.flush(5.0) is True
        assert time.monotonic() - started < 3.0
        assert site.hits["/events"] == 3
        assert [json.loads(request.body)["seq"] for request in site.requests] == [1, 2, 3]
    # The collector could not push more than its socket buffers hold before we hung up.
    assert max(sent) < 64 * 1024 * 1024


def test_a_report_server_that_drips_its_status_line_costs_one_timeout(
        reporters: list[Reporter]) -> None:
    with raw_http() as site:
        def dripping(request: Request, conn: socket.socket) -> None:
            drip(conn, b"HTTP/1.1 204 No Content\r\n\r\n", every=0.4, stopping=site.stopping)

        site.routes["/events"] = dripping
        reporter = Reporter({}, site.url("/events"), timeout=1.0, backoff=0.05, max_backoff=0.1)
        reporters.append(reporter)
        reporter.emit("network-up")
        started = time.monotonic()
        assert reporter.flush(2.5) is False  # still retrying: each try ends after 1 s
        assert time.monotonic() - started < 3.0
        assert site.hits["/events"] >= 2




def test_a_tftp_server_dripping_blocks_is_cut_at_the_deadline(sleeps: list[float],
                                                              tmp_path: Path) -> None:
    with tftp_server() as site:
        def slow(request: TftpRequest, peer: TftpPeer) -> None:
            peer.send_file(IMAGE, delay=0.5)  # each block inside the 2 s packet timeout

        site.routes["kernel"] = slow
        started = time.monotonic()
        with pytest.raises(FetchError, match="limit was reached"):
            quick(sleeps).fetch_file(site.url("kernel"), tmp_path, deadline=2.0)
        assert time.monotonic() - started < 4.0
    assert list(tmp_path.iterdir()) == []  # no .part left behind


def test_a_tftp_transfer_that_breaks_off_leaves_no_part_file(sleeps: list[float],
                                                             tmp_path: Path) -> None:
    with tftp_server() as site:
        site.routes["kernel"] = lambda request, peer: peer.send_file(IMAGE, stop_after=20_000)
        with pytest.raises(FetchError, match=r"stalled after 19968 bytes.*gave up after 3"):
            Fetcher(sleep=sleeps.append, retries=2, timeout=0.3).fetch_file(
                site.url("kernel"), tmp_path)
    assert list(tmp_path.iterdir()) == []


FREE_LOOP = """#!ipxe
set n:int32 0
:again
imgfetch --name big {url} || goto failed
imgfree big
inc n
iseq ${{n}} 6 || goto again
imgfetch --name kept {url}
shell
:failed
echo FAILED at ${{n}}
exit 1
"""


def test_freed_images_give_their_ram_back(site: Site, tmp_path: Path) -> None:
    """Six 1 MiB downloads, each freed, on a 3 MiB RAM disk: only possible if imgfree frees."""
    require_root("unshare", "mount")
    site.routes["/image.bin"] = lambda h: h.send_bytes(IMAGE)
    ram = tmp_path / "ram"
    ram.mkdir()
    script = FREE_LOOP.format(url=site.url("/image.bin"))
    result = run_child(f"""
        import io, os
        from pathlib import Path
        from ramboot_agent.ipxe.interpreter import Interpreter
        from ramboot_agent.ipxe.settings import build_settings
        class Quiet:
            def emit(self, event, **details): pass
        out = io.StringIO()
        interpreter = Interpreter(build_settings({{}}), Fetcher(), print, Quiet(), out,
                                  download_dir=Path({str(ram)!r}))
        outcome = interpreter.run_text({script!r}, "http://127.0.0.1/loop.ipxe").outcome.value
        files = sorted(str(p.relative_to({str(ram)!r})) for p in Path({str(ram)!r}).rglob("*")
                       if p.is_file())
        print(json.dumps({{"outcome": outcome, "out": out.getvalue(), "files": files}}))
    """, tmpfs=ram, tmpfs_size="3m")
    assert result["outcome"] == "shell", result["out"]
    assert "FAILED" not in result["out"]
    # What is left is the seventh copy, still held; nothing of the six freed ones.
    assert result["files"] == ["007/image.bin"]
