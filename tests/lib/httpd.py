"""A small static HTTP server for tests, meant to run inside a network namespace.

    python -m tests.lib.httpd --bind 192.0.2.1 --port 8080 [--port 80 ...] --root DIR \
        --log requests.jsonl [--status /missing.ipxe=404] [--abort /reset.ipxe] \
        [--expand-query /boot.ipxe] [--collect /events] [--drop-after /vmlinuz=65536] \
        [--listen-when FILE] [--vhosts]

Serves files under --root (no path escapes: the standard library's
SimpleHTTPRequestHandler resolves paths inside the root). Every request is
appended to --log as one JSON object per line: method, path, query (a dict of
lists, decoded), client address, status and the headers iPXE-like clients
send. --status forces a status for one path; --abort closes the connection
without an answer. --expand-query serves that file with every "@QUERY@"
replaced by the request's raw query string (a test can make a chained
script print what it was sent). --collect accepts POSTs to a path (a status
report collector): each body is logged with its request, answered 204.
--drop-after sends the first GET of a path (without Range) its full headers
but only N bytes of body, then closes the connection; single byte ranges
(`Range: bytes=N-` / `N-M`, with If-Range) are served, so a client can resume.
--listen-when waits for FILE to exist before binding (a server that comes up
late). --port may be given several times (one server per port, one log).
--vhosts serves every host name and port from its own subtree:
ROOT/<host>_<port>/<path>, and a URL with a query from the file
<path>@<first 12 hex digits of the sha256 of the decoded query> (see
vhost_path), so one server answers every URL a boot script names, whatever
its host, and each URL (query included) has its own file. Readiness is the
log line {"event": "listening"}. --tls-cert/--tls-key serve HTTPS
(on every port).

From a test, `start_httpd(ns, ...)` runs it in a namespace and waits for it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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
from urllib.parse import parse_qs, unquote, urlsplit

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Behaviour:
    root: Path
    log_path: Path
    statuses: dict[str, int] = field(default_factory=dict)
    aborts: set[str] = field(default_factory=set)
    expand_query: set[str] = field(default_factory=set)
    collect: set[str] = field(default_factory=set)
    drop_after: dict[str, int] = field(default_factory=dict)
    vhosts: bool = False
    dropped: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock, self.log_path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")


def vhost_path(host: str, port: int, path: str, query: str = "") -> str:
    """Where --vhosts keeps http://host:port/path?query, relative to the root.

    Path and query are percent-decoded first, so two clients that escape a
    URL differently (iPXE re-encodes what it parses) find the same file.
    """
    where = f"{host.lower()}_{port}{unquote(path)}"
    if query:
        where += "@" + hashlib.sha256(unquote(query).encode()).hexdigest()[:12]
    return where


def _handler(behaviour: Behaviour) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(behaviour.root), **kwargs)

        def translate_path(self, path: str) -> str:
            if not behaviour.vhosts:
                return super().translate_path(path)
            parts = urlsplit(path)
            host = (self.headers.get("Host") or "").partition(":")[0] or "_"
            relative = vhost_path(host, self.server.server_address[1], parts.path, parts.query)
            target = (behaviour.root / relative.lstrip("/")).resolve()
            if behaviour.root not in target.parents:
                return str(behaviour.root / ".escape-refused")
            return str(target)

        def _log_request(self, status: int | str, **extra: Any) -> None:
            parts = urlsplit(self.path)
            behaviour.record({
                **extra,
                "event": "request",
                "time": time.time(),
                "client": self.client_address[0],
                "method": self.command,
                "path": parts.path,
                "host": self.headers.get("Host", ""),
                "port": self.server.server_address[1],
                "raw_query": parts.query,
                "query": parse_qs(parts.query, keep_blank_values=True),
                "status": status,
                "user_agent": self.headers.get("User-Agent", ""),
                "range": self.headers.get("Range", ""),
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

        def _drop_once(self, path: str) -> bool:
            """The first plain GET of a --drop-after path: promise all, send a part."""
            if path not in behaviour.drop_after or self.headers.get("Range"):
                return False
            with behaviour.lock:
                if path in behaviour.dropped:
                    return False
                behaviour.dropped.add(path)
            body = Path(self.translate_path(path)).read_bytes()
            self._log_request("drop", sent=behaviour.drop_after[path])
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Last-Modified", self.date_time_string(
                int(Path(self.translate_path(path)).stat().st_mtime)))
            self.end_headers()
            self.wfile.write(body[:behaviour.drop_after[path]])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return True

        def _send_range(self, target: Path) -> bool:
            """Answer a single `bytes=N-[M]` range with 206; False to serve it all."""
            spec = self.headers.get("Range", "")
            if not spec.startswith("bytes=") or "," in spec:
                return False
            modified = self.date_time_string(int(target.stat().st_mtime))
            if_range = self.headers.get("If-Range")
            if if_range is not None and if_range != modified:
                return False  # the file changed: the whole of it, as RFC 9110 says
            first, _, last = spec.removeprefix("bytes=").partition("-")
            data = target.read_bytes()
            if not first.isdigit() or (last and not last.isdigit()):
                return False
            start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            if start >= len(data) or end < start:
                self._log_request(416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True
            self._log_request(206)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Last-Modified", modified)
            self.end_headers()
            self.wfile.write(data[start:end + 1])
            return True

        def do_GET(self) -> None:
            if self._special():
                return
            path = urlsplit(self.path).path
            target = Path(self.translate_path(self.path))
            if target.is_file() and (self._drop_once(path) or self._send_range(target)):
                return
            status = 200 if target.is_file() else 404
            self._log_request(status)
            super().do_GET()

        def do_HEAD(self) -> None:
            if self._special():
                return
            self._log_request("head")
            super().do_HEAD()

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            length = self.headers.get("Content-Length", "")
            if path not in behaviour.collect or not length.isdigit():
                self._log_request(405 if path not in behaviour.collect else 411)
                self.send_error(405 if path not in behaviour.collect else 411)
                return
            body = self.rfile.read(int(length))
            if path in behaviour.statuses:  # a collector that refuses, e.g. 503
                self._log_request(behaviour.statuses[path], body=body.decode(errors="replace"))
                self.send_error(behaviour.statuses[path])
                return
            self._log_request(204, body=body.decode(errors="replace"))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the JSON request log replaces the stderr access log

    return Handler


def _parse_status(item: str) -> tuple[str, int]:
    path, sep, code = item.rpartition("=")
    if not sep or not path.startswith("/") or not code.isdigit():
        raise argparse.ArgumentTypeError(f"--status wants /path=CODE, not {item!r}")
    return path, int(code)


def _parse_drop(item: str) -> tuple[str, int]:
    path, sep, count = item.rpartition("=")
    if not sep or not path.startswith("/") or not count.isdigit():
        raise argparse.ArgumentTypeError(f"--drop-after wants /path=BYTES, not {item!r}")
    return path, int(count)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, action="append", default=[])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--status", type=_parse_status, action="append", default=[])
    parser.add_argument("--abort", action="append", default=[])
    parser.add_argument("--expand-query", action="append", default=[])
    parser.add_argument("--collect", action="append", default=[])
    parser.add_argument("--drop-after", type=_parse_drop, action="append", default=[])
    parser.add_argument("--listen-when", type=Path, default=None)
    parser.add_argument("--tls-cert", type=Path, default=None)
    parser.add_argument("--tls-key", type=Path, default=None)
    parser.add_argument("--vhosts", action="store_true")
    args = parser.parse_args(argv)
    behaviour = Behaviour(args.root.resolve(), args.log, dict(args.status), set(args.abort),
                          set(args.expand_query), set(args.collect), dict(args.drop_after),
                          args.vhosts)
    ports = args.port or [8080]
    if args.listen_when is not None:
        behaviour.record({"event": "waiting", "for": str(args.listen_when)})
        while not args.listen_when.exists():  # ended by the test's terminate()
            time.sleep(0.02)
    servers = [http.server.ThreadingHTTPServer((args.bind, port), _handler(behaviour))
               for port in ports]
    if args.tls_cert is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        for server in servers:
            server.socket = context.wrap_socket(server.socket, server_side=True)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    behaviour.record({"event": "listening", "bind": args.bind, "port": ports[0],
                      "ports": ports})
    with contextlib.suppress(KeyboardInterrupt):
        servers[0].serve_forever()
    return 0


# --- test-side helpers -------------------------------------------------------------------------


def start_httpd(ns: Any, *, bind: str, root: Path, log_path: Path, port: int = 8080,
                statuses: dict[str, int] | None = None, aborts: Sequence[str] = (),
                expand_query: Sequence[str] = (), collect: Sequence[str] = (),
                drop_after: dict[str, int] | None = None, listen_when: Path | None = None,
                tls: tuple[Path, Path] | None = None,
                timeout: float = 20, also_ports: Sequence[int] = (),
                vhosts: bool = False) -> subprocess.Popen[Any]:
    """Run this server in netlab Namespace `ns`; returns once it listens.

    With `listen_when`, returns once it waits for that file instead.
    `also_ports` are served too; `vhosts` lays the root out as vhost_path says.
    """
    argv: list[str] = [sys.executable, "-m", "tests.lib.httpd", "--bind", bind,
                       "--port", str(port), "--root", str(root), "--log", str(log_path)]
    for extra in also_ports:
        argv += ["--port", str(extra)]
    if vhosts:
        argv.append("--vhosts")
    for path, code in (statuses or {}).items():
        argv += ["--status", f"{path}={code}"]
    for path in aborts:
        argv += ["--abort", path]
    for path in expand_query:
        argv += ["--expand-query", path]
    for path in collect:
        argv += ["--collect", path]
    for path, count in (drop_after or {}).items():
        argv += ["--drop-after", f"{path}={count}"]
    if listen_when is not None:
        argv += ["--listen-when", str(listen_when)]
    if tls is not None:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    ready = '"waiting"' if listen_when is not None else '"listening"'
    stderr_path = log_path.with_name(log_path.name + ".stderr")
    with stderr_path.open("w") as stderr:
        process: subprocess.Popen[Any] = ns.popen(
            argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    deadline = time.monotonic() + timeout
    while not (log_path.exists() and ready in log_path.read_text()):
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


def posted(log_path: Path, path: str) -> list[Any]:
    """The JSON bodies POSTed to `path` and accepted, in the order they arrived."""
    return [json.loads(entry["body"]) for entry in requests(log_path)
            if entry["method"] == "POST" and entry["path"] == path and entry["status"] == 204]


if __name__ == "__main__":
    sys.exit(main())
