"""What the configured backends can do, as plain data the planner receives.

Built at the edge from Settings without importing any engine, so planning stays pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: How to give a SparkSession through the Python API (front ends supply their own).
SPARK_HINT: Final = "pass spark=<SparkSession> to arcuate.execute()"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The facts the planner needs: which backends, and whether Spark is at hand."""

    table_backend: str = "deltalake"
    share_catalog: str = "local"
    has_spark: bool = False
    #: How to give a SparkSession in the calling front end, for the "needs Spark" hint.
    spark_hint: str = SPARK_HINT

    @classmethod
    def from_settings(cls, settings: object, *, spark_hint: str | None = None) -> Capabilities:
        """Read the backend names and the Spark session from a Settings object.

        ``spark_hint`` is the front end's own way to give a session (the CLI, the magics);
        the default speaks of :func:`arcuate.execute`.
        """
        return cls(
            table_backend=str(getattr(settings, "table_backend", "deltalake")),
            share_catalog=str(getattr(settings, "share_catalog", "local")),
            has_spark=getattr(settings, "spark", None) is not None,
            spark_hint=spark_hint or SPARK_HINT,
        )
