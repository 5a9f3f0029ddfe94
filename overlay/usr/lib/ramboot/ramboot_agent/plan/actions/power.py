"""`reboot`, `poweroff` and `shell`: the plan ends and the boot flow acts on it."""

from __future__ import annotations

from ramboot_agent.plan.context import Context
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import Fields


class _PowerAction(ActionKind[str]):
    terminal = True
    default_timeout = 60.0
    what = ""

    def parse(self, fields: Fields) -> str | None:
        return self.what

    def describe(self, spec: str, ctx: Context) -> str:
        return f"would {spec}"

    def run(self, spec: str, ctx: Context) -> Result:
        return {}


class Reboot(_PowerAction):
    what = "reboot"


class Poweroff(_PowerAction):
    what = "poweroff"


class Shell(_PowerAction):
    what = "shell"

    def describe(self, spec: str, ctx: Context) -> str:
        return "would stop here with a rescue shell on the console"
