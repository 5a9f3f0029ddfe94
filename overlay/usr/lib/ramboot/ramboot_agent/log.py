"""Console and /dev/kmsg logging, plus a ring buffer of recent lines for failure reports.

Timestamps are CLOCK_MONOTONIC seconds, the clock the kernel's own printk
timestamps use, so agent lines and kernel lines can be read side by side.
"""

from __future__ import annotations

import collections
import logging
import sys
import time
from pathlib import Path
from typing import IO

LOGGER_NAME = "ramboot"
RING_SIZE = 200

# logging level -> syslog priority, for the "<N>" prefix /dev/kmsg understands
_KMSG_PRIORITY = {
    logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7,
}

_ring: collections.deque[str] = collections.deque(maxlen=RING_SIZE)
_state = {"verbosity": 0}


class _MonotonicFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        message = record.getMessage()
        if record.exc_info and _state["verbosity"] >= 1:
            message += "\n" + self.formatException(record.exc_info)
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
        for line in record.getMessage().splitlines() or [""]:
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
