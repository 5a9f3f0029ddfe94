"""The fleet inventory: one TOML file, validated strictly into frozen dataclasses.

Every problem is collected (not just the first) and reported with the file, the
section or host, and the field, so one run tells the operator everything to fix.
"""

from __future__ import annotations

import ipaddress
import json
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

# Pi 4 family models and the mainline Linux DTB the firmware must load for
# each (the image builds mainline 6.12: docs/rpi4-kernel.md). The CM4 has
# mainline's IO-board tree only.
RPI_MODEL_DTB = {
    "4b": "bcm2711-rpi-4-b.dtb",
    "400": "bcm2711-rpi-400.dtb",
    "cm4": "bcm2711-rpi-cm4-io.dtb",
}
# Models of the family the image cannot boot, and why.
RPI_UNSUPPORTED_MODELS = {
    "cm4s": "the Compute Module 4S has no device tree in mainline Linux 6.12, "
            "the kernel the image builds (docs/rpi4-kernel.md)",
}

# The last console= is /dev/console, where the agent reports and the rescue
# shell runs: the serial port goes last. The Pi's GPIO 14/15 UART is the mini
# UART, ttyS1 under mainline's DT aliases (serial0 is the PL011 wired to
# Bluetooth, so the firmware's serial0 substitution would pick that one).
DEFAULT_CONSOLES = {
    "rpi4": ("tty1", "ttyS1,115200"),
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
class Target:
    """What a machine becomes (stage 2): a kind and that kind's validated keys.

    `where` names the table it came from (`profile 'pi-sd'`, `host 'srv-01'`) for
    messages. `options` holds JSON-ready values (the plan's own keys), in the
    order the kind lists them.
    """

    kind: str
    options: tuple[tuple[str, Any], ...]
    where: str
    description: str | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return next((value for name, value in self.options if name == key), default)

    def __hash__(self) -> int:  # options hold JSON tables (dicts): hash their text
        return hash((self.kind, json.dumps(self.options, sort_keys=True), self.where,
                     self.description))


@dataclass(frozen=True)
class Profile:
    """A named target that hosts share (`[profiles.<name>]`)."""

    name: str
    target: Target


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
    profile: str | None  # the profile its target comes from; None for its own `target`
    target: Target
    provisioned: bool  # installed already: stage 1 sends it to its disk
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
_OLD_PROFILE_KEYS = {"kernel", "initramfs", "args", "chain"}
_EEPROM_KEYS = {
    "boot_order", "tftp_prefix", "tftp_ip", "tftp_file_timeout", "dhcp_timeout",
    "dhcp_req_timeout", "net_install_enabled",
}
_HOST_KEYS = {
    "name", "family", "model", "serial", "macs", "ip", "profile", "target", "provisioned",
    "console", "kernel_args", "ramboot", "report_url",
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


# --- targets: what a machine becomes ---

# kind -> (required keys, optional keys). The keys are the plan actions' own
# (docs/plans.md), except `disk` (the action's `target`: a disk selector).
TARGET_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "install": (("url", "disk"), ("digest", "bmap", "bmap_digest", "verify", "method")),
    "netroot": (("root",), ("overlay", "init")),
    "ramroot": (("url", "digest"), ("size", "init")),
    "disk": (("disk",), ("method",)),
    "kexec": (("kernel",), ("initrds", "cmdline")),
    "plan": (("url",), ()),
    "script": (("url",), ()),
    "rescue": ((), ()),
}
LOCALBOOT_METHODS = ("kexec", "reboot")
NETROOT_SCHEMES = ("nfs", "nbd")
_DIGEST_RE = re.compile(r"(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
_OLD_FORMAT = (
    "this is the old format: a profile booted a kernel (ramboot's own, so the agent booted "
    "ramboot again) or chained a URL; a profile is now a target, e.g. kind = \"install\", "
    "\"netroot\", \"kexec\" (a kernel to boot), \"script\" (for 'chain'), \"rescue\" "
    "(docs/tools-render.md, 'Targets')"
)


def check_digest(value: object) -> str:
    if not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
        raise _Bad(f"{value!r} is not a digest like 'sha256:<64 hex digits>' or "
                   "'sha512:<128 hex digits>' (lower case)")
    return value


def check_file_ref(value: object) -> Any:
    """A file the agent downloads: a URL (or a path under http/images/), or {url, digest}."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"url", "digest"})
        if unknown or "url" not in value:
            raise _Bad(f"{value!r} must be a URL or a table {{url = ..., digest = ...}}")
        ref = {"url": check_kernel_ref(value["url"])}
        if "digest" in value:
            ref["digest"] = check_digest(value["digest"])
        return ref
    return check_kernel_ref(value)


def _check_disk(value: object) -> Any:
    # The selector's keys and values are the plan's: the agent's validator checks
    # them when the plan is rendered (its messages name the field).
    if not isinstance(value, dict) or not value:
        raise _Bad(f"{value!r} must be a disk selector table, e.g. {{ bus = \"mmc\" }}")
    return value


def _check_method(value: object) -> str:
    if value not in LOCALBOOT_METHODS:
        raise _Bad(f"{value!r} is not one of {', '.join(LOCALBOOT_METHODS)}")
    return str(value)


def _check_root(value: object) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in NETROOT_SCHEMES:
        raise _Bad(f"{value!r} must be an nfs:// or nbd:// URL")
    if not _URL_CHARS.fullmatch(value):
        raise _Bad(f"{value!r} contains whitespace, quotes, control or other characters a URL "
                   "may not hold (RFC 3986: percent-encode them)")
    return value


def _check_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"{value!r} is not true or false")
    return value


def _check_text(value: object) -> str:
    if not isinstance(value, str) or "\x00" in value or "\n" in value:
        raise _Bad(f"{value!r} is not one line of text")
    return value


def _check_size(value: object) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Bad(f"{value!r} is not a size such as \"8GiB\" or a number of bytes")
    return value


def _check_overlay(value: object) -> Any:
    if not isinstance(value, str | dict):
        raise _Bad(f"{value!r} must be \"tmpfs\" or a partition table such as "
                   "{ label = \"persist\" }")
    return value


def _check_initrds(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(f"{value!r} must be a list")
    return [check_file_ref(item) for item in value]


_TARGET_CHECKS: dict[str, Any] = {
    "url": check_url, "digest": check_digest, "bmap": check_url, "bmap_digest": check_digest,
    "disk": _check_disk,
    "verify": _check_bool, "method": _check_method, "root": _check_root,
    "overlay": _check_overlay, "init": _check_text, "size": _check_size,
    "kernel": check_file_ref, "initrds": _check_initrds, "cmdline": _check_text,
}


def _target(c: _Collector, where: str, raw: object) -> Target | None:
    """A target table (a profile, or a host's `target`); None after recording problems."""
    data = c.table(raw, where)
    if not data:
        c.add(where, "an empty target: give kind = one of " + ", ".join(TARGET_KINDS))
        return None
    kind = data.get("kind")
    if kind is None and set(data) & _OLD_PROFILE_KEYS:
        c.add(where, _OLD_FORMAT)
        return None
    if kind not in TARGET_KINDS:
        c.add(where, f"kind: {kind!r} is not one of {', '.join(TARGET_KINDS)}")
        return None
    required, optional = TARGET_KINDS[kind]
    c.unknown_keys(data, {"kind", "description", *required, *optional}, f"{where} ({kind})")
    ok = True
    options: list[tuple[str, Any]] = []
    for key in (*required, *optional):
        if key not in data:
            if key in required:
                c.add(where, f"{key}: missing (kind {kind!r} needs {', '.join(required)})")
                ok = False
            continue
        value = c.field(where, key, data[key], _TARGET_CHECKS[key])
        if value is None:
            ok = False
        else:
            options.append((key, value))
    if kind == "install" and not _install_is_authenticated(c, where, data):
        ok = False
    description = data.get("description")
    if description is not None:
        description = c.field(where, "description", description, _check_text)
    return Target(kind, tuple(options), where, description) if ok else None


def _install_is_authenticated(c: _Collector, where: str, data: dict[str, Any]) -> bool:
    """The image's digest, or a bmap with its own digest (which proves every byte
    written: docs/plans.md, "Sparse writes"); a bmap_digest without its bmap is a slip."""
    if "bmap_digest" in data and "bmap" not in data:
        c.add(where, "bmap_digest: given without bmap (the digest of which bmap file?)")
        return False
    if "digest" not in data and not ("bmap" in data and "bmap_digest" in data):
        c.add(where, "digest: missing (kind 'install' needs the image's digest, or bmap "
                     "and bmap_digest)")
        return False
    return True


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
        target = _target(c, where, data[name])
        if target is not None:
            profiles[name] = Profile(name=name, target=target)
    return profiles


def _ramboot_keys(c: _Collector, where: str, raw: object) -> dict[str, str]:
    data = c.table(raw, f"{where}: ramboot")
    out: dict[str, str] = {}
    for key, raw_value in data.items():
        if not _RAMBOOT_KEY_RE.fullmatch(key):
            c.add(where, f"ramboot.{key}: not a valid key (lower-case letters, digits, '_', '-')")
            continue
        if key == "url":
            c.add(where, "ramboot.url: the host's stage 2 comes from its target "
                  "(a target of kind \"plan\" or \"script\" names any URL)")
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
    profiles: Mapping[str, Profile], servers: Servers, broken_profiles: set[str],
) -> Host | None:
    where = f"host #{index + 1}"
    data = c.table(raw, where)
    if not data:
        return None
    name = c.field(where, "name", data.get("name"), check_name, "host name")
    if name is not None:
        where = f"host {name!r}"
    c.unknown_keys(data, _HOST_KEYS | {"url"}, where)  # an old `url`: its own message
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
        if model in RPI_UNSUPPORTED_MODELS:
            c.add(where, f"model: {model!r} is not supported: {RPI_UNSUPPORTED_MODELS[model]}")
            model = None
        elif model not in RPI_MODEL_DTB:
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

    target, profile = _host_target(c, where, data, merged, profiles=profiles,
                                   broken=broken_profiles)
    provisioned = c.field(where, "provisioned", data.get("provisioned", False), _check_bool)

    consoles = c.strings(where, "console", merged["console"], check_arg) \
        if "console" in merged else DEFAULT_CONSOLES.get(str(family), ())
    args = c.strings(where, "kernel_args", merged.get("kernel_args", []), check_arg)
    _check_agent_args(c, where, "kernel_args", args)
    if any(word.startswith("ramboot.url=") for word in args):
        c.add(where, "kernel_args: ramboot.url= is the host's stage 2, rendered from its "
              "target: to send it elsewhere, use a target of kind \"plan\" or \"script\"")
    if any(word.startswith("ramboot.token=") for word in args):
        c.add(where, "kernel_args: ramboot.token=: machine tokens come from `ramboot render "
              "--machine-secret FILE`, never from the inventory")
    ramboot = _ramboot_keys(c, where, merged.get("ramboot"))
    # The host's own, else [defaults]', else the fleet-wide one in [servers].
    report = merged.get("report_url")
    if report is not None:
        report = c.field(where, "report_url", report, check_report_url)
    else:
        report = servers.report_url
    table = tuple(f"ramboot.{key}={value}" for key, value in sorted(ramboot.items()))
    report_word = ("ramboot.report=<report_url>",) if report else ()
    words = [("report_url", report_word), ("ramboot", table), ("kernel_args", args)]
    if family == "rpi4":
        _check_duplicate_keys(c, where, "Pi's cmdline.txt", [
            ("target", ("ramboot.url=<its stage 2>",)), *words])
    else:
        _check_duplicate_keys(c, where, "stage 1 kernel command line", words)
    if name is None or family not in FAMILIES or target is None:
        return None
    return Host(
        name=name, family=family, model=model, serial=serial, macs=macs, ip=ip,
        profile=profile, target=target, provisioned=bool(provisioned), consoles=consoles,
        kernel_args=args, ramboot=tuple(sorted(ramboot.items())), report_url=report,
    )


def _host_target(
    c: _Collector, where: str, data: dict[str, Any], merged: dict[str, Any], *,
    profiles: Mapping[str, Profile], broken: set[str],
) -> tuple[Target | None, str | None]:
    """The host's own `target`, or its profile's (the host's, else [defaults]')."""
    if "url" in data:
        c.add(where, "url: the old instructions URL, given to iPXE and the agent alike (so a "
              "machine booted ramboot again); write the host's target instead, e.g. "
              "target = { kind = \"script\", url = \"...\" } or profile = \"...\" "
              "(docs/tools-render.md, 'Targets')")
        return None, None
    if "target" in data:
        if "profile" in data:
            c.add(where, "target, profile: give one, not both")
            return None, None
        return _target(c, f"{where}: target", data["target"]), None
    profile = merged.get("profile")
    if profile is None:
        c.add(where, "target: missing (give 'target' or 'profile', here or in [defaults])")
        return None, None
    if profile in broken:
        return None, None  # its own problems are reported already
    if profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none defined"
        c.add(where, f"profile: {profile!r} is not defined (profiles: {known})")
        return None, None
    return profiles[profile].target, str(profile)


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
    raw_profiles = raw.get("profiles")
    broken_profiles = set(raw_profiles) - set(profiles) if isinstance(raw_profiles, dict) \
        else set()
    dhcp_ha = _dhcp_ha(c, raw.get("dhcp_ha"))

    hosts_raw = raw.get("hosts", [])
    if not isinstance(hosts_raw, list):
        c.add("hosts", "must be an array of tables: write each host as [[hosts]]")
        hosts_raw = []
    hosts = [
        host for index, item in enumerate(hosts_raw)
        if (host := _host(
            c, index, item, defaults=defaults, profiles=profiles, servers=servers,
            broken_profiles=broken_profiles,
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
