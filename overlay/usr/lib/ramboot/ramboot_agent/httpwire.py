"""What comes off the wire for HTTP: URL checks, header parsing, total-time bounds.

Everything here takes untrusted text. The header parsers return a value, or
None when the header is absent or unusable: an optional field that is
malformed costs that field (a resume, a back-off hint), never the download.
`split_url` raises FetchError naming what is wrong with a URL. `Watchdog`
bounds one HTTP exchange in total time, however slowly the peer drips bytes.

Used by `fetch` (downloads) and `events` (status reports).
"""
# ruff: noqa: PLC0415 (http.client, ssl and email are imported on first use)

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, quote, urljoin, urlsplit

from ramboot_agent.errors import FetchError
from ramboot_agent.log import redact_url

if TYPE_CHECKING:
    import http.client
    import ssl

# Sizes and offsets: ASCII digits only (str.isdigit() also accepts "²", which
# int() refuses), and at most 18 of them (an exabyte), so int() stays cheap.
_NUMBER = r"[0-9]{1,18}"
_CONTENT_RANGE = re.compile(rf"bytes[ \t]+({_NUMBER})-({_NUMBER})/({_NUMBER}|\*)", re.ASCII)
_DELAY_SECONDS = re.compile(r"[0-9]{1,10}", re.ASCII)
# RFC 9110 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
_STRONG_ETAG = re.compile(r'"[\x21\x23-\x7e\x80-\xff]*"')
# Control characters are never part of a URL to fetch; spaces are escaped below.
_URL_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
# Characters sent as they are in a request target; everything else is %-escaped
# (a space, non-ASCII text), as iPXE escapes the URIs it sends.
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"


@dataclass(frozen=True)
class ContentRange:
    """`Content-Range: bytes start-end/complete` (complete None for `*`)."""

    start: int
    end: int
    complete: int | None


def parse_length(value: str | None) -> int | None:
    """A `Content-Length` value, or None when absent or not a plain number."""
    if value is None:
        return None
    text = value.strip()
    return int(text) if re.fullmatch(_NUMBER, text, re.ASCII) else None


def parse_content_range(value: str | None) -> ContentRange | None:
    """A `Content-Range` for a byte range, or None when absent or inconsistent."""
    if value is None:
        return None
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if not match:
        return None
    start, end = int(match.group(1)), int(match.group(2))
    complete = None if match.group(3) == "*" else int(match.group(3))
    if end < start or (complete is not None and end >= complete):
        return None
    return ContentRange(start, end, complete)


def parse_http_date(value: str | None) -> float | None:
    """An HTTP date (RFC 9110 5.6.7, and the obsolete forms) as epoch seconds."""
    if not value or len(value) > 64:
        return None
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value.strip())
        if when.tzinfo is None:  # "-0000": HTTP dates are always UTC
            from datetime import UTC

            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` (delay-seconds or an HTTP date) in seconds from now, or None."""
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    when = parse_http_date(text)
    if when is None:
        return None
    return max(0.0, when - (time.time() if now is None else now))


def resume_validator(etag: str | None, last_modified: str | None,
                     date: str | None) -> str | None:
    """The value to send in `If-Range`, or None when the response gives none.

    RFC 9110 13.1.5: a strong entity tag; else, only if the response had no
    entity tag at all, a Last-Modified date that is a strong validator (the
    response's Date at least one second later, 8.8.2.2). A weak or
    malformed entity tag means the representation cannot be proved the same.
    """
    if etag is not None and etag.strip():
        tag = etag.strip()
        return tag if _STRONG_ETAG.fullmatch(tag) else None
    modified, sent = parse_http_date(last_modified), parse_http_date(date)
    if last_modified is None or modified is None or sent is None or sent - modified < 1:
        return None
    return last_modified.strip()


def split_url(url: str, schemes: tuple[str, ...]) -> SplitResult:
    """`url` parsed, or FetchError saying what makes it unusable.

    Checks what urlsplit leaves for later (ports, IPv6 brackets, host names
    that cannot be encoded) so that no malformed URL, from a DHCP option or
    a redirect, turns into an exception other than FetchError.
    """
    shown = redact_url(url)
    if _URL_CONTROLS.search(url):
        raise FetchError(shown, "control characters in the URL")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not 0-65535)
        host = parts.hostname
    except ValueError as error:
        raise FetchError(shown, f"malformed URL: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise FetchError(shown, f"unsupported URL scheme {scheme!r} ({', '.join(schemes)})")
    if not host:
        raise FetchError(shown, "no host in the URL")
    if " " in host:
        raise FetchError(shown, f"malformed host name {host!r}")
    try:
        host.encode("idna")
    except UnicodeError:
        raise FetchError(shown, f"malformed host name {host!r}") from None
    return parts


def request_target(parts: SplitResult) -> str:
    """The path and query to send, with spaces and non-ASCII text %-escaped."""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return quote(target, safe=_TARGET_SAFE, errors="surrogateescape")


def redirect_target(shown: str, current: str, location: str | None, status: int) -> str:
    """The absolute URL a redirect points to; FetchError when it is unusable."""
    if not location or not location.strip():
        raise FetchError(shown, f"HTTP {status} redirect without Location")
    try:
        target = urljoin(current, location.strip())
    except ValueError as error:
        raise FetchError(shown, f"HTTP {status} redirect to a malformed URL: {error}") from None
    old, new = urlsplit(current).scheme.lower(), urlsplit(target).scheme.lower()
    if new not in ("http", "https"):
        raise FetchError(shown, f"redirect to unsupported scheme {new!r} refused")
    if old == "https" and new == "http":
        raise FetchError(shown, f"redirect from https to plain http refused "
                         f"({redact_url(target)})")
    split_url(target, ("http", "https"))
    return target


class Watchdog:
    """Shuts a connection's socket down once `seconds` have passed.

    Per-read timeouts do not bound a server that sends one byte just before
    each would expire; this does, whatever the exchange is doing (TLS
    handshake, headers, body). It holds a duplicate of the socket's file
    descriptor, so the descriptor it shuts down can never be another's.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._done = False
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            if not self._done:
                self._sock = sock.dup()
                if self.fired:
                    self._shutdown()
        return sock

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already gone: nothing left to stop
                self._sock.shutdown(socket.SHUT_RDWR)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if not self._done:
                self._shutdown()

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def open_connection(parts: SplitResult, *, timeout: float, watchdog: Watchdog,
                    context: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    """An HTTP(S) connection to `parts`' host whose socket `watchdog` guards."""
    import http.client

    host = parts.hostname or ""
    connection: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        connection = http.client.HTTPSConnection(host, parts.port, timeout=timeout,
                                                 context=context)
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    create = socket.create_connection

    def guarded(address: tuple[str, int], timeout: float | None = None,
                source_address: tuple[str, int] | None = None) -> socket.socket:
        return watchdog.attach(create(address, timeout, source_address))

    # http.client's own hook for making the socket (the plain one, before TLS).
    setattr(connection, "_create_connection", guarded)  # noqa: B010
    return connection
