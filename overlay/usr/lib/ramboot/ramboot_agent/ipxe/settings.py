"""iPXE's typed settings: raw bytes plus a type that parses and formats them.

iPXE stores every setting as raw bytes. A type (``string``, ``hex``,
``int32``...) converts text to bytes when storing (``set idx:int32 0``) and
bytes to text when expanding (``${mac:hexhyp}``). Settings live in named
blocks (``net0``, ``net0.dhcp``, ``smbios``...) under an unnamed root; a
lookup without a block searches the root first, then each block in order.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

# iPXE's `unsigned long`: numeric settings wider than this are out of range.
LONG_BYTES = 8


class SettingError(ValueError):
    """A value cannot be parsed or formatted as the requested type."""


@dataclass(frozen=True)
class SettingName:
    """A parsed ``[block/]name[:type]``; ``tag`` is set for DHCP option numbers."""

    block: str | None
    name: str
    type: str | None

    @property
    def key(self) -> str:
        return canonical_key(self.name)


@dataclass(frozen=True)
class Stored:
    raw: bytes
    type: str | None  # None: as fetched from DHCP, formatted as a string


# Named settings that are DHCP options, so ${12} and ${hostname} agree
# (iPXE's settings with a DHCP tag: core/settings.c, net/udp/*.c).
_OPTION_NAMES = {
    "netmask": 1,
    "gateway": 3,
    "dns": 6,
    "syslog": 7,
    "hostname": 12,
    "domain": 15,
    "root-path": 17,
    "mtu": 26,
    "ntp": 42,
    "dhcp-server": 54,
    "vendor-class": 60,
    "filename": 67,
    "user-class": 77,
    "initiator-iqn": 203,
}
# iPXE's predefined settings carry a default type.
_DEFAULT_TYPES = {
    "mac": "hex",
    "hwaddr": "hex",
    "bustype": "string",
    "busloc": "uint32",
    "busid": "hex",
    "mtu": "int16",
    "ip": "ipv4",
    "netmask": "ipv4",
    "gateway": "ipv4",
    "dns": "ipv4",
    "syslog": "ipv4",
    "ntp": "ipv4",
    "dhcp-server": "ipv4",
    "next-server": "ipv4",
    "uuid": "uuid",
    "memsize": "int32",
    "unixtime": "uint32",
    "priority": "int8",
    "keep-san": "int8",
    "skip-san-boot": "int8",
    "san-drive": "uint8",
}


_TAG_NAMES = {str(tag): name for name, tag in _OPTION_NAMES.items()}


def default_type(name: SettingName) -> str | None:
    """The type of iPXE's predefined setting with this name or DHCP tag: a
    setting named by its number is that setting (``${3}`` is the gateway, an
    ipv4), as iPXE's parse_setting_name finds it."""
    return _DEFAULT_TYPES.get(name.name) or _DEFAULT_TYPES.get(_TAG_NAMES.get(name.key, ""))


def canonical_key(name: str) -> str:
    """The storage key: DHCP options by number (``224``, ``0x0c``) or by name."""
    if name in _OPTION_NAMES:
        return str(_OPTION_NAMES[name])
    if re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]+", name):
        return str(int(name, 0))
    return name


def parse_setting_name(text: str) -> SettingName:
    """Split ``[block/]name[:type]``; raises SettingError for an unknown type."""
    block: str | None = None
    name = text
    if "/" in text:
        block, name = text.split("/", 1)
    type_name: str | None = None
    if ":" in name:
        name, type_name = name.split(":", 1)
        if type_name not in TYPES:
            raise SettingError(f"invalid setting type {type_name!r}")
    return SettingName(block, name, type_name)


# --- types ------------------------------------------------------------------


def _parse_int(text: str) -> int:
    # strtoul(value, &endp, 0): optional sign, 0x hex, leading 0 octal.
    match = re.fullmatch(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not match:
        raise SettingError(f"invalid integer {text!r}")
    value = int(match.group(2), 8 if re.fullmatch("0[0-7]+", match.group(2)) else 0)
    if match.group(1) == "-":
        value = -value
    return value % (1 << (8 * LONG_BYTES))


def _int_type(width: int, signed: bool) -> tuple[Callable[[str], bytes], Callable[[bytes], str]]:
    def parse(text: str) -> bytes:
        return (_parse_int(text) % (1 << (8 * width))).to_bytes(width, "big")

    def format_(raw: bytes) -> str:
        value = numeric_value(raw, signed=signed)
        if signed:
            return str(value)
        return hex(value)  # "%#lx": iPXE prints zero as 0x0 too

    return parse, format_


def numeric_value(raw: bytes, *, signed: bool) -> int:
    """Raw big-endian bytes as iPXE's `long`: wider values must be padding only."""
    negative = bool(raw) and raw[0] >= 0x80 and signed
    pad = 0xFF if negative else 0
    if len(raw) > LONG_BYTES and any(b != pad for b in raw[: len(raw) - LONG_BYTES]):
        raise SettingError("numeric value out of range")
    value = int.from_bytes(raw[-LONG_BYTES:] if raw else b"", "big", signed=False)
    if negative:
        value -= 1 << (8 * min(len(raw), LONG_BYTES))
    return value


def _hex_type(sep: str) -> tuple[Callable[[str], bytes], Callable[[bytes], str]]:
    def parse(text: str) -> bytes:
        out = bytearray()
        pos = 0
        while pos < len(text):
            if out and sep:
                if text[pos] != sep:
                    raise SettingError(f"invalid hex value {text!r}")
                pos += 1
            pair = text[pos : pos + 2]
            if len(pair) != 2 or not all(c in "0123456789abcdefABCDEF" for c in pair):
                raise SettingError(f"invalid hex value {text!r}")
            out.append(int(pair, 16))
            pos += 2
        return bytes(out)

    def format_(raw: bytes) -> str:
        return sep.join(f"{b:02x}" for b in raw)

    return parse, format_


def _parse_string(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _format_string(raw: bytes) -> str:
    # iPXE stops at the first NUL (C strings).
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


_URI_ESCAPED = set("/#:@?=&+%")


def _format_uristring(raw: bytes) -> str:
    out = []
    for byte in raw:
        char = chr(byte)
        if byte < 0x21 or byte > 0x7E or char in _URI_ESCAPED:
            out.append(f"%{byte:02X}")
        else:
            out.append(char)
    return "".join(out)


def _parse_uristring(text: str) -> bytes:
    out = bytearray()
    data = text.encode("utf-8", "surrogateescape")
    pos = 0
    while pos < len(data):
        if data[pos] == ord("%") and re.fullmatch(rb"[0-9a-fA-F]{2}", data[pos + 1 : pos + 3]):
            out.append(int(data[pos + 1 : pos + 3], 16))
            pos += 3
        else:
            out.append(data[pos])
            pos += 1
    return bytes(out)


def _parse_ipv4(text: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError as error:
        raise SettingError(f"invalid IPv4 address {text!r}") from error


def _format_ipv4(raw: bytes) -> str:
    if len(raw) < 4:
        raise SettingError("too short for an IPv4 address")
    return str(ipaddress.IPv4Address(raw[:4]))


def _parse_ipv6(text: str) -> bytes:
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError as error:
        raise SettingError(f"invalid IPv6 address {text!r}") from error


def _format_ipv6(raw: bytes) -> str:
    if len(raw) < 16:
        raise SettingError("too short for an IPv6 address")
    return str(ipaddress.IPv6Address(raw[:16]))


def _parse_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise SettingError(f"invalid base64 {text!r}") from error


def _format_base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _parse_uuid(text: str) -> bytes:
    try:
        return uuid.UUID(text).bytes
    except ValueError as error:
        raise SettingError(f"invalid UUID {text!r}") from error


def _format_uuid(raw: bytes) -> str:
    if len(raw) != 16:
        raise SettingError("a UUID is 16 bytes")
    return str(uuid.UUID(bytes=raw))


def _parse_guid(text: str) -> bytes:
    try:
        return uuid.UUID(text).bytes_le
    except ValueError as error:
        raise SettingError(f"invalid GUID {text!r}") from error


def _format_guid(raw: bytes) -> str:
    if len(raw) != 16:
        raise SettingError("a GUID is 16 bytes")
    return str(uuid.UUID(bytes_le=raw))


TYPES: dict[str, tuple[Callable[[str], bytes], Callable[[bytes], str]]] = {
    "string": (_parse_string, _format_string),
    "uristring": (_parse_uristring, _format_uristring),
    "ipv4": (_parse_ipv4, _format_ipv4),
    "ipv6": (_parse_ipv6, _format_ipv6),
    "int8": _int_type(1, True),
    "int16": _int_type(2, True),
    "int32": _int_type(4, True),
    "uint8": _int_type(1, False),
    "uint16": _int_type(2, False),
    "uint32": _int_type(4, False),
    "hex": _hex_type(":"),
    "hexhyp": _hex_type("-"),
    "hexraw": _hex_type(""),
    "base64": (_parse_base64, _format_base64),
    "uuid": (_parse_uuid, _format_uuid),
    "guid": (_parse_guid, _format_guid),
}
INTEGER_TYPES = {"int8", "int16", "int32", "uint8", "uint16", "uint32"}


def parse_value(type_name: str, text: str) -> bytes:
    return TYPES[type_name][0](text)


def format_value(type_name: str, raw: bytes) -> str:
    return TYPES[type_name][1](raw)


# --- the store --------------------------------------------------------------


class SettingsStore:
    """Settings blocks as iPXE arranges them: root first, then named blocks.

    Blocks are created on first write (iPXE "autovivifies" them for ``set``);
    ``netX`` names the most recently added network device block.
    """

    def __init__(self) -> None:
        self._blocks: dict[str, dict[str, Stored]] = {"": {}}
        # Values computed when read (${unixtime}, ${cwuri}), by block and key.
        self._dynamic: dict[str, dict[str, tuple[Callable[[], bytes | None], str]]] = {}

    def define_dynamic(self, block: str, key: str, compute: Callable[[], bytes | None],
                       type_name: str) -> None:
        """A read-only setting whose raw value `compute` gives at each read."""
        self._blocks.setdefault(block, {})
        self._dynamic.setdefault(block, {})[canonical_key(key)] = (compute, type_name)

    # Writing

    def store(self, name: SettingName, raw: bytes | None, type_name: str | None) -> None:
        """Store raw bytes (None or empty deletes, as in iPXE)."""
        block = self._block_name(name.block)
        entries = self._blocks.setdefault(block, {})
        if not raw:
            entries.pop(name.key, None)
            return
        entries[name.key] = Stored(raw, type_name)

    def set_text(self, text_name: str, value: str) -> None:
        """``set``-style store from text; raises SettingError on a bad value."""
        name = parse_setting_name(text_name)
        type_name = name.type or default_type(name) or "string"
        self.store(name, parse_value(type_name, value) if value else None, type_name)

    def set_raw(self, block: str, key: str, raw: bytes, type_name: str | None = None) -> None:
        """Seed a value (identity, DHCP options) into a block."""
        self.store(SettingName(block or None, key, None), raw, type_name)

    # Reading

    def lookup(self, name: SettingName) -> Stored | None:
        if name.block is not None:
            block = self._block_name(name.block)
            # A block name covers its children (net0 covers net0.dhcp).
            candidates = [b for b in self._blocks if b == block or b.startswith(block + ".")]
        else:
            candidates = list(self._blocks)
        for block_name in candidates:
            found = self._blocks[block_name].get(name.key)
            if found is not None:
                return found
            dynamic = self._dynamic.get(block_name, {}).get(name.key)
            if dynamic is not None:
                raw = dynamic[0]()
                if raw:
                    return Stored(raw, dynamic[1])
        return None

    def fetch(self, name: SettingName) -> str | None:
        """The formatted value, or None when unset or unformattable (iPXE: empty)."""
        stored = self.lookup(name)
        if stored is None:
            return None
        type_name = name.type or stored.type or default_type(name) or "string"
        try:
            return format_value(type_name, stored.raw)
        except SettingError:
            return None

    def get(self, text_name: str) -> str | None:
        """Convenience: fetch by ``[block/]name[:type]`` text."""
        try:
            return self.fetch(parse_setting_name(text_name))
        except SettingError:
            return None

    def has(self, block: str, key: str) -> bool:
        """Whether `block` itself holds `key` (stored or computed)."""
        name = self._block_name(block)
        key = canonical_key(key)
        return key in self._blocks.get(name, {}) or key in self._dynamic.get(name, {})

    def has_block(self, block: str) -> bool:
        return bool(self._blocks.get(self._block_name(block)))

    def origin(self, name: SettingName) -> str:
        """The block a lookup would find the value in (for ``show``)."""
        for block_name, entries in self._blocks.items():
            if name.key in entries and (
                name.block is None or block_name.startswith(self._block_name(name.block))
            ):
                return block_name
        return ""

    def _block_name(self, block: str | None) -> str:
        if not block:
            return ""
        if block == "netX" or block.startswith("netX."):
            nets = [b for b in self._blocks if re.fullmatch(r"net[0-9]+", b)]
            if nets:
                return nets[-1] + block[4:]
        return block


# Where iPXE keeps each identity variable (so ${net0/mac} and ${mac} both work).
_IDENTITY_BLOCKS = {
    "mac": "net0",
    "ip": "net0.dhcp",
    "netmask": "net0.dhcp",
    "gateway": "net0.dhcp",
    "dns": "net0.dhcp",
    "hostname": "net0.dhcp",
    "domain": "net0.dhcp",
    "serial": "smbios",
    "uuid": "smbios",
    "manufacturer": "smbios",
    "product": "smbios",
    "asset": "smbios",
    "buildarch": "builtin",
    "platform": "builtin",
    "version": "builtin",
    "memsize": "builtin",
    "board-serial": "smbios",
}


def _unixtime() -> bytes:
    return (int(time.time()) & 0xFFFFFFFF).to_bytes(4, "big")


def build_settings(
    identity: dict[str, str],
    dhcp_options: dict[int, bytes] | None = None,
    overrides: dict[str, str] | None = None,
) -> SettingsStore:
    """The settings a script sees: identity, DHCP options, then overrides.

    Identity keys go where iPXE has them (``mac`` in ``net0``, ``serial`` in
    ``smbios``...); DHCP options (by number) in ``net0.dhcp``; an override
    named by a number is a DHCP option too. Raises SettingError on a value
    its type cannot hold (e.g. a malformed MAC).
    """
    store = SettingsStore()
    for code, raw in sorted((dhcp_options or {}).items()):
        store.set_raw("net0.dhcp", str(code), raw)
    store.define_dynamic("builtin", "unixtime", _unixtime, "uint32")
    for values in (identity, overrides or {}):
        for key, value in values.items():
            name = parse_setting_name(key)
            block = name.block or _IDENTITY_BLOCKS.get(name.name)
            if block is None and re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]+", name.name):
                block = "net0.dhcp"
            type_name = name.type or default_type(name) or "string"
            parsed = parse_value(type_name, value) if value else None
            store.store(SettingName(block, name.name, None), parsed,
                        name.type or default_type(name))
    return store
