"""Done-when of issue 4: export -> serve -> delta_sharing client -> import, compared field by field."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from arcuate.backends.sharing.reader import DeltaSharingReader
from arcuate.engine.imports import import_experiment, import_model
from tests.export.export_helpers import EXPERIMENT, MODEL, Tricky
from tests.imports.import_helpers import (
    Share,
    assert_same,
    read_tree,
    recipient_context,
    snapshot_experiment,
    snapshot_model,
)


def test_experiment_round_trip(provider: Tricky, share: Share, recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    result = import_experiment(
        DeltaSharingReader().batches(share.experiment), "imported", ctx, source=share.experiment
    )
    assert result.summary["added"] == 3, result
    source = snapshot_experiment(provider.store, EXPERIMENT, imported=False)
    target = snapshot_experiment(recipient_store, "imported", imported=True)
    assert_same(target, source)
    # the comparison saw the hard parts
    parent = source["runs"][provider.parent_id]
    assert len(source["runs"]) == 3
    assert len(parent["artifacts"]["big/blob.bin"]) > 4096
    assert parent["metrics"] and parent["inputs"] and parent["outputs"]
    (model,) = parent["logged_models"].values()
    assert "MLmodel" in model["files"] and model["metrics"]
    child = target["runs"][provider.child_id]["tags"]["mlflow.parentRunId"]
    assert child == provider.parent_id  # mapped back through provenance


def _version_files(store: Any, name: str, version: int) -> dict[str, bytes]:
    """A version's files as MLflow serves them (``models:/name/version``), via global URIs."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp, _global(store):
        local = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp)
        files = read_tree(local)
    files.pop("registered_model_meta", None)  # written by the download itself
    return files


@contextlib.contextmanager
def _global(store: Any) -> Iterator[None]:
    """MLflow's global URIs at ``store`` (for fluent APIs such as pyfunc.load_model)."""
    import mlflow

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
        mp.setenv("MLFLOW_REGISTRY_URI", store.registry_uri)
        mlflow.set_tracking_uri(store.tracking_uri)
        mlflow.set_registry_uri(store.registry_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
            from mlflow.tracking._model_registry import utils

            utils._registry_uri = None


def _check_model(provider: Tricky, recipient_store: Any, name: str, runs_exp: str) -> None:
    """The imported model equals the source in every settable field; files and lineage mapped."""
    assert provider.registered is not None
    source = snapshot_model(provider.store, MODEL)
    target = snapshot_model(recipient_store, name)
    client = recipient_store.client()
    exp = client.get_experiment_by_name(runs_exp)
    runs = {
        r.data.tags["arcuate.source_run_id"]: r for r in client.search_runs([exp.experiment_id])
    }
    models = {
        (m.tags or {}).get("arcuate.source_model_id"): m
        for m in client.search_logged_models(experiment_ids=[exp.experiment_id])
    }
    parent = runs[provider.parent_id]
    assert sorted(target["versions"]) == [1, 2, 3, 5]
    sources = {v: target["versions"][v].pop("source") for v in target["versions"]}
    run_ids = {v: target["versions"][v].pop("run_id") for v in target["versions"]}
    for v in source["versions"].values():
        v.pop("source"), v.pop("run_id")
    assert_same(target, source)
    # lineage: each version points at the imported run and the imported files
    assert sources[1] == f"models:/{models[provider.model_id].model_id}"
    assert sources[2] == f"runs:/{parent.info.run_id}/model"
    assert sources[5] == f"{parent.info.artifact_uri}/a/b"
    assert sources[3].startswith("models:/m-")  # a path the recipient cannot reach
    assert run_ids == {1: parent.info.run_id, 2: parent.info.run_id, 3: None, 5: parent.info.run_id}
    for v, on_disk in provider.registered.versions.items():
        served = _version_files(provider.store, MODEL, v)
        assert _version_files(recipient_store, name, v) == served, f"files of version {v}"
        assert set(on_disk.values()) <= set(served.values())


def test_model_round_trip_after_experiment(
    provider: Tricky, share: Share, recipient_store: Any
) -> None:
    """Experiment then model: versions keep their numbers (gap included) and link to the runs."""
    ctx = recipient_context(recipient_store)
    reader = DeltaSharingReader()
    import_experiment(reader.batches(share.experiment), "imported", ctx, source=share.experiment)
    result = import_model(reader.batches(share.model), "churn", ctx, source=share.model)
    assert result.summary["added"] == 4, result
    assert "version_map" not in result.summary
    _check_model(provider, recipient_store, "churn", "imported")
    # the experiment's runs were reused, not duplicated, and still match the source exactly
    assert_same(
        snapshot_experiment(recipient_store, "imported", imported=True),
        snapshot_experiment(provider.store, EXPERIMENT, imported=False),
    )


def test_model_round_trip_alone(provider: Tricky, share: Share, recipient_store: Any) -> None:
    """Model only: its source run is recreated in the model's own experiment, models/churn."""
    ctx = recipient_context(recipient_store)
    import_model(DeltaSharingReader().batches(share.model), "churn", ctx, source=share.model)
    _check_model(provider, recipient_store, "churn", "models/churn")
    assert recipient_store.client().get_experiment_by_name(EXPERIMENT) is None


def test_imported_sklearn_model_predicts_the_same(
    provider: Tricky, share: Share, recipient_store: Any
) -> None:
    import mlflow
    import numpy as np

    ctx = recipient_context(recipient_store)
    import_model(DeltaSharingReader().batches(share.model), "churn", ctx, source=share.model)
    x = np.array([[0.5], [1.5], [2.5], [-3.0]])
    with _global(provider.store):
        expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(x)
    with _global(recipient_store):
        got = mlflow.pyfunc.load_model("models:/churn/1").predict(x)
        imported = recipient_store.client().get_model_version("churn", "1").source
        via_logged_model = mlflow.pyfunc.load_model(imported).predict(x)
    assert np.array_equal(got, expected)
    assert np.array_equal(via_logged_model, expected)
    # version 2 (source runs:/<run>/model) does not load in the provider's MLflow either:
    # MLflow 3 serves it with the files one directory down; the import keeps that behaviour
