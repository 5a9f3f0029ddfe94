"""An HTTP server for disk images, with the faults the image action must survive.

Serves the files of a directory on 127.0.0.1 (or any address) with strong
ETags, Content-Length and single `bytes=N-[M]` ranges (If-Range honoured),
the body sent with sendfile(2), so it is fast enough for benchmarks. Faults,
set per test on `server.faults`:

- `cut_at`: absolute file offsets; a response that would send past the next
  one sends up to it and closes the connection (each offset cuts once);
- `ignore_range`: answer every request with 200 and the whole file;
- `corrupt`: {offset: byte}: those bytes are served changed;
- `replace_after_first`: {path: bytes}: after the first request for a
  path, a different file is served (with a different ETag).

`requests` records (method, path, Range header, status) for assertions.

    with image_server(root) as server:
        url = server.url("/disk.img")
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Faults:
    cut_at: list[int] = field(default_factory=list)
    ignore_range: bool = False
    corrupt: dict[int, int] = field(default_factory=dict)
    replace_after_first: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_cut(self, start: int, end: int) -> int | None:
        """The first cut offset in [start, end), consumed."""
        with self.lock:
            for offset in sorted(self.cut_at):
                if start <= offset < end:
                    self.cut_at.remove(offset)
                    return offset
        return None


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, address: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((address, port), _Handler)
        self.root = root
        self.faults = Faults()
        self.requests: list[tuple[str, str, str, int]] = []
        self.served: dict[str, int] = {}

    def url(self, path: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: ImageServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        server, faults = self.server, self.server.faults
        path = self.path.split("?", 1)[0]
        target = (server.root / path.lstrip("/")).resolve()
        if server.root.resolve() not in target.parents or not target.is_file():
            self._status(404)
            return
        count = server.served.get(path, 0)
        server.served[path] = count + 1
        replacement = faults.replace_after_first.get(path) if count else None
        stat = target.stat()
        size = len(replacement) if replacement is not None else stat.st_size
        etag = f'"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{size:x}"'
        if replacement is not None:
            etag = f'"r{hashlib.sha256(replacement).hexdigest()[:16]}"'
        start, end, status = 0, size, 200
        wanted = self.headers.get("Range", "")
        if_range = self.headers.get("If-Range")
        if wanted.startswith("bytes=") and not faults.ignore_range \
                and (if_range is None or if_range == etag):
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            if first.isdigit() and (not last or last.isdigit()) and int(first) < size:
                start, status = int(first), 206
                end = min(int(last) + 1, size) if last else size
        server.requests.append((self.command, path, wanted, status))
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        cut = faults.next_cut(start, end)
        stop = cut if cut is not None else end
        with contextlib.suppress(OSError):
            if replacement is not None:
                self.wfile.write(replacement[start:stop])
            else:
                self._send_file(target, start, stop)
            self.wfile.flush()
        if cut is not None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)

    def _send_file(self, target: Path, start: int, stop: int) -> None:
        corrupt = {o: b for o, b in self.server.faults.corrupt.items() if start <= o < stop}
        with target.open("rb") as source:
            if corrupt:
                source.seek(start)
                data = bytearray(source.read(stop - start))
                for offset, byte in corrupt.items():
                    data[offset - start] = byte
                self.wfile.write(data)
                return
            self.wfile.flush()
            offset = start
            while offset < stop:
                sent = os.sendfile(self.connection.fileno(), source.fileno(), offset,
                                   min(stop - offset, 1 << 30))
                if sent <= 0:
                    return
                offset += sent

    def _status(self, code: int) -> None:
        self.server.requests.append((self.command, self.path, "", code))
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def image_server(root: Path, address: str = "127.0.0.1", port: int = 0) -> Iterator[ImageServer]:
    server = ImageServer(root, address, port)
    thread = threading.Thread(target=server.serve_forever, name="image-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main() -> None:
    """`python -m tests.lib.imageserver ROOT PORT`: serve ROOT; prints the base URL."""
    import sys

    root, port = Path(sys.argv[1]), int(sys.argv[2])
    server = ImageServer(root, "127.0.0.1", port)
    print(server.url(""), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
