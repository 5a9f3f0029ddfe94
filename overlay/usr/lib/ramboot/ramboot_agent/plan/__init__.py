"""Provisioning plans: JSON documents of actions iPXE cannot do.

`load_plan` validates a whole plan before anything runs (every problem named
by its path, e.g. `plan.json: actions[2].target.min_size: ...`); `run_plan`
carries it out, reporting each action's start, progress and result.
The format is documented in docs/plans.md, its JSON Schema in
docs/plan.schema.json.
"""

from ramboot_agent.plan.load import PLAN_VERSION, PlanError, is_plan, load_plan

__all__ = ["PLAN_VERSION", "PlanError", "is_plan", "load_plan"]
