"""Both stages, for every machine, from the inventory and its recorded state.

Two ways in, one answer:

- `GET <base>/stage1/<host>.ipxe` and `GET <base>/stage2/<host>.json` (or `.ipxe`):
  the URLs `render` writes into DHCP option 224 and a Pi's cmdline.txt
  (targets.stage1_url/stage2_url), so a fleet whose `http_base` is serve gets
  its stages from serve. The path names the host and the stage.
- `GET /boot?<identity>`: one URL for every machine (a DHCP server configured
  by hand, machines not in the inventory). The stage is the agent's when the
  query says `stage=agent` or the client is ramboot-agent (its User-Agent): an
  agent never gets stage 1 again, even one too old to say `stage=agent`, so
  ramboot can never boot ramboot. Otherwise it is iPXE's stage 1.

A provisioned machine whose target installs to its disk is sent to that disk at
either stage until `ramboot reinstall` (inventory_targets.py).
"""

from __future__ import annotations

from typing import Any

from ramboot.inventory import Host
from ramboot.serve import store
from ramboot.serve.auth import AuthError
from ramboot.serve.context import Context, Fleet
from ramboot.serve.http import MACHINE_REALM, HttpError, fail
from ramboot.serve.identify import Identity, IdentityError, parse_identity
from ramboot.serve.machine_http import MachineRequest, Reply
from ramboot.serve.targets_port import (
    STAGE1_KINDS,
    STAGE2_KINDS,
    Document,
    StageRefused,
)

AGENT_USER_AGENT = "ramboot-agent/"


def is_agent(request: MachineRequest) -> bool:
    return (request.header("user-agent") or "").startswith(AGENT_USER_AGENT)


def stage_of(request: MachineRequest) -> int:
    stage = request.query.get("stage")
    if stage not in (None, "", "agent"):
        fail(400, f"query: stage: {stage[:40]!r} is not 'agent' (iPXE sends none)")
    return 2 if stage == "agent" or is_agent(request) else 1


def _identity(request: MachineRequest, *, required: bool = True) -> Identity:
    try:
        return parse_identity(request.query, required=required)
    except IdentityError as error:
        fail(400, str(error))


def _require_machine(ctx: Context, request: MachineRequest, host: Host | None) -> None:
    try:
        ctx.keys.require_machine(request.header("authorization"),
                                 host.name if host else None)
    except AuthError as error:
        fail(error.status, str(error), {"WWW-Authenticate": MACHINE_REALM})


def _document(fleet: Fleet, identity: Identity, stage: int, provisioned: bool,
              host: Host | None) -> Document:
    try:  # the targets compute each host's documents once (InventoryTargets)
        if host is None:
            document = fleet.targets.discovery(stage, identity)
        elif stage == 1:
            document = fleet.targets.stage1(host, provisioned=provisioned)
        else:
            document = fleet.targets.stage2(host, provisioned=provisioned)
    except StageRefused as error:
        fail(error.status, str(error))
    allowed = STAGE1_KINDS if stage == 1 else STAGE2_KINDS
    if document.kind not in allowed:  # the targets logic broke the two-stage rule
        fail(500, f"stage {stage} answer for {host.name if host else 'a new machine'} would "
                  f"be {document.kind.value!r}: refused, it could loop")
    return document


async def _answer(ctx: Context, fleet: Fleet, request: MachineRequest, *, stage: int,
                  identity: Identity, host: Host | None) -> Reply:
    who = store.Who.of(identity, host.name if host else None)
    # Both possible answers first (computed once per host), then one transaction reads
    # the provisioned mark and records the answer it picked: no reinstall can
    # slip in between, and the writer never waits for a template.
    choices: dict[bool, Document | HttpError] = {}
    for provisioned in (False, True) if host is not None else (False,):
        try:
            choices[provisioned] = _document(fleet, identity, stage, provisioned, host)
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


async def boot(ctx: Context, request: MachineRequest) -> Reply:
    """GET /boot: the stage from the query (or the User-Agent), the host from the identity."""
    stage = stage_of(request)
    identity = _identity(request)
    fleet = ctx.fleet  # one inventory for the whole request, whatever a reload does
    host = fleet.index.find(identity)
    if host is None and not ctx.discovery:
        fail(404, f"no host in the inventory has mac {identity.mac or '-'} or serial "
                  f"{identity.serial or '-'} (discovery is off)")
    _require_machine(ctx, request, host)
    return await _answer(ctx, fleet, request, stage=stage, identity=identity, host=host)


async def stage_path(ctx: Context, fleet: Fleet, request: MachineRequest, stage: int,
                     host: Host) -> Reply:
    """GET <base>/stage1/<host>.ipxe, <base>/stage2/<host>.<ext>: stage and host from the
    path, as render names them; the token must be the host's, the identity (if any) no
    other host's."""
    _require_machine(ctx, request, host)
    if stage == 1 and (request.query.get("stage") == "agent" or is_agent(request)):
        fail(409, f"host {host.name!r}: the agent asked for stage 1 (iPXE's URL), which "
                  "would boot ramboot again: the DHCP server gave the agent iPXE's option "
                  "224 (does it tell vendor class ramboot-agent: apart?)")
    # The path names the host: the identity is optional (a Pi's agent uses the ramboot.url=
    # of its cmdline.txt as given, without one); when given, it is checked and recorded.
    identity = _identity(request, required=False)
    named = fleet.index.find(identity) if identity.values else None
    if named is not None and named.name != host.name:
        fail(409, f"this is host {host.name!r}'s stage {stage}, but the query's identity is "
                  f"host {named.name!r}'s (mac {identity.mac or '-'}, serial "
                  f"{identity.serial or '-'})")
    return await _answer(ctx, fleet, request, stage=stage, identity=identity, host=host)
