"""What a deploy would change, as a sorted list of lines."""

from __future__ import annotations

from dataclasses import dataclass

from ramboot.deploy.manifest import Manifest


@dataclass(frozen=True)
class Change:
    kind: str  # "+" added, "-" removed, "~" changed
    path: str


def compare(old: Manifest, new: Manifest) -> list[Change]:
    changes = [Change("+", p) for p in new.keys() - old.keys()]
    changes += [Change("-", p) for p in old.keys() - new.keys()]
    changes += [Change("~", p) for p in old.keys() & new.keys() if old[p] != new[p]]
    return sorted(changes, key=lambda c: (c.path, c.kind))


def summary(changes: list[Change]) -> str:
    counts = {kind: sum(1 for c in changes if c.kind == kind) for kind in "+-~"}
    return f"{counts['+']} added, {counts['-']} removed, {counts['~']} changed"
