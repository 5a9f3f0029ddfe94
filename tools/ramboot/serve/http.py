"""Errors shared by the endpoints: one exception, one JSON shape."""

from __future__ import annotations

from typing import NoReturn

from starlette.responses import JSONResponse

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
