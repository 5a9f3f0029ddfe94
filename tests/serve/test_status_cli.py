"""`ramboot status`, `reinstall` and `token`, the commands as shipped, against a real serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.serve.harness import SRV_MAC, Serve, free_port, new_boot_id

RAMBOOT = [sys.executable, "-c", "from ramboot.cli import main; main()"]
SRV = {"mac": SRV_MAC, "buildarch": "x86_64"}


def ramboot(serve: Serve, *args: str,
            server: str | None = None) -> subprocess.CompletedProcess[str]:
    admin = serve.log_path.parent / "admin.token"
    return subprocess.run([*RAMBOOT, *args, "--server", server or serve.url, "--admin-token",
                           str(admin)], capture_output=True, text=True, timeout=60, check=False)


def test_status_table_detail_and_reinstall(serve: Serve) -> None:
    token = serve.token("srv-01")
    boot = new_boot_id()
    serve.boot(SRV, token=token)
    serve.boot(SRV, token=token, agent=True)
    serve.post_event("kernel-started", SRV, token=token, boot_id=boot, monotonic=2.0, uptime=1.5)
    serve.post_event("agent-started", SRV, token=token, boot_id=boot, monotonic=2.1, seconds=0.4)
    serve.post_event("network-up", SRV, token=token, boot_id=boot, monotonic=4.0)
    serve.post_event("failure", SRV, token=token, boot_id=boot, monotonic=9.0,
                     reason="plan actions[0] (kexec): HTTP 404", log_tail=["line one", "line two"])
    table = ramboot(serve, "status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "1 machine(s): 1 failed"
    assert lines[1] == "never seen: pi-01, pi-02, srv-02, srv-03, srv-04"
    header = next(line for line in lines if line.startswith("HOST"))
    assert header.split() == ["HOST", "STATE", "NEXT", "LAST", "EVENT", "AGO", "KERNEL", "AGENT",
                              "NETWORK", "FETCH", "ACTION", "BOOT", "FAILURE"]
    row = next(line for line in lines if line.startswith("srv-01")).split()
    assert row[:4] == ["srv-01", "failed", "target", "failure"]
    assert re.fullmatch(r"\d+s", row[4])
    # kernel 2.1-0.4, agent (its uptime came first), network, fetch ended by the failure
    assert row[5:11] == ["1.7", "0.0", "2.3", "5.0!", "-", "-"]
    assert " ".join(row[11:]) == "plan actions[0] (kexec): HTTP 404"

    detail = ramboot(serve, "status", "srv-01")
    assert detail.returncode == 0
    assert "failure:    plan actions[0] (kexec): HTTP 404" in detail.stdout
    assert "    line two" in detail.stdout
    assert "4 9.000s failure" in " ".join(detail.stdout.split())
    assert "stages:     kernel 1.7s  agent 0.0s  network 2.3s  fetch 5.0s (failed)" in detail.stdout

    as_json = json.loads(ramboot(serve, "status", "srv-01", "--json").stdout)
    assert as_json["failure_log"] == ["line one", "line two"]

    again = ramboot(serve, "reinstall", "srv-01")
    assert again.returncode == 0 and "provisions it again" in again.stdout
    missing = ramboot(serve, "reinstall", "nope")
    assert missing.returncode == 1
    assert "HTTP 404" in missing.stderr and "not a host" in missing.stderr


def test_clear_errors(serve: Serve, tmp_path: Path) -> None:
    down = ramboot(serve, "status", server=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "cannot reach serve" in down.stderr
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-admin-token-at-all")
    wrong.chmod(0o600)
    refused = subprocess.run([*RAMBOOT, "status", "--server", serve.url, "--admin-token",
                              str(wrong)], capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1 and "HTTP 403: wrong admin token" in refused.stderr
    bad_url = ramboot(serve, "status", server="ftp://x")
    assert bad_url.returncode == 1 and "http:// or https://" in bad_url.stderr


def test_token_command(serve: Serve) -> None:
    secret = serve.log_path.parent / "machine.secret"
    out = subprocess.run([*RAMBOOT, "token", "srv-01", "--machine-secret", str(secret)],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == serve.token("srv-01")
    fleet = subprocess.run([*RAMBOOT, "token", "--fleet", "--machine-secret", str(secret)],
                           capture_output=True, text=True, timeout=60, check=True)
    assert fleet.stdout.strip() == serve.token(None)
    both = subprocess.run([*RAMBOOT, "token", "x", "--fleet", "--machine-secret", str(secret)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert both.returncode != 0 and "HOST or --fleet" in both.stderr
