"""Machine tokens: one fleet secret, a token per host derived from it.

`render` writes each host's token where that machine reads it (the userinfo
of its DHCP URLs, `ramboot.token=` in a Pi's cmdline.txt) and `serve` checks
them, both from the same secret file, so no table of tokens is kept anywhere.
A host token is HMAC-SHA256(secret, "host:" + name); the fleet token, which
only machines missing from the inventory may use (discovery), is
HMAC-SHA256(secret, "fleet"). Both are 32 hex digits: safe in a URL, a kernel
command line and a DHCP option without escaping.
"""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

from ramboot.errors import RambootError

MIN_SECRET_BYTES = 16
TOKEN_HEX = 32


def _derive(secret: bytes, label: str) -> str:
    digest = hmac.new(secret, f"ramboot-token-v1:{label}".encode(), hashlib.sha256)
    return digest.hexdigest()[:TOKEN_HEX]


def host_token(secret: bytes, host: str) -> str:
    return _derive(secret, f"host:{host}")


def fleet_token(secret: bytes) -> str:
    return _derive(secret, "fleet")


def read_secret(path: Path, what: str = "machine secret") -> bytes:
    """The secret in `path` (surrounding whitespace removed); refuses a short or
    world-readable one, naming the file."""
    try:
        info = path.stat()
        data = path.read_bytes().strip()
    except OSError as error:
        raise RambootError(f"{path}: cannot read the {what}: {error.strerror}") from None
    if info.st_mode & stat.S_IROTH:
        raise RambootError(f"{path}: the {what} is readable by everyone (chmod 600 it)")
    if len(data) < MIN_SECRET_BYTES:
        raise RambootError(
            f"{path}: the {what} is {len(data)} bytes; at least {MIN_SECRET_BYTES} are needed "
            "(e.g. `head -c 32 /dev/urandom | base64 > FILE`)"
        )
    return data


def read_token(path: Path, what: str = "admin token") -> str:
    """A secret that travels in HTTP headers: printable ASCII without spaces."""
    data = read_secret(path, what)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    if not text or not all(33 <= ord(ch) < 127 for ch in text):
        raise RambootError(f"{path}: the {what} must be printable ASCII without spaces")
    return text


def with_token(url: str, token: str) -> str:
    """`url` with `ramboot:<token>@` as its userinfo (how iPXE and the agent send it:
    HTTP Basic); URLs that are not http(s) or already carry a user are left alone."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or "@" in rest.split("/", 1)[0]:
        return url
    return f"{scheme}://ramboot:{token}@{rest}"


class Tokens:
    """What render writes where machines read their token (docs/serve.md#tokens)."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def host(self, host: str) -> str:
        return host_token(self.secret, host)

    def host_url(self, host: str, url: str) -> str:
        return with_token(url, host_token(self.secret, host))

    def fleet_url(self, url: str) -> str:
        return with_token(url, fleet_token(self.secret))
