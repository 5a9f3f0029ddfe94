"""A boot lab in network namespaces: Kea, a file server, a report collector, the agent.

The server namespace runs kea-dhcp4 (option 224: instructions URL, option
225: report URL), tests/lib/httpd.py serving files on FILES_PORT and a second
httpd collecting status events on REPORT_PORT. The client namespace runs the
real `ramboot-agent run` (busybox udhcpc, the agent's own hook) in dry-run
mode with a kernel command line from a file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lib import httpd
from tests.lib.netlab import (
    POOL,
    SERVER_IP,
    VethLab,
    kea_config,
    start_dnsmasq,
    start_kea,
    wait_for,
)

REPO = Path(__file__).resolve().parents[3]
FILES_PORT = 8080
REPORT_PORT = 8081
BASE = f"http://{SERVER_IP}:{FILES_PORT}"
REPORT_URL = f"http://{SERVER_IP}:{REPORT_PORT}/events"
AGENT_TIMEOUT = 90  # a bound for one agent run, far above the few seconds it takes


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class AgentRun:
    """What one `ramboot-agent run` did, as seen from outside."""

    returncode: int
    console: str  # stdout and stderr: the agent logs to the console
    seconds: float
    requests: list[dict[str, Any]]  # GETs seen by the file server, in order
    events: list[dict[str, Any]]  # events the collector accepted, in order

    def event_names(self) -> list[str]:
        return [event["event"] for event in self.events]


@dataclass
class BootLab:
    lab: VethLab
    workdir: Path
    www: Path = field(init=False)
    files_log: Path = field(init=False)
    report_log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.www = self.workdir / "www"
        self.www.mkdir()
        self.files_log = self.workdir / "files.jsonl"
        self.report_log = self.workdir / "report.jsonl"

    def publish(self, path: str, data: bytes | str) -> bytes:
        """Put a file on the file server; returns its bytes.

        Its mtime is set a minute back, as a published file's is: a
        Last-Modified within the second of the response's Date is a weak
        validator (RFC 9110 8.8.2.2) and the agent rightly will not resume on it.
        """
        body = data.encode() if isinstance(data, str) else data
        target = self.www / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        published = time.time() - 60
        os.utime(target, (published, published))
        return body

    def start_dhcp(self, *, option_224: str | None, report_url: str | None = REPORT_URL) -> None:
        extra: list[dict[str, Any]] = []
        if report_url is not None:
            # No definition for site option 225 in Kea: send its bytes as hex.
            extra.append({"code": 225, "space": "dhcp4", "csv-format": False,
                          "data": report_url.encode().hex(), "always-send": True})
        config = kea_config(self.lab.server_if, self.workdir, option_224=option_224,
                            extra_options=extra)
        start_kea(self.lab.server, config, self.workdir)

    def start_dnsmasq_dhcp(self, *, option_224: bytes, report_url: bytes | None = None,
                           extra: tuple[tuple[int, bytes], ...] = ()) -> None:
        """dnsmasq instead of Kea: options as raw bytes (dnsmasq's colon-hex form)."""
        options = [(224, option_224), *([(225, report_url)] if report_url else []), *extra]
        start_dnsmasq(self.lab.server, self.lab.server_if, self.workdir, [
            f"--dhcp-range={POOL[0]},{POOL[1]},255.255.255.0,10m",
            f"--dhcp-option=3,{SERVER_IP}",
            *(f"--dhcp-option-force={code},{data.hex(':')}" for code, data in options),
        ])

    def start_files(self, **behaviour: Any) -> None:
        httpd.start_httpd(self.lab.server, bind=SERVER_IP, port=FILES_PORT, root=self.www,
                          log_path=self.files_log, **behaviour)

    def start_collector(self, *, listen_when: Path | None = None) -> None:
        empty = self.workdir / "collector-root"
        empty.mkdir(exist_ok=True)
        httpd.start_httpd(self.lab.server, bind=SERVER_IP, port=REPORT_PORT, root=empty,
                          log_path=self.report_log, collect=["/events"],
                          listen_when=listen_when)

    def agent_argv(self, cmdline: str) -> list[str | Path]:
        path = self.workdir / "cmdline"
        path.write_text(f"console=ttyS0 ramboot.dry_run=1 ramboot.dhcp_timeout=20 {cmdline}\n")
        # --force: the namespace is not an initramfs, but the agent may take its network.
        return [sys.executable, "-m", "ramboot_agent", "run", "--force", "--cmdline", path,
                "--no-kmsg", "--runtime-dir", self.workdir / "run",
                "--resolv-conf", self.workdir / "resolv.conf"]

    def run_agent(self, cmdline: str = "") -> AgentRun:
        started = time.monotonic()
        done = self.lab.client.run(self.agent_argv(cmdline), check=False, cwd=REPO,
                                   timeout=AGENT_TIMEOUT, stderr=subprocess.STDOUT,
                                   capture_output=False, stdout=subprocess.PIPE)
        return self.outcome(done.returncode, done.stdout, time.monotonic() - started)

    def start_agent(self, cmdline: str = "") -> tuple[subprocess.Popen[Any], Path]:
        """The agent in the background; its console goes to the returned file."""
        console = self.workdir / "console.txt"
        with console.open("w") as out:
            process = self.lab.client.popen(self.agent_argv(cmdline), cwd=REPO, stdout=out,
                                            stderr=subprocess.STDOUT)
        return process, console

    def wait_console(self, console: Path, text: str, *, timeout: float = 30) -> None:
        wait_for(lambda: text in console.read_text(), timeout=timeout,
                 interval=0.02, what=f"{text!r} on the agent's console")

    def outcome(self, returncode: int, console: str, seconds: float) -> AgentRun:
        gets = [entry for entry in httpd.requests(self.files_log) if entry["method"] == "GET"]
        return AgentRun(returncode, console, seconds, gets,
                        httpd.posted(self.report_log, "/events"))
