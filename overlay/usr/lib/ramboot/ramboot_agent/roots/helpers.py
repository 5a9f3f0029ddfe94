"""Running the roots' helper modules (inspect, unpack) as bounded child processes.

They chroot, which the agent itself must never do, and they touch the new
root, which a server that went away can make block: a child process can be
killed at the action's deadline. In the image the agent lives outside
site-packages (/usr/lib/ramboot), so the child is told where.
"""

from __future__ import annotations

import sys
from pathlib import Path

AGENT_PARENT = Path(__file__).resolve().parents[2]


def helper_argv(module: str, *args: str) -> list[str]:
    """argv running ramboot_agent.roots.`module`.main(args) in a fresh, isolated Python."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            f"from ramboot_agent.roots.{module} import main; sys.exit(main(sys.argv[2:]))")
    return [sys.executable, "-I", "-c", code, str(AGENT_PARENT), *args]
