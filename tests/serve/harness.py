"""A real `ramboot serve` process on loopback, and a client that speaks its protocol."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ramboot.tokens import fleet_token, host_token

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "admin-7f3a9c2e5b1d4086"

# A small fleet with every answer serve gives: kexec, install (before and after it is
# provisioned), disk, and provisioned in the inventory.
INVENTORY = """
[servers]
tftp = "192.0.2.1"
http_base = "http://192.0.2.1:8080"
report_url = "http://192.0.2.1:8080/events"

[network]
subnet = "192.0.2.0/24"
pool = ["192.0.2.100", "192.0.2.199"]

[profiles.second-x86]
kind = "kexec"
kernel = "x86_64/bzImage"
initrds = ["http://192.0.2.1:8080/second/second-stage.cpio.gz"]
cmdline = "console=ttyS0 quiet"

[profiles.second-pi]
kind = "kexec"
kernel = "rpi4/Image"
initrds = ["http://192.0.2.1:8080/second/second-stage.cpio.gz"]
cmdline = "console=ttyAMA0 quiet"

[profiles.debian]
kind = "install"
url = "http://192.0.2.1:8080/os/debian-12.img"
digest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
disk = { path = "/dev/sda" }
method = "kexec"

[profiles.pi-sd]
kind = "install"
url = "http://192.0.2.1:8080/os/raspios.img"
digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
disk = { bus = "mmc" }

[[hosts]]
name = "srv-01"
family = "x86_64"
macs = ["52:54:00:00:0b:01"]
profile = "second-x86"

[[hosts]]
name = "pi-01"
family = "rpi4"
serial = "1a2b3c4d"
profile = "second-pi"

[[hosts]]
name = "srv-02"
family = "x86_64"
macs = ["52:54:00:00:0b:02"]
profile = "debian"

[[hosts]]
name = "srv-03"
family = "x86_64"
macs = ["52:54:00:00:0b:03"]
target = { kind = "disk", disk = { path = "/dev/sda" } }

[[hosts]]
name = "srv-04"
family = "x86_64"
macs = ["52:54:00:00:0b:04"]
profile = "debian"
provisioned = true

[[hosts]]
name = "pi-02"
family = "rpi4"
serial = "2b3c4d5e"
profile = "pi-sd"
"""
SRV_MAC = "52:54:00:00:0b:01"
PI_SERIAL = "1a2b3c4d"
INSTALL_MAC = "52:54:00:00:0b:02"  # srv-02, an install target
DISK_MAC = "52:54:00:00:0b:03"  # srv-03, its disk
INSTALLED_MAC = "52:54:00:00:0b:04"  # srv-04, provisioned = true in the inventory
PI_INSTALL_SERIAL = "2b3c4d5e"  # pi-02, an install target
RAMBOOT_CLI = Path(sys.executable).with_name("ramboot")  # the console script, as shipped


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Serve:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    secret: bytes
    database: str
    log_path: Path
    tls_context: ssl.SSLContext | None = None
    seq: dict[str, int] = field(default_factory=dict)

    def token(self, host: str | None) -> str:
        return host_token(self.secret, host) if host else fleet_token(self.secret)

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        if self.tls_context is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.tls_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, *, body: bytes | None = None,
                token: str | None = None, headers: Mapping[str, str] | None = None) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        connection = self.connection()
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                         response.read())
        finally:
            connection.close()

    def boot(self, identity: Mapping[str, str], *, token: str | None, agent: bool = False,
             **extra: str) -> Reply:
        query = dict(identity, **extra)
        if agent:
            query["stage"] = "agent"
        return self.request("GET", "/boot?" + urlencode(query), token=token)

    def admin(self, method: str, path: str) -> Reply:
        return self.request(method, path, token=ADMIN_TOKEN)

    def post_event(self, name: str, identity: Mapping[str, str], *, token: str | None,
                   boot_id: str, seq: int | None = None, monotonic: float = 1.0,
                   **details: Any) -> Reply:
        if seq is None:
            seq = self.seq[boot_id] = self.seq.get(boot_id, 0) + 1
        body = event_body(name, identity, boot_id=boot_id, seq=seq, monotonic=monotonic,
                          details=details)
        return self.request("POST", "/events", body=body, token=token)

    def snapshot(self) -> tuple[Any, ...]:
        """Everything stored, for "changed nothing" checks."""
        fleet = self.admin("GET", "/api/fleet").json()
        machines = []
        for machine in fleet["machines"]:
            detail = self.admin("GET", f"/api/machines/{machine['key']}").json()
            for volatile in ("now",):
                detail.pop(volatile, None)
            machines.append(detail)
        return tuple(json.dumps(m, sort_keys=True) for m in machines)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def event_body(name: str, identity: Mapping[str, str], *, boot_id: str, seq: int,
               monotonic: float = 1.0, details: Mapping[str, Any] | None = None) -> bytes:
    return json.dumps({
        "event": name, "identity": dict(identity), "boot_id": boot_id, "seq": seq,
        "monotonic": monotonic, "time": "2026-11-22T13:30:24.123Z",
        "details": dict(details or {}),
    }).encode()


def new_boot_id() -> str:
    return str(uuid.uuid4())


def write_keys(directory: Path) -> tuple[Path, Path, bytes]:
    secret = os.urandom(24).hex().encode()
    secret_path, admin_path = directory / "machine.secret", directory / "admin.token"
    secret_path.write_bytes(secret + b"\n")
    admin_path.write_text(ADMIN_TOKEN + "\n")
    secret_path.chmod(0o600)
    admin_path.chmod(0o600)
    return secret_path, admin_path, secret


def wait_healthy(serve: Serve, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if serve.process.poll() is not None:
            raise RuntimeError(f"serve exited ({serve.process.returncode}):\n"
                               + serve.log_path.read_text(errors="replace")[-4000:])
        try:
            if serve.request("GET", "/healthz").status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("serve did not become healthy:\n"
                               + serve.log_path.read_text(errors="replace")[-4000:])
        time.sleep(0.1)


@contextlib.contextmanager
def running_serve(workdir: Path, database: str, *, inventory: str = INVENTORY,
                  args: tuple[str, ...] = (), env: Mapping[str, str] | None = None,
                  port: int | None = None, keys: tuple[Path, Path, bytes] | None = None,
                  tls_context: ssl.SSLContext | None = None) -> Iterator[Serve]:
    workdir.mkdir(parents=True, exist_ok=True)
    inventory_path = workdir / "fleet.toml"
    if not inventory_path.exists():
        inventory_path.write_text(inventory)
    secret_path, admin_path, secret = keys or write_keys(workdir)
    port = port or free_port()
    log_path = workdir / f"serve-{port}.log"
    argv = [str(RAMBOOT_CLI), "serve", str(inventory_path),
            "--database", database, "--machine-secret", str(secret_path),
            "--admin-token", str(admin_path), "--listen", f"127.0.0.1:{port}", *args]
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
    scheme = "https" if tls_context is not None else "http"
    serve = Serve(f"{scheme}://127.0.0.1:{port}", port, process, secret, database, log_path,
                  tls_context)
    try:
        wait_healthy(serve)
        yield serve
    finally:
        serve.stop()
