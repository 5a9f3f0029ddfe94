"""`ramboot-agent run-plan`: validate, describe or run a provisioning plan.

`--check` only validates (every problem, with its path); `--dry-run` also
says what each action would do on this machine (the disk it would pick, the
bytes it would write) without changing anything; otherwise the plan runs,
which needs root and the RAM system.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ramboot_agent.errors import AgentError, ConfigError
from ramboot_agent.ipxe.status import Outcome

log = logging.getLogger("ramboot")

MAX_PLAN_DOWNLOAD = 1024 * 1024
# Exit statuses, as `run-script`'s (docs/plans.md).
EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_SHELL = 4
EXIT_POWER = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="FILE_OR_URL", help="the plan to run")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only validate the plan")
    mode.add_argument("--dry-run", action="store_true",
                      help="say what each action would do; change nothing")
    parser.add_argument("--report", metavar="URL", help="POST status events to this URL")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify HTTPS certificates")
    parser.add_argument("--force", action="store_true",
                        help="run outside the in-RAM system (plans write disks and replace "
                        "the running system)")


class _LogReporter:
    """Without --report, events go to the debug log."""

    def emit(self, event: str, **details: Any) -> None:
        log.debug("event %s %s", event, details)

    def flush(self, timeout: float = 0) -> bool:
        return True


def main(args: argparse.Namespace) -> int:
    from ramboot_agent.fetch import Fetcher  # noqa: PLC0415
    from ramboot_agent.ipxe import uri  # noqa: PLC0415
    from ramboot_agent.log import setup_logging  # noqa: PLC0415
    from ramboot_agent.plan.context import Context  # noqa: PLC0415
    from ramboot_agent.plan.load import load_plan  # noqa: PLC0415
    from ramboot_agent.plan.runner import run_plan  # noqa: PLC0415

    setup_logging(0, kmsg=False)
    url = uri.to_url(args.plan)
    fetcher = Fetcher(insecure=args.insecure, allow_file=True)
    data = fetcher.fetch_bytes(url, max_size=MAX_PLAN_DOWNLOAD).data or b""
    plan = load_plan(data, args.plan)
    if args.check:
        print(f"{args.plan}: a valid plan of {len(plan.actions)} action(s): "
              + ", ".join(action.name for action in plan.actions))
        return EXIT_DONE
    if not args.dry_run:
        _may_run_here(force=args.force)
    reporter: Any = _LogReporter()
    if args.report or plan.report:
        from ramboot_agent.events import Reporter  # noqa: PLC0415
        from ramboot_agent.identity import collect_identity  # noqa: PLC0415

        reporter = Reporter(collect_identity(None), args.report or plan.report,
                            insecure=args.insecure)
    work = Path(tempfile.mkdtemp(prefix="ramboot-run-plan-"))
    ctx = Context(reporter=reporter, fetcher=fetcher, out=sys.stdout, runtime_dir=work,
                  base_url=url, dry_run=args.dry_run, insecure=args.insecure)
    try:
        outcome = run_plan(plan, ctx)
    except AgentError as error:
        reporter.emit("failure", reason=str(error), **getattr(error, "details", {}))
        raise
    finally:
        reporter.flush(5.0)
        shutil.rmtree(work, ignore_errors=True)
    return _exit_status(outcome)


def _may_run_here(*, force: bool) -> None:
    """A real run needs root and, unless forced, the RAM system: plans write disks."""
    from ramboot_agent.net import RAM_FILESYSTEMS, root_filesystem  # noqa: PLC0415

    if os.geteuid() != 0:
        raise ConfigError("running a plan needs root (use --dry-run to see what it would do)")
    fstype = root_filesystem()
    if not force and fstype not in RAM_FILESYSTEMS:
        raise ConfigError(f"refusing to run a plan here: / is {fstype}, not the in-RAM ramboot "
                          "system; plans write disks and replace the running system. Use "
                          "--dry-run to see what it would do, or --force")


def _exit_status(outcome: Outcome) -> int:
    if outcome is Outcome.SHELL:
        print("ramboot-agent: the plan asks for a rescue shell", file=sys.stderr)
        return EXIT_SHELL
    if outcome in (Outcome.REBOOT, Outcome.POWEROFF):
        print(f"ramboot-agent: the plan asks to {outcome.value}", file=sys.stderr)
        return EXIT_POWER
    return EXIT_DONE
