"""The Starlette application: routes, the rendered tree, the web page, errors."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ramboot.serve import api, web
from ramboot.serve.boot import boot, stage_path
from ramboot.serve.context import Context
from ramboot.serve.http import HttpError, error_response, fail
from ramboot.serve.ingest import ingest
from ramboot.serve.machine_http import (
    ASGIApp,
    MachineEndpoints,
    MachineRequest,
    MachineRoute,
    Reply,
)

log = logging.getLogger("ramboot.serve")


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HttpError)
    return error_response(error)


async def _starlette_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return JSONResponse({"error": error.detail, "status": error.status_code},
                        status_code=error.status_code, headers=error.headers)


async def _internal_error(request: Request, error: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return JSONResponse({"error": f"internal error: {type(error).__name__}", "status": 500},
                        status_code=500)


def create_app(ctx: Context, *, handle_signals: bool = True) -> ASGIApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ctx.database.start()
        ctx.changed = asyncio.Event()  # bound to the serving loop
        loop = asyncio.get_running_loop()
        # Off the event loop (a large inventory takes seconds), one reload at a time.
        reloader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="reload")
        if handle_signals:
            loop.add_signal_handler(signal.SIGHUP,
                                    lambda: loop.run_in_executor(reloader, ctx.reload))
        try:
            yield
        finally:
            if handle_signals:
                loop.remove_signal_handler(signal.SIGHUP)
            reloader.shutdown(wait=True)
            ctx.database.stop()

    routes: list[Route | Mount] = [
        Route("/healthz", api.health, methods=["GET"]),
        Route("/api/fleet", api.fleet, methods=["GET"]),
        Route("/api/machines/{name:str}", api.machine, methods=["GET"]),
        Route("/api/machines/{host:str}/reinstall", api.reinstall, methods=["POST"]),
        Route("/ui", lambda request: RedirectResponse("/ui/"), methods=["GET"]),
        Mount("/ui", StaticFiles(directory=web.directory(), html=True), name="ui"),
    ]
    if ctx.tree is not None:  # where http_base says the tree is
        routes.append(Mount(ctx.fleet.index.prefix or "/",
                            StaticFiles(directory=Path(ctx.tree)), name="tree"))
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        HttpError: _http_error, HTTPException: _starlette_error, Exception: _internal_error,
    })
    app.state.ctx = ctx

    async def boot_handler(request: MachineRequest) -> Reply:
        return await boot(ctx, request)

    async def ingest_handler(request: MachineRequest) -> Reply:
        return await ingest(ctx, request)

    def stage_route(path: str) -> MachineRoute | None:
        """Each host's stage documents, at the URLs render writes into DHCP; no other
        path under stage1/ or stage2/ (a tree's static copy would bypass the state)."""
        fleet = ctx.fleet  # one inventory for the whole request, whatever a reload does
        index = fleet.index
        found = index.by_path.get(path)
        if found is not None:
            stage, host = found

            async def stage_handler(request: MachineRequest) -> Reply:
                return await stage_path(ctx, fleet, request, stage, host)

            return "GET", stage_handler
        if path.startswith((f"{index.prefix}/stage1/", f"{index.prefix}/stage2/")):
            return "GET", no_such_stage
        return None

    async def no_such_stage(request: MachineRequest) -> Reply:
        fail(404, "no host of the inventory has this stage document")

    return MachineEndpoints(app, {"/boot": ("GET", boot_handler),
                                  "/events": ("POST", ingest_handler)}, stage_route)
