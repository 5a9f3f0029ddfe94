"""Finding a partition named by a PartitionRef (plan/refs.py) on this machine.

Shared by the actions that use a partition: `netroot`'s persistent overlay
today. A partition named by filesystem label, GPT name or UUID is looked up
with findfs (util-linux's knows all four; busybox's LABEL and UUID), waiting
for it to appear (a USB disk, a slow controller). A partition by disk and
number needs the disk selector resolved first: that is the disk actions'
resolver, not this module's.
"""

from __future__ import annotations

import re
import time

from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.model import PartitionRef

FINDFS_TIMEOUT = 10.0
POLL = 0.5
_DEVICE = re.compile(r"/dev/[A-Za-z0-9._/:+-]+")


def tag_of(ref: PartitionRef) -> str | None:
    """`LABEL=…`, `PARTLABEL=…`, `UUID=…` or `PARTUUID=…`; None for disk + number."""
    for name in ("label", "partlabel", "uuid", "partuuid"):
        value = getattr(ref, name)
        if value is not None:
            return f"{name.upper()}={value}"
    return None


def find_partition(ctx: Context, ref: PartitionRef, wait: float) -> str:
    """The device node of the partition `ref` names, within `wait` seconds."""
    tag = tag_of(ref)
    if tag is None:
        raise ActionError(f"cannot look up {ref.describe()} here: only by label, partlabel, "
                          "uuid or partuuid")
    deadline = ctx.clock() + ctx.bound(wait)
    while True:
        done = ctx.run_tool(["findfs", tag], timeout=FINDFS_TIMEOUT, check=False)
        device = done.stdout.strip()
        if done.returncode == 0 and _DEVICE.fullmatch(device):
            return device
        if ctx.clock() >= deadline:
            raise ActionError(f"no partition with {tag} appeared within {wait:g}s")
        time.sleep(POLL)
