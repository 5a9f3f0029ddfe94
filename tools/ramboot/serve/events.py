"""A status event as POSTed by the agent, checked field by field before anything is stored.

    {"event": "network-up", "boot_id": "<uuid>", "seq": 3, "monotonic": 12.3,
     "time": "2026-11-22T13:30:24.123Z", "identity": {...}, "details": {...},
     "dropped": 0}

`(boot_id, seq)` names the event; `digest` (of the canonical JSON) tells an
identical retry from a different event that reuses a used name. Keys serve
does not know are ignored, so a newer agent's events are still stored.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ramboot.serve.identify import Identity, IdentityError, parse_identity

MAX_EVENT_BYTES = 256 * 1024
MAX_SEQ = 2**31 - 1
_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)")


class EventError(ValueError):
    """The body is not a valid event; the message names the field (400/422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Event:
    name: str
    boot_id: str
    seq: int
    monotonic: float
    time: str | None
    identity: Identity
    details: dict[str, Any]
    dropped: int
    digest: str

    def details_json(self) -> str:
        return json.dumps(self.details, sort_keys=True, separators=(",", ":"))

    def identity_json(self) -> str:
        return json.dumps(dict(self.identity.values), sort_keys=True, separators=(",", ":"))


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise EventError(400, f"malformed JSON: {error.msg} at line {error.lineno} "
                         f"column {error.colno}") from None
    except UnicodeDecodeError:
        raise EventError(400, "malformed JSON: not UTF-8") from None
    except RecursionError:
        raise EventError(400, "malformed JSON: nested too deeply") from None


def parse_event(body: bytes) -> Event:
    data = decode_json(body)
    if not isinstance(data, dict):
        raise EventError(422, f"an event is a JSON object, not {type(data).__name__}")
    problems: list[str] = []
    name = data.get("event")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"event: {name!r} is not an event name (lower-case, digits, '-')")
    boot_id = data.get("boot_id")
    if not isinstance(boot_id, str) or not _UUID.fullmatch(boot_id):
        problems.append(f"boot_id: {boot_id!r} is not the kernel's boot_id (a lower-case "
                        "UUID from /proc/sys/kernel/random/boot_id)")
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_SEQ:
        problems.append(f"seq: {seq!r} is not an integer in 1..{MAX_SEQ}")
    monotonic = data.get("monotonic")
    if not _number(monotonic) or not 0 <= monotonic < 1e10:  # type: ignore[operator]
        problems.append(f"monotonic: {monotonic!r} is not a number of seconds")
    time = data.get("time")
    if time is not None and (not isinstance(time, str) or not _TIME.fullmatch(time)):
        problems.append(f"time: {time!r} is not an ISO 8601 time such as "
                        "2026-11-22T13:30:24.123Z")
    details = data.get("details", {})
    if not isinstance(details, dict):
        problems.append("details: must be an object")
    dropped = data.get("dropped", 0)
    if not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 0:
        problems.append(f"dropped: {dropped!r} is not a count")
    identity_raw = data.get("identity")
    identity = None
    if not isinstance(identity_raw, dict):
        problems.append("identity: must be an object (mac, serial, uuid, ...)")
    else:
        try:
            identity = parse_identity(identity_raw, "identity")
        except IdentityError as error:
            problems.append(str(error))
    if problems or identity is None:
        raise EventError(422, "; ".join(problems))
    canonical = json.dumps(
        {key: data.get(key) for key in ("event", "boot_id", "seq", "monotonic", "time",
                                        "identity", "details")},
        sort_keys=True, separators=(",", ":"))
    return Event(
        name=str(name), boot_id=str(boot_id), seq=int(seq),  # type: ignore[arg-type]
        monotonic=float(monotonic), time=time,  # type: ignore[arg-type]
        identity=identity, details=dict(details), dropped=int(dropped),
        digest=hashlib.sha256(canonical.encode()).hexdigest(),
    )
