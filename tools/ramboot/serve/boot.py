"""GET /boot: both stages, for every machine, from the inventory and its recorded state.

The stage is the agent's when the query says `stage=agent` or the client is
ramboot-agent (its User-Agent): an agent never gets stage 1 again, even one
too old to say `stage=agent`, so ramboot can never boot ramboot. Otherwise it
is iPXE's stage 1. A provisioned machine is sent to its disk at either stage
until `ramboot reinstall`.
"""

from __future__ import annotations

from typing import Any

from ramboot.serve import store
from ramboot.serve.auth import AuthError
from ramboot.serve.context import Context
from ramboot.serve.http import MACHINE_REALM, HttpError, fail
from ramboot.serve.identify import IdentityError, parse_identity
from ramboot.serve.machine_http import MachineRequest, Reply
from ramboot.serve.targets_port import (
    STAGE1_KINDS,
    STAGE2_KINDS,
    Document,
    TargetUnavailable,
)

AGENT_USER_AGENT = "ramboot-agent/"


def stage_of(request: MachineRequest) -> int:
    stage = request.query.get("stage")
    if stage not in (None, "", "agent"):
        fail(400, f"query: stage: {stage[:40]!r} is not 'agent' (iPXE sends none)")
    agent = (request.header("user-agent") or "").startswith(AGENT_USER_AGENT)
    return 2 if stage == "agent" or agent else 1


def _document(ctx: Context, request: MachineRequest, stage: int, provisioned: bool,
              host_name: str | None) -> Document:
    fleet = ctx.fleet
    key = (host_name or "", stage, provisioned)
    cached = fleet.cache.get(key) if host_name else None
    if cached is not None:
        return cached
    try:
        if host_name is None:
            identity = parse_identity(request.query)
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


async def boot(ctx: Context, request: MachineRequest) -> Reply:
    stage = stage_of(request)
    try:
        identity = parse_identity(request.query)
    except IdentityError as error:
        fail(400, str(error))
    fleet = ctx.fleet
    host = fleet.index.find(identity)
    if host is None and not ctx.discovery:
        fail(404, f"no host in the inventory has mac {identity.mac or '-'} or serial "
                  f"{identity.serial or '-'} (discovery is off)")
    try:
        ctx.keys.require_machine(request.header("authorization"),
                                 host.name if host else None)
    except AuthError as error:
        fail(error.status, str(error), {"WWW-Authenticate": MACHINE_REALM})
    who = store.Who.of(identity, host.name if host else None)
    # Both possible answers first (cached per host), then one transaction reads
    # the provisioned mark and records the answer it picked: no reinstall can
    # slip in between, and the writer never waits for a template.
    choices: dict[bool, Document | HttpError] = {}
    for provisioned in (False, True) if host is not None else (False,):
        try:
            choices[provisioned] = _document(ctx, request, stage, provisioned,
                                             host.name if host else None)
        except HttpError as error:
            choices[provisioned] = error

    def answer(tx: Any) -> Document:
        chosen = choices[store.provisioned(tx, who.key) if host is not None else False]
        if isinstance(chosen, HttpError):
            raise chosen
        store.record_answer(tx, who, stage, chosen.kind, chosen.summary, client=request.client)
        return chosen

    document = await ctx.database.write(answer)
    ctx.notify()
    return Reply(200, document.body, document.media_type)
