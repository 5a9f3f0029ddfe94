"""The one interface serve needs from the targets logic.

What a host gets at each stage is decided from the inventory by the module
`render` uses too (ramboot/targets.py); serve adds only what it knows, whether
the machine is provisioned. serve calls exactly these three methods, which
`ramboot.serve.inventory_targets.InventoryTargets` implements over targets.py:

    stage1(host, provisioned=...)   -> Document  iPXE: ramboot, or its disk
    stage2(host, provisioned=...)   -> Document  agent: the target, or localboot
    discovery(stage, identity)      -> Document  a machine not in the inventory

They are called for every request: InventoryTargets computes each document once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ramboot.inventory import Host
from ramboot.serve.identify import Identity
from ramboot.serve.states import Answer

STAGE1_KINDS = frozenset({Answer.RAMBOOT, Answer.DISK, Answer.DISCOVERY})
STAGE2_KINDS = frozenset({Answer.TARGET, Answer.LOCALBOOT, Answer.DISCOVERY})


class StageRefused(Exception):
    """No answer for this host and stage: `status` 404 (the static tree has no such
    document either, e.g. a Pi's iPXE stage 1) or 500 (the document would not pass
    the checks render makes, so it is not served)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Document:
    kind: Answer
    media_type: str
    body: bytes
    summary: str  # one line for the answers log and the fleet page


class Targets(Protocol):
    def stage1(self, host: Host, *, provisioned: bool) -> Document: ...

    def stage2(self, host: Host, *, provisioned: bool) -> Document: ...

    def discovery(self, stage: int, identity: Identity) -> Document: ...
