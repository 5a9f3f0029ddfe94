"""Carrying out a validated plan, one action at a time.

Every action reports `action-start`, then `progress` (for long ones) and
`action-done`, or `failure`; the plan as a whole `plan-start` and
`plan-done`. A failure stops the plan: the runner raises PlanFailed naming
the action, and the boot flow's failure path takes over (console box,
failure event, rescue shell). Nothing reports success that did not happen.
A terminal action (kexec, switch_root) hands off only after its events
have been flushed.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

from ramboot_agent.errors import AgentError
from ramboot_agent.ipxe.status import Outcome
from ramboot_agent.plan import registry
from ramboot_agent.plan.context import ActionError, ActionTimeout, Context
from ramboot_agent.plan.model import Action, Handoff, Plan

log = logging.getLogger("ramboot.plan")

FLUSH_BEFORE_HANDOFF = 5.0
# Actions keep to their time themselves (tools and downloads are bounded by
# ctx.bound()); the watchdog stops one that does not, a little later.
WATCHDOG_GRACE_MIN, WATCHDOG_GRACE_MAX, WATCHDOG_GRACE_SHARE = 1.0, 30.0, 0.1
# The actions whose result is the machine's state rather than a handoff.
_POWER_OUTCOMES = {"reboot": Outcome.REBOOT, "poweroff": Outcome.POWEROFF,
                   "shell": Outcome.SHELL}


class PlanFailed(AgentError):
    """A plan stopped at one of its actions; `action` says which."""

    def __init__(self, action: Action[Any] | None, reason: str) -> None:
        where = f"{action.where}: " if action is not None else ""
        super().__init__(f"plan {where}{reason}")
        self.action = action
        self.reason = reason

    @property
    def details(self) -> dict[str, Any]:
        """For the failure event: which action stopped the plan."""
        if self.action is None:
            return {}
        return {"index": self.action.index, "action": self.action.name}


def run_plan(plan: Plan, ctx: Context) -> Outcome:
    """Run (or, in a dry run, describe) every action; the plan's outcome.

    Returns COMPLETED when the plan ended without a terminal action, REBOOT /
    POWEROFF / SHELL for those actions (the caller acts on them), BOOTED in a
    dry run that reached a handoff; a real handoff does not return.
    """
    started = ctx.clock()
    plan_deadline = started + plan.timeout if plan.timeout is not None else None
    ctx.reporter.emit("plan-start", url=plan.source, sha256=plan.sha256,
                      actions=len(plan.actions), dry_run=ctx.dry_run,
                      description=plan.description)
    log.info("plan %s: %d action(s)%s", plan.source, len(plan.actions),
             " (dry run)" if ctx.dry_run else "")
    for action in plan.actions:
        deadline, limit = ctx.clock() + action.timeout, f"its timeout of {action.timeout:g}s"
        if plan_deadline is not None and plan_deadline < deadline:
            deadline, limit = plan_deadline, f"the plan's timeout of {plan.timeout:g}s"
        ctx.action_index, ctx.action_name, ctx.deadline = action.index, action.name, deadline
        result = _run_action(action, ctx, limit)
        if isinstance(result, Handoff):
            return _hand_off(plan, action, result, ctx, started)
        if ctx.dry_run and registry.kind(action.name).terminal \
                and action.name not in _POWER_OUTCOMES:
            _plan_done(plan, ctx, started, outcome=action.name)
            return Outcome.BOOTED
        if action.name in _POWER_OUTCOMES:
            _plan_done(plan, ctx, started, outcome=action.name)
            return _POWER_OUTCOMES[action.name]
    ctx.action_index = ctx.action_name = ctx.deadline = None
    _plan_done(plan, ctx, started, outcome="completed")
    return Outcome.COMPLETED


def _run_action(action: Action[Any], ctx: Context, limit: str) -> dict[str, Any] | Handoff:
    kind = registry.kind(action.name)
    began = ctx.clock()
    ctx.reporter.emit("action-start", index=action.index, action=action.name,
                      description=action.description, timeout=action.timeout)
    try:
        with _watchdog(ctx.remaining()):
            if ctx.dry_run:
                text = kind.describe(action.spec, ctx)
                print(f"{action.where}: {text}", file=ctx.out, flush=True)
                details: dict[str, Any] | Handoff = {"dry_run": True, "would": text}
            else:
                details = kind.run(action.spec, ctx)
        ctx.check_deadline()
    except ActionTimeout as error:
        raise _failed(action, ctx, f"stopped by {limit}: {error}") from None
    except AgentError as error:
        # A download or tool that stopped itself at the deadline: say whose it was.
        left = ctx.remaining()
        reason = f"stopped by {limit}: {error}" if left is not None and left <= 0 else str(error)
        raise _failed(action, ctx, reason) from None
    except OSError as error:
        raise _failed(action, ctx, f"{error.strerror or error}") from None
    seconds = round(ctx.clock() - began, 3)
    if isinstance(details, Handoff):
        ctx.reporter.emit("action-done", index=action.index, action=action.name,
                          seconds=seconds, handoff=details.what)
        return details
    ctx.reporter.emit("action-done", index=action.index, action=action.name,
                      seconds=seconds, **_without_reserved(details))
    log.info("%s done in %.1fs", action.where, seconds)
    return details


@contextlib.contextmanager
def _watchdog(seconds: float | None) -> Iterator[None]:
    """Raise ActionTimeout in the running action once `seconds` (and a grace) are up."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    grace = min(WATCHDOG_GRACE_MAX, max(WATCHDOG_GRACE_MIN, seconds * WATCHDOG_GRACE_SHARE))

    def expired(_signum: int, _frame: object) -> None:
        raise ActionTimeout("it did not stop by itself; the watchdog stopped it")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, seconds) + grace)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _without_reserved(details: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items()
            if key not in ("index", "action", "seconds")}


def _failed(action: Action[Any], ctx: Context, reason: str) -> PlanFailed:
    # The `failure` event comes from the caller's failure path, with the log
    # tail and this action's index and name (PlanFailed.details).
    log.error("%s failed: %s", action.where, reason)
    return PlanFailed(action, reason)


def _plan_done(plan: Plan, ctx: Context, started: float, *, outcome: str) -> None:
    ctx.reporter.emit("plan-done", url=plan.source, outcome=outcome,
                      seconds=round(ctx.clock() - started, 3), dry_run=ctx.dry_run)


def _hand_off(plan: Plan, action: Action[Any], handoff: Handoff, ctx: Context,
              started: float) -> Outcome:
    _plan_done(plan, ctx, started, outcome=handoff.what)
    if ctx.dry_run:
        return Outcome.BOOTED
    ctx.reporter.flush(FLUSH_BEFORE_HANDOFF)
    log.info("%s: handing off (%s)", action.where, handoff.what)
    try:
        handoff.perform()
    except AgentError as error:
        raise _failed(action, ctx, f"{handoff.what} failed: {error}") from None
    except OSError as error:
        raise _failed(action, ctx, f"{handoff.what} failed: {error.strerror}") from None
    raise _failed(action, ctx, f"{handoff.what} returned instead of leaving the RAM system")




def run_document(data: bytes, url: str, ctx: Context) -> Outcome:
    """Validate the plan in `data` (fetched from `url`) whole, then run it.

    A plan's own `report` URL takes over from the one the agent had.
    """
    from ramboot_agent.plan.load import load_plan  # noqa: PLC0415

    plan = load_plan(data, url)
    if plan.report and hasattr(ctx.reporter, "set_url"):
        ctx.reporter.set_url(plan.report)
    ctx.base_url = url
    return run_plan(plan, ctx)


__all__ = ["ActionError", "PlanFailed", "run_document", "run_plan"]
