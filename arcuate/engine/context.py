"""The engine's view of the world: settings plus backends, built lazily on first use.

Building a backend imports its engine (MLflow, delta-rs, Spark), so a statement that only
needs the share catalog never pays for MLflow, and EXPLAIN pays for nothing.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from arcuate.backends.registry import get_backend
from arcuate.config import Settings


class Context:
    """Settings and the backends a plan's steps reach through their Protocols."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def progress(self) -> bool:
        """Show progress bars: as configured, else on a terminal and in a notebook."""
        from arcuate.engine.progress import show_progress

        return show_progress(self.settings.progress)

    @cached_property
    def model_source(self) -> Any:
        from arcuate.backends.mlflow.source import MlflowSource

        s = self.settings
        return MlflowSource(s.effective_tracking_uri, s.effective_registry_uri)

    @cached_property
    def model_sink(self) -> Any:
        from arcuate.backends.mlflow.sink import MlflowSink

        s = self.settings
        return MlflowSink(s.effective_tracking_uri, s.effective_registry_uri)

    @cached_property
    def table_store(self) -> Any:
        s = self.settings
        factory = get_backend("table", s.table_backend)
        if s.table_backend == "spark":
            return factory(s.spark, s.warehouse)
        return factory(s.warehouse, s.storage_options)

    @cached_property
    def share_catalog(self) -> Any:
        s = self.settings
        factory = get_backend("catalog", s.share_catalog)
        if s.share_catalog == "unity":
            return factory(s.spark)
        return factory(s.catalog_path)
