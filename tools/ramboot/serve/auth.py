"""Who is asking: a machine (by its host or fleet token) or an operator (admin token).

Tokens arrive as `Authorization: Bearer TOKEN` (the agent's ramboot.token=,
`ramboot status`) or HTTP Basic with the token as the password, or as the user
name when there is no password: that is how iPXE sends the userinfo of a URL
such as `http://ramboot:TOKEN@serve/boot`, after a 401 that names Basic.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from ramboot.tokens import fleet_token, host_token

MAX_HEADER = 512


class AuthError(Exception):
    """401 (no or malformed credentials) or 403 (valid, but not for this)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def presented_token(header: str | None) -> str | None:
    """The token in an Authorization header value; None when there is none."""
    if not header:
        return None
    if len(header) > MAX_HEADER:
        raise AuthError(401, "Authorization header too long")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(401, "Authorization: malformed Basic credentials") from None
        user, _, password = decoded.partition(":")
        return password or user or None
    raise AuthError(401, f"Authorization: unsupported scheme {scheme[:20]!r} (Bearer or Basic)")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Keys:
    """The secrets serve checks against."""

    machine_secret: bytes
    admin_token: str

    def is_admin(self, token: str | None) -> bool:
        return token is not None and _same(token, self.admin_token)

    def require_admin(self, header: str | None) -> None:
        token = presented_token(header)
        if token is None:
            raise AuthError(401, "an admin token is needed (Authorization: Bearer TOKEN)")
        if not self.is_admin(token):
            raise AuthError(403, "wrong admin token")

    def require_machine(self, header: str | None, host: str | None) -> None:
        """The token must be `host`'s own, or the fleet token for a machine not in
        the inventory (`host` None). The admin token is accepted for both (tests, curl)."""
        token = presented_token(header)
        if token is None:
            raise AuthError(401, "a machine token is needed")
        if self.is_admin(token):
            return
        if host is None:
            if _same(token, fleet_token(self.machine_secret)):
                return
            raise AuthError(403, "a machine not in the inventory must use the fleet token")
        if _same(token, host_token(self.machine_secret, host)):
            return
        raise AuthError(403, f"the token is not host {host!r}'s")
