"""The round trip into a real ``mlflow server`` process (REST tracking, proxied artifacts).

The server runs once per session in its own process group on a free loopback port, backed by
a fresh sqlite store and serving artifacts itself (``mlflow-artifacts:/``); it is stopped at
the end of the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.sharing.reader import DeltaSharingReader
from arcuate.engine.imports import import_experiment, import_model
from tests.export.export_helpers import EXPERIMENT, MODEL, Tricky
from tests.imports.import_helpers import (
    Share,
    assert_same,
    recipient_context,
    snapshot_experiment,
    snapshot_model,
    store_state,
)

pytestmark = pytest.mark.server


def test_round_trip_into_mlflow_server(
    provider: Tricky, share: Share, mlflow_server: Any, workdir: Path
) -> None:
    ctx = recipient_context(mlflow_server)
    reader = DeltaSharingReader()
    exp = import_experiment(
        reader.batches(share.experiment), "served", ctx, source=share.experiment
    )
    model = import_model(reader.batches(share.model), "served-model", ctx, source=share.model)
    assert exp.summary["added"] == 3 and model.summary["added"] == 4
    assert "version_map" not in model.summary
    assert_same(
        snapshot_experiment(mlflow_server, "served", imported=True),
        snapshot_experiment(provider.store, EXPERIMENT, imported=False),
    )
    target, source = (
        snapshot_model(mlflow_server, "served-model"),
        snapshot_model(provider.store, MODEL),
    )
    client = mlflow_server.client()
    # the server is the session's: other tests may have imported the same share's runs into
    # experiments of their own; a version links to the copy in the oldest experiment
    copies = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if r.data.tags.get("arcuate.source_run_id") == provider.parent_id
    ]
    assert any(
        r.info.experiment_id == client.get_experiment_by_name("served").experiment_id
        for r in copies
    )
    parent = min(copies, key=lambda r: (int(r.info.experiment_id), r.info.run_id))
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert target["versions"][2]["source"] == f"runs:/{parent.info.run_id}/model"
    assert target["versions"][5]["source"] == f"{parent.info.artifact_uri}/a/b"
    for snap in (target, source):
        for mv in snap["versions"].values():
            mv.pop("run_id"), mv.pop("source")
    assert_same(target, source)
    # and again: nothing changes
    state = store_state(mlflow_server)
    again = import_experiment(
        reader.batches(share.experiment), "served", ctx, source=share.experiment
    )
    again_model = import_model(reader.batches(share.model), "served-model", ctx, source=share.model)
    assert again.summary["unchanged"] == 3 and again_model.summary["unchanged"] == 4, again_model
    assert store_state(mlflow_server) == state


def test_runs_sharing_a_dataset_are_imported_at_once(
    mlflow_store: Any, mlflow_server: Any, workdir: Path
) -> None:
    """Runs written at the same time that log the same dataset: the server inserts a dataset
    the first time it sees it, so two runs logging it at once collided on its unique key
    (sqlite ``IntegrityError``, the import failed). One training set for every run is the
    common case."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from tests.imports.import_helpers import export_to, provider_context, table_batches

    client = mlflow_store.client()
    eid = client.create_experiment("same-data")
    dataset = Dataset("train", "d1g3st", "local", '{"uri": "/data/train"}', None, None)
    for r in range(8):
        rid = client.create_run(eid, start_time=1000 + r, run_name=f"run-{r}").info.run_id
        client.log_inputs(rid, datasets=[DatasetInput(dataset, [InputTag("ctx", "train")])])
        client.set_terminated(rid, end_time=2000 + r)
    location = export_to(provider_context(mlflow_store, workdir / "wh"), ("s", "d", "same"),
                         experiment="same-data")  # fmt: skip
    ctx = recipient_context(mlflow_server, rest_concurrency=8)
    result = import_experiment(table_batches(location), "same-data-in", ctx, source="p#s.d.same")
    assert result.summary["added"] == 8
    here = mlflow_server.client()
    runs = here.search_runs([here.get_experiment_by_name("same-data-in").experiment_id])
    assert sorted(len(r.inputs.dataset_inputs) for r in runs) == [1] * 8
