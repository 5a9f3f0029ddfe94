"""Status events: queued by the boot flow, POSTed to the control plane by a thread.

Reporting must never break or slow provisioning: `emit` only appends to a
bounded spool and returns; a daemon thread delivers events one at a time, in
order, retrying with back-off while the report URL is unreachable. When the
spool overflows the oldest events are dropped and counted. Each POST is
bounded in total time, and the collector's reply is never read: an endless
or slow reply costs neither memory nor more than `timeout` seconds.

Every event carries the kernel's `boot_id` and a `seq` counting from 1, so a
collector stores each `(boot_id, seq)` once however often it is retried.
Strings in events are scrubbed of URL credentials and cut to a bounded length.
A report URL with userinfo is sent as HTTP Basic; otherwise, with
`ramboot.token=`, each POST carries `Authorization: Bearer <token>`.
"""
# ruff: noqa: PLC0415 (http.client is imported by the sender thread only)

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ramboot_agent.log import redact_text, redact_url

log = logging.getLogger("ramboot.events")

HISTORY = 200  # events kept for recent() regardless of delivery
TIMELINE_LIMIT = 1000
MAX_STRING = 4096  # characters of one string in an event (a URL, a reason, a log line)
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def read_boot_id(path: Path = BOOT_ID) -> str:
    """The kernel's id of this boot; a random one (same format) if it cannot be read."""
    try:
        value = path.read_text().strip()
    except OSError:
        value = ""
    if value:
        return value
    raw = os.urandom(16).hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def utc_iso(seconds: float) -> str:
    """`2026-11-22T13:30:24.123Z`"""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _scrub(value: Any) -> Any:
    """`value` (decoded JSON) with credentials masked and strings cut to MAX_STRING."""
    if isinstance(value, str):
        text = redact_text(redact_url(value))  # a whole-string URL first: it may hold spaces
        if len(text) > MAX_STRING:
            text = f"{text[:MAX_STRING]}... [{len(text) - MAX_STRING} more characters]"
        return text
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    return value


def _json_safe(details: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return dict(_scrub(json.loads(json.dumps(details, default=str))))
    except (TypeError, ValueError, RecursionError) as error:
        return {"unserializable": _scrub(repr(details)[:500]), "error": str(error)}


class Reporter:
    """Queues events and delivers them in order to a report URL.

    `clock` is monotonic seconds (on Linux, since boot), `wall_clock` is
    seconds since the epoch; both are parameters so the timeline can be tested.
    """

    def __init__(
        self,
        identity: Mapping[str, str],
        url: str | None = None,
        *,
        spool_limit: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
        backoff: float = 0.5,
        max_backoff: float = 15.0,
        cafile: str | None = None,
        insecure: bool = False,
        boot_id: str | None = None,
        token: str | None = None,
    ) -> None:
        self.identity = dict(identity)
        self.boot_id = boot_id if boot_id is not None else read_boot_id()
        self.token = token
        self.spool_limit = max(1, spool_limit)
        self.clock = clock
        self.wall_clock = wall_clock
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.cafile = cafile
        self.insecure = insecure
        self._url: str | None = None
        self._spool: deque[dict[str, Any]] = deque()
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._marks: deque[tuple[str, float, str]] = deque(maxlen=TIMELINE_LIMIT)
        self._seq = 0
        self._dropped = 0
        self._rejected = 0
        self._failures = 0
        self._next_try = 0.0
        self._closing_deadline: float | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._rng = random.Random()  # noqa: S311 (jitter, not secrets)
        if url:
            self.set_url(url)

    # -- the caller's side: never raises, never blocks ----------------------

    def emit(self, event: str, **details: Any) -> None:
        try:
            now = self.clock()
            wall = self.wall_clock()
            with self._cond:
                self._seq += 1
                stamp = utc_iso(wall)
                record: dict[str, Any] = {
                    "event": event,
                    "identity": _scrub(dict(self.identity)),
                    "boot_id": self.boot_id,
                    "seq": self._seq,
                    "monotonic": round(now, 3),
                    "time": stamp,
                    "details": _json_safe(details),
                }
                self._history.append(record)
                self._marks.append((event, now, stamp))
                if not self._closed:
                    self._spool.append(record)
                    while len(self._spool) > self.spool_limit:
                        self._spool.popleft()
                        self._dropped += 1
                    self._wake()
            log.info("event %s %s", event, json.dumps(record["details"], sort_keys=True))
        except Exception:  # reporting must never break the boot
            log.exception("could not record event %s", event)

    def update_identity(self, **values: str) -> None:
        """Add or change identity fields (e.g. `ip` once the network is up)."""
        with self._cond:
            self.identity.update(values)

    def set_url(self, url: str | None) -> None:
        """Send to `url` from now on; events buffered so far go out first.

        A URL that cannot be used (another scheme, malformed) is ignored with
        a warning: reporting is optional, the boot goes on.
        """
        if url is not None:
            from ramboot_agent.errors import FetchError
            from ramboot_agent.httpwire import split_url

            try:
                split_url(url, ("http", "https"))
            except FetchError as error:
                log.warning("ignoring report URL %s: %s; events are only logged",
                            error.url, error.reason)
                return
        with self._cond:
            self._url = url
            self._failures = 0
            self._next_try = 0.0
            self._wake()

    @property
    def url(self) -> str | None:
        """Where events go now (None: nowhere yet); handed to a new root for `booted`."""
        return self._url

    def flush(self, timeout: float = 3.0) -> bool:
        """Wait at most `timeout` seconds for the queue to drain; True if it did.

        Used before kexec: if the jump then fails, later events still go out.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            self._closing_deadline = deadline  # shortens back-off while we wait
            # ...including a back-off wait already under way.
            self._next_try = min(self._next_try, time.monotonic() + 0.2)
            self._cond.notify_all()
            while self._spool and self._url is not None and self._thread is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._closing_deadline = None
            if self._spool:
                log.warning("report: %d event(s) not yet delivered after %.1fs",
                            len(self._spool), timeout)
            return not self._spool

    def close(self, timeout: float = 3.0) -> bool:
        """Flush for at most `timeout` seconds, then stop sending; True if all went out.

        Later events are still kept for recent() and timeline(), but not sent.
        """
        delivered = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._spool.clear()
            self._cond.notify_all()
        return delivered

    def recent(self, n: int = 20) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._history)[-n:] if n > 0 else []

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def pending(self) -> int:
        return len(self._spool)

    def timeline(self) -> list[dict[str, Any]]:
        """One entry per event: when it happened and how long until the next one.

        A stage is the time between two events, named by the one that starts
        it (`network-up` → `script-fetched` is the script download).
        """
        with self._cond:
            marks = list(self._marks)
        if not marks:
            return []
        start = marks[0][1]
        stages = []
        for index, (event, at, wall) in enumerate(marks):
            following = marks[index + 1][1] if index + 1 < len(marks) else None
            stages.append({
                "event": event,
                "monotonic": round(at, 3),
                "time": wall,
                "since_start": round(at - start, 3),
                "duration": round(following - at, 3) if following is not None else None,
            })
        return stages

    def format_timeline(self) -> str:
        lines = []
        for stage in self.timeline():
            duration = stage["duration"]
            took = f"{duration:8.3f}s" if duration is not None else "        -"
            lines.append(f"{stage['monotonic']:10.3f}  +{stage['since_start']:8.3f}s  "
                         f"{took}  {stage['event']}")
        return "\n".join(lines)

    # -- the sender thread --------------------------------------------------

    def _wake(self) -> None:
        """With the lock held: start the sender if needed and wake it up."""
        if self._thread is None and self._url is not None and self._spool:
            self._thread = threading.Thread(target=self._run, name="ramboot-events",
                                            daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _ready(self) -> bool:
        return (self._url is not None and bool(self._spool)
                and time.monotonic() >= self._next_try)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._ready():
                    wait = None
                    if self._url is not None and self._spool:
                        wait = max(0.0, self._next_try - time.monotonic())
                    self._cond.wait(wait)
                if self._closed:
                    return
                record = self._spool[0]
                url = self._url
                payload = dict(record)
                if self._dropped:
                    payload["dropped"] = self._dropped
                post_timeout = self.timeout
                if self._closing_deadline is not None:
                    post_timeout = min(post_timeout,
                                       max(0.1, self._closing_deadline - time.monotonic()))
            assert url is not None
            try:
                outcome = self._post(url, json.dumps(payload).encode(), post_timeout)
            except Exception as error:  # never let the thread die
                outcome = f"retry: {type(error).__name__}: {error}"
            with self._cond:
                if outcome in ("sent", "rejected"):
                    if self._spool and self._spool[0] is record:
                        self._spool.popleft()
                    self._failures = 0
                    self._next_try = 0.0
                else:
                    self._failures += 1
                    ceiling = min(self.max_backoff, self.backoff * 2 ** (self._failures - 1))
                    delay = self._rng.uniform(ceiling / 2, ceiling)
                    if self._closing_deadline is not None:
                        delay = min(delay, 0.2)
                    self._next_try = time.monotonic() + delay
                    if self._failures == 1 or self._failures % 10 == 0:
                        log.warning("report to %s failed (%s); %d event(s) queued", url,
                                    outcome.removeprefix("retry: "), len(self._spool))
                self._cond.notify_all()

    def _post(self, url: str, body: bytes, timeout: float) -> str:
        """"sent", "rejected" (a 4xx: retrying cannot help) or "retry: <reason>".

        The whole exchange takes at most `timeout` seconds, and only the status
        line and headers of the reply are read (http.client bounds those).
        """
        import base64
        import http.client
        from urllib.parse import unquote

        from ramboot_agent import httpwire

        parts = httpwire.split_url(url, ("http", "https"))
        context = None
        if parts.scheme.lower() == "https":
            from ramboot_agent.fetch import make_ssl_context

            context = make_ssl_context(cafile=self.cafile, insecure=self.insecure)
        headers = {"Content-Type": "application/json", "Connection": "close"}
        if parts.username is not None:
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            encoded = base64.b64encode(token.encode("utf-8", "surrogateescape")).decode()
            headers["Authorization"] = f"Basic {encoded}"
        elif self.token:  # ramboot.token=, for the control plane (ramboot serve)
            headers["Authorization"] = f"Bearer {self.token}"
        watchdog = httpwire.Watchdog(timeout)
        connection = httpwire.open_connection(parts, timeout=timeout, watchdog=watchdog,
                                              context=context)
        response = None
        try:
            connection.request("POST", httpwire.request_target(parts), body=body,
                               headers=headers)
            response = connection.getresponse()
            status, reason = response.status, response.reason
        except (OSError, http.client.HTTPException) as error:
            if watchdog.fired:
                return f"retry: no answer within {timeout:g} s"
            return f"retry: {error.strerror if isinstance(error, OSError) else error}"
        finally:
            watchdog.stop()
            if response is not None:
                response.close()  # unread: whatever the collector sends after its headers
            connection.close()
        if 200 <= status < 300:
            return "sent"
        if status in (408, 429) or status >= 500:
            return f"retry: HTTP {status}"
        self._rejected += 1
        log.warning("report to %s rejected: HTTP %d %s (event dropped)", url, status, reason)
        return "rejected"
