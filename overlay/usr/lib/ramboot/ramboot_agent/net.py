"""Network bring-up: interfaces, carrier, busybox udhcpc, the lease, addresses.

udhcpc runs once per attempt (`-f -q -n`) with our hook, which only records
its environment; this module parses that record (untrusted bytes) and
configures the interface with `ip` argv lists, never a shell.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ramboot_agent.cmdline import Settings, parse_cmdline
from ramboot_agent.errors import AgentError, NetworkError

log = logging.getLogger("ramboot.net")

# /usr/share/ramboot/udhcpc.script in the image; the same relative place in a checkout.
HOOK = Path(__file__).resolve().parents[3] / "share/ramboot/udhcpc.script"
RUNTIME_DIR = Path("/run/ramboot")
OPTION_URL = 224  # text: the instructions URL
OPTION_REPORT_URL = 225  # text: where to POST status events
OPTION_NTP_SERVERS = 42  # for the clock (clock.py): a Pi has no RTC
REQUESTED_OPTIONS = (OPTION_URL, OPTION_REPORT_URL, OPTION_NTP_SERVERS)
ARPHRD_ETHER = 1
_UDHCPC_TRIES, _UDHCPC_TIMEOUT = 3, 2  # per attempt: 3 discovers, 2 s apart

# busybox udhcpc's names for the options it decodes -> (code, encoding).
# Encodings rebuild the wire bytes; "text" keeps busybox's rendering (UTF-8)
# where the wire format cannot be rebuilt losslessly (routes, domain lists).
KNOWN_OPTIONS: dict[str, tuple[int, str]] = {
    "subnet": (1, "ip"), "timezone": (2, "s32"), "router": (3, "ips"), "dns": (6, "ips"),
    "lprsrv": (9, "ips"), "hostname": (12, "str"), "bootsize": (13, "u16"),
    "domain": (15, "str"), "swapsrv": (16, "ip"), "rootpath": (17, "str"), "ipttl": (23, "u8"),
    "mtu": (26, "u16"), "broadcast": (28, "ip"), "routes": (33, "text"),
    "nisdomain": (40, "str"), "nissrv": (41, "ips"), "ntpsrv": (42, "ips"), "wins": (44, "ips"),
    "lease": (51, "u32"), "serverid": (54, "ip"), "message": (56, "str"), "vendor": (60, "str"),
    "clientid": (61, "str"), "tftp": (66, "str"), "bootfile": (67, "str"), "tzstr": (100, "str"),
    "tzdbstr": (101, "str"), "search": (119, "text"), "sipsrv": (120, "text"),
    "staticroutes": (121, "text"), "vlanid": (132, "u16"), "vlanpriority": (133, "u8"),
    "pxeconffile": (209, "str"), "pxepathprefix": (210, "str"), "reboottime": (211, "u32"),
    "ip6rd": (212, "text"), "msstaticroutes": (249, "text"), "wpad": (252, "str"),
}
_INT_FORMATS = {"u8": ">B", "u16": ">H", "u32": ">I", "s32": ">i"}


@dataclass(frozen=True)
class Lease:
    """A DHCP lease; `options` holds every option the server sent, by number."""

    interface: str
    mac: str
    ip: str
    prefix_len: int
    router: str | None = None
    dns: tuple[str, ...] = ()
    hostname: str | None = None
    domain: str | None = None
    server_id: str | None = None
    options: dict[int, bytes] = field(default_factory=dict)
    next_server: str | None = None  # BOOTP siaddr
    boot_file: str | None = None  # BOOTP file field

    def option_text(self, code: int) -> str | None:
        """Option `code` as text (trailing NULs dropped), or None when absent."""
        raw = self.options.get(code)
        if raw is None:
            return None
        return raw.rstrip(b"\0").decode("utf-8", errors="replace")

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["options"] = {str(code): raw.hex() for code, raw in sorted(self.options.items())}
        return data


def _encode_option(name: str, kind: str, text: str) -> bytes:
    try:
        if kind == "ip":
            return ipaddress.IPv4Address(text.strip()).packed
        if kind == "ips":
            return b"".join(ipaddress.IPv4Address(part).packed for part in text.split())
        if kind in _INT_FORMATS:
            return struct.pack(_INT_FORMATS[kind], int(text))
    except (ValueError, struct.error) as error:
        raise NetworkError(f"lease option {name}={text!r} is malformed: {error}") from None
    return text.encode("utf-8", errors="surrogateescape")


def parse_lease(record: bytes, *, mac: str = "") -> Lease:
    """A Lease from the hook's record: udhcpc's environment, NUL-separated."""
    env: dict[str, str] = {}
    for entry in record.split(b"\0"):
        raw_name, equals, raw_value = entry.partition(b"=")
        if equals:
            env[raw_name.decode("ascii", errors="replace")] = raw_value.decode(
                "utf-8", errors="surrogateescape"
            )
    options: dict[int, bytes] = {}
    for name, value in env.items():
        if name.startswith("opt") and name[3:].isdigit():
            code = int(name[3:])
            try:
                options[code] = bytes.fromhex(value)
            except ValueError:
                raise NetworkError(f"lease option {name} is not hex: {value[:40]!r}") from None
        elif name in KNOWN_OPTIONS:
            code, kind = KNOWN_OPTIONS[name]
            options[code] = _encode_option(name, kind, value)
    for required in ("interface", "ip"):
        if not env.get(required):
            raise NetworkError(f"lease record has no {required!r}")
    try:
        address = ipaddress.IPv4Address(env["ip"])
        if "mask" in env:
            prefix_len = int(env["mask"])
        elif "subnet" in env:
            prefix_len = ipaddress.IPv4Network(f"0.0.0.0/{env['subnet']}").prefixlen
        else:
            prefix_len = 32
        if not 0 <= prefix_len <= 32:
            raise ValueError(f"prefix length {prefix_len}")
    except ValueError as error:
        raise NetworkError(f"lease has a malformed address: {error}") from None
    routers = env.get("router", "").split()
    return Lease(
        interface=env["interface"],
        mac=mac,
        ip=str(address),
        prefix_len=prefix_len,
        router=routers[0] if routers else None,
        dns=tuple(env.get("dns", "").split()),
        hostname=env.get("hostname") or None,
        domain=env.get("domain") or None,
        server_id=env.get("serverid") or None,
        options=options,
        next_server=env.get("siaddr") or None,
        boot_file=env.get("boot_file") or None,
    )


def load_lease(path: Path, *, mac: str = "") -> Lease:
    return parse_lease(path.read_bytes(), mac=mac)


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str
    physical: bool


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def list_interfaces(sys_class_net: Path = Path("/sys/class/net")) -> list[Interface]:
    """Ethernet interfaces that can carry DHCP: physical first, then virtual (veth).

    Skipped: loopback, non-Ethernet link types, bridges, bonds, VLANs, tun/tap,
    wireless: none of them is how a netbooting machine reaches its server.
    """
    found: list[Interface] = []
    try:
        entries = sorted(entry.name for entry in sys_class_net.iterdir())
    except OSError as error:
        raise NetworkError(f"cannot list {sys_class_net}: {error}") from None
    for name in entries:
        base = sys_class_net / name
        if name == "lo" or _read(base / "type") != str(ARPHRD_ETHER):
            continue
        uevent = _read(base / "uevent") or ""
        devtype = next(
            (line.partition("=")[2] for line in uevent.splitlines() if line.startswith("DEVTYPE=")),
            "",
        )
        if devtype in ("bridge", "bond", "vlan", "wlan") or (base / "tun_flags").exists():
            continue
        mac = (_read(base / "address") or "").lower()
        found.append(Interface(name, mac, physical=(base / "device").exists()))
    return sorted(found, key=lambda iface: (not iface.physical, iface.name))


def order_candidates(
    interfaces: list[Interface], settings: Settings
) -> list[Interface]:
    """Restrict to `ramboot.iface=` when given, BOOTIF's interface first."""
    candidates = interfaces
    if settings.interfaces:
        by_name = {iface.name: iface for iface in interfaces}
        missing = [name for name in settings.interfaces if name not in by_name]
        if missing:
            log.warning("ramboot.iface names unknown interfaces: %s", ", ".join(missing))
        candidates = [by_name[name] for name in settings.interfaces if name in by_name]
    if settings.bootif:
        preferred = [iface for iface in candidates if iface.mac == settings.bootif]
        if not preferred:
            log.warning("BOOTIF=%s matches no interface; trying all", settings.bootif)
        candidates = preferred + [iface for iface in candidates if iface not in preferred]
    return candidates


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")


def _has_carrier(sys_class_net: Path, name: str) -> bool:
    return _read(sys_class_net / name / "carrier") == "1"  # EINVAL while down: not yet


def wait_for_carrier(
    interfaces: list[Interface], timeout: float, sys_class_net: Path
) -> list[Interface]:
    """Interfaces with carrier once the first one has it (or all, after a short grace)."""
    deadline = time.monotonic() + timeout
    while True:
        up = [iface for iface in interfaces if _has_carrier(sys_class_net, iface.name)]
        if len(up) == len(interfaces) or time.monotonic() >= deadline:
            return up
        if up:
            # Others may be a moment behind; give them a second, no more.
            deadline = min(deadline, time.monotonic() + 1.0)
        time.sleep(0.1)


def _udhcpc_argv(interface: str, hook: Path) -> list[str]:
    udhcpc = shutil.which("udhcpc")
    program = [udhcpc] if udhcpc else ["busybox", "udhcpc"]
    argv = [
        *program, "-f", "-q", "-n", "-t", str(_UDHCPC_TRIES), "-T", str(_UDHCPC_TIMEOUT),
        "-i", interface, "-s", str(hook),
    ]
    for code in REQUESTED_OPTIONS:
        argv += ["-O", str(code)]
    return argv


def run_udhcpc(iface: Interface, *, hook: Path, runtime_dir: Path, debug: int) -> Lease | None:
    """One udhcpc attempt on `iface`; the lease, or None when no server answered."""
    lease_file = runtime_dir / f"lease.{iface.name}"
    with contextlib.suppress(FileNotFoundError):
        lease_file.unlink()
    env = {**os.environ, "RAMBOOT_LEASE_FILE": str(lease_file)}
    argv = _udhcpc_argv(iface.name, hook)
    log.debug("running %s", " ".join(argv))
    timeout = _UDHCPC_TRIES * (_UDHCPC_TIMEOUT + 1) + 10
    try:
        result = subprocess.run(
            argv, env=env, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
            stdout=None if debug >= 2 else subprocess.DEVNULL,
            stderr=None if debug >= 2 else subprocess.PIPE, text=True,
        )
    except subprocess.TimeoutExpired:
        log.warning("%s: udhcpc did not finish within %d s", iface.name, timeout)
        return None
    except OSError as error:
        raise NetworkError(f"cannot run udhcpc: {error}") from None
    if result.returncode == 0 and not lease_file.exists():
        raise NetworkError(f"udhcpc got a lease on {iface.name} but {hook} did not record it")
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-1:] if result.stderr else []
        log.info("%s: no DHCP lease%s", iface.name, f" ({detail[0]})" if detail else "")
        return None
    return load_lease(lease_file, mac=iface.mac)


def configure(lease: Lease, *, resolv_conf: Path) -> None:
    """Address, default route and resolvers from `lease`."""
    _ip("-4", "addr", "flush", "dev", lease.interface)
    _ip("addr", "add", f"{lease.ip}/{lease.prefix_len}", "dev", lease.interface)
    if lease.router:
        _ip("route", "replace", "default", "via", lease.router, "dev", lease.interface)
    lines = []
    if lease.domain:
        lines.append(f"search {lease.domain.split()[0]}")
    lines += [f"nameserver {server}" for server in lease.dns]
    if lines:
        tmp = resolv_conf.with_name(resolv_conf.name + ".ramboot-tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(resolv_conf)


def bring_up(
    settings: Settings,
    *,
    sys_class_net: Path = Path("/sys/class/net"),
    runtime_dir: Path = RUNTIME_DIR,
    resolv_conf: Path = Path("/etc/resolv.conf"),
    hook: Path = HOOK,
) -> Lease:
    """Find an interface that gets a lease and configure it; NetworkError after the bounds.

    Rounds of one udhcpc attempt per candidate, with exponential backoff
    between rounds, until `ramboot.dhcp_timeout` seconds have passed.
    """
    runtime_dir.mkdir(parents=True, exist_ok=True)
    if not hook.is_file():
        raise NetworkError(f"the udhcpc hook {hook} is missing")
    candidates = order_candidates(list_interfaces(sys_class_net), settings)
    if not candidates:
        raise NetworkError("no Ethernet interface found (is the NIC driver loaded?)")
    log.info("interfaces: %s", ", ".join(f"{i.name} ({i.mac})" for i in candidates))
    for iface in candidates:
        _ip("link", "set", iface.name, "up")
    with_carrier = wait_for_carrier(candidates, settings.carrier_timeout, sys_class_net)
    if not with_carrier:
        raise NetworkError(
            f"no carrier on {', '.join(i.name for i in candidates)} "
            f"after {settings.carrier_timeout:g} s (cable? switch port?)"
        )
    deadline = time.monotonic() + settings.dhcp_timeout
    backoff, attempt = 1.0, 0
    while True:
        attempt += 1
        for iface in with_carrier:
            log.info("%s: DHCP (attempt %d)", iface.name, attempt)
            lease = run_udhcpc(iface, hook=hook, runtime_dir=runtime_dir, debug=settings.debug)
            if lease is not None:
                configure(lease, resolv_conf=resolv_conf)
                log.info(
                    "%s: %s/%d via %s, dns %s", lease.interface, lease.ip, lease.prefix_len,
                    lease.router or "-", " ".join(lease.dns) or "-",
                )
                return lease
            if time.monotonic() >= deadline:
                break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NetworkError(
                f"no DHCP lease on {', '.join(i.name for i in with_carrier)} "
                f"within {settings.dhcp_timeout:g} s ({attempt} rounds)"
            )
        time.sleep(min(backoff, remaining))
        backoff = min(backoff * 2, 16.0)


def main(argv: list[str] | None = None) -> int:
    """Test and debugging entry: `python -m ramboot_agent.net --cmdline '...'`."""
    parser = argparse.ArgumentParser(prog="python -m ramboot_agent.net")
    parser.add_argument("--cmdline", help="kernel command line (default: /proc/cmdline)")
    parser.add_argument("--runtime-dir", type=Path, default=RUNTIME_DIR)
    parser.add_argument("--resolv-conf", type=Path, default=Path("/etc/resolv.conf"))
    parser.add_argument("--hook", type=Path, default=HOOK)
    args = parser.parse_args(argv)
    from ramboot_agent.log import setup_logging  # noqa: PLC0415

    text = args.cmdline if args.cmdline is not None else Path("/proc/cmdline").read_text()
    try:
        settings = parse_cmdline(text)
        setup_logging(settings.debug, kmsg=False)
        lease = bring_up(
            settings, runtime_dir=args.runtime_dir, resolv_conf=args.resolv_conf, hook=args.hook
        )
    except AgentError as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(lease.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
