"""What actions run with: events, downloads, the clock, bounded external tools."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from ramboot_agent.errors import AgentError

log = logging.getLogger("ramboot.plan")

PROGRESS_INTERVAL = 1.0  # at most one progress event a second per action
TOOL_OUTPUT_TAIL = 2000


class ActionError(AgentError):
    """An action failed; the runner adds which action it was."""


class ActionTimeout(ActionError):
    """An action ran out of its time."""


class Reporter(Protocol):
    def emit(self, event: str, **details: Any) -> None: ...
    def flush(self, timeout: float = ...) -> bool: ...


@dataclass
class Context:
    """One plan run's collaborators and the running action's deadline.

    `fetcher` is a ramboot_agent.fetch.Fetcher (typed loosely: actions use
    more of it than a protocol here would be worth).
    """

    reporter: Reporter
    fetcher: Any
    out: TextIO
    runtime_dir: Path
    base_url: str
    dry_run: bool = False
    insecure: bool = False
    settings: Any = None  # the kernel command line's Settings, when run at boot
    clock: Callable[[], float] = time.monotonic
    action_index: int | None = None
    action_name: str | None = None
    deadline: float | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # per-run caches (resolved disks)
    _last_progress: float = 0.0

    # --- time ----------------------------------------------------------------

    def remaining(self) -> float | None:
        """Seconds left for the running action (None: unbounded)."""
        return None if self.deadline is None else self.deadline - self.clock()

    def check_deadline(self) -> None:
        left = self.remaining()
        if left is not None and left <= 0:
            raise ActionTimeout(f"{self.action_name} ran out of time")

    def bound(self, seconds: float) -> float:
        """`seconds`, cut to what is left of the action's time."""
        left = self.remaining()
        return seconds if left is None else max(0.001, min(seconds, left))

    # --- reporting -----------------------------------------------------------

    def say(self, message: str) -> None:
        """A line for the operator on the console (and the log)."""
        log.info("%s", message)

    def progress(self, done: int, total: int | None, *, started: float, force: bool = False,
                 **details: Any) -> None:
        """A `progress` event: bytes, rate and ETA, at most once a second."""
        now = self.clock()
        if not force and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        elapsed = max(now - started, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if total and rate > 0 and total >= done else None
        self.reporter.emit("progress", index=self.action_index, action=self.action_name,
                           bytes=done, total=total, rate=round(rate),
                           eta=round(eta, 1) if eta is not None else None, **details)

    # --- external tools --------------------------------------------------------

    def run_tool(self, argv: Sequence[str], *, timeout: float = 120.0,
                 input_text: str | None = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a tool from an argv list (never a shell), bounded in time.

        Fails with the tool's own message when it exits non-zero (unless
        `check` is false), when it cannot be started, or when it runs out of
        time (its own bound or the action's, whichever comes first).
        """
        argv = list(argv)
        limit = self.bound(timeout)
        log.debug("running %s (at most %.0fs)", argv, limit)
        try:
            done = subprocess.run(argv, input=input_text, capture_output=True, text=True,
                                  timeout=limit, check=False,
                                  stdin=None if input_text is not None else subprocess.DEVNULL)
        except FileNotFoundError:
            raise ActionError(f"{argv[0]}: not found on this system") from None
        except subprocess.TimeoutExpired:
            raise ActionTimeout(f"{argv[0]} did not finish within {limit:.0f}s") from None
        except OSError as error:
            raise ActionError(f"{argv[0]}: {error.strerror}") from None
        if check and done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-TOOL_OUTPUT_TAIL:]
            raise ActionError(f"{' '.join(argv[:3])}{' …' if len(argv) > 3 else ''} failed "
                              f"with status {done.returncode}: {output or 'no output'}")
        return done
