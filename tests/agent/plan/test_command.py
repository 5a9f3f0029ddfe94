"""`ramboot-agent run-plan` from the command line: check, dry run, and the refusal to write here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def run_plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ramboot_agent", "run-plan", *args],
                          capture_output=True, text=True, timeout=60, check=False, cwd=REPO)


def write(tmp_path: Path, *actions: dict[str, object]) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"ramboot-plan": 1, "actions": list(actions)}))
    return path


def test_check_summarises_a_valid_plan_and_lists_every_problem_of_a_bad_one(
        tmp_path: Path) -> None:
    good = write(tmp_path, {"action": "reboot"})
    result = run_plan("--check", str(good))
    assert result.returncode == 0, result.stderr
    assert f"{good}: a valid plan of 1 action(s): reboot" in result.stdout
    bad = write(tmp_path, {"action": "kexec"}, {"action": "reboot", "when": "now"})
    result = run_plan("--check", str(bad))
    assert result.returncode == 1
    assert f"{bad}: actions[0].kernel: required" in result.stderr
    assert f"{bad}: actions[1].when: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_dry_run_prints_each_action_and_exits_as_the_plan_ends(tmp_path: Path) -> None:
    plan = write(tmp_path, {"action": "poweroff"})
    result = run_plan("--dry-run", str(plan))
    assert result.returncode == 5
    assert "actions[0] (poweroff): would poweroff" in result.stdout
    assert "the plan asks to poweroff" in result.stderr


def test_a_real_run_outside_the_ram_system_is_refused_and_touches_nothing(
        tmp_path: Path) -> None:
    plan = write(tmp_path, {"action": "kexec", "kernel": "vmlinuz"})
    result = run_plan(str(plan))
    assert result.returncode == 1
    assert ("refusing to run a plan here" in result.stderr
            or "running a plan needs root" in result.stderr), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
