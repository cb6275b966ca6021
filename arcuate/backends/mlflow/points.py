"""Metric values as MLflow's SQL stores keep them, and metric points as comparable keys.

A SQL store keeps NaN as ``value=0, is_nan=1`` and ±inf as ±1.7976931348623157e308 (its
``sanitize_metric_value``); a logged model's metrics, which have no ``is_nan`` column, keep
NaN as 0.0. Points read back are compared with what a share holds through :func:`point_key`,
which spells NaN out (so that it equals itself) and maps ±inf the way the store does.
Standard library only: a leaf module.
"""

from __future__ import annotations

import math
from typing import Final

#: What a SQL store keeps for +inf (and its negative for -inf).
MAX_FLOAT: Final = 1.7976931348623157e308

#: (key, step, timestamp, value) of a metric point; NaN is spelled "nan" so it compares equal.
PointKey = tuple[str, int, int, float | str]


def sanitize(value: float) -> tuple[bool, float]:
    """(is_nan, stored value): MLflow's ``SqlAlchemyStore.sanitize_metric_value``."""
    if math.isnan(value):
        return True, 0.0
    if math.isinf(value):
        return False, MAX_FLOAT if value > 0 else -MAX_FLOAT
    return False, value


def point_key(key: str, step: int, timestamp: int, value: float) -> PointKey:
    """A metric point as stored, comparable: NaN spelled out, ±inf as the store keeps it."""
    is_nan, stored = sanitize(float(value))
    return (key, int(step), int(timestamp), "nan" if is_nan else stored)
