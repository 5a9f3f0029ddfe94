"""The kernel command line: every `ramboot.*` key the agent reads, and `BOOTIF=`.

Tokens are split the way the kernel's own `next_arg()` does: whitespace ends a
token except inside double quotes, and one pair of quotes around the whole
token or around its value is removed. Parameters after a lone `--` belong to
init, not to the kernel, and are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ramboot_agent.errors import ConfigError

SHELL_POLICIES = ("never", "failure", "before", "after")
KEXEC_FAILURE_POLICIES = ("shell", "reboot")
_INTERFACE_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")


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
    trust: str | None = None  # imgverify's trusted root fingerprints (trust/roots.py)
    bootif: str | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)


def split_cmdline(text: str) -> list[tuple[str, str | None]]:
    """Split a command line into (param, value) pairs as the kernel does."""
    pairs: list[tuple[str, str | None]] = []
    index, length = 0, len(text)
    while index < length:
        while index < length and text[index].isspace():
            index += 1
        start, in_quote = index, False
        while index < length and (in_quote or not text[index].isspace()):
            if text[index] == '"':
                in_quote = not in_quote
            index += 1
        token = text[start:index]
        if not token:
            break
        if token.startswith('"'):
            token = token[1:]
            if token.endswith('"'):
                token = token[:-1]
        if token == "--":  # noqa: S105 (the end of kernel parameters)
            break
        param, equals, value = token.partition("=")
        if not equals:
            pairs.append((param, None))
            continue
        if value.startswith('"'):
            value = value[1:]
            if value.endswith('"'):
                value = value[:-1]
        pairs.append((param, value))
    return pairs


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
    if not re.match(r"(?i)(https?|tftp|file)://", url):
        raise ConfigError(f"{key}={url!r}: expected an http://, https://, tftp:// or file:// URL")
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


def _text(key: str, value: str | None) -> str:
    return _required(key, value)


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
    "trust": ("trust", _trust),
}


def parse_cmdline(text: str) -> Settings:
    """Settings from a kernel command line; ConfigError names the offending key."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for param, value in split_cmdline(text):
        if param == "BOOTIF":
            values["bootif"] = normalize_bootif(_required(param, value))
            continue
        if not param.startswith("ramboot."):
            continue
        name = param.removeprefix("ramboot.").replace("-", "_")
        if name not in KEYS:
            warnings.append(f"unknown kernel parameter {param} ignored (known: "
                            + ", ".join(f"ramboot.{key}" for key in KEYS) + ")")
            continue
        field_name, parse = KEYS[name]
        values[field_name] = parse(param, value)  # the last occurrence wins, as in the kernel
    return Settings(**values, warnings=tuple(warnings))


def load_cmdline(path: str | Path = "/proc/cmdline") -> Settings:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as error:
        raise ConfigError(f"cannot read the kernel command line {path}: {error}") from None
    return parse_cmdline(text)
