"""`ramboot-agent run` end to end in network namespaces: Kea, an HTTP server, events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lib import kernels
from tests.lib.netlab import SERVER_IP, kea_config, require_netns, start_kea, veth_lab, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
PORT = 8080
SERVER = f"""
import http.server, json, pathlib, sys
root, events = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=str(root), **k)
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with events.open("ab") as f:
            f.write(body.replace(b"\\n", b" ") + b"\\n")
        self.send_response(204)
        self.end_headers()
http.server.ThreadingHTTPServer(("{SERVER_IP}", {PORT}), Handler).serve_forever()
"""
SCRIPT = """#!ipxe
echo serial=${serial} platform=${platform}
kernel http://192.0.2.1:8080/vmlinuz console=ttyS0 ramboot.url=${224}
initrd http://192.0.2.1:8080/rootfs.cpio.gz
boot
"""


def run_agent(tmp_path: Path, document: bytes, extra_cmdline: str = "") -> tuple[
    subprocess.CompletedProcess[str], list[dict[str, object]]
]:
    require_netns("kea-dhcp4", "udhcpc")
    www = tmp_path / "www"
    www.mkdir()
    (www / "boot.ipxe").write_bytes(document)
    (www / "vmlinuz").write_bytes(kernels.for_this_machine(size=2000))
    (www / "rootfs.cpio.gz").write_bytes(b"not really an initramfs")
    events = tmp_path / "events.jsonl"
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(
        f"console=ttyS0 ramboot.dry_run ramboot.report=http://{SERVER_IP}:{PORT}/events "
        f"ramboot.dhcp_timeout=30 {extra_cmdline}\n"
    )
    with veth_lab() as lab:
        kea = kea_config(lab.server_if, tmp_path, option_224=f"http://{SERVER_IP}:{PORT}/boot.ipxe")
        start_kea(lab.server, kea, tmp_path)
        lab.server.popen([sys.executable, "-c", SERVER, www, events],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: lab.server.run(["ss", "-ltn"]).stdout.count(f":{PORT}") > 0,
                 timeout=10, what="the HTTP server")
        env_path = "/usr/sbin:/usr/bin:/sbin:/bin"
        result = lab.client.run(
            ["env", f"PATH={env_path}", sys.executable, "-m", "ramboot_agent", "run", "--force",
             "--cmdline", cmdline, "--no-kmsg", "--runtime-dir", tmp_path / "run",
             "--resolv-conf", tmp_path / "resolv.conf"],
            check=False, timeout=120, cwd=REPO,
        )
    lines = events.read_text().splitlines() if events.exists() else []
    return result, [json.loads(line) for line in lines]


def test_dry_run_boots_the_script_and_reports_each_step(tmp_path: Path) -> None:
    result, events = run_agent(tmp_path, SCRIPT.encode())
    assert result.returncode == 0, result.stderr
    assert f"ramboot.url=http://{SERVER_IP}:{PORT}/boot.ipxe" in result.stderr + result.stdout
    names = [event["event"] for event in events]
    for expected in ("kernel-started", "agent-started", "network-up", "script-fetched"):
        assert expected in names, names
    assert names.index("network-up") < names.index("script-fetched")
    assert all(event["identity"]["mac"] == "52:54:00:12:34:56" for event in events)


def test_a_document_that_is_not_a_valid_plan_fails_naming_the_field(tmp_path: Path) -> None:
    result, events = run_agent(tmp_path, b'{"ramboot-plan": 1, "actions": [{"action": "dd"}]}\n')
    assert result.returncode == 10
    assert "ramboot-agent FAILED" in result.stderr
    assert "actions[0].action: 'dd' is not one of:" in result.stderr
    failure = [event for event in events if event["event"] == "failure"]
    assert len(failure) == 1
    assert "actions[0].action" in failure[0]["details"]["reason"]
    assert failure[0]["details"]["log_tail"]
    assert "plan-start" not in [event["event"] for event in events]


def test_a_plan_runs_with_its_events_and_ends_as_it_asks(tmp_path: Path) -> None:
    plan = b'{"ramboot-plan": 1, "actions": [{"action": "shell"}]}\n'
    result, events = run_agent(tmp_path, plan)
    assert result.returncode == 10, result.stderr
    names = [event["event"] for event in events]
    assert names[names.index("script-fetched"):] == [
        "script-fetched", "plan-start", "action-start", "action-done", "plan-done", "shell"]
