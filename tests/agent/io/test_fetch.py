"""Fetcher against real HTTP(S) servers on 127.0.0.1 started by each test."""

from __future__ import annotations

import hashlib
import io
import logging
import random
import time
from pathlib import Path

import pytest

from ramboot_agent.errors import FetchError
from ramboot_agent.fetch import Fetcher, resolve_url
from ramboot_agent.ipxe import Interpreter
from ramboot_agent.ipxe.settings import build_settings
from tests.agent.io.servers import Handler, Pki, Site, serve

PAYLOAD = random.Random(4).randbytes(3 * 1024 * 1024 + 17)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def fetcher(sleeps: list[float], **kwargs: object) -> Fetcher:
    kwargs.setdefault("timeout", 5.0)
    return Fetcher(sleep=sleeps.append, rng=random.Random(1), **kwargs)  # type: ignore[arg-type]


def test_fetch_bytes_and_file(site: Site, sleeps: list[float], tmp_path: Path) -> None:
    site.routes["/files/kernel.img"] = lambda h: h.send_bytes(PAYLOAD)
    url = site.url("/files/kernel.img")

    got = fetcher(sleeps).fetch_bytes(url, max_size=len(PAYLOAD))
    assert got.data == PAYLOAD and got.size == len(PAYLOAD) and got.sha256 == DIGEST
    assert got.path is None and got.final_url == url and got.seconds > 0

    progress: list[tuple[int, int | None]] = []
    saved = fetcher(sleeps).fetch_file(url, tmp_path,
                                       on_progress=lambda n, t: progress.append((n, t)))
    assert saved.path == tmp_path / "kernel.img" and saved.data is None
    assert saved.path.read_bytes() == PAYLOAD and saved.sha256 == DIGEST
    assert progress[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(progress) > 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel.img"]  # no .part left
    assert sleeps == []
    agent = site.requests[0][2]["User-Agent"]
    assert agent.startswith("ramboot-agent/")


def test_not_found_fails_at_once(site: Site, sleeps: list[float], tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="HTTP 404") as caught:
        fetcher(sleeps).fetch_file(site.url("/nothing-here"), tmp_path)
    assert caught.value.url == site.url("/nothing-here")
    assert site.hits["/nothing-here"] == 1 and sleeps == []
    assert list(tmp_path.iterdir()) == []


def test_forbidden_fails_at_once(site: Site, sleeps: list[float]) -> None:
    site.routes["/secret"] = lambda h: h.send_error(403)
    with pytest.raises(FetchError, match="HTTP 403"):
        fetcher(sleeps).fetch_bytes(site.url("/secret"), max_size=100)
    assert site.hits["/secret"] == 1


def test_server_error_is_retried_with_backoff(site: Site, sleeps: list[float]) -> None:
    def flaky(handler: Handler) -> None:
        if site.hits["/flaky"] <= 2:
            handler.send_error(500)
        else:
            handler.send_bytes(b"#!ipxe\necho hello\n")

    site.routes["/flaky"] = flaky
    got = fetcher(sleeps, backoff=1.0).fetch_bytes(site.url("/flaky"), max_size=1000)
    assert got.data == b"#!ipxe\necho hello\n"
    assert site.hits["/flaky"] == 3
    # Full jitter: each delay is uniform in [0, backoff * 2**n).
    assert len(sleeps) == 2 and 0 <= sleeps[0] < 1.0 and 0 <= sleeps[1] < 2.0


def test_retries_are_bounded(site: Site, sleeps: list[float]) -> None:
    site.routes["/down"] = lambda h: h.send_error(503)
    with pytest.raises(FetchError, match=r"HTTP 503 .*gave up after 4 attempts"):
        fetcher(sleeps, retries=3, max_backoff=2.0).fetch_bytes(site.url("/down"), max_size=10)
    assert site.hits["/down"] == 4 and len(sleeps) == 3 and max(sleeps) <= 2.0


def test_retry_after_is_honoured_up_to_a_cap(site: Site, sleeps: list[float]) -> None:
    def busy(handler: Handler) -> None:
        if site.hits["/busy"] == 1:
            handler.send_bytes(b"busy", status=429, headers={"Retry-After": "7"})
        elif site.hits["/busy"] == 2:
            handler.send_bytes(b"busy", status=503, headers={"Retry-After": "86400"})
        else:
            handler.send_bytes(b"ok")

    site.routes["/busy"] = busy
    got = fetcher(sleeps, max_retry_after=20.0).fetch_bytes(site.url("/busy"), max_size=10)
    assert got.data == b"ok"
    assert sleeps[0] >= 7.0 and sleeps[1] == 20.0


def test_dropped_connection_resumes_with_range(site: Site, sleeps: list[float],
                                               tmp_path: Path) -> None:
    def dropping(handler: Handler) -> None:
        handler.send_bytes(PAYLOAD, drop_after=1_000_000 if site.hits["/drop"] == 1 else None)

    site.routes["/drop"] = dropping
    got = fetcher(sleeps).fetch_file(site.url("/drop"), tmp_path, name="rootfs.cpio.gz")
    assert got.sha256 == DIGEST and got.size == len(PAYLOAD)
    assert (tmp_path / "rootfs.cpio.gz").read_bytes() == PAYLOAD
    first, second = site.requests
    assert "Range" not in first[2]
    resumed_at = int(second[2]["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= 1_000_000
    assert second[2]["If-Range"] == '"v1"'
    assert sleeps == []  # progress was made: resumed at once


def test_range_ignored_restarts_from_zero(site: Site, sleeps: list[float], caplog:
                                          pytest.LogCaptureFixture) -> None:
    def dropping(handler: Handler) -> None:
        first = site.hits["/norange"] == 1
        handler.send_bytes(PAYLOAD, honour_range=False, drop_after=500_000 if first else None)

    site.routes["/norange"] = dropping
    with caplog.at_level(logging.WARNING, logger="ramboot.fetch"):
        got = fetcher(sleeps).fetch_bytes(site.url("/norange"), max_size=len(PAYLOAD))
    assert got.data == PAYLOAD and got.sha256 == DIGEST
    assert "Range" in site.requests[1][2]
    assert "(Range ignored, or the object changed); restarting from 0" in caplog.text


def test_redirects_are_followed_and_bounded(site: Site, sleeps: list[float]) -> None:
    def redirect_to(target: str, status: int = 302) -> object:
        def route(handler: Handler) -> None:
            handler.send_response(status)
            handler.send_header("Location", target)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        return route

    site.routes["/boot.ipxe"] = lambda h: h.send_bytes(b"#!ipxe\n")
    site.routes["/old"] = redirect_to("/boot.ipxe", 301)  # type: ignore[assignment]
    site.routes["/loop"] = redirect_to("/loop")  # type: ignore[assignment]
    site.routes["/to-file"] = redirect_to("file:///etc/passwd")  # type: ignore[assignment]

    got = fetcher(sleeps).fetch_bytes(site.url("/old"), max_size=100)
    assert got.data == b"#!ipxe\n" and got.final_url == site.url("/boot.ipxe")
    assert got.url == site.url("/old")

    with pytest.raises(FetchError, match="more than 10 redirects"):
        fetcher(sleeps).fetch_bytes(site.url("/loop"), max_size=100)
    assert site.hits["/loop"] == 11
    with pytest.raises(FetchError, match="redirect to unsupported scheme 'file'"):
        fetcher(sleeps).fetch_bytes(site.url("/to-file"), max_size=100)


def test_size_cap(site: Site, sleeps: list[float]) -> None:
    site.routes["/big"] = lambda h: h.send_bytes(PAYLOAD)
    # No Content-Length: the cap must hold while streaming.
    site.routes["/stream"] = lambda h: h.send_unannounced(PAYLOAD)
    with pytest.raises(FetchError, match=r"larger than 65536 bytes \(3145745 announced\)"):
        fetcher(sleeps).fetch_bytes(site.url("/big"), max_size=65536)
    with pytest.raises(FetchError, match=r"larger than 65536 bytes$"):
        fetcher(sleeps).fetch_bytes(site.url("/stream"), max_size=65536)
    assert sleeps == []


def test_slow_server_times_out(site: Site, sleeps: list[float]) -> None:
    site.routes["/slow"] = lambda h: time.sleep(3)
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out.*gave up after 2 attempts"):
        fetcher(sleeps, timeout=0.3, retries=1).fetch_bytes(site.url("/slow"), max_size=10)
    assert time.monotonic() - started < 2.0


def test_connection_refused_is_retried(sleeps: list[float]) -> None:
    with serve() as gone:
        url = gone.url("/x")
    with pytest.raises(FetchError, match=r"Connection refused.*gave up after 3 attempts"):
        fetcher(sleeps, retries=2).fetch_bytes(url, max_size=10)
    assert len(sleeps) == 2


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".", "", ".hidden"])
def test_explicit_names_cannot_escape(site: Site, sleeps: list[float], tmp_path: Path,
                                      name: str) -> None:
    site.routes["/f"] = lambda h: h.send_bytes(b"x")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(FetchError, match="unsafe file name"):
        fetcher(sleeps).fetch_file(site.url("/f"), dest, name=name)
    assert list(tmp_path.rglob("*")) == [dest] and site.hits["/f"] == 0


@pytest.mark.parametrize(("path", "expected"), [
    ("/dir/..%2F..%2Fetc%2Fpasswd", "passwd"),
    ("/dir/", "download"),
    ("/dir/%2E%2E", "download"),
    ("/dir/.profile", "download"),
])
def test_names_from_urls_stay_inside(site: Site, sleeps: list[float], tmp_path: Path,
                                     path: str, expected: str) -> None:
    site.routes[path] = lambda h: h.send_bytes(b"data")
    got = fetcher(sleeps).fetch_file(site.url(path), tmp_path)
    assert got.path == tmp_path / expected and got.path.read_bytes() == b"data"


def test_file_urls_need_permission_and_a_local_origin(sleeps: list[float],
                                                      tmp_path: Path) -> None:
    script = tmp_path / "boot.ipxe"
    script.write_bytes(b"#!ipxe\n")
    url = script.as_uri()
    with pytest.raises(FetchError, match="file: URLs are not allowed"):
        fetcher(sleeps).fetch_bytes(url, max_size=100)
    allowed = fetcher(sleeps, allow_file=True)
    assert allowed.fetch_bytes(url, max_size=100).data == b"#!ipxe\n"
    with pytest.raises(FetchError, match="may not read local files"):
        allowed.fetch_bytes(url, max_size=100, origin="http://192.0.2.1/boot.ipxe")
    assert allowed.fetch_bytes(url, max_size=100, origin=url).data == b"#!ipxe\n"
    with pytest.raises(FetchError, match="larger than 3 bytes"):
        allowed.fetch_bytes(url, max_size=3)


def test_resolve_url() -> None:
    assert resolve_url("http://h/a/boot.ipxe", "vmlinuz") == "http://h/a/vmlinuz"
    assert resolve_url("http://h/a/b", "tftp://t/x") == "tftp://t/x"
    assert resolve_url("file:///srv/a.ipxe", "k") == "file:///srv/k"
    assert resolve_url(None, "http://h/x") == "http://h/x"
    for reference in ("file:///etc/shadow", "FILE:///etc/shadow"):
        with pytest.raises(FetchError, match="may not read local files"):
            resolve_url("https://h/a.ipxe", reference)


def test_unsupported_scheme(sleeps: list[float]) -> None:
    with pytest.raises(FetchError, match="unsupported URL scheme 'ftp'"):
        fetcher(sleeps).fetch_bytes("ftp://192.0.2.1/x", max_size=1)


def test_credentials_are_sent_but_never_shown(site: Site, sleeps: list[float]) -> None:
    site.routes["/private"] = lambda h: h.send_error(401)
    url = site.url("/private").replace("://", "://fleet:s3cret@")
    with pytest.raises(FetchError) as caught:
        fetcher(sleeps).fetch_bytes(url, max_size=10)
    assert "s3cret" not in str(caught.value) and "fleet:***@" in str(caught.value)
    assert site.requests[0][2]["Authorization"] == "Basic ZmxlZXQ6czNjcmV0"


# -- HTTPS ------------------------------------------------------------------

def test_https_verifies_certificates(pki: Pki, sleeps: list[float]) -> None:
    with serve(pki.server_context()) as secure:
        secure.routes["/boot.ipxe"] = lambda h: h.send_bytes(b"#!ipxe\n")
        url = secure.url("/boot.ipxe")
        with pytest.raises(FetchError, match="TLS certificate verification failed"):
            fetcher(sleeps).fetch_bytes(url, max_size=100)
        assert sleeps == []  # not retried
        got = fetcher(sleeps, cafile=pki.ca).fetch_bytes(url, max_size=100)
        assert got.data == b"#!ipxe\n"


def test_https_insecure_works_and_warns(pki: Pki, sleeps: list[float],
                                        caplog: pytest.LogCaptureFixture) -> None:
    with serve(pki.server_context()) as secure, caplog.at_level(logging.WARNING):
        secure.routes["/x"] = lambda h: h.send_bytes(b"payload")
        got = fetcher(sleeps, insecure=True).fetch_bytes(secure.url("/x"), max_size=100)
    assert got.data == b"payload"
    assert "verification is DISABLED" in caplog.text
    assert "not verifying the server's certificate" in caplog.text


def test_https_to_http_redirect_is_refused(pki: Pki, site: Site, sleeps: list[float]) -> None:
    site.routes["/x"] = lambda h: h.send_bytes(b"plain")

    def downgrade(handler: Handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", site.url("/x"))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with serve(pki.server_context()) as secure:
        secure.routes["/x"] = downgrade
        with pytest.raises(FetchError, match="from https to plain http refused"):
            fetcher(sleeps, cafile=pki.ca).fetch_bytes(secure.url("/x"), max_size=100)
    assert site.hits["/x"] == 0


def test_a_redirected_script_resolves_relative_urls_where_it_landed(
        site: Site, sleeps: list[float], tmp_path: Path) -> None:
    # As iPXE's downloader: a script moved by a redirect chains relative to its new
    # home (${cwuri}), not to the URL asked for (issue 12, class 9).
    def moved(handler: Handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", "/new/boot.ipxe")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    site.routes["/old/boot.ipxe"] = moved  # type: ignore[assignment]
    site.routes["/new/boot.ipxe"] = lambda h: h.send_bytes(
        b"#!ipxe\necho at ${cwuri}\nchain next.ipxe\n")
    site.routes["/new/next.ipxe"] = lambda h: h.send_bytes(b"#!ipxe\necho next reached\n")
    class Events:
        def emit(self, event: str, **details: object) -> None:
            pass

    out = io.StringIO()
    interpreter = Interpreter(build_settings({}, None, None), fetcher(sleeps), lambda _: None,
                              Events(), out, download_dir=tmp_path / "downloads")

    interpreter.run_url(site.url("/old/boot.ipxe"))

    assert out.getvalue().splitlines() == [f"at {site.url('/new/boot.ipxe')}", "next reached"]
    assert site.hits["/new/next.ipxe"] == 1 and "/old/next.ipxe" not in site.hits
