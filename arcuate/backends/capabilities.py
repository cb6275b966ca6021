"""What the configured backends can do, as plain data the planner receives.

Built at the edge from Settings without importing any engine, so planning stays pure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The facts the planner needs: which backends, and whether Spark is at hand."""

    table_backend: str = "deltalake"
    share_catalog: str = "local"
    has_spark: bool = False

    @classmethod
    def from_settings(cls, settings: object) -> Capabilities:
        """Read the backend names and the Spark session from a Settings object."""
        return cls(
            table_backend=str(getattr(settings, "table_backend", "deltalake")),
            share_catalog=str(getattr(settings, "share_catalog", "local")),
            has_spark=getattr(settings, "spark", None) is not None,
        )
