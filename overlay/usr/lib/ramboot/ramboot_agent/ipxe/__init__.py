"""iPXE script support: the parser, the settings store and the interpreter.

The agent runs the same boot scripts iPXE runs, so that one server endpoint
can serve both iPXE machines and agents (see docs/agent-ipxe.md).
"""

from ramboot_agent.ipxe.interpreter import Interpreter
from ramboot_agent.ipxe.parser import Script, is_script, parse
from ramboot_agent.ipxe.settings import SettingsStore
from ramboot_agent.ipxe.status import Outcome, RunResult

__all__ = ["Interpreter", "Outcome", "RunResult", "Script", "SettingsStore", "is_script", "parse"]
