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
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ramboot_agent.cmdline import Settings, parse_cmdline
from ramboot_agent.errors import AgentError, NetworkError
from ramboot_agent.log import sanitise

log = logging.getLogger("ramboot.net")

# /usr/share/ramboot/udhcpc.script in the image; the same relative place in a checkout.
HOOK = Path(__file__).resolve().parents[3] / "share/ramboot/udhcpc.script"
RUNTIME_DIR = Path("/run/ramboot")
OPTION_URL = 224  # text: the instructions URL
OPTION_REPORT_URL = 225  # text: where to POST status events
OPTION_NTP_SERVERS = 42  # for the clock (clock.py): a Pi has no RTC
REQUESTED_OPTIONS = (OPTION_URL, OPTION_REPORT_URL, OPTION_NTP_SERVERS)
VENDOR_CLASS_PREFIX = "ramboot-agent:"  # + "<version>:<buildarch>"
ARPHRD_ETHER = 1
_UDHCPC_TRIES, _UDHCPC_TIMEOUT = 3, 2  # per attempt: 3 discovers, 2 s apart
IP_TIMEOUT = 10.0  # seconds for one `ip` command
MAX_LEASE_RECORD = 1024 * 1024  # an environment block is far smaller (ARG_MAX)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def is_dns_name(text: str) -> bool:
    """An RFC 1123 host or domain name (labels of letters, digits, `-`, `_`)."""
    name = text.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def _domain_list(text: str) -> bool:
    """Option 15 as servers send it: one domain name, or several separated by spaces."""
    return bool(text.split()) and all(is_dns_name(word) for word in text.split())

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
    """Option `name`'s wire bytes from udhcpc's rendering; ValueError when malformed.

    Address lists are rebuilt by `parse_lease` from their valid addresses only.
    """
    if kind == "ip":
        return ipaddress.IPv4Address(text.strip()).packed
    if kind in _INT_FORMATS:
        try:
            return struct.pack(_INT_FORMATS[kind], int(text.strip(), 10))
        except struct.error as error:
            raise ValueError(str(error)) from None
    return text.encode("utf-8", errors="surrogateescape")


def _shown(value: str) -> str:
    return f"'{sanitise(value[:60])}'"


def _addresses(name: str, value: str, warn: Callable[[str], None]) -> tuple[str, ...]:
    """The IPv4 addresses in `value`; others cost themselves, with a warning."""
    good = []
    for word in value.split():
        try:
            good.append(str(ipaddress.IPv4Address(word)))
        except ValueError:
            warn(f"lease option {name}: {_shown(word)} is not an IPv4 address; ignored")
    return tuple(good)


def _unpack(raw: bytes | None) -> tuple[str, ...]:
    """IPv4 addresses packed in an option's bytes."""
    raw = raw or b""
    return tuple(str(ipaddress.IPv4Address(raw[i:i + 4])) for i in range(0, len(raw) - 3, 4))


def _text(name: str, raw: str, warn: Callable[[str], None],
          valid: Callable[[str], bool] | None = None) -> str | None:
    """A text field of the lease, or None (with a warning) when it is not clean text."""
    if not raw:
        return None
    value = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if "\ufffd" in value or _CONTROL.search(value) or (valid and not valid(value)):
        warn(f"lease option {name}={_shown(raw)} is malformed; ignored")
        return None
    return value


def _prefix_len(env: dict[str, str], warn: Callable[[str], None]) -> int:
    if "mask" in env:
        mask = env["mask"].strip()
        if mask.isascii() and mask.isdigit() and 0 <= int(mask) <= 32:
            return int(mask)
        warn(f"lease mask={_shown(mask)} is malformed; trying the subnet")
    if "subnet" in env:
        try:
            return ipaddress.IPv4Network(f"0.0.0.0/{env['subnet'].strip()}").prefixlen
        except ValueError:
            warn(f"lease subnet={_shown(env['subnet'])} is malformed; using /32")
    return 32


def parse_lease(record: bytes, *, mac: str = "",
                warn: Callable[[str], None] | None = None) -> Lease:
    """A Lease from the hook's record: udhcpc's environment, NUL-separated.

    Only the address itself is required. Any other malformed field (a bad
    option, router, DNS server, host or domain name) costs that field and a
    warning (`warn`, default: logged), never the lease.
    """
    warnings = warn or (lambda message: log.warning("%s", message))
    env: dict[str, str] = {}
    for entry in record.split(b"\0"):
        raw_name, equals, raw_value = entry.partition(b"=")
        if equals:
            env[raw_name.decode("ascii", errors="replace")] = raw_value.decode(
                "utf-8", errors="surrogateescape"
            )
    options: dict[int, bytes] = {}
    for name, value in env.items():
        if name.startswith("opt") and name[3:].isascii() and name[3:].isdigit():
            code = int(name[3:])
            try:
                if not 1 <= code <= 254:
                    raise ValueError(f"no DHCP option has code {code}")
                options[code] = bytes.fromhex(value)
            except ValueError:
                warnings(f"lease option {name}={_shown(value)} is not option data; ignored")
        elif name in KNOWN_OPTIONS and KNOWN_OPTIONS[name][1] == "ips":
            good = _addresses(name, value, warnings)
            if good:
                options[KNOWN_OPTIONS[name][0]] = b"".join(
                    ipaddress.IPv4Address(address).packed for address in good)
        elif name in KNOWN_OPTIONS:
            code, kind = KNOWN_OPTIONS[name]
            try:
                options[code] = _encode_option(name, kind, value)
            except ValueError as error:
                warnings(f"lease option {name}={_shown(value)} is malformed ({error}); ignored")
    for required in ("interface", "ip"):
        if not env.get(required):
            raise NetworkError(f"lease record has no {required!r}")
    try:
        address = ipaddress.IPv4Address(env["ip"].strip())
    except ValueError as error:
        raise NetworkError(f"lease has a malformed address: {error}") from None
    # Options 3, 6 and 54 hold only the addresses that were valid (warned about above).
    routers, dns, server_id = (_unpack(options.get(code)) for code in (3, 6, 54))
    next_server = _addresses("siaddr", env.get("siaddr", ""), warnings)[:1]
    domain = _text("domain", env.get("domain", ""), warnings, _domain_list)
    return Lease(
        interface=env["interface"],
        mac=mac,
        ip=str(address),
        prefix_len=_prefix_len(env, warnings),
        router=routers[0] if routers else None,
        dns=dns,
        hostname=_text("hostname", env.get("hostname", ""), warnings, is_dns_name),
        domain=domain,
        server_id=server_id[0] if server_id else None,
        options=options,
        next_server=next_server[0] if next_server else None,
        boot_file=_text("boot_file", env.get("boot_file", ""), warnings),
    )


def load_lease(path: Path, *, mac: str = "") -> Lease:
    with path.open("rb") as record:
        return parse_lease(record.read(MAX_LEASE_RECORD), mac=mac)


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
    try:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False,
                                timeout=IP_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise NetworkError(f"ip {' '.join(args)}: no answer within {IP_TIMEOUT:g} s") from None
    except OSError as error:
        raise NetworkError(f"cannot run ip: {error.strerror}") from None
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


RAM_FILESYSTEMS = ("rootfs", "ramfs", "tmpfs")


def root_filesystem(mountinfo: Path = Path("/proc/self/mountinfo")) -> str:
    """The type of the filesystem mounted on `/` (the last mount there wins)."""
    fstype = "unknown"
    try:
        lines = mountinfo.read_text(errors="replace").splitlines()
    except OSError:
        return fstype
    for line in lines:
        # ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER-OPTIONS
        mount, _, rest = line.partition(" - ")
        fields = mount.split()
        if len(fields) > 4 and fields[4] == "/" and rest.split():
            fstype = rest.split()[0]
    return fstype


def refuse_outside_ram_system(command: str, *, force: bool,
                              mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """Why `command` must not run here (a message), or None in the RAM system or when forced.

    The agent takes the network over: it flushes and replaces the addresses
    of every Ethernet interface. On a workstation or server booted from disk
    that cuts it off, so outside an initramfs (or RAM) root it refuses.
    """
    fstype = root_filesystem(mountinfo)
    if force or fstype in RAM_FILESYSTEMS:
        return None
    return (f"refusing to run {command}: / is {fstype}, not the in-RAM ramboot system "
            "(an initramfs). It takes over this machine's network: it flushes and "
            "replaces the addresses of every Ethernet interface. Pass --force to run it "
            "anyway (e.g. inside a network namespace).")


def vendor_class() -> str:
    """Option 60 of the agent's requests: DHCP servers give it its own option 224 (stage 2)."""
    from ramboot_agent import __version__  # noqa: PLC0415
    from ramboot_agent.arch import buildarch  # noqa: PLC0415

    return f"{VENDOR_CLASS_PREFIX}{__version__}:{buildarch(os.uname().machine)}"


def _udhcpc_argv(interface: str, hook: Path) -> list[str]:
    udhcpc = shutil.which("udhcpc")
    program = [udhcpc] if udhcpc else ["busybox", "udhcpc"]
    argv = [
        *program, "-f", "-q", "-n", "-t", str(_UDHCPC_TRIES), "-T", str(_UDHCPC_TIMEOUT),
        "-i", interface, "-s", str(hook), "-V", vendor_class(),
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
        # udhcpc's output may quote the server: it reaches the console only through the log.
        result = subprocess.run(
            argv, env=env, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        )
    except subprocess.TimeoutExpired:
        log.warning("%s: udhcpc did not finish within %d s", iface.name, timeout)
        return None
    except OSError as error:
        raise NetworkError(f"cannot run udhcpc: {error}") from None
    output = (result.stdout or "").strip().splitlines()
    if debug >= 2:
        for line in output[-50:]:
            log.debug("udhcpc: %s", line)
    if result.returncode == 0 and not lease_file.exists():
        raise NetworkError(f"udhcpc got a lease on {iface.name} but {hook} did not record it")
    if result.returncode != 0:
        detail = f" ({output[-1]})" if output else ""
        log.info("%s: no DHCP lease%s", iface.name, detail)
        return None
    return load_lease(lease_file, mac=iface.mac)


def configure(lease: Lease, *, resolv_conf: Path) -> None:
    """Address, default route and resolvers from `lease`."""
    _ip("-4", "addr", "flush", "dev", lease.interface)
    _ip("addr", "add", f"{lease.ip}/{lease.prefix_len}", "dev", lease.interface)
    if lease.router:
        try:
            _ip("route", "replace", "default", "via", lease.router, "dev", lease.interface)
        except NetworkError:
            # A router outside the lease's subnet (e.g. a /32 lease): reach it on the link.
            try:
                _ip("route", "replace", "default", "via", lease.router, "dev",
                    lease.interface, "onlink")
            except NetworkError as error:
                log.warning("%s: no default route via %s (%s); only the local subnet is "
                            "reachable", lease.interface, lease.router, error)
    lines = []
    if lease.domain:
        lines.append(f"search {lease.domain.split()[0]}")
    lines += [f"nameserver {server}" for server in lease.dns]
    if lines:
        tmp = resolv_conf.with_name(resolv_conf.name + ".ramboot-tmp")
        try:
            tmp.write_text("\n".join(lines) + "\n")
            tmp.replace(resolv_conf)
        except OSError as error:
            log.warning("cannot write %s (%s): names will not resolve", resolv_conf,
                        error.strerror)


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
    parser.add_argument("--force", action="store_true",
                        help="run even outside the in-RAM system (it reconfigures interfaces)")
    args = parser.parse_args(argv)
    refusal = refuse_outside_ram_system("python -m ramboot_agent.net", force=args.force)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
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
