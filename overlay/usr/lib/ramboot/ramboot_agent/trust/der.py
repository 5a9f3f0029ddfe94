"""A strict, bounded DER reader: the ASN.1 that X.509 certificates and CMS signatures use.

Only definite lengths of at most four octets and single-octet tags are
accepted (what DER encoders write); every element must lie inside its
parent. Nothing recurses on the input's shape: callers walk the fixed
structures of a certificate or a signature with `Reader`, so a hostile
input can make a parse fail (DerError, naming what was being read) but not
run long or deep.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass

from ramboot_agent.trust import TrustError

# Universal tags (with the constructed bit where the type is always constructed).
BOOLEAN, INTEGER, BIT_STRING, OCTET_STRING, NULL, OID = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
UTF8_STRING, PRINTABLE_STRING, IA5_STRING, UTC_TIME, GENERALIZED_TIME = 0x0C, 0x13, 0x16, 0x17, 0x18
SEQUENCE, SET = 0x30, 0x31
_NAMES = {BOOLEAN: "BOOLEAN", INTEGER: "INTEGER", BIT_STRING: "BIT STRING",
          OCTET_STRING: "OCTET STRING", NULL: "NULL", OID: "OBJECT IDENTIFIER",
          UTC_TIME: "UTCTime", GENERALIZED_TIME: "GeneralizedTime", SEQUENCE: "SEQUENCE",
          SET: "SET"}
MAX_LENGTH_OCTETS = 4


def context(number: int, *, constructed: bool = True) -> int:
    """The tag of [number] (EXPLICIT tags and constructed IMPLICIT ones are constructed)."""
    return 0x80 | (0x20 if constructed else 0) | number


def tag_name(tag: int) -> str:
    if tag in _NAMES:
        return _NAMES[tag]
    if tag & 0xC0 == 0x80:
        return f"[{tag & 0x1F}]"
    return f"tag 0x{tag:02x}"


class DerError(TrustError):
    """The data is not the DER expected; the message says what and where."""


@dataclass(frozen=True)
class Element:
    """One TLV: its tag and where its contents lie in `data`."""

    data: bytes
    tag: int
    start: int  # the tag octet
    body: int  # the first contents octet
    end: int  # just after the contents

    @property
    def raw(self) -> bytes:
        """The whole element, tag and length included (as it is signed and hashed)."""
        return self.data[self.start:self.end]

    @property
    def value(self) -> bytes:
        return self.data[self.body:self.end]

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    def reader(self, what: str) -> Reader:
        if not self.constructed:
            raise DerError(f"{what}: {tag_name(self.tag)} has no elements inside")
        return Reader(self.data, self.body, self.end, what)


def read_element(data: bytes, offset: int, limit: int, what: str) -> Element:
    """The element at `offset`, which must end by `limit`."""
    if offset + 2 > limit:
        raise DerError(f"{what}: truncated at byte {offset}")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError(f"{what}: multi-octet tag at byte {offset} (not used by X.509 or CMS)")
    first = data[offset + 1]
    body = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DerError(f"{what}: indefinite length at byte {offset} (BER, not DER)")
    else:
        count = first & 0x7F
        if count > MAX_LENGTH_OCTETS or body + count > limit:
            raise DerError(f"{what}: bad length at byte {offset}")
        length = int.from_bytes(data[body:body + count], "big")
        if length < 0x80 or data[body] == 0:
            raise DerError(f"{what}: length at byte {offset} is not minimally encoded")
        body += count
    if body + length > limit:
        raise DerError(f"{what}: {tag_name(tag)} at byte {offset} runs past its end "
                       f"({length} bytes, {limit - body} left)")
    return Element(data, tag, offset, body, body + length)


def parse(data: bytes, what: str, *, trailing_ok: bool = False) -> Element:
    """The single element that `data` holds."""
    element = read_element(data, 0, len(data), what)
    if element.end != len(data) and not trailing_ok:
        raise DerError(f"{what}: {len(data) - element.end} bytes after the end")
    return element


class Reader:
    """The elements inside a constructed element, read in order."""

    def __init__(self, data: bytes, start: int, end: int, what: str) -> None:
        self.data, self.offset, self.end, self.what = data, start, end, what

    def at_end(self) -> bool:
        return self.offset >= self.end

    def peek_tag(self) -> int | None:
        return None if self.at_end() else self.data[self.offset]

    def next(self, tag: int | None = None, what: str | None = None) -> Element:
        label = f"{self.what}: {what}" if what else self.what
        if self.at_end():
            raise DerError(f"{label}: missing (the {tag_name(tag) if tag else 'element'} "
                           "ends early)")
        element = read_element(self.data, self.offset, self.end, label)
        if tag is not None and element.tag != tag:
            raise DerError(f"{label}: expected {tag_name(tag)}, found {tag_name(element.tag)}")
        self.offset = element.end
        return element

    def optional(self, tag: int) -> Element | None:
        return self.next(tag) if self.peek_tag() == tag else None

    def finish(self) -> None:
        if not self.at_end():
            raise DerError(f"{self.what}: unexpected {tag_name(self.data[self.offset])} "
                           "after the last element")

    def all(self, tag: int | None = None, what: str | None = None, *,
            limit: int = 64) -> list[Element]:
        """Every remaining element (at most `limit`)."""
        elements: list[Element] = []
        while not self.at_end():
            if len(elements) == limit:
                raise DerError(f"{self.what}: more than {limit} elements")
            elements.append(self.next(tag, what))
        return elements


# --- values --------------------------------------------------------------------------------------


def integer(element: Element, what: str) -> int:
    if element.tag != INTEGER or not element.value:
        raise DerError(f"{what}: not an INTEGER")
    return int.from_bytes(element.value, "big", signed=True)


def unsigned(element: Element, what: str) -> int:
    value = integer(element, what)
    if value < 0:
        raise DerError(f"{what}: negative")
    return value


def boolean(element: Element, what: str) -> bool:
    if element.tag != BOOLEAN or len(element.value) != 1:
        raise DerError(f"{what}: not a BOOLEAN")
    return element.value != b"\0"


def oid(element: Element, what: str) -> str:
    """Dotted notation, e.g. 1.2.840.113549.1.7.2."""
    body = element.value
    if element.tag != OID or not body or body[-1] & 0x80:
        raise DerError(f"{what}: not an OBJECT IDENTIFIER")
    if len(body) > 64:
        raise DerError(f"{what}: OBJECT IDENTIFIER too long")
    arcs: list[int] = []
    value, starting = 0, True
    for octet in body:
        if starting and octet == 0x80:
            raise DerError(f"{what}: OBJECT IDENTIFIER not minimally encoded")
        value = (value << 7) | (octet & 0x7F)
        starting = not octet & 0x80
        if starting:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def bit_string(element: Element, what: str) -> tuple[bytes, int]:
    """The bits (as octets, first bit the top of the first octet) and the unused count."""
    body = element.value
    if element.tag != BIT_STRING or not body or body[0] > 7 or (len(body) == 1 and body[0]):
        raise DerError(f"{what}: not a BIT STRING")
    return body[1:], body[0]


def octet_string(element: Element, what: str) -> bytes:
    if element.tag != OCTET_STRING:
        raise DerError(f"{what}: not an OCTET STRING")
    return element.value


_UTC = re.compile(rb"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z")
_GENERALIZED = re.compile(rb"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z")


def time(element: Element, what: str) -> int:
    """A UTCTime or GeneralizedTime (as X.509 requires: seconds, UTC) as a Unix time."""
    if element.tag == UTC_TIME:
        match = _UTC.fullmatch(element.value)
    elif element.tag == GENERALIZED_TIME:
        match = _GENERALIZED.fullmatch(element.value)
    else:
        raise DerError(f"{what}: not a time")
    if not match:
        raise DerError(f"{what}: {element.value!r} is not YYMMDDHHMMSSZ or YYYYMMDDHHMMSSZ")
    fields = [int(part) for part in match.groups()]
    if element.tag == UTC_TIME:
        fields[0] += 1900 if fields[0] >= 50 else 2000  # RFC 5280's window
    year, month, day, hour, minute, second = fields
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise DerError(f"{what}: {element.value!r} is not a valid date and time")
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
