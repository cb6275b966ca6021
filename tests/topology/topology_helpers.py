"""Helpers of the production-topology tests: building a provider, sharing it with statements."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import arcuate
from arcuate.backends.mlflow.connect import spark_guard
from tests.export.export_helpers import EXPERIMENT, MODEL, Tricky, build_registered, build_tricky


def build_provider(
    store: Any, root: Path, artifact_location: str | None, proxied_to: str | None = None
) -> Tricky:
    """The tricky experiment and model in ``store`` (MLflow's global URIs point there only
    while they are built); ``proxied_to``: a server's ``--artifacts-destination``."""
    import mlflow
    import mlflow.tracking.fluent as fluent_mod

    with spark_guard(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
        mp.setenv("MLFLOW_REGISTRY_URI", store.registry_uri)
        mp.chdir(root)
        try:
            built = build_tricky(store, root, artifact_location)
            built.registered = build_registered(built, proxied_to)
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
            fluent_mod._active_experiment_id = None
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    return built


@dataclass(frozen=True)
class Shared:
    """What a provider's statements shared: the recipient's coordinates and the summaries."""

    profile: Path
    experiment: str
    model: str
    exported: tuple[dict[str, Any], dict[str, Any]]


def share_with_statements(
    store: Any, root: Path, endpoint: str, warehouse: str | None = None
) -> Shared:
    """The provider's own words: export the experiment and the model into ``warehouse``
    (``root/warehouse`` by default), make recipient ``ann`` (profile at ``root/ann.share``)
    and grant the share."""
    profile = root / "ann.share"
    results = arcuate.execute(
        f"CREATE SHARE ml WITH TABLE ml.experiment FROM EXPERIMENT '{EXPERIMENT}';\n"
        f"CREATE SHARE ml WITH TABLE ml.model FROM MODEL '{MODEL}';\n"
        f"CREATE RECIPIENT ann PROFILE '{profile}';\n"
        "GRANT SELECT ON SHARE ml TO RECIPIENT ann",
        tracking_uri=store.tracking_uri,
        registry_uri=store.registry_uri,
        warehouse=warehouse or str(root / "warehouse"),
        catalog=str(root / "shares.yaml"),
        endpoint=endpoint,
        chunk_bytes=4096,
        progress=False,
    )
    exp, model = (r.summary for r in list(results)[:2])
    return Shared(profile, f"{profile}#ml.ml.experiment", f"{profile}#ml.ml.model", (exp, model))
