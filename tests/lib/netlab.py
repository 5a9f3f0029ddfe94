"""Private test networks built from network namespaces.

Every address used here lives inside namespaces the test creates (TEST-NET-1,
192.0.2.0/24), so no test traffic ever leaves the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

SERVER_IP = "192.0.2.1"
PREFIX_LEN = 24
POOL = ("192.0.2.100", "192.0.2.199")

T = TypeVar("T")


def require_netns(*commands: str) -> None:
    """Skip the calling test unless it can build namespaces and run `commands`."""
    if os.geteuid() != 0:
        pytest.skip("network namespace tests need root")
    missing = [c for c in ("ip", *commands) if shutil.which(c) is None]
    if missing:
        pytest.skip(f"missing commands: {', '.join(missing)} (run scripts/install-deps)")


def wait_for(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll `predicate` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Namespace:
    """One network namespace and the processes a test started in it."""

    name: str
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    etc: Path | None = None  # /etc/netns/<name>, when this test wrote one

    def argv(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *map(os.fspath, argv)]

    def run(
        self, argv: Sequence[str | os.PathLike[str]], *, check: bool = True, timeout: float = 60,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        return subprocess.run(
            self.argv(argv), check=check, text=True, timeout=timeout, **kwargs
        )

    def popen(self, argv: Sequence[str | os.PathLike[str]], **kwargs: Any) -> subprocess.Popen[Any]:
        process = subprocess.Popen(self.argv(argv), **kwargs)
        self.processes.append(process)
        return process

    def ip(self, *args: str) -> None:
        self.run(["ip", *args])

    def use_nameserver(self, address: str, search: Sequence[str] = ()) -> None:
        """Make processes started in the namespace resolve names with `address`.

        `ip netns exec` bind-mounts /etc/netns/<name>/resolv.conf over
        /etc/resolv.conf; the directory is removed again by close().
        """
        self.etc = Path("/etc/netns") / self.name
        self.etc.mkdir(parents=True, exist_ok=True)
        text = f"nameserver {address}\noptions timeout:2 attempts:1\n"
        if search:
            text = f"search {' '.join(search)}\n" + text
        (self.etc / "resolv.conf").write_text(text)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        # Anything a test's process left behind in the namespace goes too.
        pids = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
        if self.etc is not None:
            shutil.rmtree(self.etc, ignore_errors=True)


@contextlib.contextmanager
def namespace(prefix: str) -> Iterator[Namespace]:
    name = f"{prefix}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    ns = Namespace(name)
    try:
        ns.ip("link", "set", "lo", "up")
        yield ns
    finally:
        ns.close()


@dataclass
class VethLab:
    """A server namespace and a client namespace joined by one veth link.

    The server side is configured with SERVER_IP; the client side is left
    unconfigured, for a DHCP client to bring up.
    """

    server: Namespace
    client: Namespace
    server_if: str = "srv0"
    client_if: str = "eth0"
    client_mac: str = "52:54:00:12:34:56"


@contextlib.contextmanager
def veth_lab(client_mac: str = "52:54:00:12:34:56") -> Iterator[VethLab]:
    with namespace("rb-srv") as server, namespace("rb-cli") as client:
        lab = VethLab(server, client, client_mac=client_mac)
        server.ip(
            "link", "add", lab.server_if, "type", "veth", "peer", "name", lab.client_if,
            "netns", client.name,
        )
        server.ip("addr", "add", f"{SERVER_IP}/{PREFIX_LEN}", "dev", lab.server_if)
        server.ip("link", "set", lab.server_if, "up")
        client.ip("link", "set", lab.client_if, "address", client_mac)
        client.ip("link", "set", lab.client_if, "up")
        yield lab


@dataclass
class TapLab:
    """A namespace with a bridge at SERVER_IP and tap devices for QEMU guests.

    QEMU must run inside `ns` (ns.popen) to open the taps.
    """

    ns: Namespace
    bridge: str = "br0"
    taps: list[str] = field(default_factory=list)

    def add_tap(self) -> str:
        tap = f"tap{len(self.taps)}"
        self.ns.ip("tuntap", "add", "dev", tap, "mode", "tap")
        self.ns.ip("link", "set", tap, "master", self.bridge)
        self.ns.ip("link", "set", tap, "up")
        self.taps.append(tap)
        return tap


@contextlib.contextmanager
def tap_lab() -> Iterator[TapLab]:
    with namespace("rb-lab") as ns:
        lab = TapLab(ns)
        ns.ip("link", "add", lab.bridge, "type", "bridge")
        ns.ip("addr", "add", f"{SERVER_IP}/{PREFIX_LEN}", "dev", lab.bridge)
        ns.ip("link", "set", lab.bridge, "up")
        yield lab


def kea_config(
    interface: str,
    workdir: Path,
    *,
    option_224: str | None = None,
    extra_options: Sequence[dict[str, Any]] = (),
    next_server: str = "",
    boot_file: str = "",
) -> dict[str, Any]:
    """A minimal Kea DHCPv4 configuration for one test subnet.

    Option 224 is sent whether or not the client asks for it, as iPXE never does.
    """
    options: list[dict[str, Any]] = [
        {"name": "routers", "data": SERVER_IP},
        {"name": "domain-name-servers", "data": SERVER_IP},
        *extra_options,
    ]
    option_defs = []
    if option_224 is not None:
        option_defs.append({"name": "ramboot-url", "code": 224, "type": "string", "space": "dhcp4"})
        options.append({"name": "ramboot-url", "data": option_224, "always-send": True})
    return {
        "Dhcp4": {
            # A bridge whose only port is a tap QEMU has not opened yet is not
            # running: Kea keeps trying to open its socket instead of giving up.
            "interfaces-config": {
                "interfaces": [interface], "dhcp-socket-type": "raw",
                "service-sockets-max-retries": 600, "service-sockets-retry-wait-time": 100,
            },
            "lease-database": {
                "type": "memfile", "persist": True, "name": str(workdir / "kea-leases4.csv"),
                "lfc-interval": 0,
            },
            "valid-lifetime": 600,
            "option-def": option_defs,
            "subnet4": [{
                "id": 1,
                "subnet": f"192.0.2.0/{PREFIX_LEN}",
                "pools": [{"pool": f"{POOL[0]} - {POOL[1]}"}],
                "option-data": options,
                "next-server": next_server,
                "boot-file-name": boot_file,
            }],
            "loggers": [{
                "name": "kea-dhcp4", "severity": "INFO",
                "output_options": [{"output": str(workdir / "kea.log")}],
            }],
        }
    }


def start_kea(ns: Namespace, config: dict[str, Any], workdir: Path) -> subprocess.Popen[Any]:
    """Run kea-dhcp4 in `ns` with `config`; returns once it listens."""
    config_path = workdir / "kea-dhcp4.conf"
    config_path.write_text(json.dumps(config, indent=2))
    env = {**os.environ, "KEA_PIDFILE_DIR": str(workdir), "KEA_LOCKFILE_DIR": str(workdir)}
    log = (workdir / "kea.stdout").open("w")
    process = ns.popen(["kea-dhcp4", "-c", config_path], env=env, stdout=log, stderr=log)
    kea_log = workdir / "kea.log"

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"kea-dhcp4 exited: {(workdir / 'kea.stdout').read_text()}")
        return kea_log.exists() and "DHCP4_STARTED" in kea_log.read_text()

    wait_for(listening, timeout=20, what="kea-dhcp4 to start")
    return process


def start_dnsmasq(
    ns: Namespace, interface: str, workdir: Path, extra_args: Sequence[str] = (),
    dns: Mapping[str, str] | None = None,
) -> subprocess.Popen[Any]:
    """Run dnsmasq in the foreground in `ns`, DHCP on `interface` only.

    No DNS unless `dns` (name -> IPv4 address) is given: then it answers
    those names (and their subdomains) on the interface's address, every
    other name with NXDOMAIN (nothing is forwarded), and its DHCP offers
    name itself as the DNS server.
    """
    log = workdir / "dnsmasq.log"
    dns_args = ["--port=0"]
    if dns is not None:
        dns_args = ["--port=53", "--no-resolv", "--no-hosts", "--local=/#/",
                    *(f"--address=/{name}/{address}" for name, address in dns.items())]
    argv = [
        "dnsmasq", "--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null",
        *dns_args, f"--interface={interface}", "--bind-interfaces",
        f"--pid-file={workdir / 'dnsmasq.pid'}", f"--dhcp-leasefile={workdir / 'dnsmasq.leases'}",
        f"--log-facility={log}", "--log-dhcp", "--user=root", "--group=root", *extra_args,
    ]
    # --no-daemon also logs to stderr: a file, not a pipe nobody reads (a full
    # pipe would block dnsmasq after some 30 logged DHCP exchanges).
    stderr = workdir / "dnsmasq.stderr"
    with stderr.open("w") as stream:
        process = ns.popen(argv, stdout=subprocess.DEVNULL, stderr=stream)

    def started() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"dnsmasq exited: {stderr.read_text()}")
        return log.exists() and "started, version" in log.read_text()

    wait_for(started, timeout=20, what="dnsmasq to start")
    return process
