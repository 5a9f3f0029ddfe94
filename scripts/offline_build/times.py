"""Build time per package, from Buildroot's build/build-time.log."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .table import SubstitutionError


@dataclass(frozen=True)
class Times:
    per_package: dict[str, float]  # seconds, all steps summed
    total: float  # sum of the steps
    wall: float  # first start to last end (includes restarts and waits)


def parse(text: str) -> Times:
    """Buildroot's `<time>:start|end:<step>: <package>` lines, summed.

    A step that started and never ended (an interrupted or failed run) counts
    nothing; the next run's start of the same step begins again.
    """
    started: dict[tuple[str, str], float] = {}
    per_package: dict[str, float] = defaultdict(float)
    first = last = None
    for number, line in enumerate(text.splitlines(), 1):
        fields = [f.strip() for f in line.split(":")]
        if len(fields) != 4:
            raise SubstitutionError(f"build-time.log line {number}: {line!r}")
        stamp, edge, step, package = fields
        try:
            when = float(stamp)
        except ValueError:
            raise SubstitutionError(f"build-time.log line {number}: bad time {stamp!r}") from None
        first = when if first is None else first
        last = when
        if edge == "start":
            started[(step, package)] = when
        elif edge == "end" and (step, package) in started:
            per_package[package] += when - started.pop((step, package))
    total = sum(per_package.values())
    wall = (last - first) if first is not None and last is not None else 0.0
    return Times(per_package=dict(per_package), total=total, wall=wall)


def markdown(times: Times, *, top: int = 0) -> str:
    """A table of minutes per package, longest first, and the totals."""
    rows = sorted(times.per_package.items(), key=lambda item: (-item[1], item[0]))
    if top:
        rows = rows[:top]
    lines = ["| package | minutes |", "| --- | ---: |"]
    lines += [f"| {name} | {seconds / 60:.1f} |" for name, seconds in rows]
    lines.append(f"| **sum of all {len(times.per_package)} packages' steps** | "
                 f"**{times.total / 60:.1f}** |")
    lines.append(f"| wall, first step to last (restarts included) | {times.wall / 60:.1f} |")
    return "\n".join(lines) + "\n"
