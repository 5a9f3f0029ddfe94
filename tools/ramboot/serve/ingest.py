"""POST /events: the agent's status events, stored once per (boot_id, seq).

The reply comes only after the event's group has committed: an event that
got its 2xx survives `kill -9` of serve. A retry of a stored event is 200
"duplicate" and changes nothing; a different event under a used
`(boot_id, seq)` is 409. A token must be presented before the body is read.
"""

from __future__ import annotations

from ramboot.serve import store
from ramboot.serve.auth import AuthError, presented_token
from ramboot.serve.context import Context
from ramboot.serve.events import MAX_EVENT_BYTES, EventError, parse_event
from ramboot.serve.http import MACHINE_REALM, fail
from ramboot.serve.machine_http import MachineRequest, Reply, json_reply


def _require_json(request: MachineRequest) -> None:
    kind = (request.header("content-type") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        fail(415, f"Content-Type must be application/json, not {kind or 'missing'!r}")


async def ingest(ctx: Context, request: MachineRequest) -> Reply:
    header = request.header("authorization")
    try:
        if presented_token(header) is None:
            raise AuthError(401, "a machine token is needed")
    except AuthError as error:
        fail(error.status, str(error), {"WWW-Authenticate": MACHINE_REALM})
    _require_json(request)
    body = await request.body(MAX_EVENT_BYTES)
    try:
        event = parse_event(body)
    except EventError as error:
        fail(error.status, str(error))
    fleet = ctx.fleet
    host = fleet.index.find(event.identity)
    if host is None and not ctx.discovery:
        fail(404, f"no host in the inventory has mac {event.identity.mac or '-'} or serial "
                  f"{event.identity.serial or '-'} (discovery is off)")
    try:
        ctx.keys.require_machine(header, host.name if host else None)
    except AuthError as error:
        fail(error.status, str(error), {"WWW-Authenticate": MACHINE_REALM})
    who = store.Who.of(event.identity, host.name if host else None)
    try:
        outcome = await ctx.database.write(lambda tx: store.record_event(tx, who, event))
    except store.Conflict as error:
        fail(409, str(error))
    ctx.notify()
    status = 201 if outcome == "stored" else 200
    return json_reply(status, {"status": outcome, "boot_id": event.boot_id, "seq": event.seq})
