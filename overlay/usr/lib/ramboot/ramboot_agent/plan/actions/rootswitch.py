"""What netroot and ramroot share: the checks before, and the switch after, a new root.

Each action mounts its own root at the layout's newroot; from there the steps
are the same: inspect the new root's init, add the plan's extra mounts, write
the handover files, announce `root-ready` and hand the switch to the runner.
Whatever fails on the way undoes every mount it made.
"""

from __future__ import annotations

from collections.abc import Callable

from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.model import Handoff
from ramboot_agent.roots import handoff, layers
from ramboot_agent.roots.keys import ExtraMount
from ramboot_agent.roots.layout import Layout
from ramboot_agent.roots.mounts import Mounts, mounted_below


def describe_switch(mounts: tuple[ExtraMount, ...], init: str, layout: Layout) -> str:
    """The tail of a dry-run description: the extra mounts, the init, the switch."""
    text = ""
    if mounts:
        text += ", then " + ", ".join(m.describe() for m in mounts)
    text += f", check {init} and switch_root into it"
    try:
        handoff.check_init_can_switch(layout)
    except Exception as error:
        text += f" (but here: {error})"
    return text


def check_can_switch(layout: Layout) -> None:
    """Refuse before anything is mounted: no init to switch, or an earlier attempt's mounts."""
    handoff.check_init_can_switch(layout)
    busy = mounted_below(layout.newroot) + mounted_below(layout.layers)
    if busy:
        raise ActionError(f"{busy[0]} is already mounted (an earlier attempt?): "
                          "reboot to try again")


def switch_into(ctx: Context, layout: Layout, *, action: str, root: str, init: str,
                init_args: tuple[str, ...], mounts: tuple[ExtraMount, ...],
                mount_root: Callable[[Mounts], dict[str, str]]) -> Handoff:
    """Mount the root with `mount_root` (it returns the RAMBOOT_* variables it adds),
    check it and hand over; the runner calls the returned Handoff to switch."""
    from ramboot_agent.identity import saved_lease  # noqa: PLC0415

    made = Mounts(ctx)
    try:
        variables = mount_root(made)
        checked = layers.inspect(ctx, layout, init, mounts, root)
        layers.extra_mounts(made, layout, mounts, checked.modes)
        handover = handoff.Handover(action, root, init, init_args, checked.resolved,
                                    variables)
        written = handoff.write_handover(layout, handover, lease=saved_lease())
    except BaseException:
        made.undo()
        raise
    made.keep()
    ctx.reporter.emit("root-ready", index=ctx.action_index, action=action, root=root,
                      init=init, resolved_init=checked.resolved, handover=written,
                      **{k.removeprefix("RAMBOOT_").lower(): v for k, v in variables.items()})
    return Handoff("switch_root", lambda: handoff.switch(
        layout, handover, reporter=ctx.reporter, out=ctx.out))
