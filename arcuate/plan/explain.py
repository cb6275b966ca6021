"""EXPLAIN: a plan as readable text. Touches no backend.

What only a backend knows (the SQL a share catalog would run) comes in as ``details``, a
function of a step giving extra lines, supplied at the edge from the backend's plug-in record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from arcuate.plan import ops
from arcuate.plan.planner import Plan

#: Extra lines a backend shows under a step (``SQL: ...``); none for most steps.
Details = Callable[[ops.Operator], Sequence[str]]


def describe(step: ops.Operator, details: Details | None = None) -> str:
    """What the step will do, with the backend's extra lines under it."""
    extra = details(step) if details is not None else ()
    return step.describe() + "".join(f"\n       {line}" for line in extra)


def explain(plan: Plan, details: Details | None = None) -> str:
    """The statement in canonical form, one numbered line per step, then any notes (what
    running it would need that is missing here)."""
    lines = [plan.text]
    width = max(len(type(step).__name__) for step in plan.steps)
    for i, step in enumerate(plan.steps, 1):
        lines.append(f"  {i}. {type(step).__name__:<{width}}  {describe(step, details)}")
    lines += [f"  {note}" for note in plan.notes]
    return "\n".join(lines)
