"""Classes 6 and 7 of issue 12 over HTTP: one bad header costs that header, and a
resumed download never splices two objects.

Real servers on 127.0.0.1 send what no well-behaved server would: numbers
in digits `int()` refuses, thousands of digits, unparseable redirects and
retry hints, a resource that changes between two attempts with or without
validators. Then hypothesis writes the status line and headers itself: the
only exception a download may raise is FetchError.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramboot_agent import httpwire
from ramboot_agent.errors import AgentError, FetchError
from ramboot_agent.fetch import Fetcher
from tests.agent.io.hostile import RawSite, Request, raw_http
from tests.agent.io.servers import Handler, Site

OLD = random.Random(10).randbytes(300_000)
NEW = random.Random(11).randbytes(300_000)


def fetcher(sleeps: list[float], **kwargs: object) -> Fetcher:
    kwargs.setdefault("timeout", 5.0)
    return Fetcher(sleep=sleeps.append, rng=random.Random(1), **kwargs)  # type: ignore[arg-type]


def respond(conn: socket.socket, status: str, headers: dict[str, str], body: bytes = b"") -> None:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    conn.sendall(head.encode("latin-1") + b"\r\n" + body)


# -- class 6: one malformed header costs that header ------------------------------

@pytest.mark.parametrize("length", ["\u00b2", "9" * 5000, "-5", "12, 12", " 4 "])
def test_a_malformed_content_length_is_not_a_crash(sleeps: list[float], length: str) -> None:
    with raw_http() as site:
        site.routes["/x"] = lambda r, c: respond(
            c, "200 OK", {"Content-Length": length, "Connection": "close"}, b"body")
        try:
            got = fetcher(sleeps).fetch_bytes(site.url("/x"), max_size=100)
        except FetchError:
            return  # refusing is fine; a ValueError traceback is not
    assert got.data in (b"body", b"")


@pytest.mark.parametrize("value", ["\u00b2", "1e3", "9" * 5000, "Mon, 99 Foo 99999 99:99:99",
                                   "Sat, 01 Jan 10000 00:00:00 GMT", "-1", ""])
def test_a_malformed_retry_after_costs_only_the_hint(sleeps: list[float], value: str) -> None:
    with raw_http() as site:
        def busy_then_ok(request: Request, conn: socket.socket) -> None:
            if site.hits["/busy"] == 1:
                respond(conn, "503 Busy", {"Retry-After": value, "Content-Length": "0"})
            else:
                respond(conn, "200 OK", {"Content-Length": "2"}, b"ok")

        site.routes["/busy"] = busy_then_ok
        got = fetcher(sleeps, backoff=0.5).fetch_bytes(site.url("/busy"), max_size=10)
    assert got.data == b"ok"
    assert len(sleeps) == 1 and sleeps[0] < 0.5  # the ordinary back-off, no hint


@pytest.mark.parametrize(("location", "reason"), [
    ("http://[::1", "redirect to a malformed URL"),
    ("http://127.0.0.1:99999/x", "malformed URL: Port out of range"),
    ("http://h\x7fx/", "control characters"),
    ("https:///x", "no host in the URL"),
    ("", "redirect without Location"),
])
def test_a_malformed_redirect_is_a_fetch_error(sleeps: list[float], location: str,
                                               reason: str) -> None:
    with raw_http() as site:
        site.routes["/old"] = lambda r, c: respond(
            c, "302 Found", {"Location": location, "Content-Length": "0"})
        with pytest.raises(FetchError, match=reason):
            fetcher(sleeps).fetch_bytes(site.url("/old"), max_size=10)
        assert site.hits["/old"] == 1 and sleeps == []


@pytest.mark.parametrize(("url", "reason"), [
    ("http://127.0.0.1:1/a\nb", "control characters in the URL"),
    ("http://[::1/boot.ipxe", "malformed URL: Invalid IPv6 URL"),
    ("http://127.0.0.1:70000/", "malformed URL: Port out of range"),
    ("http://127.0.0.1:port/", "malformed URL"),
    ("http:///boot.ipxe", "no host in the URL"),
    ("tftp://127.0.0.1/a%00b", "cannot contain NUL"),
])
def test_a_malformed_url_fails_at_once_and_clearly(sleeps: list[float], url: str,
                                                   reason: str) -> None:
    with pytest.raises(FetchError, match=reason):
        fetcher(sleeps).fetch_bytes(url, max_size=10)
    assert sleeps == []  # nothing to retry


def test_non_ascii_and_spaces_in_a_url_are_escaped_as_ipxe_escapes_them(
        site: Site, sleeps: list[float]) -> None:
    site.routes["/images/caf%C3%A9%20v2.ipxe"] = lambda h: h.send_bytes(b"#!ipxe\n")
    got = fetcher(sleeps).fetch_bytes(site.url("/images/café v2.ipxe"), max_size=100)
    assert got.data == b"#!ipxe\n"
    assert site.requests[0][1] == "/images/caf%C3%A9%20v2.ipxe"


def test_control_characters_in_a_status_reason_are_escaped(sleeps: list[float]) -> None:
    with raw_http() as site:
        site.routes["/x"] = lambda r, c: respond(
            c, "403 No\x1b[2J\x07entry", {"Content-Length": "0"})
        with pytest.raises(FetchError) as caught:
            fetcher(sleeps).fetch_bytes(site.url("/x"), max_size=10)
    assert str(caught.value).endswith("HTTP 403 No\\x1b[2J\\x07entry")


# -- class 7: a resume proves it continues the same object ---------------------------

def changing(site: Site, path: str, *, first: dict[str, str], second: dict[str, str],
             honour_if_range: bool = False) -> None:
    """First GET: OLD with `first` headers, cut after 100,000 bytes. Later: NEW with
    `second` headers, answering Range with 206 (ignoring If-Range unless told)."""
    def route(handler: Handler) -> None:
        if site.hits[path] == 1:
            handler.send_bytes(OLD, drop_after=100_000, headers=first)
            return
        wanted = handler.headers.get("If-Range")
        matches = wanted is not None and wanted in second.values()
        handler.send_bytes(NEW, headers=second,
                           honour_range=not honour_if_range or matches)
    site.routes[path] = route


def test_a_resume_without_a_validator_starts_over(site: Site, sleeps: list[float]) -> None:
    def route(handler: Handler) -> None:
        data = OLD if site.hits["/v"] == 1 else NEW
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[:100_000] if site.hits["/v"] == 1 else data)
        if site.hits["/v"] == 1:
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)

    site.routes["/v"] = route
    got = fetcher(sleeps).fetch_bytes(site.url("/v"), max_size=len(NEW))
    assert got.data == NEW and got.sha256 == hashlib.sha256(NEW).hexdigest()
    assert "Range" not in site.requests[1][2]  # nothing to prove it the same: no resume


def test_a_changed_etag_on_the_206_restarts_the_download(site: Site,
                                                         sleeps: list[float]) -> None:
    # A server (or a cache before it) that ignores If-Range but honours Range.
    changing(site, "/k", first={"ETag": '"one"'}, second={"ETag": '"two"'})
    got = fetcher(sleeps).fetch_bytes(site.url("/k"), max_size=len(NEW))
    assert got.data == NEW  # never OLD[:100000] + NEW[100000:]
    ranges = [request[2].get("Range") for request in site.requests]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[2] is None
    assert site.requests[1][2]["If-Range"] == '"one"'


def test_a_changed_total_size_restarts_the_download(site: Site, sleeps: list[float]) -> None:
    longer = NEW + b"tail"

    def route(handler: Handler) -> None:
        handler.send_bytes(OLD if site.hits["/s"] == 1 else longer,
                           drop_after=100_000 if site.hits["/s"] == 1 else None)
    site.routes["/s"] = route  # the same ETag "v1" both times, but not the same size
    got = fetcher(sleeps).fetch_bytes(site.url("/s"), max_size=len(longer))
    assert got.data == longer


@pytest.mark.parametrize("validators", [
    {"ETag": 'W/"weak"'},  # weak: RFC 9110 forbids it in If-Range
    {"ETag": "unquoted"},  # not an entity tag at all
    {"Last-Modified": "Sat, 01 Jan 2000 00:00:00 GMT", "Date": ""},  # no Date to prove it
])
def test_weak_or_malformed_validators_mean_starting_over(site: Site, sleeps: list[float],
                                                         validators: dict[str, str]) -> None:
    headers = {k: v for k, v in validators.items() if v}
    changing(site, "/w", first=headers, second=headers)
    if "ETag" not in validators:
        # send_bytes sends ETag "v1": drop it for the Last-Modified case.
        route = site.routes["/w"]

        def without_etag(handler: Handler) -> None:
            handler.send_header = _skipping(handler.send_header, ("ETag", "Date"))  # type: ignore[method-assign]
            route(handler)
        site.routes["/w"] = without_etag
    got = fetcher(sleeps).fetch_bytes(site.url("/w"), max_size=len(NEW))
    assert got.data == NEW
    assert all("Range" not in request[2] for request in site.requests)


def _skipping(send_header, names):  # type: ignore[no-untyped-def]
    def send(name: str, value: str) -> None:
        if name not in names:
            send_header(name, value)
    return send


def test_a_strong_last_modified_with_a_later_date_may_resume(site: Site,
                                                            sleeps: list[float]) -> None:
    stamp = "Sat, 01 Jan 2000 00:00:00 GMT"

    def route(handler: Handler) -> None:
        handler.send_header = _skipping(handler.send_header, ("ETag",))  # type: ignore[method-assign]
        first = site.hits["/lm"] == 1
        handler.send_bytes(OLD, drop_after=100_000 if first else None,
                           headers={"Last-Modified": stamp})
    site.routes["/lm"] = route
    got = fetcher(sleeps).fetch_bytes(site.url("/lm"), max_size=len(OLD))
    assert got.data == OLD
    assert site.requests[1][2]["If-Range"] == stamp
    assert site.requests[1][2]["Range"].startswith("bytes=")


def test_if_range_is_honoured_end_to_end(site: Site, sleeps: list[float],
                                         tmp_path: Path) -> None:
    # A correct server: the changed object comes whole (200) because If-Range did not match.
    changing(site, "/ok", first={"ETag": '"one"'}, second={"ETag": '"two"'},
             honour_if_range=True)
    got = fetcher(sleeps).fetch_file(site.url("/ok"), tmp_path, name="kernel")
    assert (tmp_path / "kernel").read_bytes() == NEW and got.size == len(NEW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel"]


# -- fuzz: whatever the status line and headers, only FetchError ----------------------

HEADER_NAMES = st.sampled_from(["Content-Length", "Content-Range", "Retry-After", "Location",
                                "ETag", "Last-Modified", "Date", "Transfer-Encoding",
                                "Connection", "X-Other"])
HEADER_VALUES = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xff), max_size=40),
    st.sampled_from(["0", "5", "bytes 0-4/5", "bytes 3-4/5", "bytes */5", "chunked",
                     "http://[::1", "http://127.0.0.1:1/x", "/elsewhere", "1e9", "\u00b2",
                     '"v1"', 'W/"v1"', "Sat, 01 Jan 2000 00:00:00 GMT", "9" * 30]),
)
RESPONSES = st.tuples(
    st.sampled_from(["200 OK", "206 Partial", "301 Moved", "302 Found", "307 Temp",
                     "404 Missing", "416 Range", "429 Slow", "503 Busy", "999 Odd", "20 X",
                     "abc", ""]),
    st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6),
    st.binary(max_size=64),
)


class FuzzServer:
    """One raw server whose next reply each hypothesis example sets."""

    def __init__(self) -> None:
        self.reply = b""
        self.lock = threading.Lock()

    def route(self, request: Request, conn: socket.socket) -> None:
        with self.lock:
            reply = self.reply
        conn.sendall(reply)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[tuple[RawSite, FuzzServer]]:
    server = FuzzServer()
    with raw_http() as site:
        site.routes["/f"] = server.route
        yield site, server


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(reply=RESPONSES)
def test_any_reply_ends_in_data_or_a_fetch_error(
        fuzz_server: tuple[RawSite, FuzzServer],
        reply: tuple[str, list[tuple[str, str]], bytes]) -> None:
    site, server = fuzz_server
    status, headers, body = reply
    with server.lock:
        server.reply = (f"HTTP/1.1 {status}\r\n".encode("latin-1")
                        + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
                        + b"Connection: close\r\n\r\n" + body)
    quick = Fetcher(timeout=0.5, retries=1, deadline=3.0, sleep=lambda _s: None,
                    rng=random.Random(0))
    try:
        got = quick.fetch_bytes(site.url("/f"), max_size=1000)
    except AgentError as error:
        assert isinstance(error, FetchError)
    else:
        assert got.size == len(got.data or b"") <= 1000


# -- the header parsers alone -----------------------------------------------------------

TEXT = st.text(max_size=80)


@settings(max_examples=2000, deadline=None)
@given(TEXT, TEXT, TEXT, TEXT)
def test_header_parsers_return_a_value_or_none(a: str, b: str, c: str, d: str) -> None:
    length = httpwire.parse_length(a)
    assert length is None or (0 <= length < 10**18)
    span = httpwire.parse_content_range(b)
    assert span is None or 0 <= span.start <= span.end
    assert span is None or span.complete is None or span.end < span.complete
    delay = httpwire.parse_retry_after(c)
    assert delay is None or delay >= 0
    httpwire.parse_http_date(d)
    validator = httpwire.resume_validator(a, b, c)
    assert validator is None or validator in (a.strip(), b.strip())


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_urls_and_redirects_parse_or_fail_cleanly(url: str, location: str) -> None:
    for candidate in (url, "http://" + url, "http://h/" + url):
        try:
            parts = httpwire.split_url(candidate, ("http", "https", "tftp"))
        except FetchError:
            continue
        assert parts.hostname
        target = httpwire.request_target(parts)
        assert target.isascii() and " " not in target
    try:
        target = httpwire.redirect_target("shown", "http://127.0.0.1/a/b", location, 302)
    except FetchError:
        return
    assert target.startswith(("http://", "https://"))
