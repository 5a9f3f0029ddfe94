"""Downloads over HTTP, HTTPS, TFTP and (when allowed) local files.

Every download is bounded (a deadline for the whole download, retries and
all; timeouts on connect and on each read; a bounded number of retries and
redirects; a size cap or a free-space check), verified (TLS certificates by
default, sha256 computed while streaming), atomic on disk (a `.part` file
renamed into place only when complete) and never spliced: a resumed HTTP
download must prove, with a strong validator and the total size, that it
continues the same object, or it starts over.

Heavy modules (ssl, http.client, email) are imported on first use to
keep the agent's start-up fast.
"""
# ruff: noqa: PLC0415 (function-level imports here are deliberate, see above)

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

from ramboot_agent import __version__, httpwire
from ramboot_agent.errors import FetchError
from ramboot_agent.log import redact_url, sanitise

if TYPE_CHECKING:
    import http.client
    import ssl

log = logging.getLogger("ramboot.fetch")

# Where the image (Buildroot's ca-certificates) and Debian keep the CA bundle.
CA_BUNDLES = (Path("/etc/ssl/certs/ca-certificates.crt"), Path("/etc/ssl/cert.pem"))
MAX_REDIRECTS = 10
# Attempts that made progress (resumable drops) do not use up retries, up to this many.
MAX_RESUMES = 16
CHUNK = 64 * 1024
SPACE_CHECK_EVERY = 1024 * 1024
PROGRESS_EVERY = 256 * 1024
TFTP_PACKET_TIMEOUT = 2.0
# One download, from the first request to the last byte, retries and back-off included.
DEFAULT_DEADLINE = 1800.0
MAX_NAME_BYTES = 200  # file names, so `.<name>.part` stays within NAME_MAX (255)
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
NETWORK_SCHEMES = ("http", "https", "tftp")
SCHEMES = ("http", "https", "tftp", "file")

ProgressCallback = Callable[[int, "int | None"], None]  # (bytes so far, total if known)


@dataclass(frozen=True)
class Fetched:
    """The result of one download."""

    url: str  # as requested
    final_url: str  # after redirects
    data: bytes | None  # fetch_bytes
    path: Path | None  # fetch_file
    size: int
    sha256: str  # "" when the sink hashes for itself (Sink.hashed False)
    seconds: float


class _Retry(Exception):
    """A failure after which another attempt may succeed."""

    def __init__(self, reason: str, *, retry_after: float | None = None,
                 progressed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.progressed = progressed


def redact(url: str) -> str:
    """The URL without its secrets (password, token parameters), for logs and errors."""
    return redact_url(url)


def resolve_url(base: str | None, reference: str) -> str:
    """Resolve `reference` (as written in a script) against the script's URL.

    A script that came over the network may not name local files: a
    `file:` URL is only accepted when the script itself was a local file.
    """
    try:
        url = urljoin(base, reference) if base else reference
        scheme, base_scheme = urlsplit(url).scheme, urlsplit(base or "").scheme
    except ValueError as error:
        raise FetchError(redact(reference), f"malformed URL: {error}") from None
    if scheme.lower() == "file" and base and base_scheme.lower() != "file":
        raise FetchError(redact(url), f"a script fetched from {redact(base)} "
                         "may not read local files")
    return url


def safe_filename(name: str) -> str:
    """`name` if it is a plain file name that stays inside its directory."""
    if not name or name in {".", ".."} or "/" in name or "\0" in name or name.startswith("."):
        raise ValueError(f"unsafe file name {name!r}")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise ValueError(f"file name longer than {MAX_NAME_BYTES} bytes")
    return name


def _filename_from_url(url: str) -> str:
    candidate = unquote(urlsplit(url).path).rsplit("/", 1)[-1]
    try:
        return safe_filename(candidate)
    except ValueError:
        return "download"


def release(path: Path) -> None:
    """Remove a downloaded file, and its directory when that is left empty.

    For images a script freed: on a RAM disk, a file nobody uses is memory lost.
    """
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        path.parent.rmdir()


def default_cafile() -> Path | None:
    return next((path for path in CA_BUNDLES if path.is_file()), None)


def make_ssl_context(*, cafile: str | os.PathLike[str] | None = None,
                     insecure: bool = False) -> ssl.SSLContext:
    """A client TLS context verifying against `cafile` or the image's CA bundle."""
    import ssl

    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    chosen = cafile if cafile is not None else default_cafile()
    # With no bundle at all, fall back to OpenSSL's compiled-in default paths.
    return ssl.create_default_context(cafile=os.fspath(chosen) if chosen else None)


def _os_error_reason(error: BaseException) -> tuple[str, bool]:
    """(reason, retryable) for a socket-level failure."""
    ssl = sys.modules.get("ssl")
    if ssl is not None and isinstance(error, ssl.SSLCertVerificationError):
        hint = "" if default_cafile() else " (no CA bundle found in the image)"
        return f"TLS certificate verification failed: {error.verify_message}{hint}", False
    if ssl is not None and isinstance(error, ssl.SSLError):
        transient = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
        return f"TLS error: {error.reason or error}", isinstance(error, transient)
    if isinstance(error, TimeoutError):
        return "timed out", True
    if isinstance(error, OSError) and error.strerror:
        return error.strerror, True
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__, True


class _Deadline:
    """The end of one download: every attempt, redirect and back-off fits before it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def exceeded(self, shown: str, what: str) -> FetchError:
        return FetchError(shown, f"{what}: gave up, the download's {self.seconds:.4g} s "
                          "limit was reached")


class _Sink:
    """Where downloaded bytes go; hashes and counts them.

    Subclasses (memory, a file, later a block device at an offset) store the
    bytes; `reset` must start them over from their beginning and call
    `super().reset()`. The Fetcher keeps `validator` and `total` here, so a
    resume into any sink is checked the same way.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.size = 0
        self.hasher = hashlib.sha256()
        self.validator: str | None = None  # strong ETag / Last-Modified, for If-Range
        self.total: int | None = None  # the object's full size, once announced

    @property
    def hashed(self) -> bool:
        """Whether `hasher` holds the sha256 of what was served (False for a sink that
        checks a digest of its own, or none)."""
        return True

    def expect(self, total: int) -> None:
        """Called with the full size as soon as it is known, before the data."""

    def write(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.size += len(chunk)

    def reset(self) -> None:
        self.size = 0
        self.hasher = hashlib.sha256()
        self.validator = None
        self.total = None


# Sinks of other modules (a block device, for the plan's `image` action) subclass this.
Sink = _Sink


class _MemorySink(_Sink):
    def __init__(self, url: str, max_size: int) -> None:
        super().__init__(url)
        self.max_size = max_size
        self.buffer = bytearray()

    def expect(self, total: int) -> None:
        if total > self.max_size:
            raise FetchError(self.url, f"larger than {self.max_size} bytes ({total} announced)")

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.max_size:
            raise FetchError(self.url, f"larger than {self.max_size} bytes")
        self.buffer += chunk
        super().write(chunk)

    def reset(self) -> None:
        super().reset()
        self.buffer.clear()


class _FileSink(_Sink):
    """Streams to `<dir>/.<name>.part`, renamed to `<dir>/<name>` when complete."""

    def __init__(self, url: str, directory: Path, name: str) -> None:
        super().__init__(url)
        self.directory = directory
        self.path = directory / name
        self.part = directory / f".{name}.part"
        self.checked_at = 0
        self.file: BinaryIO = self.part.open("wb")

    def free_bytes(self) -> int:
        stat = os.statvfs(self.directory)
        return stat.f_bavail * stat.f_frsize

    def _check_space(self, needed: int) -> None:
        free = self.free_bytes()
        if needed > free:
            raise FetchError(self.url, f"not enough space in {self.directory}: "
                             f"{needed} more bytes needed, {free} free")

    def expect(self, total: int) -> None:
        self._check_space(total - self.size)

    def write(self, chunk: bytes) -> None:
        if self.size - self.checked_at >= SPACE_CHECK_EVERY:
            # Another writer may be filling the same tmpfs while we download.
            self.checked_at = self.size
            remaining = (self.total - self.size) if self.total is not None else len(chunk)
            needed, free = max(remaining, len(chunk)), self.free_bytes()
            if needed > free:
                raise FetchError(self.url, f"no space left in {self.directory} after "
                                 f"{self.size} bytes: {needed} more needed, {free} free")
        try:
            self.file.write(chunk)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise FetchError(self.url, f"no space left in {self.directory} "
                                 f"after {self.size} bytes") from None
            raise FetchError(self.url, f"cannot write {self.part}: {error.strerror}") from None
        super().write(chunk)

    def reset(self) -> None:
        super().reset()
        self.checked_at = 0
        self.file.seek(0)
        self.file.truncate()

    def commit(self) -> None:
        try:
            self.file.close()
            self.part.replace(self.path)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise FetchError(self.url, f"no space left in {self.directory}") from None
            raise FetchError(self.url, f"cannot write {self.path}: {error.strerror}") from None

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        self.part.unlink(missing_ok=True)


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class Fetcher:
    """Downloads with retries, redirects, resume and verification.

    `deadline` bounds each download from its first request to its last
    byte, retries and back-off included; `timeout` bounds connecting and
    each read. `allow_file` enables `file:` URLs (workstation `run-script`);
    the boot path leaves it off. `sleep` exists so tests can observe
    back-off delays.
    """

    def __init__(
        self,
        *,
        insecure: bool = False,
        cafile: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        deadline: float = DEFAULT_DEADLINE,
        rng: random.Random | None = None,
        user_agent: str = f"ramboot-agent/{__version__}",
        allow_file: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.insecure = insecure
        self.cafile = cafile
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.deadline = deadline
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not secrets)
        self.user_agent = user_agent
        self.allow_file = allow_file
        self.sleep = sleep
        self._ssl_context: ssl.SSLContext | None = None
        self._token: str | None = None
        self._token_origins: set[tuple[str, str, int | None]] = set()
        if insecure:
            log.warning("TLS certificate verification is DISABLED (insecure): "
                        "any machine on the path can substitute what this agent boots")

    # -- public API --------------------------------------------------------

    def fetch_bytes(self, url: str, *, max_size: int, origin: str | None = None,
                    deadline: float | None = None) -> Fetched:
        """Download `url` into memory; more than `max_size` bytes is an error."""
        sink = _MemorySink(url, max_size)
        started = time.monotonic()
        final_url = self._fetch(url, sink, None, origin, deadline)
        return self._result(url, final_url, sink, started, data=bytes(sink.buffer))

    def fetch_file(
        self,
        url: str,
        dest_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
        on_progress: ProgressCallback | None = None,
        origin: str | None = None,
        deadline: float | None = None,
    ) -> Fetched:
        """Stream `url` to `dest_dir/name` (name defaults to the URL's last segment)."""
        directory = Path(dest_dir)
        try:
            filename = safe_filename(name) if name is not None else _filename_from_url(url)
        except ValueError as error:
            raise FetchError(redact(url), str(error)) from None
        if not directory.is_dir():
            raise FetchError(redact(url), f"destination {directory} is not a directory")
        try:
            sink = _FileSink(url, directory, filename)
        except OSError as error:
            reason = f"cannot write in {directory}: {error.strerror}"
            raise FetchError(redact(url), reason) from None
        started = time.monotonic()
        try:
            final_url = self._fetch(url, sink, on_progress, origin, deadline)
            sink.commit()
        except BaseException:
            sink.discard()
            raise
        return self._result(url, final_url, sink, started, path=sink.path)

    def fetch_into(self, url: str, sink: _Sink, *, on_progress: ProgressCallback | None = None,
                   origin: str | None = None, deadline: float | None = None) -> Fetched:
        """Stream `url` into `sink` (a `_Sink` subclass), with the same retries and checks.

        Returns a Fetched with neither data nor path; the sink holds the bytes.
        """
        started = time.monotonic()
        final_url = self._fetch(url, sink, on_progress, origin, deadline)
        return self._result(url, final_url, sink, started)

    # -- dispatch and retries ----------------------------------------------

    def _result(self, url: str, final_url: str, sink: _Sink, started: float, *,
                data: bytes | None = None, path: Path | None = None) -> Fetched:
        seconds = time.monotonic() - started
        digest = sink.hasher.hexdigest() if sink.hashed else ""
        log.info("fetched %s: %d bytes in %.2fs%s", redact(final_url), sink.size, seconds,
                 f", sha256 {digest}" if digest else "")
        return Fetched(url, final_url, data, path, sink.size, digest, seconds)

    def _fetch(self, url: str, sink: _Sink, on_progress: ProgressCallback | None,
               origin: str | None, deadline: float | None) -> str:
        shown = redact(url)
        sink.url = shown
        parts = self._split(url, shown)
        scheme = parts.scheme.lower()
        log.debug("fetching %s", shown)
        limit = _Deadline(self.deadline if deadline is None else deadline)
        if scheme == "file":
            if origin and urlsplit(origin).scheme.lower() in NETWORK_SCHEMES:
                raise FetchError(shown, f"named by {redact(origin)}: a script fetched over "
                                 "the network may not read local files")
            if not self.allow_file:
                raise FetchError(shown, "file: URLs are not allowed here")
            return self._read_local(url, parts, sink, on_progress, limit)
        if scheme in ("http", "https"):
            return self._with_retries(
                shown, limit, lambda: self._http_attempt(url, sink, on_progress, limit))
        return self._with_retries(
            shown, limit, lambda: self._tftp_attempt(url, parts, sink, on_progress, limit))

    @staticmethod
    def _split(url: str, shown: str) -> SplitResult:
        if url[:5].lower() != "file:":
            return httpwire.split_url(url, SCHEMES)
        try:
            return urlsplit(url)
        except ValueError as error:
            raise FetchError(shown, f"malformed URL: {error}") from None

    def _delay(self, failures: int, retry_after: float | None) -> float:
        # Full jitter: a fleet rebooting together does not retry in lock-step.
        ceiling = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
        delay = self.rng.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def _with_retries(self, shown: str, limit: _Deadline, attempt: Callable[[], str]) -> str:
        failures = resumes = 0
        while True:
            try:
                return attempt()
            except _Retry as retry:
                if limit.remaining() <= 0:
                    raise limit.exceeded(shown, retry.reason) from None
                if retry.progressed and resumes < MAX_RESUMES:
                    resumes += 1
                    log.warning("%s: %s; resuming", shown, retry.reason)
                    continue
                failures += 1
                if failures > self.retries:
                    raise FetchError(shown, f"{retry.reason} (gave up after "
                                     f"{failures + resumes} attempts)") from None
                delay = self._delay(failures, retry.retry_after)
                if delay >= limit.remaining():
                    raise limit.exceeded(shown, retry.reason) from None
                log.warning("%s: %s; retry %d of %d in %.1fs", shown, retry.reason,
                            failures, self.retries, delay)
                self.sleep(delay)

    # -- file: ----------------------------------------------------------------

    def _read_local(self, url: str, parts: SplitResult, sink: _Sink,
                    on_progress: ProgressCallback | None, limit: _Deadline) -> str:
        shown = redact(url)
        if parts.netloc not in ("", "localhost"):
            raise FetchError(shown, "file: URLs must name a local path (file:///path)")
        path = Path(unquote(parts.path))
        try:
            with path.open("rb") as source:
                sink.expect(os.fstat(source.fileno()).st_size)
                while chunk := source.read(CHUNK):
                    sink.write(chunk)
                    if limit.remaining() <= 0:
                        raise limit.exceeded(shown, f"reading {path}")
        except OSError as error:
            raise FetchError(shown, f"cannot read {path}: {error.strerror}") from None
        if on_progress:
            on_progress(sink.size, sink.size)
        return url

    # -- TFTP -----------------------------------------------------------------

    def _tftp_attempt(self, url: str, parts: SplitResult, sink: _Sink,
                      on_progress: ProgressCallback | None, limit: _Deadline) -> str:
        from ramboot_agent import tftp

        # As iPXE does: tftp://server/file asks for "file"; tftp://server//abs for "/abs".
        filename = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
        sink.reset()  # TFTP cannot resume: every attempt starts over
        reported = [0]

        def write(block: bytes) -> None:
            sink.write(block)
            if on_progress and sink.size - reported[0] >= PROGRESS_EVERY:
                reported[0] = sink.size
                on_progress(sink.size, sink.total)

        def announced(total: int) -> None:
            sink.expect(total)
            sink.total = total

        try:
            result = tftp.fetch(
                parts.hostname or "", filename, write, port=parts.port or tftp.DEFAULT_PORT,
                timeout=min(self.timeout, TFTP_PACKET_TIMEOUT), deadline=limit.remaining(),
                on_size=announced,
            )
        except tftp.TftpError as error:
            if error.retryable:
                raise _Retry(str(error)) from None
            raise FetchError(sink.url, str(error)) from None
        except OSError as error:
            raise _Retry(_os_error_reason(error)[0]) from None
        log.debug("%s: tftp blksize %d, tsize %s", sink.url, result.blksize, result.tsize)
        if on_progress:
            on_progress(sink.size, sink.size)
        return url

    # -- HTTP(S) ---------------------------------------------------------------

    def _connection(self, parts: SplitResult, timeout: float,
                    watchdog: httpwire.Watchdog) -> http.client.HTTPConnection:
        context = None
        if parts.scheme.lower() == "https":
            if self._ssl_context is None:
                self._ssl_context = make_ssl_context(cafile=self.cafile, insecure=self.insecure)
            if self.insecure:
                log.warning("%s: not verifying the server's certificate (insecure)",
                            parts.hostname)
            context = self._ssl_context
        return httpwire.open_connection(parts, timeout=timeout, watchdog=watchdog,
                                        context=context)

    def authorize(self, url: str, token: str) -> None:
        """Send `Authorization: Bearer token` to `url`'s origin (scheme, host, port)
        only: never to an image server or CDN a plan or script names."""
        self._token = token
        self._token_origins.add(_origin(urlsplit(url)))

    def _headers(self, parts: SplitResult) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity",
                   "Connection": "close"}
        if self._token and _origin(parts) in self._token_origins:
            headers["Authorization"] = f"Bearer {self._token}"
        if parts.username is not None:
            import base64
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            encoded = token.encode("utf-8", "surrogateescape")
            headers["Authorization"] = "Basic " + base64.b64encode(encoded).decode()
        return headers

    def _http_attempt(self, url: str, sink: _Sink, on_progress: ProgressCallback | None,
                      limit: _Deadline) -> str:
        import http.client
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            parts = httpwire.split_url(current, ("http", "https"))
            headers = self._headers(parts)
            if sink.size and (sink.validator is None or sink.total is None):
                # Nothing proves a second request would continue the same object.
                log.warning("%s: the server gave no strong validator and size to resume "
                            "with; restarting from 0", sink.url)
                sink.reset()
            offset = sink.size
            if offset:
                headers["Range"] = f"bytes={offset}-"
                headers["If-Range"] = sink.validator or ""
            remaining = limit.remaining()
            if remaining <= 0:
                raise limit.exceeded(sink.url, f"{offset} bytes received")
            watchdog = httpwire.Watchdog(remaining)
            connection = self._connection(parts, min(self.timeout, remaining), watchdog)
            response = None
            try:
                try:
                    connection.request("GET", httpwire.request_target(parts), headers=headers)
                    response = connection.getresponse()
                except (OSError, http.client.HTTPException) as error:
                    if watchdog.fired:
                        raise limit.exceeded(sink.url, "waiting for the server") from None
                    reason, retryable = _os_error_reason(error)
                    if not retryable:
                        raise FetchError(sink.url, reason) from None
                    raise _Retry(f"{parts.hostname}: {reason}") from None
                status = response.status
                if status in REDIRECT_STATUSES:
                    current = httpwire.redirect_target(
                        sink.url, current, response.getheader("Location"), status)
                    log.debug("%s: redirected (%d) to %s", sink.url, status, redact(current))
                    continue
                total = self._accept_status(sink, response, offset, current)
                self._stream_body(sink, response, total, on_progress=on_progress,
                                  watchdog=watchdog, limit=limit)
                return current
            finally:
                watchdog.stop()
                if response is not None:
                    response.close()
                connection.close()
        raise FetchError(sink.url, f"more than {MAX_REDIRECTS} redirects")

    def _accept_status(self, sink: _Sink, response: http.client.HTTPResponse, offset: int,
                       current: str) -> int | None:
        """Check the status; return the full size when known. Raises to retry or fail."""
        status = response.status
        reason = sanitise(response.reason or "")[:200]
        where = "" if current == sink.url else f" (at {redact(current)})"
        validator = httpwire.resume_validator(response.getheader("ETag"),
                                              response.getheader("Last-Modified"),
                                              response.getheader("Date"))
        if status == 200:
            if offset:
                log.warning("%s: the server sent the whole object, not the rest of it "
                            "(Range ignored, or the object changed); restarting from 0",
                            sink.url)
                sink.reset()
            total = httpwire.parse_length(response.getheader("Content-Length"))
            if total is not None:
                sink.expect(total)
            sink.validator, sink.total = validator, total
            return total
        if status == 206 and offset:
            return self._check_resume(sink, response, offset, validator)
        if status == 416 and offset:
            sink.reset()
            raise _Retry("server refused to resume (416); restarting", progressed=True)
        if status in (408, 429) or status >= 500:
            retry_after = httpwire.parse_retry_after(response.getheader("Retry-After"))
            raise _Retry(f"HTTP {status} {reason}{where}", retry_after=retry_after)
        raise FetchError(sink.url, f"HTTP {status} {reason}{where}")

    @staticmethod
    def _check_resume(sink: _Sink, response: http.client.HTTPResponse, offset: int,
                      validator: str | None) -> int:
        """A 206 continues our download only if it is the same object, from `offset` on."""
        value = response.getheader("Content-Range")
        span = httpwire.parse_content_range(value)
        length = httpwire.parse_length(response.getheader("Content-Length"))
        problem = None
        if span is None or span.start != offset:
            problem = f"Content-Range {sanitise(value or '(none)')[:80]!s} for a resume at {offset}"
        elif span.complete != sink.total:
            problem = f"the object's size changed from {sink.total} to {span.complete}"
        elif validator != sink.validator:
            problem = "the object changed (its validator differs)"
        elif length is not None and length != span.end - span.start + 1:
            problem = f"Content-Length {length} does not match the range"
        if problem is not None:
            sink.reset()
            raise _Retry(f"{problem}; restarting from 0", progressed=True)
        log.info("%s: resuming at byte %d", sink.url, offset)
        assert span is not None and span.complete is not None
        return span.complete

    @staticmethod
    def _stream_body(sink: _Sink, response: http.client.HTTPResponse, total: int | None, *,
                     on_progress: ProgressCallback | None, watchdog: httpwire.Watchdog,
                     limit: _Deadline) -> None:
        import http.client

        before = sink.size
        reported = sink.size
        while True:
            try:
                # read1: at most one read from the socket, so progress is seen as it comes.
                chunk = response.read1(CHUNK)
            except (OSError, http.client.HTTPException) as error:
                if watchdog.fired:
                    raise limit.exceeded(sink.url, f"{sink.size} bytes received") from None
                reason = _os_error_reason(error)[0]
                raise _Retry(f"connection lost after {sink.size} bytes: {reason}",
                             progressed=sink.size > before) from None
            if not chunk:
                break
            sink.write(chunk)
            if on_progress and sink.size - reported >= PROGRESS_EVERY:
                reported = sink.size
                on_progress(sink.size, total)
        complete = total is not None and sink.size == total
        if watchdog.fired and not complete:
            raise limit.exceeded(sink.url, f"{sink.size} bytes received")
        if total is not None and sink.size < total:
            raise _Retry(f"connection closed after {sink.size} of {total} bytes",
                         progressed=sink.size > before)
        if total is not None and sink.size > total:
            sink.reset()
            raise _Retry(f"got {sink.size} bytes, more than the {total} announced")
        if on_progress:
            on_progress(sink.size, total)
