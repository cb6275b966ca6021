"""MLflow: where exports read runs and models, and where imports write them.

Its plug-in records (a source and a sink, built separately: an export never loads the sink);
MLflow is imported only when one is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from arcuate.backends.registry import BackendPlugin

if TYPE_CHECKING:
    from arcuate.backends.mlflow.sink import MlflowSink
    from arcuate.backends.protocols import ModelSource
    from arcuate.backends.retry import RetryPolicy
    from arcuate.config import Settings


def model_source(settings: Settings, retry: RetryPolicy) -> ModelSource:
    """Reads from the tracking and registry URIs of the settings (both explicit)."""
    from arcuate.backends.mlflow.source import MlflowSource

    return MlflowSource(
        settings.effective_tracking_uri,
        settings.effective_registry_uri,
        concurrency=settings.rest_concurrency,
    )


def model_sink(settings: Settings, retry: RetryPolicy) -> MlflowSink:
    """Writes into the tracking and registry URIs of the settings, new runs by
    ``settings.import_path``, waiting ``settings.lock_wait`` for another import, up to
    ``settings.rest_concurrency`` runs at once to a tracking server."""
    from arcuate.backends.mlflow.sink import MlflowSink

    sink = MlflowSink(
        settings.effective_tracking_uri,
        settings.effective_registry_uri,
        import_path=settings.import_path,
        lock_wait=settings.lock_wait,
        concurrency=settings.rest_concurrency,
    )
    return sink


PLUGINS: Final = (
    BackendPlugin("model_source", "mlflow", model_source),
    BackendPlugin("model_sink", "mlflow", model_sink),
)
