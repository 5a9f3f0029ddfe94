"""Every command the agent's interpreter knows, by name (the interpreter and
`ramboot lint` share it: a command missing here is "command not found")."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ramboot_agent.ipxe import boot_commands, commands, image_commands, net_commands

if TYPE_CHECKING:
    from ramboot_agent.ipxe.interpreter import Interpreter

COMMANDS: dict[str, Callable[[Interpreter, list[str]], None]] = {
    **commands.COMMANDS,
    **boot_commands.COMMANDS,
    **image_commands.COMMANDS,
    **net_commands.COMMANDS,
}
