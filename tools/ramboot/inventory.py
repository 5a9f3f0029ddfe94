"""The fleet inventory: one TOML file, validated strictly into frozen dataclasses.

Every problem is collected (not just the first) and reported with the file, the
section or host, and the field, so one run tells the operator everything to fix.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ramboot.errors import RambootError

FAMILIES = ("rpi4", "x86_64")
URL_SCHEMES = ("http", "https", "tftp")

# Pi 4 family models and the DTB the firmware must load for each.
RPI_MODEL_DTB = {
    "4b": "bcm2711-rpi-4-b.dtb",
    "400": "bcm2711-rpi-400.dtb",
    "cm4": "bcm2711-rpi-cm4.dtb",
    "cm4s": "bcm2711-rpi-cm4s.dtb",
}

# The last console= is /dev/console, where the agent reports and the rescue
# shell runs: the serial port goes last.
DEFAULT_CONSOLES = {
    "rpi4": ("tty1", "serial0,115200"),
    "x86_64": ("tty0", "ttyS0,115200"),
}

# Every pattern is used with fullmatch(): `$` would also match before a final
# newline, and "pi-01\n" would then split a line of every generated file.
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_SERIAL_RE = re.compile(r"[0-9A-Fa-f]{8}")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?:([:-])[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}")
_RAMBOOT_KEY_RE = re.compile(r"[a-z][a-z0-9_-]*")
_TOML_POS_RE = re.compile(r"\(at line (\d+), column (\d+)\)$")
# A URL is RFC 3986 characters only: unreserved, reserved and %-escapes. That
# leaves out blanks, quotes, backslash, `<>^`{|}` and anything non-ASCII, so
# no URL can break a kernel command line, an iPXE word (no `${`), a quoted
# dnsmasq value or a config line.
_URL_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
# A kernel or iPXE argument: printable ASCII without blanks, quotes or backslash.
_ARG_RE = re.compile(r"[!#-&(-\[\]-~]+")
# A DNS domain: dot-separated LDH labels (RFC 1123), at most 253 characters.
_DOMAIN_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# A Linux interface name (IFNAMSIZ - 1), as dnsmasq and Kea take it.
_INTERFACE_RE = re.compile(r"[A-Za-z0-9_.@-]{1,15}")
# An absolute directory for dnsmasq's tftp-root= (a comma would end the value).
_TFTP_ROOT_RE = re.compile(r"/[A-Za-z0-9_.@+=:/-]*")
# iPXE reads these words as command separators and comments, not as arguments.
_IPXE_SPECIAL_WORDS = ("||", "&&", ";")
_PLACEHOLDER_IP = "192.0.2.0"  # stands in for a missing address while collecting problems


class InventoryError(RambootError):
    """Every problem found in one inventory file."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"invalid inventory ({count}):\n" + "\n".join(
            f"  {problem}" for problem in problems
        ))


@dataclass(frozen=True)
class Servers:
    tftp: str
    http_base: str
    dhcp_interface: str | None
    uefi_binary: str
    tftp_root: str | None
    report_url: str | None


@dataclass(frozen=True)
class Network:
    subnet: str
    pool: tuple[str, str]
    router: str | None
    dns: tuple[str, ...]
    domain: str | None
    lease_time: int


@dataclass(frozen=True)
class Profile:
    name: str
    kernel: str | None
    initramfs: tuple[str, ...]
    args: tuple[str, ...]
    chain: str | None


@dataclass(frozen=True)
class Eeprom:
    boot_order: str
    tftp_prefix: int
    tftp_ip: str | None
    tftp_file_timeout: int
    dhcp_timeout: int
    dhcp_req_timeout: int
    net_install_enabled: int


@dataclass(frozen=True)
class Host:
    name: str
    family: str
    model: str | None
    serial: str | None
    macs: tuple[str, ...]
    ip: str | None
    url: str | None
    profile: str | None
    consoles: tuple[str, ...]
    kernel_args: tuple[str, ...]
    ramboot: tuple[tuple[str, str], ...]
    report_url: str | None

    @property
    def dtb(self) -> str | None:
        return RPI_MODEL_DTB[self.model] if self.model else None


@dataclass(frozen=True)
class HaPeer:
    name: str
    url: str  # where the partner's HA listener is: lease updates and heartbeats


@dataclass(frozen=True)
class DhcpHa:
    """A Kea high-availability pair (libdhcp_ha.so): both serve, each keeps the other's leases."""

    mode: str  # load-balancing or hot-standby
    peers: tuple[HaPeer, HaPeer]
    hooks_dir: str
    heartbeat_delay: int  # ms
    max_response_delay: int  # ms without an answer from the partner before it is down


@dataclass(frozen=True)
class Inventory:
    path: Path
    servers: Servers
    network: Network
    eeprom: Eeprom
    profiles: Mapping[str, Profile]
    hosts: tuple[Host, ...]
    families: frozenset[str] = field(default_factory=frozenset)
    dhcp_ha: DhcpHa | None = None

    def host_url(self, host: Host) -> str:
        """The instructions URL of `host`: its own, or the rendered host script."""
        return host.url or f"{self.servers.http_base}/hosts/{host.name}.ipxe"


# --- small validators: each returns the normalised value or raises _Bad ---


class _Bad(Exception):
    """One field's problem; the collector adds where it is."""


def normalise_mac(value: object) -> str:
    if not isinstance(value, str) or not _MAC_RE.fullmatch(value):
        raise _Bad(f"{value!r} is not a MAC address (six hex pairs separated by ':' or '-')")
    mac = value.lower().replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise _Bad(f"{value!r} is a multicast address, not a network card's")
    if mac == "00:00:00:00:00:00":
        raise _Bad(f"{value!r} is the all-zero address")
    return mac


def normalise_serial(value: object) -> str:
    if not isinstance(value, str) or not _SERIAL_RE.fullmatch(value):
        raise _Bad(
            f"{value!r} is not 8 hex digits (the bootloader uses the last 8 digits "
            "of the serial in /proc/cpuinfo)"
        )
    return value.lower()


def check_name(value: object, what: str = "name") -> str:
    if not isinstance(value, str):
        raise _Bad(f"{value!r} is not a string")
    if "/" in value or "\\" in value or "\x00" in value or value in {".", ".."}:
        raise _Bad(f"{value!r} would escape the output directory")
    if not _NAME_RE.fullmatch(value):
        raise _Bad(
            f"{value!r} is not a valid {what} (letters, digits and '-', "
            "at most 63, not starting or ending with '-')"
        )
    return value


def check_url(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{value!r} is not a string")
    if not _URL_CHARS.fullmatch(value):
        raise _Bad(
            f"{value!r} contains whitespace, quotes, control or other characters a URL "
            "may not hold (RFC 3986: percent-encode them)"
        )
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as error:
        raise _Bad(f"{value!r} is not a valid URL: {error}") from None
    if parts.scheme not in URL_SCHEMES:
        raise _Bad(f"{value!r}: scheme must be one of {', '.join(URL_SCHEMES)}")
    if not parts.hostname:
        raise _Bad(f"{value!r} has no host")
    return value


def check_base_url(value: object) -> str:
    """A URL that others are appended to: http(s), no query, no fragment."""
    url = check_url(value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise _Bad(f"{value!r} must be an http or https URL")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise _Bad(
            f"{value!r} has a query or fragment: paths such as /hosts/<name>.ipxe are "
            "appended to it"
        )
    return url


def check_domain(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{value!r} is not a string")
    labels = value.removesuffix(".").split(".")
    if len(value) > 253 or not all(_DOMAIN_LABEL_RE.fullmatch(label) for label in labels):
        raise _Bad(f"{value!r} is not a domain name (dot-separated letters, digits and '-')")
    return value


def check_interface(value: object) -> str:
    if not isinstance(value, str) or not _INTERFACE_RE.fullmatch(value):
        raise _Bad(f"{value!r} is not a network interface name (at most 15 of A-Z a-z 0-9 _ . @ -)")
    return value


def check_tftp_root(value: object) -> str:
    if not isinstance(value, str) or not _TFTP_ROOT_RE.fullmatch(value):
        raise _Bad(
            f"{value!r} is not an absolute path of letters, digits and _ . @ + = : / - "
            "(dnsmasq's tftp-root= cannot hold blanks, quotes or commas)"
        )
    if "/../" in f"{value}/" or "//" in value:
        raise _Bad(f"{value!r} must be a plain absolute path (no '..' or '//')")
    return value


def check_report_url(value: object) -> str:
    """Where the agent POSTs status events: http or https only (it never reports over TFTP)."""
    url = check_url(value)
    if not url.startswith(("http://", "https://")):
        raise _Bad(f"{value!r} must be an http or https URL")
    return url


def check_ipv4(value: object) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError) as error:
        raise _Bad(f"{value!r} is not an IPv4 address") from error


def check_arg(value: object) -> str:
    """One word of a kernel command line, also written into iPXE scripts."""
    if not isinstance(value, str) or not value:
        raise _Bad(f"{value!r} is not a non-empty string")
    if not _ARG_RE.fullmatch(value):
        raise _Bad(
            f"{value!r} contains whitespace, quotes, backslashes, control or non-ASCII "
            "characters"
        )
    if value in _IPXE_SPECIAL_WORDS or value.startswith("#"):
        raise _Bad(f"{value!r} would be read by iPXE as a separator or a comment, not an argument")
    return value


def check_int(value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _Bad(f"{value!r} is not an integer in {low}..{high}")
    return value


def check_relative_path(value: object) -> str:
    """A path under the HTTP images directory: relative, no '..', no NUL."""
    if not isinstance(value, str) or not value:
        raise _Bad(f"{value!r} is not a non-empty string")
    parts = value.split("/")
    if value.startswith("/") or ".." in parts or "\x00" in value or "" in parts:
        raise _Bad(f"{value!r} would escape the images directory")
    if not _URL_CHARS.fullmatch(value):
        raise _Bad(f"{value!r} contains whitespace, quotes, control or other characters a URL "
                   "may not hold")
    return value


def check_kernel_ref(value: object) -> str:
    """A kernel or initramfs: an absolute URL, or a path under http/images/."""
    if isinstance(value, str) and "://" in value:
        return check_url(value)
    return check_relative_path(value)


# --- the collector ---


class _Collector:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{self.path.name}: {where}: {message}")

    def table(self, data: object, where: str) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.add(where, f"must be a table, not {type(data).__name__}")
            return {}
        return data

    def unknown_keys(self, data: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in sorted(set(data) - allowed):
            self.add(where, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")

    def field(self, where: str, key: str, value: Any, check: Any, *args: Any) -> Any:
        """Run `check` on `value`; on failure record the problem and return None."""
        try:
            return check(value, *args)
        except _Bad as bad:
            self.add(where, f"{key}: {bad}")
            return None

    def strings(self, where: str, key: str, value: Any, check: Any) -> tuple[Any, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.add(where, f"{key}: must be a list of strings")
            return ()
        out = []
        for item in value:
            checked = self.field(where, key, item, check)
            if checked is not None:
                out.append(checked)
        return tuple(out)


_SERVER_KEYS = {
    "tftp", "http_base", "dhcp_interface", "uefi_binary", "tftp_root", "report_url",
}
_NETWORK_KEYS = {"subnet", "pool", "router", "dns", "domain", "lease_time"}
_PROFILE_KEYS = {"kernel", "initramfs", "args", "chain"}
_EEPROM_KEYS = {
    "boot_order", "tftp_prefix", "tftp_ip", "tftp_file_timeout", "dhcp_timeout",
    "dhcp_req_timeout", "net_install_enabled",
}
_HOST_KEYS = {
    "name", "family", "model", "serial", "macs", "ip", "url", "profile", "console",
    "kernel_args", "ramboot", "report_url",
}
_DEFAULT_KEYS = {"family", "model", "profile", "console", "kernel_args", "ramboot", "report_url"}
_TOP_KEYS = {"defaults", "servers", "network", "profiles", "eeprom", "hosts", "dhcp_ha"}
_HA_KEYS = {"mode", "peers", "hooks_dir", "heartbeat_delay", "max_response_delay"}
_HA_PEER_KEYS = {"name", "url"}
HA_MODES = ("load-balancing", "hot-standby")
DEFAULT_KEA_HOOKS = "/usr/lib/x86_64-linux-gnu/kea/hooks"
UEFI_BINARIES = ("ipxe.efi", "snponly.efi")


def _servers(c: _Collector, raw: object) -> Servers:
    data = c.table(raw, "servers")
    c.unknown_keys(data, _SERVER_KEYS, "servers")
    for key in ("tftp", "http_base"):
        if key not in data:
            c.add("servers", f"{key}: missing")
    tftp = c.field("servers", "tftp", data.get("tftp", _PLACEHOLDER_IP), check_ipv4)
    base = data.get("http_base", "http://invalid")
    http_base = c.field("servers", "http_base", base, check_base_url)
    interface = data.get("dhcp_interface")
    if interface is not None:
        interface = c.field("servers", "dhcp_interface", interface, check_interface)
    uefi = data.get("uefi_binary", "ipxe.efi")
    if uefi not in UEFI_BINARIES:
        c.add("servers", f"uefi_binary: {uefi!r} is not one of {', '.join(UEFI_BINARIES)}")
    tftp_root = data.get("tftp_root")
    if tftp_root is not None:
        tftp_root = c.field("servers", "tftp_root", tftp_root, check_tftp_root)
    report = data.get("report_url")
    if report is not None:
        report = c.field("servers", "report_url", report, check_report_url)
    return Servers(
        tftp=tftp or _PLACEHOLDER_IP, http_base=(http_base or "").rstrip("/"),
        dhcp_interface=interface, uefi_binary=uefi, tftp_root=tftp_root, report_url=report,
    )


def _network(c: _Collector, raw: object) -> Network:
    data = c.table(raw, "network")
    c.unknown_keys(data, _NETWORK_KEYS, "network")
    subnet: ipaddress.IPv4Network | None = None
    try:
        subnet = ipaddress.IPv4Network(data.get("subnet"), strict=True)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError, TypeError):
        c.add("network", f"subnet: {data.get('subnet')!r} is not an IPv4 network like "
              "'192.0.2.0/24'")

    def inside(key: str, value: object) -> str | None:
        address: str | None = c.field("network", key, value, check_ipv4)
        if address and subnet and ipaddress.IPv4Address(address) not in subnet:
            c.add("network", f"{key}: {address} is outside the subnet {subnet}")
        return address

    pool_raw = data.get("pool")
    pool: tuple[str, str] = ("", "")
    if not (isinstance(pool_raw, list) and len(pool_raw) == 2):
        c.add("network", f"pool: {pool_raw!r} must be [first, last]")
    else:
        first, last = inside("pool", pool_raw[0]), inside("pool", pool_raw[1])
        if first and last:
            if ipaddress.IPv4Address(first) > ipaddress.IPv4Address(last):
                c.add("network", f"pool: {first} comes after {last}")
            pool = (first, last)
    router = inside("router", data["router"]) if "router" in data else None
    dns = c.strings("network", "dns", data.get("dns", []), check_ipv4)
    domain = data.get("domain")
    if domain is not None:
        domain = c.field("network", "domain", domain, check_domain)
    lease = c.field("network", "lease_time", data.get("lease_time", 3600), check_int, 60,
                    2**31 - 1)
    return Network(
        subnet=str(subnet) if subnet else "", pool=pool, router=router, dns=dns, domain=domain,
        lease_time=lease or 3600,
    )


def _eeprom(c: _Collector, raw: object) -> Eeprom:
    data = c.table(raw, "eeprom")
    c.unknown_keys(data, _EEPROM_KEYS, "eeprom")
    boot_order = data.get("boot_order", "0xf21")
    if not (isinstance(boot_order, str) and re.fullmatch(r"0x[0-9a-fA-F]{1,16}", boot_order)):
        c.add("eeprom", f"boot_order: {boot_order!r} is not a hex string like '0xf21'")
        boot_order = "0xf21"
    tftp_ip = data.get("tftp_ip")
    if tftp_ip is not None:
        tftp_ip = c.field("eeprom", "tftp_ip", tftp_ip, check_ipv4)

    def number(key: str, default: int, low: int, high: int) -> int:
        value = c.field("eeprom", key, data.get(key, default), check_int, low, high)
        return default if value is None else value

    return Eeprom(
        boot_order=boot_order.lower(),
        tftp_prefix=number("tftp_prefix", 0, 0, 2),
        tftp_ip=tftp_ip,
        tftp_file_timeout=number("tftp_file_timeout", 30000, 5000, 120000),
        dhcp_timeout=number("dhcp_timeout", 45000, 5000, 600000),
        dhcp_req_timeout=number("dhcp_req_timeout", 4000, 500, 60000),
        net_install_enabled=number("net_install_enabled", 0, 0, 1),
    )


def _dhcp_ha(c: _Collector, raw: object) -> DhcpHa | None:
    if raw is None:
        return None
    data = c.table(raw, "dhcp_ha")
    c.unknown_keys(data, _HA_KEYS, "dhcp_ha")
    mode = data.get("mode", "load-balancing")
    if mode not in HA_MODES:
        c.add("dhcp_ha", f"mode: {mode!r} is not one of {', '.join(HA_MODES)}")
    peers_raw = data.get("peers")
    peers: list[HaPeer] = []
    if not (isinstance(peers_raw, list) and len(peers_raw) == 2):
        c.add("dhcp_ha", "peers: must be exactly two [[dhcp_ha.peers]] tables (name, url)")
        peers_raw = []
    for index, item in enumerate(peers_raw):
        where = f"dhcp_ha.peers[{index}]"
        peer = c.table(item, where)
        c.unknown_keys(peer, _HA_PEER_KEYS, where)
        name = c.field(where, "name", peer.get("name"), check_name, "server name")
        url = c.field(where, "url", peer.get("url"), check_url)
        if url and not url.startswith("http://"):
            c.add(where, f"url: {url!r} must be http:// (Kea's HA listener)")
        if name and url:
            peers.append(HaPeer(name, url if url.endswith("/") else url + "/"))
    if len(peers) == 2 and peers[0].name == peers[1].name:
        c.add("dhcp_ha", f"peers: both are named {peers[0].name!r}")
    hooks = c.field("dhcp_ha", "hooks_dir", data.get("hooks_dir", DEFAULT_KEA_HOOKS), check_arg)
    if hooks and not hooks.startswith("/"):
        c.add("dhcp_ha", f"hooks_dir: {hooks!r} must be an absolute path")
    heartbeat = c.field("dhcp_ha", "heartbeat_delay", data.get("heartbeat_delay", 2000),
                        check_int, 100, 600000)
    response = c.field("dhcp_ha", "max_response_delay", data.get("max_response_delay", 6000),
                       check_int, 200, 3600000)
    if heartbeat and response and response <= heartbeat:
        c.add("dhcp_ha", "max_response_delay: must be longer than heartbeat_delay")
    if len(peers) != 2 or mode not in HA_MODES or not hooks or not heartbeat or not response:
        return None
    return DhcpHa(mode=mode, peers=(peers[0], peers[1]), hooks_dir=hooks,
                  heartbeat_delay=heartbeat, max_response_delay=response)


def _profiles(c: _Collector, raw: object) -> dict[str, Profile]:
    data = c.table(raw, "profiles")
    profiles: dict[str, Profile] = {}
    for name in sorted(data):
        where = f"profile {name!r}"
        if c.field(where, "name", name, check_name, "profile name") is None:
            continue
        body = c.table(data[name], where)
        c.unknown_keys(body, _PROFILE_KEYS, where)
        chain = body.get("chain")
        kernel = body.get("kernel")
        if (chain is None) == (kernel is None):
            c.add(where, "needs exactly one of 'kernel' (with 'initramfs') or 'chain'")
        if chain is not None:
            chain = c.field(where, "chain", chain, check_url)
            for key in ("initramfs", "args"):
                if key in body:
                    c.add(where, f"{key}: has no meaning with 'chain'")
        if kernel is not None:
            kernel = c.field(where, "kernel", kernel, check_kernel_ref)
        args = c.strings(where, "args", body.get("args", []), check_arg)
        _check_agent_args(c, where, "args", args)
        if any(ramboot_key(word) == "report" for word in args):
            c.add(where, "args: ramboot.report= is set from each host's report_url")
        _check_duplicate_keys(c, where, "profile's command line", [("args", args)])
        profiles[name] = Profile(
            name=name, kernel=kernel,
            initramfs=c.strings(where, "initramfs", body.get("initramfs", []), check_kernel_ref),
            args=args, chain=chain,
        )
    return profiles


def _ramboot_keys(c: _Collector, where: str, raw: object) -> dict[str, str]:
    data = c.table(raw, f"{where}: ramboot")
    out: dict[str, str] = {}
    for key, raw_value in data.items():
        if not _RAMBOOT_KEY_RE.fullmatch(key):
            c.add(where, f"ramboot.{key}: not a valid key (lower-case letters, digits, '_', '-')")
            continue
        if key == "url":
            c.add(where, "ramboot.url: set the host's 'url' (or 'profile') instead")
            continue
        if key == "report":
            c.add(where, "ramboot.report: set 'report_url' instead (it also feeds DHCP option 225)")
            continue
        if key == "token":
            c.add(where, "ramboot.token: machine tokens come from `ramboot render "
                  "--machine-secret FILE`, never from the inventory")
            continue
        # TOML booleans and integers become the 1/0 and digits the agent parses.
        value = str(int(raw_value)) if isinstance(raw_value, bool | int) else raw_value
        checked = c.field(where, f"ramboot.{key}", value, check_arg)
        if checked is not None and c.field(
            where, f"ramboot.{key}", f"ramboot.{key}={checked}", check_agent_words
        ) is not None:
            out[key] = checked
    return out


def check_agent_words(value: object) -> str:
    """Kernel words the agent will read must parse as the agent parses them
    (its own parser, so the two can never disagree): a typo in a key or a bad
    value is caught here, not on a machine that then stops in a rescue shell."""
    from ramboot_agent.cmdline import parse_cmdline  # noqa: PLC0415
    from ramboot_agent.errors import ConfigError  # noqa: PLC0415

    text = str(value)
    try:
        settings = parse_cmdline(text)
    except ConfigError as error:
        raise _Bad(str(error)) from None
    if settings.unknown:
        from ramboot_agent.cmdline import KEYS  # noqa: PLC0415

        known = ", ".join(f"ramboot.{key}" for key in KEYS)
        raise _Bad(f"unknown kernel parameter {settings.unknown[0]} (the agent knows: {known})")
    return text


def ramboot_key(word: str) -> str | None:
    """The agent's name for the `ramboot.` key a kernel word sets, or None."""
    param = word.split("=", 1)[0]
    if not param.startswith("ramboot."):
        return None
    return param.removeprefix("ramboot.").replace("-", "_")


def profile_args(profile: Profile, ramboot: Mapping[str, str]) -> tuple[str, ...]:
    """A profile's arguments for one host: its `ramboot` table overrides the same keys."""
    return tuple(word for word in profile.args if ramboot_key(word) not in ramboot)


def _check_duplicate_keys(
    c: _Collector, where: str, line: str, sources: list[tuple[str, tuple[str, ...]]]
) -> None:
    """A key twice on one command line: the agent takes the last and the first is dead text."""
    seen: dict[str, str] = {}
    for source, words in sources:
        for word in words:
            key = ramboot_key(word)
            if key is None:
                continue
            if key in seen:
                c.add(where, f"{source}: ramboot.{key} is already set by {seen[key]} on the "
                      f"{line}; give each ramboot. key once")
            else:
                seen[key] = source


def _check_agent_args(c: _Collector, where: str, key: str, words: tuple[str, ...]) -> None:
    for word in words:
        if word.startswith("ramboot."):
            c.field(where, key, word, check_agent_words)


def _host(
    c: _Collector, index: int, raw: object, *, defaults: dict[str, Any],
    profiles: Mapping[str, Profile], servers: Servers,
) -> Host | None:
    where = f"host #{index + 1}"
    data = c.table(raw, where)
    if not data:
        return None
    name = c.field(where, "name", data.get("name"), check_name, "host name")
    if name is not None:
        where = f"host {name!r}"
    c.unknown_keys(data, _HOST_KEYS, where)
    merged = {**defaults, **data}
    # ramboot.* keys merge key by key: a host adds to the defaults' keys.
    ramboot_defaults, ramboot_host = defaults.get("ramboot", {}), data.get("ramboot", {})
    if isinstance(ramboot_defaults, dict) and isinstance(ramboot_host, dict):
        merged["ramboot"] = {**ramboot_defaults, **ramboot_host}

    family = merged.get("family")
    if family not in FAMILIES:
        c.add(where, f"family: {family!r} is not one of {', '.join(FAMILIES)}")
    serial = None
    model = None
    if family == "rpi4":
        if "serial" not in data:
            c.add(where, "serial: missing (a Raspberry Pi is found by its 8-hex-digit serial)")
        else:
            serial = c.field(where, "serial", data["serial"], normalise_serial)
        model = merged.get("model", "4b")
        if model not in RPI_MODEL_DTB:
            c.add(where, f"model: {model!r} is not one of {', '.join(RPI_MODEL_DTB)}")
            model = None
    elif family == "x86_64":
        for key in ("serial", "model"):
            if key in data:
                c.add(where, f"{key}: only meaningful for family 'rpi4'")
    macs = c.strings(where, "macs", data.get("macs", []), normalise_mac)
    if family == "x86_64" and not data.get("macs"):
        c.add(where, "macs: missing (an x86_64 host is found by its MAC address)")
    if len(set(macs)) != len(macs):
        c.add(where, "macs: lists the same address twice")
    ip = c.field(where, "ip", data["ip"], check_ipv4) if "ip" in data else None
    if ip and not macs:
        c.add(where, "ip: a reserved address needs at least one MAC")

    url = data.get("url")
    profile = merged.get("profile") if url is None else None
    if url is not None and "profile" in data:
        c.add(where, "url, profile: give one, not both")
    if url is not None:
        url = c.field(where, "url", url, check_url)
    elif profile is None:
        c.add(where, "url: missing (give 'url' or 'profile', here or in [defaults])")
    elif profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none defined"
        c.add(where, f"profile: {profile!r} is not defined (profiles: {known})")

    consoles = c.strings(where, "console", merged["console"], check_arg) \
        if "console" in merged else DEFAULT_CONSOLES.get(str(family), ())
    args = c.strings(where, "kernel_args", merged.get("kernel_args", []), check_arg)
    _check_agent_args(c, where, "kernel_args", args)
    ramboot = _ramboot_keys(c, where, merged.get("ramboot"))
    # The host's own, else [defaults]', else the fleet-wide one in [servers].
    report = merged.get("report_url")
    if report is not None:
        report = c.field(where, "report_url", report, check_report_url)
    else:
        report = servers.report_url
    table = tuple(f"ramboot.{key}={value}" for key, value in sorted(ramboot.items()))
    report_word = ("ramboot.report=<report_url>",) if report else ()
    if family == "rpi4":
        _check_duplicate_keys(c, where, "Pi's cmdline.txt", [
            ("url", ("ramboot.url=<url>",)), ("report_url", report_word),
            ("ramboot", table), ("kernel_args", args),
        ])
    chosen = profiles.get(profile) if url is None and isinstance(profile, str) else None
    if chosen is not None and chosen.kernel is not None:
        _check_duplicate_keys(c, where, f"command line of profile {chosen.name!r}'s kernel", [
            (f"profile {chosen.name!r} args", profile_args(chosen, ramboot)),
            ("report_url", report_word),
            ("ramboot", table), ("kernel_args", args),
        ])
    if name is None or family not in FAMILIES:
        return None
    return Host(
        name=name, family=family, model=model, serial=serial, macs=macs, ip=ip, url=url,
        profile=profile, consoles=consoles, kernel_args=args,
        ramboot=tuple(sorted(ramboot.items())), report_url=report,
    )


def _duplicates(c: _Collector, hosts: list[Host]) -> None:
    def check(what: str, values: Iterator[tuple[int, str, str]]) -> None:
        seen: dict[str, tuple[int, str]] = {}
        for index, host_name, value in values:
            first = seen.setdefault(value, (index, host_name))
            if first[0] != index:
                c.add(f"host {host_name!r}", f"{what}: {value} is already used by host "
                      f"{first[1]!r}")

    check("name", ((i, h.name, h.name) for i, h in enumerate(hosts)))
    check("serial", ((i, h.name, h.serial) for i, h in enumerate(hosts) if h.serial))
    check("macs", ((i, h.name, mac) for i, h in enumerate(hosts) for mac in h.macs))
    check("ip", ((i, h.name, h.ip) for i, h in enumerate(hosts) if h.ip))


def parse_inventory(text: str, path: Path) -> Inventory:
    """Validate inventory `text` read from `path`; raise InventoryError listing every problem."""
    c = _Collector(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POS_RE.search(message)
        if position:
            line, column = position.groups()
            message = message[: position.start()].rstrip()
            raise InventoryError([f"{path.name}:{line}:{column}: TOML syntax: {message}"]) from None
        raise InventoryError([f"{path.name}: TOML syntax: {message}"]) from None

    c.unknown_keys(raw, _TOP_KEYS, "top level")
    defaults = c.table(raw.get("defaults"), "defaults")
    c.unknown_keys(defaults, _DEFAULT_KEYS, "defaults")
    servers = _servers(c, raw.get("servers"))
    network = _network(c, raw.get("network"))
    eeprom = _eeprom(c, raw.get("eeprom"))
    profiles = _profiles(c, raw.get("profiles"))
    dhcp_ha = _dhcp_ha(c, raw.get("dhcp_ha"))

    hosts_raw = raw.get("hosts", [])
    if not isinstance(hosts_raw, list):
        c.add("hosts", "must be an array of tables: write each host as [[hosts]]")
        hosts_raw = []
    hosts = [
        host for index, item in enumerate(hosts_raw)
        if (host := _host(
            c, index, item, defaults=defaults, profiles=profiles, servers=servers,
        )) is not None
    ]
    _duplicates(c, hosts)
    if network.subnet:
        subnet = ipaddress.IPv4Network(network.subnet)
        for host in hosts:
            if host.ip and ipaddress.IPv4Address(host.ip) not in subnet:
                c.add(f"host {host.name!r}", f"ip: {host.ip} is outside the subnet {subnet}")
    if c.problems:
        raise InventoryError(c.problems)
    return Inventory(
        path=path, servers=servers, network=network, eeprom=eeprom, profiles=profiles,
        hosts=tuple(sorted(hosts, key=lambda h: h.name)),
        families=frozenset(h.family for h in hosts), dhcp_ha=dhcp_ha,
    )


def load_inventory(path: Path) -> Inventory:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RambootError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise RambootError(f"{path}: not UTF-8 text: {error}") from None
    return parse_inventory(text, path)
