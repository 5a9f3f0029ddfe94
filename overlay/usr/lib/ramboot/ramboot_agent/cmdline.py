"""The kernel command line: every `ramboot.*` key the agent reads, and `BOOTIF=`.

Tokens are split exactly as the kernel splits them (lib/cmdline.c
`next_arg()` driven by kernel/params.c `parse_args()`), on the same bytes:
the kernel's whitespace (space, \\t \\n \\v \\f \\r and the Latin-1 byte 0xa0),
double quotes that protect whitespace, one leading quote of a token and one
quote after `=` removed with the token's last quote, the first `=` that is
not the token's first character separating name and value. Parameters after
a lone `--` belong to init, not to the kernel, and are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ramboot_agent.errors import ConfigError

SHELL_POLICIES = ("never", "failure", "before", "after")
KEXEC_FAILURE_POLICIES = ("shell", "reboot")
_INTERFACE_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")
# isspace() of the kernel's lib/ctype.c table: _S is set for these bytes only.
KERNEL_SPACE = frozenset(b" \t\n\v\f\r\xa0")
_QUOTE = ord('"')
_EQUALS = ord("=")


@dataclass(frozen=True)
class Settings:
    """Everything the kernel command line tells the agent; defaults when absent."""

    url: str | None = None
    report_url: str | None = None
    debug: int = 0
    shell: str = "failure"
    on_kexec_failure: str = "shell"
    reboot_delay: float | None = 60.0
    insecure: bool = False
    dry_run: bool = False
    carrier_timeout: float = 10.0
    dhcp_timeout: float = 60.0
    interfaces: tuple[str, ...] = ()
    ssh_authorized_keys: str | None = None
    ntp_servers: tuple[str, ...] = ()
    token: str | None = None
    trust: str | None = None  # imgverify's trusted root fingerprints (trust/roots.py)
    bootif: str | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # The `ramboot.*` parameters it did not know, as written (for tools: the
    # inventory check reads these, never the warning text).
    unknown: tuple[str, ...] = field(default=(), compare=False)


def _skip_spaces(args: bytes, index: int) -> int:
    while index < len(args) and args[index] in KERNEL_SPACE:
        index += 1
    return index


def _c_string(token: bytearray, start: int) -> bytes:
    """The NUL-terminated string at `start` of `token`, as C reads it."""
    end = token.find(0, start)
    return bytes(token[start:end if end >= 0 else len(token)])


def kernel_args(args: bytes) -> Iterator[tuple[bytes, bytes | None]]:
    """(param, value) as the kernel's parse_args() gets them from next_arg().

    A line-by-line transcription, on bytes; the kernel writes NULs into its
    copy of the line, `token` stands for that copy.
    """
    args = args.split(b"\0", 1)[0]  # the kernel's line is a C string
    index = _skip_spaces(args, 0)
    while index < len(args):
        in_quote = quoted = False
        if args[index] == _QUOTE:
            index += 1
            in_quote = quoted = True
        i = equals = 0
        while index + i < len(args):
            char = args[index + i]
            if char in KERNEL_SPACE and not in_quote:
                break
            if equals == 0 and char == _EQUALS:
                equals = i  # an `=` at i == 0 is not recorded: the kernel's own quirk
            if char == _QUOTE:
                in_quote = not in_quote
            i += 1
        token = bytearray(args[index:index + i])
        value_at: int | None = None
        if equals:
            token[equals] = 0
            value_at = equals + 1
            # Don't include quotes in value.
            if value_at < i and token[value_at] == _QUOTE:
                value_at += 1
                if token[i - 1] == _QUOTE:
                    token[i - 1] = 0
        if quoted and i > 0 and token[i - 1] == _QUOTE:
            token[i - 1] = 0
        param = _c_string(token, 0)
        value = _c_string(token, value_at) if value_at is not None else None
        index = _skip_spaces(args, index + i + 1)
        if value is None and param == b"--":
            return  # the rest is init's
        yield param, value


def split_cmdline(text: str | bytes) -> list[tuple[str, str | None]]:
    """Split a command line into (param, value) pairs as the kernel does."""
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return [
        (param.decode("utf-8", "replace"),
         None if value is None else value.decode("utf-8", "replace"))
        for param, value in kernel_args(raw)
    ]


def normalize_bootif(value: str) -> str:
    """`01-aa-bb-cc-dd-ee-ff` (pxelinux, ARP type 1 prefix) or `aa:bb:...` → `aa:bb:...`."""
    parts = re.split(r"[-:]", value.strip().lower())
    if len(parts) == 7 and parts[0] == "01":
        parts = parts[1:]
    if len(parts) != 6 or not all(re.fullmatch(r"[0-9a-f]{2}", part) for part in parts):
        raise ConfigError(
            f"BOOTIF={value!r}: expected a MAC address as 01-aa-bb-cc-dd-ee-ff or aa:bb:cc:dd:ee:ff"
        )
    return ":".join(parts)


def _flag(key: str, value: str | None) -> bool:
    if value is None:
        return True  # a bare `ramboot.insecure` means yes
    lowered = value.lower()
    if lowered in ("1", "y", "yes", "true", "on"):
        return True
    if lowered in ("0", "n", "no", "false", "off"):
        return False
    raise ConfigError(f"{key}={value!r}: expected 1/0, yes/no, true/false or on/off")


def _required(key: str, value: str | None) -> str:
    if not value:
        raise ConfigError(f"{key}: needs a value ({key}=...)")
    return value


def _url(key: str, value: str | None) -> str:
    url = _required(key, value)
    expected = "expected an http://, https://, tftp:// or file:// URL"
    if not re.match(r"(?i)(https?|tftp|file)://", url):
        raise ConfigError(f"{key}={url!r}: {expected}")
    if re.search(r"[\x00-\x20\x7f]", url):
        raise ConfigError(f"{key}={url!r}: {expected}, without spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port outside 0-65535)
        host = parts.hostname
    except ValueError as error:
        raise ConfigError(f"{key}={url!r}: malformed URL ({error})") from None
    if not host and parts.scheme.lower() != "file":
        raise ConfigError(f"{key}={url!r}: no host in the URL")
    return url


def _seconds(key: str, value: str | None) -> float:
    text = _required(key, value)
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r}: expected a number of seconds") from None
    if not 0 <= seconds <= 86400:
        raise ConfigError(f"{key}={text!r}: expected between 0 and 86400 seconds")
    return seconds


def _choice(choices: tuple[str, ...]) -> Callable[[str, str | None], str]:
    def parse(key: str, value: str | None) -> str:
        text = _required(key, value)
        if text not in choices:
            raise ConfigError(f"{key}={text!r}: expected one of {', '.join(choices)}")
        return text

    return parse


def _debug(key: str, value: str | None) -> int:
    if value is None:
        return 1
    if value not in ("0", "1", "2"):
        raise ConfigError(f"{key}={value!r}: expected 0, 1 or 2")
    return int(value)


def _reboot_delay(key: str, value: str | None) -> float | None:
    if value is not None and value.lower() in ("off", "never"):
        return None
    return _seconds(key, value)


def _interfaces(key: str, value: str | None) -> tuple[str, ...]:
    names = tuple(name for name in _required(key, value).split(",") if name)
    for name in names:
        if not _INTERFACE_NAME.fullmatch(name):
            raise ConfigError(f"{key}={value!r}: {name!r} is not an interface name")
    return names


def _hosts(key: str, value: str | None) -> tuple[str, ...]:
    names = tuple(name for name in _required(key, value).split(",") if name)
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", name):
            raise ConfigError(f"{key}={value!r}: {name!r} is not a host name or address")
    return names


def _text(key: str, value: str | None) -> str:
    return _required(key, value)


_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")


def _token(key: str, value: str | None) -> str:
    text = _required(key, value)
    if not _TOKEN.fullmatch(text):
        raise ConfigError(f"{key}=...: a token is 16 to 256 letters, digits or ._~+/=-")
    return text


def _trust(key: str, value: str | None) -> str:
    from ramboot_agent.trust import TrustError  # noqa: PLC0415
    from ramboot_agent.trust.roots import parse_fingerprints  # noqa: PLC0415

    text = _required(key, value)
    try:
        parse_fingerprints(text)
    except TrustError as error:
        raise ConfigError(f"{key}={text!r}: {error}") from None
    return text


# `ramboot.<key>` -> (Settings field, parser)
KEYS: dict[str, tuple[str, Callable[[str, str | None], Any]]] = {
    "url": ("url", _url),
    "report": ("report_url", _url),
    "debug": ("debug", _debug),
    "shell": ("shell", _choice(SHELL_POLICIES)),
    "on_kexec_failure": ("on_kexec_failure", _choice(KEXEC_FAILURE_POLICIES)),
    "reboot_delay": ("reboot_delay", _reboot_delay),
    "insecure": ("insecure", _flag),
    "dry_run": ("dry_run", _flag),
    "carrier_timeout": ("carrier_timeout", _seconds),
    "dhcp_timeout": ("dhcp_timeout", _seconds),
    "iface": ("interfaces", _interfaces),
    "ssh_authorized_keys": ("ssh_authorized_keys", _text),
    "ntp": ("ntp_servers", _hosts),
    "token": ("token", _token),
    "trust": ("trust", _trust),
}


def parse_cmdline(text: str | bytes) -> Settings:
    """Settings from a kernel command line; ConfigError names the offending key."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    unknown: list[str] = []
    for param, value in split_cmdline(text):
        if param == "BOOTIF":
            values["bootif"] = normalize_bootif(_required(param, value))
            continue
        if not param.startswith("ramboot."):
            continue
        name = param.removeprefix("ramboot.").replace("-", "_")
        if name not in KEYS:
            unknown.append(param)
            warnings.append(f"unknown kernel parameter {param} ignored (known: "
                            + ", ".join(f"ramboot.{key}" for key in KEYS) + ")")
            continue
        field_name, parse = KEYS[name]
        values[field_name] = parse(param, value)  # the last occurrence wins, as in the kernel
    return Settings(**values, warnings=tuple(warnings), unknown=tuple(unknown))


def load_cmdline(path: str | Path = "/proc/cmdline") -> Settings:
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the kernel command line {path}: {error}") from None
    return parse_cmdline(raw)
