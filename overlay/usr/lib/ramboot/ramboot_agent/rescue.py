"""Failure and debug: say why in a box, report it, then shell / reboot per `ramboot.shell=`.

The rescue shell itself is started by the console session
(/usr/lib/ramboot/console-session) when the agent exits with EXIT_RESCUE,
so that busybox init respawns it on the console for as long as needed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import IO, Any, Protocol

from ramboot_agent.cmdline import Settings
from ramboot_agent.errors import AgentError
from ramboot_agent.log import console_text, recent_log_lines, sanitise

log = logging.getLogger("ramboot.rescue")

EXIT_DONE = 0  # finished without booting, nothing more to do (dry run)
EXIT_RESCUE = 10  # the console session should give a rescue shell
BOX_WIDTH = 76
KEYS_DEADLINE = 60.0  # seconds to fetch SSH keys on the failure path
DROPBEAR_TIMEOUT = 30.0  # dropbear forks into the background at once
_KEY_TYPES = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
    r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/=]+( .*)?$"
)


class ReporterLike(Protocol):
    def emit(self, event: str, **details: Any) -> None: ...
    def recent(self, n: int) -> list[dict[str, Any]]: ...
    def close(self, timeout: float) -> None: ...


class FetcherLike(Protocol):
    def fetch_bytes(self, url: str, *, max_size: int, deadline: float | None = ...) -> Any: ...


def failure_box(reason: str, events: list[dict[str, Any]], lines: list[str]) -> str:
    """The console message: reason, recent events, recent log lines, what happens next."""
    inner = BOX_WIDTH - 4
    body = ["ramboot-agent FAILED", ""]
    body += textwrap.wrap(console_text(reason, newlines=False), inner) or [""]
    if events:
        body += ["", "recent events:"]
        body += [sanitise(f"  {e.get('seq', '?')} {e.get('event', '?')}")[:inner]
                 for e in events]
    if lines:
        body += ["", "recent log:"]
        body += [console_text(part, newlines=False)[:inner]
                 for line in lines for part in line.splitlines()]
    top = "+" + "=" * (BOX_WIDTH - 2) + "+"
    return "\n".join([top, *(f"| {line:<{inner}} |" for line in body), top])


def fail(
    reason: str,
    reporter: ReporterLike | None,
    settings: Settings,
    *,
    fetcher: FetcherLike | None = None,
    out: IO[str] | None = None,
    policy: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Show and report a failure, then act on `ramboot.shell=` (or `policy`).

    Returns EXIT_RESCUE when a rescue shell should follow; with
    `ramboot.shell=never` (or policy "reboot") it reboots and does not return
    unless rebooting itself failed.
    """
    out = out if out is not None else sys.stderr
    log.error("%s", reason)  # the log masks secrets and escapes control characters
    events = _safely(lambda: reporter.recent(10), []) if reporter else []
    print(failure_box(reason, events, recent_log_lines(15)), file=out, flush=True)
    if reporter is not None:
        _safely(lambda: reporter.emit("failure", reason=reason, log_tail=recent_log_lines(50),
                                             **(details or {})))
        _safely(lambda: reporter.close(5.0))
    policy = policy or ("reboot" if settings.shell == "never" else "shell")
    if policy == "reboot":
        reboot(settings.reboot_delay, out=out)
        return EXIT_RESCUE  # rebooting failed: a shell is better than nothing
    if settings.ssh_authorized_keys:
        _safely(lambda: start_dropbear(settings.ssh_authorized_keys or "", fetcher))
    print("ramboot-agent: starting a rescue shell on this console", file=out, flush=True)
    return EXIT_RESCUE


def _safely(action: Any, default: Any = None) -> Any:
    """Failure handling must not fail: a broken reporter only costs a warning."""
    try:
        return action()
    except Exception as error:
        log.warning("while handling the failure: %s: %s", type(error).__name__, error)
        return default


def reboot(delay: float | None, *, out: IO[str]) -> None:
    """Reboot after `delay` seconds; None holds the machine (message and sleep)."""
    if delay is None:
        print("ramboot-agent: holding (ramboot.reboot_delay=off); power-cycle to retry",
              file=out, flush=True)
        while True:
            time.sleep(3600)
    print(f"ramboot-agent: rebooting in {delay:g} s", file=out, flush=True)
    time.sleep(delay)
    power("reboot")


def power(action: str) -> None:
    """`reboot` or `poweroff` asked for by a script: through init, forced if that fails."""
    os.sync()
    for argv in ([action], [action, "-f"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run(argv, check=False, timeout=30).returncode == 0:
                time.sleep(60)  # init is taking the system down
    log.error("%s failed", action)


def interactive_shell(why: str, *, out: IO[str] | None = None) -> int:
    """A shell on our console, waited for (ramboot.shell=before)."""
    out = out if out is not None else sys.stderr
    print(f"ramboot-agent: {why}; leave the shell (exit) to continue", file=out, flush=True)
    argv = ["cttyhack", "sh", "-l"] if shutil.which("cttyhack") else ["sh", "-l"]
    try:
        return subprocess.run(argv, check=False).returncode
    except OSError as error:
        log.warning("no shell: %s", error)
        return 127


def authorized_keys(text: str) -> list[str]:
    """The usable public-key lines of `text`; others are logged and dropped."""
    keys = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _KEY_TYPES.match(line):
            keys.append(line)
        else:
            log.warning("authorized keys line %d is not a public key; ignored", number)
    return keys


def start_dropbear(
    source: str, fetcher: FetcherLike | None, *, home: Path = Path("/root")
) -> bool:
    """Start dropbear (key logins only) when it is installed; keys inline or from a URL."""
    dropbear = shutil.which("dropbear")
    if dropbear is None:
        log.info("dropbear is not in this image: no SSH rescue access")
        return False
    if re.match(r"(?i)(https?|tftp|file)://", source):
        if fetcher is None:
            raise AgentError(f"cannot fetch SSH keys from {source}: no network")
        source = fetcher.fetch_bytes(source, max_size=64 * 1024,
                                     deadline=KEYS_DEADLINE).data.decode(errors="replace")
    keys = authorized_keys(source)
    if not keys:
        log.warning("no usable SSH public key given: dropbear not started")
        return False
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = ssh_dir / "authorized_keys.tmp"
    tmp.write_text("\n".join(keys) + "\n")
    tmp.chmod(0o600)
    tmp.replace(ssh_dir / "authorized_keys")
    # -R: make host keys on first use; -s: no password logins at all.
    try:
        result = subprocess.run([dropbear, "-R", "-s"], check=False, capture_output=True,
                                text=True, timeout=DROPBEAR_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("dropbear did not start: %s", error)
        return False
    if result.returncode != 0:
        log.warning("dropbear failed to start: %s", result.stderr.strip())
        return False
    log.info("dropbear started: SSH with the %d given key(s)", len(keys))
    return True
