"""Skips for tests that need plan actions the agent does not have yet.

The install, network-root and RAM-root actions are being added to the agent
(ramboot_agent.plan.registry.KINDS) while the targets that render them already
exist: a test that needs one skips, naming it, and runs once it is there.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest


def missing_actions(actions: Iterable[str]) -> list[str]:
    from ramboot_agent.plan.registry import KINDS

    return sorted(set(actions) - set(KINDS))


def require_actions(*actions: str) -> None:
    """Skip the calling test unless the agent has every plan action in `actions`."""
    missing = missing_actions(actions)
    if missing:
        pytest.skip(f"the agent has no plan action {', '.join(map(repr, missing))} yet "
                    "(ramboot_agent.plan.registry.KINDS)")
