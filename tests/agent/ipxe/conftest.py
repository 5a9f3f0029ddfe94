"""Fixtures for the iPXE interpreter tests: a real HTTP server on 127.0.0.1,
a small stdlib fetcher with the Fetcher interface, and a recording booter."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent.errors import FetchError
from ramboot_agent.ipxe import Interpreter
from ramboot_agent.ipxe.settings import SettingsStore, build_settings

CORPUS = Path(__file__).parent / "corpus"


@dataclass
class Fetched:
    url: str
    data: bytes | None
    path: Path | None
    size: int
    sha256: str
    seconds: float


class LoopbackFetcher:
    """Fetcher(-interface) over urllib, for loopback URLs and file:// only."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def fetch_file(self, url: str, dest_dir: Path, **_: Any) -> Fetched:
        if not url.startswith(("http://127.0.0.1:", "file://")):
            raise FetchError(url, "the test fetcher only fetches loopback and file URLs")
        self.urls.append(url)
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                data = response.read()
        except OSError as error:
            raise FetchError(url, str(error)) from None
        path = dest_dir / "download"
        path.write_bytes(data)
        return Fetched(url, None, path, len(data), hashlib.sha256(data).hexdigest(),
                       time.monotonic() - start)


@dataclass
class Recorder:
    boots: list[Any] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def boot(self, spec: Any) -> None:
        self.boots.append(spec)

    def emit(self, event: str, **details: Any) -> None:
        self.events.append((event, details))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1; yields (dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args: Any, **kwargs: Any) -> _Quiet:
        return _Quiet(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Harness:
    def __init__(self, tmp_path: Path, settings: SettingsStore,
                 cpu_flags: frozenset[str] | None = frozenset({"lm"}),
                 trust: Any = None) -> None:
        self.recorder = Recorder()
        self.out = io.StringIO()
        self.fetcher = LoopbackFetcher()
        self.interpreter = Interpreter(
            settings, self.fetcher, self.recorder.boot, self.recorder, self.out,
            download_dir=tmp_path / "downloads", sleep=self.recorder.sleeps.append,
            cpu_flags=cpu_flags, trust=trust)

    def run(self, text: str, url: str = "file:///srv/test.ipxe") -> Any:
        return self.interpreter.run_text(text, url)

    @property
    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


@pytest.fixture
def make_harness(tmp_path: Path) -> Any:
    def make(identity: dict[str, str] | None = None,
             options: dict[int, bytes] | None = None,
             overrides: dict[str, str] | None = None, **kwargs: Any) -> Harness:
        return Harness(tmp_path, build_settings(identity or {}, options, overrides), **kwargs)
    return make
