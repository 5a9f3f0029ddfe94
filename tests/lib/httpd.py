"""A small static HTTP server for tests, meant to run inside a network namespace.

    python -m tests.lib.httpd --bind 192.0.2.1 --port 8080 --root DIR --log requests.jsonl \
        [--status /missing.ipxe=404] [--abort /reset.ipxe] [--expand-query /boot.ipxe]

Serves files under --root (no path escapes: the standard library's
SimpleHTTPRequestHandler resolves paths inside the root). Every request is
appended to --log as one JSON object per line: method, path, query (a dict of
lists, decoded), client address, status and the headers iPXE-like clients
send. --status forces a status for one path; --abort closes the connection
without an answer. --expand-query serves that file with every "@QUERY@"
replaced by the request's raw query string (a test can make a chained
script print what it was sent). Readiness is the log file's first line, {"event": "listening"}.

From a test, `start_httpd(ns, ...)` runs it in a namespace and waits for it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Behaviour:
    root: Path
    log_path: Path
    statuses: dict[str, int] = field(default_factory=dict)
    aborts: set[str] = field(default_factory=set)
    expand_query: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock, self.log_path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")


def _handler(behaviour: Behaviour) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(behaviour.root), **kwargs)

        def _log_request(self, status: int | str) -> None:
            parts = urlsplit(self.path)
            behaviour.record({
                "event": "request",
                "time": time.time(),
                "client": self.client_address[0],
                "method": self.command,
                "path": parts.path,
                "raw_query": parts.query,
                "query": parse_qs(parts.query, keep_blank_values=True),
                "status": status,
                "user_agent": self.headers.get("User-Agent", ""),
            })

        def _special(self) -> bool:
            path = urlsplit(self.path).path
            if path in behaviour.aborts:
                self._log_request("abort")
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return True
            if path in behaviour.statuses:
                status = behaviour.statuses[path]
                self._log_request(status)
                self.send_error(status)
                return True
            if path in behaviour.expand_query:
                self._send_expanded(path)
                return True
            return False

        def _send_expanded(self, path: str) -> None:
            target = Path(self.translate_path(path))
            if not target.is_file():
                self._log_request(404)
                self.send_error(404)
                return
            query = urlsplit(self.path).query.encode()
            body = target.read_bytes().replace(b"@QUERY@", query)
            self._log_request(200)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            if self._special():
                return
            target = Path(self.translate_path(self.path))
            status = 200 if target.is_file() else 404
            self._log_request(status)
            super().do_GET()

        def do_HEAD(self) -> None:
            if self._special():
                return
            self._log_request("head")
            super().do_HEAD()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the JSON request log replaces the stderr access log

    return Handler


def _parse_status(item: str) -> tuple[str, int]:
    path, sep, code = item.rpartition("=")
    if not sep or not path.startswith("/") or not code.isdigit():
        raise argparse.ArgumentTypeError(f"--status wants /path=CODE, not {item!r}")
    return path, int(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--status", type=_parse_status, action="append", default=[])
    parser.add_argument("--abort", action="append", default=[])
    parser.add_argument("--expand-query", action="append", default=[])
    args = parser.parse_args(argv)
    behaviour = Behaviour(args.root.resolve(), args.log, dict(args.status), set(args.abort),
                          set(args.expand_query))
    server = http.server.ThreadingHTTPServer((args.bind, args.port), _handler(behaviour))
    behaviour.record({"event": "listening", "bind": args.bind, "port": args.port})
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


# --- test-side helpers -------------------------------------------------------------------------


def start_httpd(ns: Any, *, bind: str, root: Path, log_path: Path, port: int = 8080,
                statuses: dict[str, int] | None = None, aborts: Sequence[str] = (),
                expand_query: Sequence[str] = (), timeout: float = 20) -> subprocess.Popen[Any]:
    """Run this server in netlab Namespace `ns`; returns once it listens."""
    argv: list[str] = [sys.executable, "-m", "tests.lib.httpd", "--bind", bind,
                       "--port", str(port), "--root", str(root), "--log", str(log_path)]
    for path, code in (statuses or {}).items():
        argv += ["--status", f"{path}={code}"]
    for path in aborts:
        argv += ["--abort", path]
    for path in expand_query:
        argv += ["--expand-query", path]
    stderr_path = log_path.with_name(log_path.name + ".stderr")
    with stderr_path.open("w") as stderr:
        process: subprocess.Popen[Any] = ns.popen(
            argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    deadline = time.monotonic() + timeout
    while not (log_path.exists() and '"listening"' in log_path.read_text()):
        if process.poll() is not None:
            raise RuntimeError(f"httpd exited {process.returncode}: {stderr_path.read_text()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"httpd did not listen within {timeout}s")
        time.sleep(0.1)
    return process


def requests(log_path: Path) -> list[dict[str, Any]]:
    """The requests recorded in `log_path`, in order."""
    if not log_path.exists():
        return []
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line]
    return [e for e in entries if e.get("event") == "request"]


if __name__ == "__main__":
    sys.exit(main())
