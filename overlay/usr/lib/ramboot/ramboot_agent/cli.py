"""The `ramboot-agent` command line: wires subcommands to their modules.

Subcommand modules are imported only when chosen, to keep start-up fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ramboot_agent import __version__
from ramboot_agent.errors import AgentError

# subcommand -> module providing add_arguments(parser) and main(args) -> int
SUBCOMMANDS = {
    "run": ("ramboot_agent.daemon", "boot-time mode: find instructions and carry them out"),
    "run-script": ("ramboot_agent.ipxe.command", "run an iPXE script (from a file or URL)"),
    "run-plan": ("ramboot_agent.plan.command", "validate, describe or run a provisioning plan"),
    "identity": ("ramboot_agent.identity", "print this machine's identity variables"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ramboot-agent")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if arg in SUBCOMMANDS), None)
    for name, (module_name, summary) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=summary, description=summary)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(handler=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.handler(args))
    except AgentError as error:
        from ramboot_agent.log import console_text  # noqa: PLC0415

        print(f"ramboot-agent: error: {console_text(str(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
