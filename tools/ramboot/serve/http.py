"""Request helpers shared by the endpoints: bounded bodies and clear error replies."""

from __future__ import annotations

import asyncio
from typing import NoReturn

from starlette.requests import Request
from starlette.responses import JSONResponse

BODY_SECONDS = 10.0  # a whole request body, however slowly it trickles in
MACHINE_REALM = 'Basic realm="ramboot machines"'
ADMIN_REALM = 'Bearer realm="ramboot admin"'


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def fail(status: int, message: str, headers: dict[str, str] | None = None) -> NoReturn:
    raise HttpError(status, message, headers)


def error_response(error: HttpError) -> JSONResponse:
    return JSONResponse({"error": error.message, "status": error.status},
                        status_code=error.status, headers=error.headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, at most `limit` bytes, within BODY_SECONDS; 413 or 408 otherwise."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            fail(400, "Content-Length is not a number")
        if int(length) > limit:
            fail(413, f"body of {length} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_SECONDS):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    fail(413, f"body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        fail(408, f"the body did not arrive within {BODY_SECONDS:g} s")
    return b"".join(chunks)


def require_json(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        fail(415, f"Content-Type must be application/json, not {kind or 'missing'!r}")
