#!/usr/bin/env python3
"""Agent start-up: process start → first HTTP request, and the import cost of `run`.

Serves a one-line iPXE script on 127.0.0.1 and starts
`python -m ramboot_agent run-script http://127.0.0.1:PORT/boot.ipxe` (the
same fetch and interpreter path as `run`, without network bring-up, which
needs root and a DHCP server). The clock starts just before the process is
spawned and stops when the server sees the request. Then
`python -X importtime` totals for every module `ramboot-agent run` imports.

    .venv/bin/python bench/agent_startup.py [--runs 10] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import http.server
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AGENT_PATH = REPO / "overlay/usr/lib/ramboot"
RUN_IMPORTS = (
    "ramboot_agent.cli, ramboot_agent.daemon, ramboot_agent.net, ramboot_agent.identity, "
    "ramboot_agent.events, ramboot_agent.fetch, ramboot_agent.kexec, "
    "ramboot_agent.ipxe.interpreter, ramboot_agent.ipxe.settings"
)
TARGET_MS = 300.0
# What overlay/usr/bin/ramboot-agent does (python3 -I), with this checkout's path.
LAUNCHER = (
    f"import sys; sys.path.insert(0, {str(AGENT_PATH)!r}); "
    "from ramboot_agent.cli import main; sys.exit(main())"
)


class _Handler(http.server.BaseHTTPRequestHandler):
    first_request: float | None = None
    seen = threading.Event()

    def do_GET(self) -> None:
        if _Handler.first_request is None:
            _Handler.first_request = time.perf_counter()
            _Handler.seen.set()
        body = b"#!ipxe\necho started\nexit 0\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def first_request_ms(python: str, port: int) -> float:
    _Handler.first_request = None
    _Handler.seen.clear()
    started = time.perf_counter()
    process = subprocess.Popen(
        [python, "-I", "-c", LAUNCHER, "run-script", "--dry-run",
         f"http://127.0.0.1:{port}/boot.ipxe"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        if not _Handler.seen.wait(timeout=30):
            raise RuntimeError("the agent made no request within 30 s")
        assert _Handler.first_request is not None
        return (_Handler.first_request - started) * 1000
    finally:
        process.wait(timeout=30)


def import_ms(python: str) -> tuple[float, list[tuple[float, str]]]:
    """Total self+cumulative import time of the `run` chain, and its five dearest modules."""
    code = f"import sys; sys.path.insert(0, {str(AGENT_PATH)!r}); import {RUN_IMPORTS}"
    result = subprocess.run(
        [python, "-I", "-X", "importtime", "-c", code],
        capture_output=True, text=True, check=True, timeout=60,
    )
    total_us, rows = 0, []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[12:].split("|")
        total_us += int(self_us)
        if not name[1:].startswith(" "):  # top level: cumulative covers its children
            rows.append((int(cumulative_us) / 1000, name.strip()))
    return total_us / 1000, sorted(rows, reverse=True)[:5]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        first_request_ms(args.python, port)  # cold run: fills the page cache and .pyc files
        samples = [first_request_ms(args.python, port) for _ in range(args.runs)]
    finally:
        server.shutdown()
    imports, dearest = import_ms(args.python)
    version = subprocess.run(
        [args.python, "-V"], capture_output=True, text=True, check=False
    ).stdout.strip()
    median = statistics.median(samples)
    print(f"python: {args.python} ({version})")
    print(f"process start -> first HTTP request, warm, {args.runs} runs: "
          f"median {median:.0f} ms, min {min(samples):.0f} ms, max {max(samples):.0f} ms "
          f"(target < {TARGET_MS:.0f} ms: {'met' if median < TARGET_MS else 'MISSED'})")
    print(f"import time of the `run` chain (-X importtime, sum of self times): {imports:.0f} ms")
    for ms, name in dearest:
        print(f"  {ms:7.1f} ms  {name}")
    return 0 if median < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
