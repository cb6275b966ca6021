"""Fixtures of the export tests: the tricky experiment and registered model, built once.

Building them takes seconds (a sklearn model is logged), and exports only read them, so they
live in one store per session, copied from the migrated template. MLflow's global URIs point at
that store (through environment variables) only while the content is being built.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.export.export_helpers import Registered, Tricky, build_registered, build_tricky


@pytest.fixture(scope="session")
def tricky(mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Tricky:
    """An experiment with everything that tends to break an exporter (read-only for tests)."""
    import mlflow
    import mlflow.tracking.fluent as fluent_mod

    from arcuate.backends.mlflow.connect import make_client

    root = tmp_path_factory.mktemp("tricky")
    db = root / "mlflow.db"
    shutil.copyfile(mlflow_template, db)
    uri = f"sqlite:///{db}"

    class Store:
        tracking_uri = registry_uri = uri

        def client(self) -> Any:
            return make_client(uri, uri)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_REGISTRY_URI", uri)
        mp.chdir(root)
        try:
            built = build_tricky(Store(), root)
            built.registered = build_registered(built)
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
            fluent_mod._active_experiment_id = None
    return built


@pytest.fixture
def registered(tricky: Tricky) -> Registered:
    """Versions 1, 2, 3, 5 of the model (4 deleted), aliases, a stage, tags, descriptions."""
    assert tricky.registered is not None
    return tricky.registered
