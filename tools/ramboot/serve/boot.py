"""GET /boot: both stages, for every machine, from the inventory and its recorded state.

The stage is the agent's when the query says `stage=agent` or the client is
ramboot-agent (its User-Agent): an agent never gets stage 1 again, even one
too old to say `stage=agent`, so ramboot can never boot ramboot. Otherwise it
is iPXE's stage 1. A provisioned machine is sent to its disk at either stage
until `ramboot reinstall`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ramboot.serve import store
from ramboot.serve.auth import AuthError
from ramboot.serve.context import Context
from ramboot.serve.http import MACHINE_REALM, fail
from ramboot.serve.identify import IdentityError, parse_identity
from ramboot.serve.targets_port import (
    STAGE1_KINDS,
    STAGE2_KINDS,
    Document,
    TargetUnavailable,
)

MAX_QUERY = 4096
AGENT_USER_AGENT = "ramboot-agent/"


def stage_of(request: Request) -> int:
    stage = request.query_params.get("stage")
    if stage not in (None, "", "agent"):
        fail(400, f"query: stage: {stage[:40]!r} is not 'agent' (iPXE sends none)")
    agent = request.headers.get("user-agent", "").startswith(AGENT_USER_AGENT)
    return 2 if stage == "agent" or agent else 1


def _document(ctx: Context, request: Request, stage: int, provisioned: bool,
              host_name: str | None) -> Document:
    fleet = ctx.fleet
    key = (host_name or "", stage, provisioned)
    cached = fleet.cache.get(key) if host_name else None
    if cached is not None:
        return cached
    try:
        if host_name is None:
            identity = parse_identity(request.query_params)
            document = fleet.targets.discovery(stage, identity)
        else:
            host = fleet.index.by_name[host_name]
            method = fleet.targets.stage1 if stage == 1 else fleet.targets.stage2
            document = method(host, provisioned=provisioned)
    except TargetUnavailable as error:
        fail(503, str(error))
    allowed = STAGE1_KINDS if stage == 1 else STAGE2_KINDS
    if document.kind not in allowed:  # the targets logic broke the two-stage rule
        fail(500, f"stage {stage} answer for {host_name or 'a new machine'} would be "
                  f"{document.kind.value!r}: refused, it could loop")
    if host_name:
        fleet.cache[key] = document
    return document


async def boot(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    if len(request.url.query) > MAX_QUERY:
        fail(414, f"query longer than {MAX_QUERY} characters")
    stage = stage_of(request)
    try:
        identity = parse_identity(request.query_params)
    except IdentityError as error:
        fail(400, str(error))
    fleet = ctx.fleet
    host = fleet.index.find(identity)
    if host is None and not ctx.discovery:
        fail(404, f"no host in the inventory has mac {identity.mac or '-'} or serial "
                  f"{identity.serial or '-'} (discovery is off)")
    try:
        ctx.keys.require_machine(request.headers.get("authorization"),
                                 host.name if host else None)
    except AuthError as error:
        fail(error.status, str(error), {"WWW-Authenticate": MACHINE_REALM})
    who = store.Who.of(identity, host.name if host else None)
    provisioned = False
    if host is not None:
        provisioned = await ctx.database.read(lambda tx: store.provisioned(tx, who.key))
    document = _document(ctx, request, stage, provisioned, host.name if host else None)
    client = request.client.host if request.client else None
    await ctx.database.write(
        lambda tx: store.record_answer(tx, who, stage, document.kind, document.summary,
                                     client=client))
    ctx.notify()
    return Response(document.body, media_type=document.media_type,
                    headers={"Cache-Control": "no-store"})
