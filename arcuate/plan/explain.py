"""EXPLAIN: a plan as readable text. Touches no backend."""

from __future__ import annotations

from arcuate.plan.planner import Plan


def explain(plan: Plan) -> str:
    """The statement in canonical form, one numbered line per step, then any notes (what
    running it would need that is missing here)."""
    lines = [plan.text]
    width = max(len(type(step).__name__) for step in plan.steps)
    for i, step in enumerate(plan.steps, 1):
        lines.append(f"  {i}. {type(step).__name__:<{width}}  {step.describe()}")
    lines += [f"  {note}" for note in plan.notes]
    return "\n".join(lines)
