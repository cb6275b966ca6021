"""Fixtures of the import tests: a provider with the tricky experiment, its share, recipients.

The provider content is the export tests' tricky experiment and registered model
(``tests/export/export_helpers.py``), built once per session. It is exported with arcuate's
exporter into Delta tables, shared by arcuate's server on a free loopback port (started once,
stopped at the end), and read by the real ``delta_sharing`` client from a recipient profile.
Each test imports into its own fresh sqlite recipient store.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.mlflow.connect import spark_guard
from tests.export.export_helpers import EXPERIMENT, MODEL, Tricky, build_registered, build_tricky
from tests.imports.import_helpers import Share, Small, build_small, export_to, provider_context

_hosts = "127.0.0.1,localhost"
os.environ["NO_PROXY"] = ",".join(x for x in (os.environ.get("NO_PROXY"), _hosts) if x)
os.environ["no_proxy"] = os.environ["NO_PROXY"]


@pytest.fixture(scope="session")
def provider(mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Tricky:
    """The tricky experiment and model in a provider sqlite store (read-only for tests)."""
    import mlflow
    import mlflow.tracking.fluent as fluent_mod

    from arcuate.backends.mlflow.connect import make_client

    root = tmp_path_factory.mktemp("provider")
    db = root / "mlflow.db"
    shutil.copyfile(mlflow_template, db)
    uri = f"sqlite:///{db}"

    class Store:
        tracking_uri = registry_uri = uri

        def client(self) -> Any:
            return make_client(uri, uri)

    with spark_guard(), pytest.MonkeyPatch.context() as mp:
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


@pytest.fixture(scope="session")
def share(provider: Tricky, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Share]:
    """The tricky experiment and model exported, shared and granted to recipient ``ann``."""
    from arcuate.backends.deltalake import chunk_worker
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    root = tmp_path_factory.mktemp("share")
    ctx = provider_context(provider.store, root / "warehouse")
    with pytest.MonkeyPatch.context() as mp:
        # every chunked file is cut by the helper process: the imports read what it wrote
        mp.setattr(chunk_worker, "WORKER_BYTES", 1)
        exp_loc = export_to(ctx, ("ml", "experiment"), experiment=EXPERIMENT)
        model_loc = export_to(ctx, ("ml", "model"), model=MODEL)
    assert any(Path(exp_loc).glob("part-chunks-*")) and any(Path(model_loc).glob("part-chunks-*"))
    catalog = LocalShareCatalog(root / "shares.yaml")
    catalog.add_table("ml", "default", "experiment", exp_loc)
    catalog.add_table("ml", "default", "model", model_loc)
    _record, token = catalog.create_recipient("ann")
    catalog.grant("ml", "ann")
    handle = serve_in_thread(str(root / "shares.yaml"))
    try:
        assert token is not None
        profile = write_profile(root / "ann.share", handle.endpoint, token)
        yield Share(
            root / "warehouse", root / "shares.yaml", profile, handle.endpoint, exp_loc, model_loc
        )
    finally:
        handle.stop()


@pytest.fixture
def small(mlflow_store: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Small:
    """A small provider (runs, logged model, registered model) that the test may change."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store.tracking_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_store.registry_uri)
    with spark_guard():
        return build_small(mlflow_store, workdir)


@pytest.fixture(autouse=True)
def _no_spark_connect() -> Iterator[None]:
    """MLflow probes for a Spark session on every REST call and fluent run; with
    pyspark-client installed that probe exits a pytest-xdist worker (see spark_guard)."""
    with spark_guard():
        yield


@pytest.fixture(autouse=True, params=["api", "auto"])
def import_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every import test runs over both ways of writing new runs: MLflow's public API, and
    ``auto`` (the bulk SQL path on the sqlite stores of these tests, the API on a server)."""
    if request.param == "auto" and "mlflow_server" in request.node.module.__name__:
        pytest.skip("an mlflow server is written through its REST API on every path")
    monkeypatch.setenv("ARCUATE_IMPORT_PATH", request.param)
    return str(request.param)
