"""What serve writes and reads: each function runs inside one transaction (a `Tx`).

Machines are keyed by `host:<name>` when the inventory knows them, else by
what identifies them (`mac:…`, `serial:…`, `uuid:…`). When an operator adds
a discovered machine to the inventory, its record (hardware, history) is
taken over by the host on its next request.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ramboot.serve import states, timeline
from ramboot.serve.events import Event
from ramboot.serve.identify import Identity

MAX_LOG_LINES = 200
FLEET_COLUMNS = (
    "id, machine_key, host, state, provisioned, last_answer, failure, current_boot, timeline, "
    "last_event, last_event_at, state_since, provisioned_at, reinstall_at, created_at, "
    "updated_at"
)


class Conflict(Exception):
    """The request contradicts what is stored (409)."""


@dataclass(frozen=True)
class Who:
    """The machine a request is about."""

    key: str
    host: str | None
    identity: Identity

    @classmethod
    def of(cls, identity: Identity, host: str | None) -> Who:
        return cls(f"host:{host}" if host else identity.key(), host, identity)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _candidate_keys(identity: Identity) -> list[str]:
    keys = []
    if identity.mac:
        keys.append(f"mac:{identity.mac}")
    if identity.serial:
        keys.append(f"serial:{identity.serial}")
    if identity.values.get("uuid"):
        keys.append(f"uuid:{identity.values['uuid']}")
    return keys


def _machine(tx: Any, who: Who, now: float) -> dict[str, Any]:
    """The machine's row, locked for update; created (or adopted) when missing."""
    row: dict[str, Any] | None = tx.locked(
        "SELECT * FROM machines WHERE machine_key = ?", (who.key,))
    if row is not None:
        return row
    if who.host is not None:
        for key in _candidate_keys(who.identity):
            found = tx.locked("SELECT * FROM machines WHERE machine_key = ? AND host IS NULL",
                              (key,))
            if found is not None:  # a discovered machine the operator added to the inventory
                adopted: dict[str, Any] = tx.one(
                    "UPDATE machines SET machine_key = ?, host = ?, state = ?, state_since = ?, "
                    "updated_at = ? WHERE id = ? RETURNING *",
                    (who.key, who.host, states.State.BOOTING.value, now, now, found["id"]))
                return adopted
    initial = states.initial(known=who.host is not None)
    created: dict[str, Any] = tx.one(
        "INSERT INTO machines (machine_key, host, state, provisioned, identity, state_since, "
        "created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?, ?, ?) RETURNING *",
        (who.key, who.host, initial.state.value, _dumps(dict(who.identity.values)), now, now,
         now))
    return created


def _save_state(tx: Any, row: dict[str, Any], new: states.MachineState, now: float,
                extra: dict[str, Any]) -> None:
    old = states.from_row(row)
    values: dict[str, Any] = {
        "state": new.state.value, "provisioned": int(new.provisioned),
        "last_answer": new.last_answer.value if new.last_answer else None,
        "failure": new.failure, "updated_at": now, **extra,
    }
    if new.state is not old.state:
        values["state_since"] = now
    if new.provisioned and not old.provisioned:
        values["provisioned_at"] = now
    columns = ", ".join(f"{name} = ?" for name in values)
    tx.execute(f"UPDATE machines SET {columns} WHERE id = ?",  # noqa: S608 (names are ours)
               (*values.values(), row["id"]))


def provisioned(tx: Any, key: str) -> bool:
    row = tx.one("SELECT provisioned FROM machines WHERE machine_key = ?", (key,))
    return bool(row and row["provisioned"])


def record_answer(tx: Any, who: Who, stage: int, kind: states.Answer, summary: str, *,
                  client: str | None = None, now: float | None = None) -> None:
    now = time.time() if now is None else now
    row = _machine(tx, who, now)
    tx.execute("INSERT INTO answers (machine_id, stage, kind, summary, client, answered_at) "
               "VALUES (?, ?, ?, ?, ?, ?)", (row["id"], stage, kind.value, summary[:500], client,
                                             now))
    new = states.on_answer(states.from_row(row), stage, kind)
    # A request that names its host by path alone (an agent fetching the ramboot.url=
    # of a Pi's cmdline.txt, which it uses as given) keeps the identity last seen.
    extra = {"identity": _dumps(dict(who.identity.values))} if who.identity.values else {}
    _save_state(tx, row, new, now, extra)


def record_event(tx: Any, who: Who, event: Event, now: float | None = None) -> str:
    """"stored", or "duplicate" for a retry of a stored event; Conflict for a
    different event under a `(boot_id, seq)` already used."""
    now = time.time() if now is None else now
    row = _machine(tx, who, now)
    inserted = tx.one(
        "INSERT INTO events (machine_id, boot_id, seq, event, monotonic, time, received_at, "
        "details, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (boot_id, seq) DO NOTHING RETURNING id",
        (row["id"], event.boot_id, event.seq, event.name, event.monotonic, event.time, now,
         event.details_json(), event.digest))
    if inserted is None:
        stored = tx.one("SELECT digest, machine_id FROM events WHERE boot_id = ? AND seq = ?",
                        (event.boot_id, event.seq))
        if stored is not None and stored["digest"] == event.digest \
                and stored["machine_id"] == row["id"]:
            return "duplicate"
        raise Conflict(f"boot_id {event.boot_id} seq {event.seq} is already stored with "
                       "different content")
    extra: dict[str, Any] = {"last_event": event.name, "last_event_at": now}
    current = states.from_row(row)
    marks = json.loads(row["timeline"]) if row["timeline"] else {}
    applied = int(row["applied_seq"])
    if event.boot_id != row["current_boot"]:  # a new boot of this machine
        extra["current_boot"] = event.boot_id
        marks, applied = {}, 0
    new = current
    if event.seq > applied:
        new = states.on_event(current, event.name, event.details)
        extra["applied_seq"] = event.seq
        record = {"event": event.name, "monotonic": event.monotonic, "details": event.details}
        extra["timeline"] = _dumps(timeline.fold(marks, record))
    if event.name == "failure":
        tail = event.details.get("log_tail")
        if isinstance(tail, list):
            extra["failure_log"] = _dumps([str(line) for line in tail][-MAX_LOG_LINES:])
    if _is_hardware(event):
        extra["hardware"] = _dumps(event.details)
    _save_state(tx, row, new, now, extra)
    return "stored"


def _is_hardware(event: Event) -> bool:
    if event.name == "hardware":
        return True
    return event.name == "action-done" and event.details.get("action") == "hardware"


def reinstall(tx: Any, host: str, now: float | None = None) -> dict[str, Any] | None:
    """Clear `host`'s provisioned mark; None when serve has never seen it."""
    now = time.time() if now is None else now
    row = tx.locked("SELECT * FROM machines WHERE machine_key = ?", (f"host:{host}",))
    if row is None:
        return None
    new = states.on_reinstall(states.from_row(row))
    _save_state(tx, row, new, now, {"reinstall_at": now})
    return {"host": host, "was_provisioned": bool(row["provisioned"]), "reinstall_at": now}


# -- reading --------------------------------------------------------------------------------


def fleet(tx: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = tx.all(
        f"SELECT {FLEET_COLUMNS} FROM machines ORDER BY machine_key")  # noqa: S608
    return rows


def changed_since(tx: Any) -> float:
    row = tx.one("SELECT max(updated_at) AS at FROM machines")
    return float(row["at"]) if row and row["at"] is not None else 0.0


def machine(tx: Any, key: str, *, events: int = 500) -> dict[str, Any] | None:
    """One machine with its current boot's events, its boots and its latest answers."""
    row: dict[str, Any] | None = tx.one("SELECT * FROM machines WHERE machine_key = ?", (key,))
    if row is None:
        return None
    row["events"] = tx.all(
        "SELECT boot_id, seq, event, monotonic, time, received_at, details FROM events "
        "WHERE machine_id = ? AND boot_id = ? ORDER BY seq LIMIT ?",
        (row["id"], row["current_boot"] or "", events))
    row["boots"] = tx.all(
        "SELECT boot_id, min(received_at) AS first_at, max(received_at) AS last_at, "
        "count(*) AS events FROM events WHERE machine_id = ? GROUP BY boot_id "
        "ORDER BY min(received_at) DESC LIMIT 20", (row["id"],))
    row["answers"] = tx.all(
        "SELECT stage, kind, summary, client, answered_at FROM answers WHERE machine_id = ? "
        "ORDER BY id DESC LIMIT 20", (row["id"],))
    return row
