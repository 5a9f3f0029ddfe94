"""Reading untrusted JSON with every problem named by its path.

A `Node` is one value of the document and where it is (`actions[2].target`).
Readers return the typed value, or record an error and return None, so one
pass over a plan reports every problem at once instead of the first one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")
N = TypeVar("N", int, float)

SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)")
_DIGEST = re.compile(r"(sha256|sha512):([0-9a-f]+)")
DIGEST_HEX_LENGTH = {"sha256": 64, "sha512": 128}
MAX_STRING = 64 * 1024


class Errors:
    """The problems found in one document, each `source: path: message`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.messages: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.messages.append(f"{self.source}: {path}: {message}" if path else
                             f"{self.source}: {message}")

    def __bool__(self) -> bool:
        return bool(self.messages)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


class Node:
    """A value at `path` in a document; readers check its type and range."""

    def __init__(self, value: Any, path: str, errors: Errors) -> None:
        self.value = value
        self.path = path
        self.errors = errors

    def error(self, message: str) -> None:
        self.errors.add(self.path, message)

    def _expect(self, kind: type[T] | tuple[type, ...], what: str) -> Any:
        value = self.value
        if isinstance(value, bool) and kind is not bool:
            value = None  # JSON true is not a number here
        if value is None or not isinstance(value, kind):
            self.error(f"must be {what}, not {_type_name(self.value)}")
            return None
        return value

    # --- objects -------------------------------------------------------------

    def object(self, *, required: tuple[str, ...] = (),
               optional: tuple[str, ...] = ()) -> dict[str, Node] | None:
        """The object's members as nodes; unknown and missing keys are errors."""
        value = self._expect(dict, "an object")
        if value is None:
            return None
        known = set(required) | set(optional)
        for key in value:
            if key not in known:
                allowed = ", ".join(sorted(known)) or "none"
                self.errors.add(self.child_path(key), f"unknown key (allowed: {allowed})")
        for key in required:
            if key not in value:
                self.errors.add(self.child_path(key), "required")
        return {key: Node(item, self.child_path(key), self.errors)
                for key, item in value.items() if key in known}

    def child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        name = key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key) else repr(key)
        return f"{self.path}.{name}" if self.path else name

    def items(self, *, min_items: int = 0, max_items: int = 10_000) -> Iterator[Node]:
        value = self._expect(list, "a list")
        if value is None:
            return
        if not min_items <= len(value) <= max_items:
            self.error(f"must have {min_items} to {max_items} items, has {len(value)}")
        for index, item in enumerate(value[:max_items]):
            yield Node(item, self.child_path(index), self.errors)

    # --- scalars -------------------------------------------------------------

    def string(self, *, pattern: str | None = None, what: str | None = None,
               max_length: int = MAX_STRING, allow_empty: bool = False) -> str | None:
        value: str | None = self._expect(str, "a string")
        if value is None:
            return None
        if not value and not allow_empty:
            self.error("must not be empty")
            return None
        if len(value) > max_length:
            self.error(f"longer than {max_length} characters")
            return None
        if "\0" in value:
            self.error("contains a NUL character")
            return None
        if pattern is not None and re.fullmatch(pattern, value) is None:
            self.error(f"{value[:80]!r} is not {what or 'valid'}")
            return None
        return value

    def choice(self, choices: tuple[str, ...]) -> str | None:
        value: str | None = self._expect(str, "a string")
        if value is None:
            return None
        if value not in choices:
            self.error(f"{value[:80]!r} is not one of: {', '.join(choices)}")
            return None
        return value

    def boolean(self) -> bool | None:
        value = self._expect(bool, "true or false")
        return value if isinstance(value, bool) else None

    def integer(self, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
        value: int | None = self._expect(int, "an integer")
        if value is None:
            return None
        return self._in_range(value, minimum, maximum)

    def number(self, *, minimum: float | None = None,
               maximum: float | None = None) -> float | None:
        value: float | None = self._expect((int, float), "a number")
        if value is None:
            return None
        if not math.isfinite(value):
            self.error("must be a finite number")
            return None
        return self._in_range(float(value), None if minimum is None else float(minimum),
                              None if maximum is None else float(maximum))

    def seconds(self, *, maximum: float = 7 * 86400) -> float | None:
        """A positive duration in seconds."""
        return self.number(minimum=0.001, maximum=maximum)

    def size(self, *, minimum: int = 0, maximum: int = 1 << 60) -> int | None:
        """Bytes: an integer, or a string such as `8GiB`, `512M`, `4 GB` (K/M/G/T
        and KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of 1000)."""
        value = self.value
        if isinstance(value, int) and not isinstance(value, bool):
            return self._in_range(value, minimum, maximum)
        if not isinstance(value, str):
            self.error(f"must be a size (bytes, or a string such as '8GiB'), "
                       f"not {_type_name(value)}")
            return None
        match = _SIZE.fullmatch(value.strip())
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in SIZE_UNITS:
            self.error(f"{value[:40]!r} is not a size such as 8GiB, 512MiB or 1000000")
            return None
        return self._in_range(int(float(match.group(1)) * SIZE_UNITS[unit]), minimum, maximum)

    def digest(self) -> tuple[str, str] | None:
        """`sha256:<hex>` or `sha512:<hex>` as (algorithm, lowercase hex)."""
        value = self._expect(str, "a digest such as 'sha256:<64 hex digits>'")
        if value is None:
            return None
        match = _DIGEST.fullmatch(value.strip().lower())
        if match is None or len(match.group(2)) != DIGEST_HEX_LENGTH[match.group(1)]:
            self.error(f"{value[:40]!r} is not 'sha256:<64 hex digits>' or "
                       "'sha512:<128 hex digits>'")
            return None
        return match.group(1), match.group(2)

    def url(self, schemes: tuple[str, ...] = ("http", "https", "tftp")) -> str | None:
        """A URL (relative ones are resolved later against the plan's own URL)."""
        from urllib.parse import urlsplit  # noqa: PLC0415

        value = self.string(max_length=8192)
        if value is None:
            return None
        if any(ord(c) < 0x21 or c == "\x7f" for c in value):
            self.error("contains spaces or control characters")
            return None
        scheme = urlsplit(value).scheme.lower()
        if scheme and scheme not in (*schemes, "file"):
            self.error(f"scheme {scheme!r} is not one of: {', '.join(schemes)}")
            return None
        return value

    def _in_range(self, value: N, minimum: N | None, maximum: N | None) -> N | None:
        if minimum is not None and value < minimum:
            self.error(f"must be at least {minimum}, not {value}")
            return None
        if maximum is not None and value > maximum:
            self.error(f"must be at most {maximum}, not {value}")
            return None
        return value


def optional(nodes: dict[str, Node] | None, key: str) -> Node | None:
    """The member `key` when the object has it."""
    return nodes.get(key) if nodes else None
