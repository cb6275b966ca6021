"""Fidelity of logged-model outputs and ``mlflow.modelVersions`` (issue 10, items 9 and 10).

A real provider store (``small``: a run with a logged model it lists as an output at step 3,
and a registered model whose versions come from that logged model) gains what the items are
about, is exported with arcuate's exporter into Delta tables, and is imported into a sqlite
recipient over both import paths, and into a real ``mlflow server``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arcuate.engine.imports import import_experiment, import_model
from tests.imports.import_helpers import (
    Small,
    recipient_context,
    snapshot_experiment,
    table_batches,
)


def _side_model(small: Small) -> str:
    """A logged model whose source run is the parent run, which does not list it as an
    output (``create_logged_model`` alone, as an evaluation job might)."""
    lm = small.client.create_logged_model(
        small.experiment_id, name="side", source_run_id=small.parent, tags={"kind": "side"}
    )
    small.client.finalize_logged_model(lm.model_id, "READY")
    return str(lm.model_id)


def test_logged_model_that_is_no_output_stays_no_output(
    small: Small, recipient_store: Any, workdir: Path
) -> None:
    """Item 9: the exporter writes a null step for a logged model the run does not list as an
    output; it used to be imported as an output at step 0."""
    side = _side_model(small)
    experiment, _model = small.export()
    import_experiment(table_batches(experiment), "e", recipient_context(recipient_store))
    source = snapshot_experiment(small.store, "small", imported=False)["runs"][small.parent]
    target = snapshot_experiment(recipient_store, "e", imported=True)["runs"][small.parent]
    assert source["outputs"] == [(small.model_id, 3)]
    assert target["outputs"] == source["outputs"]
    assert side in target["logged_models"]  # the model itself is imported, as no output


def _versions_tag(store: Any, source_model_id: str) -> list[Any]:
    """The ``mlflow.modelVersions`` list of the imported copy of a source logged model."""
    client = store.client()
    ids = [e.experiment_id for e in client.search_experiments()]
    found = [
        m
        for m in client.search_logged_models(experiment_ids=ids)
        if (m.tags or {}).get("arcuate.source_model_id") == source_model_id
    ]
    assert len(found) == 1, found
    return json.loads(found[0].tags["mlflow.modelVersions"])  # type: ignore[no-any-return]


def _add_gap(small: Small) -> None:
    """Version 3 registered from the logged model by MLflow's ``register_model`` (which adds
    it to the model's ``mlflow.modelVersions``), version 2 deleted: the import recreates
    number 2 as a placeholder version, which must not stay in the list."""
    import mlflow

    mv = mlflow.register_model(f"models:/{small.model_id}", "small-model")
    assert int(mv.version) == 3
    small.client.delete_model_version("small-model", "2")
    tags = small.client.get_logged_model(small.model_id).tags
    assert json.loads(tags["mlflow.modelVersions"]) == [{"name": "small-model", "version": 3}]


def _import_model(small: Small, store: Any, name: str) -> None:
    _experiment, model = small.export()
    ctx = recipient_context(store)
    result = import_model(table_batches(model), name, ctx)
    assert "version_map" not in result.summary


def test_model_versions_tag_holds_integer_versions(
    small: Small, recipient_store: Any, workdir: Path
) -> None:
    """Item 10: the list names each version once, its number an integer as MLflow writes it
    (it used to hold ``"1"``), and no placeholder version."""
    _add_gap(small)
    _import_model(small, recipient_store, "m")
    assert _versions_tag(recipient_store, small.model_id) == [
        {"name": "m", "version": 1},
        {"name": "m", "version": 3},
    ]


@pytest.mark.server
def test_model_versions_tag_on_a_tracking_server(
    small: Small, mlflow_server: Any, workdir: Path, import_path: str
) -> None:
    """Item 10 against a real ``mlflow server``: the server adds its own entry when a version
    is registered from a logged model; the list still names each version once."""
    if import_path == "auto":
        pytest.skip("an mlflow server is written through its REST API on every path")
    _add_gap(small)
    _import_model(small, mlflow_server, "fidelity-versions")
    assert _versions_tag(mlflow_server, small.model_id) == [
        {"name": "fidelity-versions", "version": 1},
        {"name": "fidelity-versions", "version": 3},
    ]
