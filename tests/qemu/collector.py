"""A status-event collector for the QEMU boot tests, run inside a namespace.

    python -m tests.qemu.collector --bind 192.0.2.1 --port 8081 --log events.jsonl

Accepts POSTs of JSON bodies (the agent's status events) on any path and
appends each, with its arrival time, to --log as one JSON object per line.
A body that is not JSON is recorded as {"invalid": "..."} and answered 400,
so that a test sees it. Readiness is the log's first line, {"listening": true}.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MAX_BODY = 1 << 20


def serve(bind: str, port: int, log_path: Path) -> None:
    lock = threading.Lock()

    def record(entry: dict[str, Any]) -> None:
        with lock, log_path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length)
            try:
                event = json.loads(body)
            except ValueError:
                record({"invalid": body[:200].decode("utf-8", "replace"), "path": self.path})
                self.send_error(400)
                return
            record({"received": time.time(), "path": self.path, "event": event})
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the JSON log is the record

    server = http.server.ThreadingHTTPServer((bind, port), Handler)
    record({"listening": True})
    server.serve_forever()


def start_collector(ns: Any, *, bind: str, port: int, log_path: Path,
                    timeout: float = 20) -> Any:
    """Run the collector in netlab Namespace `ns`; returns once it listens."""
    argv = [sys.executable, "-m", "tests.qemu.collector", "--bind", bind, "--port", str(port),
            "--log", str(log_path)]
    stderr_path = log_path.with_name(log_path.name + ".stderr")
    with stderr_path.open("w") as stderr:
        process = ns.popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + timeout
    while not (log_path.exists() and '"listening"' in log_path.read_text()):
        if process.poll() is not None:
            raise RuntimeError(f"collector exited {process.returncode}: {stderr_path.read_text()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"collector did not listen within {timeout}s")
        time.sleep(0.1)
    return process


def events(log_path: Path) -> list[dict[str, Any]]:
    """The events received so far, in arrival order."""
    if not log_path.exists():
        return []
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line]
    return [entry["event"] for entry in entries if "event" in entry]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.bind, args.port, args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
