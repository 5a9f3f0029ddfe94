"""A plan reached by `chain` from an iPXE script runs with the real fetcher and ends the script."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ramboot_agent.errors import ScriptError
from ramboot_agent.events import Reporter
from ramboot_agent.fetch import Fetcher
from ramboot_agent.ipxe import Interpreter
from ramboot_agent.ipxe.settings import build_settings
from ramboot_agent.ipxe.status import Outcome
from ramboot_agent.plan.context import Context
from ramboot_agent.plan.runner import run_document
from tests.agent.io.servers import Site

PLAN = json.dumps({"ramboot-plan": 1, "actions": [{"action": "poweroff"}]}).encode()


def interpreter(tmp_path: Path, reporter: Reporter, *, plans: bool = True) -> Interpreter:
    fetcher = Fetcher(retries=0, timeout=5, sleep=lambda _s: None)
    out = io.StringIO()

    def run_plan(data: bytes, url: str) -> Outcome:
        ctx = Context(reporter=reporter, fetcher=fetcher, out=out, runtime_dir=tmp_path,
                      base_url=url)
        return run_document(data, url, ctx)

    return Interpreter(build_settings({}, None, {}), fetcher, lambda spec: None, reporter, out,
                       download_dir=tmp_path / "dl", plan_runner=run_plan if plans else None)


def test_chain_to_a_plan_runs_it_and_its_outcome_ends_the_script(tmp_path: Path,
                                                                  site: Site) -> None:
    site.routes["/plans/off.json"] = lambda h: h.send_bytes(PLAN)
    reporter = Reporter({})
    script = "#!ipxe\nchain plans/off.json || goto failed\necho not reached\n:failed\nexit 1\n"
    result = interpreter(tmp_path, reporter).run_text(script, site.url("/boot.ipxe"))
    assert result.outcome is Outcome.POWEROFF
    events = [e["event"] for e in reporter.recent(50)]
    assert events[-4:] == ["plan-start", "action-start", "action-done", "plan-done"]
    assert reporter.recent(4)[0]["details"]["url"] == site.url("/plans/off.json")


def test_without_a_plan_runner_chain_to_a_plan_is_a_failed_command(tmp_path: Path,
                                                                    site: Site) -> None:
    site.routes["/p.json"] = lambda h: h.send_bytes(PLAN)
    script = "#!ipxe\nchain p.json\n"
    with pytest.raises(ScriptError, match="provisioning plans cannot run here"):
        interpreter(tmp_path, Reporter({}), plans=False).run_text(script, site.url("/b.ipxe"))
