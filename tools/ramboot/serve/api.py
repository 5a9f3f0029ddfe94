"""The operators' API (admin token): the fleet, one machine, reinstall.

    GET  /api/fleet[?since=T&wait=S]   counts per state and every machine, failures
                                       first; with `since`, waits up to S seconds
                                       (long poll) for a change after time T
    GET  /api/machines/NAME            one machine (host name or machine key):
                                       stages, events of its latest boot, answers
    POST /api/machines/HOST/reinstall  provision HOST again on its next boot
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ramboot.serve import store
from ramboot.serve.auth import AuthError
from ramboot.serve.context import Context
from ramboot.serve.http import ADMIN_REALM, fail
from ramboot.serve.states import State
from ramboot.serve.timeline import from_marks
from ramboot.targets import boots_disk

MAX_WAIT = 30.0
STATE_ORDER = {State.FAILED.value: 0, State.PROVISIONING.value: 1, State.BOOTING.value: 2,
               State.DISCOVERED.value: 3, State.PROVISIONED.value: 4}


def require_admin(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    try:
        ctx.keys.require_admin(request.headers.get("authorization"))
    except AuthError as error:
        fail(error.status, str(error), {"WWW-Authenticate": ADMIN_REALM})
    return ctx


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def next_boot(ctx: Context, host_name: str | None, provisioned: bool) -> str:
    """Where the machine's next boot goes: "disk", "target" (ramboot, then its target)
    or "discovery" (not in the inventory), as its answers will say (targets.py)."""
    host = ctx.fleet.index.by_name.get(host_name) if host_name else None
    if host is None:
        return "discovery"
    return "disk" if boots_disk(host, provisioned=provisioned or host.provisioned) else "target"


def summary(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    marks = _loads(row.get("timeline")) or {}
    return {
        "key": row["machine_key"], "host": row["host"], "state": row["state"],
        "provisioned": bool(row["provisioned"]),
        "next_boot": next_boot(ctx, row["host"], bool(row["provisioned"])),
        "last_answer": row["last_answer"],
        "failure": row["failure"], "boot_id": row["current_boot"],
        "last_event": row["last_event"], "last_event_at": row["last_event_at"],
        "state_since": row["state_since"], "provisioned_at": row["provisioned_at"],
        "reinstall_at": row["reinstall_at"], "updated_at": row["updated_at"],
        "stages": [segment.as_dict() for segment in from_marks(marks)],
    }


def _float(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        fail(400, f"query: {name}: {raw[:40]!r} is not a number")
    if math.isnan(value) or value < 0:
        fail(400, f"query: {name}: {raw[:40]!r} is not a non-negative number")
    return value


async def fleet(request: Request) -> Response:
    ctx = require_admin(request)
    since = _float(request, "since", -1.0)
    wait = min(MAX_WAIT, _float(request, "wait", 0.0))
    deadline = time.monotonic() + wait
    changed = await ctx.database.read(store.changed_since)
    while since >= 0 and changed <= since and time.monotonic() < deadline:
        # Woken by a write here, or after a second for those of other replicas.
        waiter = ctx.changed
        remaining = deadline - time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), timeout=min(1.0, max(0.0, remaining)))
        changed = await ctx.database.read(store.changed_since)
    rows = await ctx.database.read(store.fleet)
    machines = [summary(ctx, row) for row in rows]
    machines.sort(key=lambda m: (STATE_ORDER.get(m["state"], 9), m["host"] or m["key"]))
    counts = {state.value: 0 for state in State}
    for machine in machines:
        counts[machine["state"]] = counts.get(machine["state"], 0) + 1
    known = set(ctx.fleet.index.by_name)
    never_seen = sorted(known - {m["host"] for m in machines if m["host"]})
    return JSONResponse({"changed": changed, "now": time.time(), "counts": counts,
                         "machines": machines, "never_seen": never_seen},
                        headers={"Cache-Control": "no-store"})


def _key(name: str) -> str:
    return name if ":" in name else f"host:{name}"


async def machine(request: Request) -> Response:
    ctx = require_admin(request)
    name = request.path_params["name"]
    row = await ctx.database.read(lambda tx: store.machine(tx, _key(name)))
    if row is None:
        known = name in ctx.fleet.index.by_name
        fail(404, f"{name!r}: " + ("in the inventory, but it has not booted yet" if known
                                   else "no such machine"))
    out = summary(ctx, row)
    out.update({
        "identity": _loads(row["identity"]), "hardware": _loads(row["hardware"]),
        "failure_log": _loads(row["failure_log"]) or [],
        "events": [dict(event, details=_loads(event["details"])) for event in row["events"]],
        "boots": row["boots"], "answers": row["answers"],
    })
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


async def reinstall(request: Request) -> Response:
    ctx = require_admin(request)
    host = request.path_params["host"]
    known = ctx.fleet.index.by_name.get(host)
    if known is None:
        fail(404, f"{host!r} is not a host of the inventory {ctx.inventory_path}")
    if known.provisioned:
        fail(409, f"{host!r}: the inventory {ctx.inventory_path} says provisioned = true, "
                  "which keeps sending it to its disk: remove that line (and reload serve) "
                  "to provision it again")
    row = await ctx.database.write(lambda tx: store.reinstall(tx, host))
    ctx.notify()
    if row is None:
        return JSONResponse({"host": host, "status": "unchanged",
                             "message": "it has not booted yet: its next boot provisions it"})
    return JSONResponse({"host": host, "status": "reinstall",
                         "message": "its next boot provisions it again",
                         "was_provisioned": row["was_provisioned"]})


async def health(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    await ctx.database.read(store.changed_since)
    return JSONResponse({"status": "ok"})
