"""Real HTTP(S) servers on 127.0.0.1 for the fetch and events tests.

Each server runs in a thread and is shut down by its context manager. Routes
are small functions of the request handler, so a test states the server's
misbehaviour (drop the connection, ignore Range, answer 500 first) next to
the assertion that depends on it.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

Route = Callable[["Handler"], None]


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        self.server.log.append(f"{self.command} {self.path} {format % args}")

    def _dispatch(self) -> None:
        site = self.server.site
        path = self.path.split("?", 1)[0]
        site.requests.append((self.command, self.path, dict(self.headers)))
        site.hits[path] += 1
        route = site.routes.get(path)
        if route is None:
            self.send_error(404)
            return
        route(self)

    do_GET = _dispatch
    do_POST = _dispatch

    # -- helpers for routes ------------------------------------------------

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def send_bytes(self, data: bytes, *, status: int = 200, honour_range: bool = True,
                   drop_after: int | None = None, headers: dict[str, str] | None = None) -> None:
        """Send `data`, answering Range with 206; cut the connection after `drop_after`."""
        start = 0
        wanted = self.headers.get("Range")
        if honour_range and wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[len("bytes="):-1])
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(data) - start))
        if "ETag" not in (headers or {}):
            self.send_header("ETag", '"v1"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        payload = data[start:]
        if drop_after is not None:
            self.wfile.write(payload[:drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(payload)

    def send_unannounced(self, data: bytes) -> None:
        """Send `data` with no Content-Length: the end of the body is the close."""
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    site: Site
    log: list[str]


@dataclass
class Site:
    """A running server: its base URL, its routes and what it saw."""

    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    hits: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path


@contextlib.contextmanager
def serve(context: ssl.SSLContext | None = None, port: int = 0) -> Iterator[Site]:
    """Serve HTTP (or HTTPS with `context`) on 127.0.0.1 until the block ends."""
    server = Server(("127.0.0.1", port), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if context is not None else "http"
    site = Site(f"{scheme}://127.0.0.1:{server.server_address[1]}")
    server.site = site
    server.log = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_pki(directory: Path, ip: str = "127.0.0.1") -> Pki:
    """A throw-away CA and a server certificate for `ip`, made with openssl(1).

    The extensions satisfy Python 3.13+'s strict X.509 verification.
    """
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory,
                       timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=ramboot test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={ip}")
    (directory / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName=IP:{ip}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    return Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
