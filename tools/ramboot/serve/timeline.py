"""One boot's stages, from its events' monotonic times (seconds since the kernel started).

The agent's clock is the one to use: a Pi has no real-time clock, so its wall
time may be 1970 until NTP, but CLOCK_MONOTONIC counts from the kernel's start
on every machine. The stages, each from the end of the one before:

    kernel   0 → the agent's process started (agent-started minus its `seconds`)
    agent    → the agent began to bring the network up (kernel-started's `uptime`)
    network  → network-up (carrier and the DHCP lease)
    fetch    → the document was fetched (script-fetched)
    action   → the plan's actions, or the script's downloads, were done
    boot     → the handoff: kexec executed, a plan's last action, or the end
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STAGES = ("kernel", "agent", "network", "fetch", "action", "boot")


@dataclass(frozen=True)
class Segment:
    stage: str
    start: float
    end: float
    failed: bool = False

    @property
    def seconds(self) -> float:
        return round(self.end - self.start, 3)

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "start": round(self.start, 3), "end": round(self.end, 3),
                "seconds": self.seconds, "failed": self.failed}


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


Marks = dict[str, float]  # stage (or "work", "end", "failed") -> monotonic seconds


def fold(marks: Marks, event: Mapping[str, Any]) -> Marks:
    """`marks` after one more event of the same boot (events in seq order).

    Kept per machine and updated with each event, so the fleet's timings never
    need its events read back.
    """
    name = event.get("event")
    at = _number(event.get("monotonic"))
    details = event.get("details")
    details = details if isinstance(details, Mapping) else {}
    if at is None:
        return marks
    marks = dict(marks)
    if name == "agent-started":
        took = _number(details.get("seconds")) or 0.0
        marks.setdefault("kernel", max(0.0, at - took))
    elif name == "kernel-started":
        uptime = _number(details.get("uptime"))
        if uptime is not None:
            marks.setdefault("agent", uptime)
    elif name == "network-up":
        marks.setdefault("network", at)
    elif name == "script-fetched":
        marks.setdefault("fetch", at)
    elif name in ("fetch", "action-done", "plan-start", "action-start", "progress"):
        marks["work"] = at
    elif name in ("kexec-load", "plan-done"):
        marks.setdefault("action", at)
    elif name in ("boot", "shell", "reboot", "poweroff"):
        marks["end"] = at
    elif name == "failure":
        marks["failed"] = at
    return marks


def from_marks(marks: Mapping[str, float]) -> list[Segment]:
    """The stages reached so far; a failure ends the stage it happened in."""
    points = {stage: marks[stage] for stage in STAGES[:5] if stage in marks}
    end = marks.get("end")
    if "action" not in points and "work" in marks and end is not None:
        points["action"] = marks["work"]
    if end is not None:
        points["boot"] = end
    elif "action" in points:
        points["boot"] = points["action"]
    failed_at = marks.get("failed")
    out: list[Segment] = []
    start = 0.0
    for stage in STAGES:
        if stage not in points:
            if failed_at is not None:
                out.append(Segment(stage, start, max(start, failed_at), failed=True))
            break
        stop = max(start, points[stage])
        out.append(Segment(stage, start, stop))
        start = stop
    return out


def segments(events: Sequence[Mapping[str, Any]]) -> list[Segment]:
    """The stages of one boot's events (in seq order)."""
    marks: Marks = {}
    for event in events:
        marks = fold(marks, event)
    return from_marks(marks)
