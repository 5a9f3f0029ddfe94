"""The machine protocol (GET /boot, POST /events) as a plain ASGI layer in front of Starlette.

Every machine of a fleet booting at once hits these two endpoints, so they
skip the framework's per-request objects and middleware: measured on this
project's 2-core machine that halves their cost (bench/RESULTS.md). Everything
else (the admin API, the page, the tree, lifespan) goes to the Starlette app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ramboot.serve.http import HttpError, fail

log = logging.getLogger("ramboot.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_SECONDS = 10.0  # a whole request body, however slowly it trickles in
MAX_QUERY = 4096


@dataclass
class Reply:
    status: int
    body: bytes
    media_type: str = "application/json"
    headers: dict[str, str] | None = None


def json_reply(status: int, data: object, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(data, separators=(",", ":")).encode(), headers=headers)


class MachineRequest:
    """What the two endpoints read from a request."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.method: str = scope["method"]
        self.headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                        for name, value in scope["headers"]}
        raw_query: bytes = scope.get("query_string", b"")
        if len(raw_query) > MAX_QUERY:
            fail(414, f"query longer than {MAX_QUERY} characters")
        self.query = dict(parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True))
        client = scope.get("client")
        self.client: str | None = client[0] if client else None
        self._receive = receive

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    async def body(self, limit: int) -> bytes:
        """The body, at most `limit` bytes, within BODY_SECONDS; 413 or 408 otherwise."""
        length = self.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                fail(400, "Content-Length is not a number")
            if int(length) > limit:
                fail(413, f"body of {length} bytes is over the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(BODY_SECONDS):  # for the whole body, not per read
                while True:
                    message = await self._receive()
                    if message["type"] == "http.disconnect":
                        fail(400, "the client went away")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        fail(413, f"body is over the limit of {limit} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            fail(408, f"the body did not arrive within {BODY_SECONDS:g} s")
        return b"".join(chunks)


Handler = Callable[[MachineRequest], Awaitable[Reply]]
MachineRoute = tuple[str, Handler]  # (method, handler)


class MachineEndpoints:
    """`routes` by exact path, then `dynamic(path)` (paths that depend on the inventory,
    such as each host's stage documents); anything else goes to `app`."""

    def __init__(self, app: ASGIApp, routes: dict[str, MachineRoute],
                 dynamic: Callable[[str], MachineRoute | None] | None = None) -> None:
        self.app = app
        self.routes = routes
        self.dynamic = dynamic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            route = self.routes.get(scope["path"])
            if route is None and self.dynamic is not None:
                route = self.dynamic(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        method, handler = route
        try:
            if scope["method"] != method:
                fail(405, f"{scope['path']} takes {method} only", {"Allow": method})
            reply = await handler(MachineRequest(scope, receive))
        except HttpError as error:
            reply = json_reply(error.status, {"error": error.message, "status": error.status},
                               error.headers)
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            reply = json_reply(500, {"error": "internal error", "status": 500})
        headers = [(b"content-type", reply.media_type.encode()),
                   (b"content-length", str(len(reply.body)).encode()),
                   (b"cache-control", b"no-store")]
        headers += [(name.lower().encode(), value.encode())
                    for name, value in (reply.headers or {}).items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
