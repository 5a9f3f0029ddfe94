"""Which machine is asking: its identity (the query iPXE and the agent send, or
an event's `identity`) checked field by field, then matched to an inventory host.

Keys are those of board/common/ipxe/ramboot.ipxe and the agent's
`daemon.identity_query`, plus `stage`. Keys serve does not know are ignored, so
a newer client still boots; a known key with a malformed value is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ramboot import targets
from ramboot.inventory import Host, Inventory

IDENTITY_KEYS = (
    "mac", "ip", "uuid", "serial", "manufacturer", "product", "asset", "hostname",
    "buildarch", "platform",
)
MAX_VALUE = 256
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_IP = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_WORD = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_PI_SERIAL = re.compile(r"[0-9a-f]{8}")


class IdentityError(ValueError):
    """A field of the identity is malformed (400)."""


@dataclass(frozen=True)
class Identity:
    values: Mapping[str, str]

    @property
    def mac(self) -> str:
        return self.values.get("mac", "")

    @property
    def serial(self) -> str:
        return self.values.get("serial", "")

    @property
    def buildarch(self) -> str:
        return self.values.get("buildarch", "")

    def key(self) -> str:
        """A stable name for a machine not in the inventory."""
        if self.mac:
            return f"mac:{self.mac}"
        if self.serial:
            return f"serial:{self.serial}"
        return f"uuid:{self.values['uuid']}"


def parse_identity(raw: Mapping[str, object], where: str = "query", *,
                   required: bool = True) -> Identity:
    """Validated identity from query parameters or an event's `identity` object; with
    `required` False it may be empty (the request names its host otherwise)."""
    values: dict[str, str] = {}
    for key in IDENTITY_KEYS:
        value = raw.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise IdentityError(f"{where}: {key}: must be a string")
        if len(value) > MAX_VALUE or not value.isprintable():
            raise IdentityError(f"{where}: {key}: longer than {MAX_VALUE} characters or "
                                "not printable")
        if key == "mac":
            value = value.lower().replace("-", ":")
            if not _MAC.fullmatch(value):
                raise IdentityError(f"{where}: mac: {value!r} is not a MAC address")
        elif key == "ip" and not _IP.fullmatch(value):
            raise IdentityError(f"{where}: ip: {value!r} is not an IPv4 address")
        elif key == "uuid":
            value = value.lower()
            if not _UUID.fullmatch(value):
                raise IdentityError(f"{where}: uuid: {value!r} is not a UUID")
        elif key in ("buildarch", "platform") and not _WORD.fullmatch(value):
            raise IdentityError(f"{where}: {key}: {value!r} is not a word")
        values[key] = value
    if required and not (values.get("mac") or values.get("serial") or values.get("uuid")):
        raise IdentityError(f"{where}: names no machine: give mac, serial or uuid")
    return Identity(values)


def base_path(inventory: Inventory) -> str:
    """The path of `[servers] http_base` without its trailing slash ("" for none)."""
    return urlsplit(inventory.servers.http_base).path.rstrip("/")


class HostIndex:
    """Inventory hosts by MAC, by Pi serial, and by the path of their stage documents."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.by_name = {host.name: host for host in inventory.hosts}
        self.by_mac = {mac: host for host in inventory.hosts for mac in host.macs}
        self.by_serial = {host.serial: host for host in inventory.hosts if host.serial}
        # "/stage1/srv-01.ipxe" -> (1, host): the URLs render writes into DHCP and
        # cmdline.txt (targets.stage1_url/stage2_url), answered by serve.
        # Under http_base's own path, as the URLs are (serve may answer at a prefix).
        self.prefix = base_path(inventory)
        self.by_path: dict[str, tuple[int, Host]] = {}
        for host in inventory.hosts:
            if host.family == "x86_64":
                self.by_path[f"{self.prefix}/{targets.stage1_path(host)}"] = (1, host)
            self.by_path[f"{self.prefix}/{targets.stage2_path(host)}"] = (2, host)

    def find(self, identity: Identity) -> Host | None:
        """The host a MAC names, else the Pi whose board serial it is."""
        host = self.by_mac.get(identity.mac)
        if host is not None:
            return host
        serial = identity.serial.lower()
        if _PI_SERIAL.fullmatch(serial) and identity.buildarch in ("", "arm64", "aarch64"):
            return self.by_serial.get(serial)
        return None
