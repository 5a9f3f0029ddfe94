"""Console and /dev/kmsg logging, plus a ring buffer of recent lines for failure reports.

Timestamps are CLOCK_MONOTONIC seconds, the clock the kernel's own printk
timestamps use, so agent lines and kernel lines can be read side by side.

Much of what the agent logs came from the network (URLs, server error
texts, DHCP options). Every line therefore passes through `console_text`:
credentials in URLs are masked (`redact_text`) and control characters are
escaped (`sanitise`), so a hostile server can neither leak a token into the
logs nor drive the operator's terminal. Other console writers use the same
helpers.
"""

from __future__ import annotations

import collections
import logging
import re
import sys
import time
from pathlib import Path
from typing import IO

LOGGER_NAME = "ramboot"
RING_SIZE = 200
MAX_MESSAGE = 16 * 1024  # characters of one log message; longer ones are cut

# logging level -> syslog priority, for the "<N>" prefix /dev/kmsg understands
_KMSG_PRIORITY = {
    logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7,
}

_ring: collections.deque[str] = collections.deque(maxlen=RING_SIZE)
_state = {"verbosity": 0}


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def sanitise(text: str, *, newlines: bool = False) -> str:
    """`text` safe for a terminal: every character that is not printable as
    `\\xNN` (`\\uNNNN`): C0 and C1 controls, DEL, the invisible characters that
    reorder or hide text (bidi overrides, zero-width), undecodable bytes.

    Tabs stay; with `newlines`, line feeds stay too (multi-line messages).
    """
    if text.isprintable():
        return text
    keep = "\t\n" if newlines else "\t"
    return "".join(char if char.isprintable() or char in keep else _escape(char)
                   for char in text)


# -- credentials in URLs ----------------------------------------------------------

# Query or fragment parameters whose value is a secret (lowercased names).
_SECRET_PARAM = re.compile(
    r"token|secret|passw|pwd|signature|credential|api[-_]?key|session|^key$|^sig$|^auth|^otp$"
)
_URL_IN_TEXT = re.compile(r"(?i)\b[a-z][a-z0-9+.-]{0,15}://[^\s'\"<>`]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}://")
_LOOSE_PARAM = re.compile(r"([?&;#])([^=&;#?\s'\"<>`]{1,64})=(?!\*\*\*)[^&;#\s'\"<>`]*")
MASK = "***"


def _redact_params(text: str) -> str:
    from urllib.parse import unquote  # noqa: PLC0415 (cheap, and only for URLs with queries)

    pairs = []
    for pair in re.split(r"([&;])", text):
        name, equals, _value = pair.partition("=")
        secret = equals and _SECRET_PARAM.search(unquote(name).lower())
        pairs.append(f"{name}={MASK}" if secret else pair)
    return "".join(pairs)


def redact_url(url: str) -> str:
    """`url` without its secrets, for logs, events and error messages.

    `user:password@` becomes `user:***@`, a lone `token@` (user name only)
    `***@`, and the value of query or fragment parameters named like a
    secret (`token=`, `access_token=`, `X-Amz-Signature=`, `password=`...)
    `***`. Everything else stays as written. Works on unparseable URLs too.
    """
    if not _SCHEME.match(url):
        return url
    scheme, _, rest = url.partition("://")
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at, host = authority.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    path, hash_, fragment = tail.partition("#")
    path, question, query = path.partition("?")
    if question:
        query = _redact_params(query)
    if hash_:
        fragment = _redact_params(fragment)
    return f"{scheme}://{authority}{path}{question}{query}{hash_}{fragment}"


def _mask_param(match: re.Match[str]) -> str:
    from urllib.parse import unquote  # noqa: PLC0415

    name = match.group(2)
    secret = _SECRET_PARAM.search(unquote(name).lower())
    return f"{match.group(1)}{name}={MASK}" if secret else match.group()


def redact_text(text: str) -> str:
    """Every URL found in `text` passed through `redact_url`, and any secret
    `?name=value` / `&name=value` left over (a URL cut by a space) masked too."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)
    if "=" in text:
        text = _LOOSE_PARAM.sub(_mask_param, text)
    return text


def console_text(text: str, *, newlines: bool = True) -> str:
    """What may be shown or logged of `text`: secrets masked, controls escaped."""
    return sanitise(redact_text(text), newlines=newlines)


def _cut(text: str, limit: int = MAX_MESSAGE) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def safe_message(record: logging.LogRecord) -> str:
    """The record's message as it may reach a console or a log file."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string must not lose the line
        message = f"{record.msg!r} % {record.args!r}"
    return _cut(console_text(message))


class _MonotonicFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        message = safe_message(record)
        if record.exc_info and (_state["verbosity"] >= 1 or getattr(record, "traceback", False)):
            message += "\n" + console_text(self.formatException(record.exc_info))
        return f"[{time.monotonic():10.3f}] ramboot: {level}{message}"


class _RingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _ring.append(self.format(record))


class _KmsgHandler(logging.Handler):
    """One write per line: /dev/kmsg turns each write into one kernel log record."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        priority = _KMSG_PRIORITY.get(record.levelno, 6)
        for line in safe_message(record).splitlines() or [""]:
            try:
                self.stream.write(f"<{priority}>ramboot: {line}\n".encode(errors="replace"))
            except OSError:
                return  # kmsg rate limiting or no /dev/kmsg: the console still has it


def setup_logging(debug: int, *, kmsg: bool, stream: IO[str] | None = None) -> None:
    """Configure the "ramboot" logger: console always, /dev/kmsg when asked.

    debug 0 logs progress, 1 adds details, 2 also passes helper programs'
    own output (udhcpc, kexec) through to the console.
    """
    _state["verbosity"] = debug
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG if debug >= 1 else logging.INFO)
    logger.propagate = False
    formatter = _MonotonicFormatter()

    console = logging.StreamHandler(stream if stream is not None else sys.stderr)
    console.setFormatter(formatter)
    logger.addHandler(console)

    ring = _RingHandler()
    ring.setFormatter(formatter)
    logger.addHandler(ring)

    if kmsg:
        try:
            kmsg_stream = Path("/dev/kmsg").open("wb", buffering=0)  # noqa: SIM115 (lives on)
        except OSError as error:
            logger.warning("cannot log to /dev/kmsg: %s", error)
        else:
            logger.addHandler(_KmsgHandler(kmsg_stream))


def verbosity() -> int:
    """The `ramboot.debug=` level logging was set up with."""
    return _state["verbosity"]


def recent_log_lines(n: int) -> list[str]:
    """The last `n` formatted log lines (multi-line messages count as one)."""
    if n <= 0:
        return []
    return list(_ring)[-n:]
