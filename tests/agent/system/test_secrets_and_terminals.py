"""Class 8 of issue 12: credentials in URLs never reach logs or events, and text
from the network never reaches the console with control characters intact.

The helpers (log.sanitise, log.redact_url), then every writer that uses
them: the console log, /dev/kmsg, the failure box, the CLI's error line,
the iPXE interpreter's `echo`, the events a real collector receives.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramboot_agent import log as agent_log
from ramboot_agent import rescue
from ramboot_agent.events import Reporter
from ramboot_agent.ipxe.interpreter import Interpreter
from ramboot_agent.ipxe.settings import build_settings
from ramboot_agent.log import console_text, redact_text, redact_url, sanitise, setup_logging
from tests.agent.io.servers import Handler, serve

REPO = Path(__file__).resolve().parents[3]
HOSTILE = "ok\x1b[2J\x1b]0;owned\x07\r\x08\x9b31m\u202eevil\u200b\x00end"


@pytest.mark.parametrize(("url", "shown"), [
    ("http://fleet:s3cret@cp/boot.ipxe", "http://fleet:***@cp/boot.ipxe"),
    ("https://ghp_abcdef@git/x", "https://***@git/x"),
    ("http://cp/boot?mac=aa&token=s3cret&x=1", "http://cp/boot?mac=aa&token=***&x=1"),
    ("http://cp/b?Access_Token=s3cret;auth=s3cret", "http://cp/b?Access_Token=***;auth=***"),
    ("https://s3/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=ab12&v=2",
     "https://s3/k?X-Amz-Credential=***&X-Amz-Signature=***&v=2"),
    ("http://cp/x?api_key=1&apikey=2&password=3&sig=4",
     "http://cp/x?api_key=***&apikey=***&password=***&sig=***"),
    ("http://cp/x#access_token=s3cret", "http://cp/x#access_token=***"),
    ("http://u:p@[::1/broken?token=s3cret", "http://u:***@[::1/broken?token=***"),
    ("tftp://192.0.2.1/boards/abcd/kernel", "tftp://192.0.2.1/boards/abcd/kernel"),
    ("http://cp/x?mac=aa:bb&serial=42", "http://cp/x?mac=aa:bb&serial=42"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_finds_urls_inside_text() -> None:
    text = ("FetchError: http://a:pw1@h/x?token=tk2: HTTP 403 "
            "(cmdline ramboot.url=https://b:pw3@h/y quiet) 'tftp://c:pw4@t/z'")
    shown = redact_text(text)
    for secret in ("pw1", "tk2", "pw3", "pw4"):
        assert secret not in shown
    assert "ramboot.url=https://b:***@h/y quiet" in shown


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=20), st.text(alphabet="abcdefghijklmnop0123456789", min_size=4,
                                     max_size=12).map(lambda text: f"zq{text}"))
def test_a_secret_in_any_url_never_survives(noise: str, secret: str) -> None:
    for url in (f"http://user:{secret}@h/{noise}", f"http://h/{noise}?a=1&token={secret}",
                f"https://{secret}@h/{noise}", f"http://h/x?{noise}&password={secret}"):
        if secret in noise or any(char in noise for char in "#?&/@"):
            continue  # the secret may then really sit in a path or fragment
        text = redact_text(f"error: {url} failed")
        assert secret not in text, text


@settings(max_examples=2000, deadline=None)
@given(st.text())
def test_sanitised_text_has_no_control_characters(text: str) -> None:
    for shown in (sanitise(text), console_text(text, newlines=False)):
        assert all(ch == "\t" or ch.isprintable() for ch in shown), shown
    assert "\r" not in sanitise(text, newlines=True) and "\x1b" not in sanitise(text)


def test_sanitise_escapes_terminal_controls() -> None:
    assert sanitise(HOSTILE) == ("ok\\x1b[2J\\x1b]0;owned\\x07\\x0d\\x08\\x9b31m\\u202eevil"
                                 "\\u200b\\x00end")
    assert sanitise("a\nb\tc", newlines=True) == "a\nb\tc"
    assert sanitise("a\nb") == "a\\x0ab"


def test_every_log_line_is_sanitised_and_redacted() -> None:
    console = io.StringIO()
    kmsg = io.BytesIO()
    setup_logging(1, kmsg=False, stream=console)
    logger = logging.getLogger("ramboot")
    logger.addHandler(agent_log._KmsgHandler(kmsg))
    logger.info("fetched %s: %s", "http://u:hunter2@h/k?token=t0k", HOSTILE)
    logger.info(f"f-string {HOSTILE}")
    logger.info("%d %s", "not a number", "bad format")  # must not lose the line
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        logger.exception("failed")
    text = console.getvalue() + kmsg.getvalue().decode() + "\n".join(
        agent_log.recent_log_lines(10))
    assert "hunter2" not in text and "t0k" not in text
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert "ok\\x1b[2J" in console.getvalue()
    assert "'%d %s'" in console.getvalue()


def test_log_messages_are_bounded() -> None:
    console = io.StringIO()
    setup_logging(0, kmsg=False, stream=console)
    logging.getLogger("ramboot").info("url %s", "x" * 100_000)
    line = console.getvalue()
    assert len(line) < agent_log.MAX_MESSAGE + 200
    assert line.rstrip().endswith("more characters]")


def test_the_failure_box_shows_no_controls_and_no_secrets() -> None:
    out = io.StringIO()
    setup_logging(0, kmsg=False, stream=io.StringIO())
    logging.getLogger("ramboot").warning("server said %s", HOSTILE)
    rescue.fail(f"FetchError: http://a:s3cret@h/x: HTTP 403 {HOSTILE}", None, rescue.Settings(),
                out=out)
    box = out.getvalue()
    assert "s3cret" not in box and "\x1b" not in box and "\r" not in box
    assert "http://a:***@h/x" in box
    assert {len(line) for line in box.splitlines() if line.startswith(("|", "+"))} == {
        rescue.BOX_WIDTH}


def test_the_cli_error_line_is_sanitised(tmp_path: Path) -> None:
    script = tmp_path / "boot.ipxe"
    script.write_bytes(b"#!ipxe\nkernel http://u:pw@127.0.0.1:1/k\x1b[2J\nboot\n")
    done = subprocess.run([sys.executable, "-m", "ramboot_agent", "run-script", str(script)],
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 1
    assert "\x1b" not in done.stderr and ":pw@" not in done.stderr
    assert "control characters in the URL" in done.stderr


def test_script_output_reaches_the_console_sanitised(tmp_path: Path) -> None:
    out = io.StringIO()

    class Quiet:
        def emit(self, event: str, **details: Any) -> None:
            pass

    interpreter = Interpreter(build_settings({}, {250: HOSTILE.encode()}), None,  # type: ignore[arg-type]
                              lambda spec: None, Quiet(), out, download_dir=tmp_path)
    interpreter.run_text("#!ipxe\necho option 250: ${250}\necho two\\nlines\nexit\n",
                         "http://cp/x.ipxe")
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert out.getvalue().startswith("option 250: ok\\x1b[2J\\x1b]0;owned\\x07")


def test_events_reach_the_collector_without_credentials(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    with serve() as site:
        def collect(handler: Handler) -> None:
            received.append({"body": json.loads(handler.body()),
                             "authorization": handler.headers.get("Authorization")})
            handler.send_bytes(b"", status=204)
        site.routes["/events"] = collect
        url = site.url("/events").replace("://", "://collector:c0llect@")
        reporter = Reporter({"hostname": "node\x1b[2J"}, url, boot_id="b")
        reporter.emit("fetch", url="http://fleet:s3cret@cp/vmlinuz?token=t0ken",
                      nested={"cmdline": ["ramboot.url=https://u:pw9@cp/x"]}, bytes=5)
        reporter.emit("failure", reason="x" * 10_000)
        assert reporter.flush(5)
        reporter.close(0)
    text = json.dumps([item["body"] for item in received])
    for secret in ("s3cret", "t0ken", "pw9", "c0llect"):
        assert secret not in text
    fetch, failure = (item["body"] for item in received)
    assert fetch["details"]["url"] == "http://fleet:***@cp/vmlinuz?token=***"
    assert fetch["identity"]["hostname"] == "node\x1b[2J"  # JSON escapes it; data kept as sent
    assert len(failure["details"]["reason"]) < 4200
    # The collector's own credentials authenticate the POST (HTTP Basic), and only that.
    assert received[0]["authorization"] == "Basic Y29sbGVjdG9yOmMwbGxlY3Q="
