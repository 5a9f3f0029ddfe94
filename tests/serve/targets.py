"""Stage documents for tests, in place of ramboot.targets (see targets_port.py).

Stage 1 and 2 texts come from the JSON file named by RAMBOOT_TEST_TARGETS
(`{"stage1": ..., "stage2": ...}`, in which {host} and {family} are
replaced), or small defaults. Provisioned machines and discovery are
answered as serve's stand-in does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ramboot.inventory import Host, Inventory
from ramboot.serve.identify import Identity
from ramboot.serve.states import Answer
from ramboot.serve.targets_port import (
    IPXE,
    PLAN,
    Document,
    StandInTargets,
    disk,
    localboot,
)

DEFAULT_STAGE1 = "#!ipxe\necho stage 1 for {host}: ramboot\n"
DEFAULT_STAGE2 = json.dumps({"ramboot-plan": 1, "description": "target of {host}",
                             "actions": [{"action": "reboot"}]})


def _fill(template: str, host: Host) -> str:
    return template.replace("{host}", host.name).replace("{family}", host.family)


class ScriptedTargets:
    def __init__(self, inventory: Inventory, *, report_url: str | None = None) -> None:
        self.stand_in = StandInTargets(inventory, report_url=report_url)
        config = {}
        if os.environ.get("RAMBOOT_TEST_TARGETS"):
            config = json.loads(Path(os.environ["RAMBOOT_TEST_TARGETS"]).read_text())
        self.stage1_text = config.get("stage1", DEFAULT_STAGE1)
        self.stage2_text = config.get("stage2", DEFAULT_STAGE2)

    def stage1(self, host: Host, *, provisioned: bool) -> Document:
        if provisioned:
            return disk(host.name)
        text = _fill(self.stage1_text, host)
        return Document(Answer.RAMBOOT, IPXE, text.encode(), "ramboot (test)")

    def stage2(self, host: Host, *, provisioned: bool) -> Document:
        if provisioned:
            return localboot(host.name)
        text = _fill(self.stage2_text, host)
        return Document(Answer.TARGET, PLAN, text.encode(), "target (test)")

    def discovery(self, stage: int, identity: Identity) -> Document:
        return self.stand_in.discovery(stage, identity)
