"""Running plans: events for every action, bounded time, no success that did not happen."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent.events import Reporter
from ramboot_agent.fetch import Fetcher
from ramboot_agent.ipxe.status import Outcome
from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.runner import PlanFailed, run_document
from tests.agent.io.servers import Handler, Site

KERNEL = b"MZ fake kernel " * 100
INITRD = b"070701 fake initrd " * 50


def make_context(tmp_path: Path, *, dry_run: bool = False,
                 base_url: str = "http://unused/") -> tuple[Context, Reporter, io.StringIO]:
    reporter = Reporter({"mac": "52:54:00:00:00:01"})
    out = io.StringIO()
    fetcher = Fetcher(retries=0, timeout=5, sleep=lambda _s: None)
    ctx = Context(reporter=reporter, fetcher=fetcher, out=out, runtime_dir=tmp_path,
                  base_url=base_url, dry_run=dry_run)
    return ctx, reporter, out


def names(reporter: Reporter) -> list[str]:
    return [event["event"] for event in reporter.recent(200)]


def document(*actions: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"ramboot-plan": 1, "actions": list(actions), **top}).encode()


def test_a_shell_plan_reports_each_step_and_asks_for_the_shell(tmp_path: Path) -> None:
    ctx, reporter, _ = make_context(tmp_path)
    outcome = run_document(document({"action": "shell", "description": "look around"}),
                           "http://srv/p.json", ctx)
    assert outcome is Outcome.SHELL
    assert names(reporter) == ["plan-start", "action-start", "action-done", "plan-done"]
    start, action_start, done, plan_done = reporter.recent(4)
    assert start["details"]["url"] == "http://srv/p.json"
    assert start["details"]["actions"] == 1
    assert action_start["details"] == {"index": 0, "action": "shell",
                                       "description": "look around", "timeout": 60.0}
    assert done["details"]["index"] == 0
    assert plan_done["details"]["outcome"] == "shell"


def test_a_dry_run_says_what_each_action_would_do_and_fetches_nothing(
        tmp_path: Path, site: Site) -> None:
    ctx, reporter, out = make_context(tmp_path, dry_run=True, base_url=site.url("/plans/"))
    data = document({"action": "kexec", "kernel": "../k/vmlinuz", "initrds": ["initrd"],
                     "cmdline": "console=ttyS0"})
    assert run_document(data, site.url("/plans/p.json"), ctx) is Outcome.BOOTED
    text = out.getvalue()
    assert f"actions[0] (kexec): would download {site.url('/k/vmlinuz')}, " \
           f"{site.url('/plans/initrd')} and kexec with command line 'console=ttyS0'" in text
    assert site.requests == []
    done = reporter.recent(2)[0]
    assert done["event"] == "action-done"
    assert done["details"]["dry_run"] is True


def test_a_wrong_digest_fails_the_action_and_nothing_is_booted(tmp_path: Path,
                                                                site: Site) -> None:
    site.routes["/vmlinuz"] = lambda h: h.send_bytes(KERNEL)
    wrong = hashlib.sha256(b"another kernel").hexdigest()
    ctx, reporter, _ = make_context(tmp_path)
    data = document({"action": "kexec",
                     "kernel": {"url": "vmlinuz", "digest": f"sha256:{wrong}"}})
    with pytest.raises(PlanFailed) as caught:
        run_document(data, site.url("/p.json"), ctx)
    assert f"sha256 is {hashlib.sha256(KERNEL).hexdigest()}, the plan expects {wrong}" \
        in str(caught.value)
    assert caught.value.details == {"index": 0, "action": "kexec"}
    assert "action-done" not in names(reporter)
    assert "plan-done" not in names(reporter)
    assert not list(tmp_path.rglob("vmlinuz")), "a file that failed its digest is removed"


def test_a_sha512_digest_is_checked_over_the_downloaded_file(tmp_path: Path,
                                                             site: Site) -> None:
    site.routes["/vmlinuz"] = lambda h: h.send_bytes(KERNEL)
    wrong = hashlib.sha512(b"another kernel").hexdigest()
    ctx, _, _ = make_context(tmp_path)
    data = document({"action": "kexec",
                     "kernel": {"url": "vmlinuz", "digest": f"sha512:{wrong}"}})
    with pytest.raises(PlanFailed) as caught:
        run_document(data, site.url("/p.json"), ctx)
    assert f"sha512 is {hashlib.sha512(KERNEL).hexdigest()}, the plan expects {wrong}" \
        in str(caught.value)
    assert not list(tmp_path.rglob("vmlinuz")), "a file that failed its digest is removed"


def hang(handler: Handler) -> None:
    """Promise a large body, send one byte, then nothing."""
    handler.send_response(200)
    handler.send_header("Content-Length", "1000000")
    handler.end_headers()
    handler.wfile.write(b"x")
    handler.wfile.flush()
    time.sleep(8)


def test_an_action_that_hangs_is_stopped_by_its_timeout(tmp_path: Path, site: Site) -> None:
    site.routes["/slow"] = hang
    ctx, _, _ = make_context(tmp_path)
    data = document({"action": "kexec", "kernel": "slow", "timeout": 1})
    started = time.monotonic()
    with pytest.raises(PlanFailed) as caught:
        run_document(data, site.url("/p.json"), ctx)
    assert time.monotonic() - started < 4
    assert "actions[0] (kexec): stopped by its timeout of 1s" in str(caught.value)


def test_the_plan_timeout_bounds_every_action(tmp_path: Path, site: Site) -> None:
    site.routes["/slow"] = hang
    ctx, _, _ = make_context(tmp_path)
    data = document({"action": "kexec", "kernel": "slow", "timeout": 600}, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(PlanFailed, match=r"stopped by the plan.s timeout of 0\.5s"):
        run_document(data, site.url("/p.json"), ctx)
    assert time.monotonic() - started < 4


def test_external_tools_are_bounded_and_their_failure_is_quoted(tmp_path: Path) -> None:
    ctx, _, _ = make_context(tmp_path)
    ctx.deadline = ctx.clock() + 0.5
    started = time.monotonic()
    with pytest.raises(ActionError, match="did not finish within"):
        ctx.run_tool(["sleep", "10"], timeout=60)
    assert time.monotonic() - started < 3
    ctx.deadline = None
    with pytest.raises(ActionError, match="status 2: ls: cannot access"):
        ctx.run_tool(["ls", "/nonexistent-ramboot"])
    with pytest.raises(ActionError, match="not found on this system"):
        ctx.run_tool(["ramboot-no-such-tool"])


def test_progress_events_are_rate_limited_and_carry_rate_and_eta(tmp_path: Path) -> None:
    now = [100.0]
    ctx, reporter, _ = make_context(tmp_path)
    ctx.clock = lambda: now[0]
    ctx.action_index, ctx.action_name = 3, "image"
    for step in range(1, 21):
        now[0] = 100.0 + step * 0.25  # 4 calls a second for 5 seconds
        ctx.progress(step * 1000, 20_000, started=100.0)
    progress = [e["details"] for e in reporter.recent(200) if e["event"] == "progress"]
    assert len(progress) == 5
    last = progress[-1]
    assert last["index"] == 3
    assert last["action"] == "image"
    assert last["rate"] == 4000
    assert last["eta"] == pytest.approx(0.0, abs=1.01)
