"""EXPLAIN: a plan as readable text. Touches no backend."""

from __future__ import annotations

from arcuate.plan.planner import Plan


def explain(plan: Plan) -> str:
    """The statement in canonical form, then one numbered line per step."""
    lines = [plan.text]
    width = max(len(type(step).__name__) for step in plan.steps)
    for i, step in enumerate(plan.steps, 1):
        lines.append(f"  {i}. {type(step).__name__:<{width}}  {step.describe()}")
    return "\n".join(lines)
