"""Edge cases of the import: params that changed, deleted targets, re-shared imports,
unlinked ids, and version numbers MLflow cannot give back."""

from __future__ import annotations

from typing import Any

import pytest

from arcuate.engine.imports import import_experiment, import_model
from arcuate.errors import ConflictError
from tests.imports.import_helpers import (
    batches_of,
    chunk_rows,
    recipient_context,
    run_row,
    version_row,
)


def _runs(store: Any, name: str = "e") -> list[Any]:
    client = store.client()
    return list(client.search_runs([client.get_experiment_by_name(name).experiment_id]))


def test_changed_param_rebuilds_the_run(recipient_store: Any) -> None:
    """MLflow cannot change a param: the run is rebuilt, the old one deleted after."""
    ctx = recipient_context(recipient_store)
    import_experiment(batches_of([run_row(params={"lr": "0.1"})]), "e", ctx)
    (old,) = _runs(recipient_store)
    result = import_experiment(batches_of([run_row(params={"lr": "0.2"})]), "e", ctx)
    assert result.summary["updated"] == 1 and result.summary["removed"] == 0
    (new,) = _runs(recipient_store)
    assert new.info.run_id != old.info.run_id and new.data.params == {"lr": "0.2"}
    assert recipient_store.client().get_run(old.info.run_id).info.lifecycle_stage == "deleted"


def test_deleted_target_experiment(recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    import_experiment(batches_of([run_row()]), "e", ctx)
    client = recipient_store.client()
    client.delete_experiment(client.get_experiment_by_name("e").experiment_id)
    with pytest.raises(ConflictError, match="exists but is deleted"):
        import_experiment(batches_of([run_row()]), "e", ctx)
    result = import_experiment(batches_of([run_row()]), "e", ctx, overwrite=True)
    assert result.summary["unchanged"] == 1
    assert client.get_experiment_by_name("e").lifecycle_stage == "active"


def test_reshared_import_gets_this_hop_provenance(recipient_store: Any) -> None:
    """Tags arcuate wrote in an earlier hop are replaced by this import's provenance."""
    row = run_row(
        tags={"arcuate.source_run_id": "f" * 32, "arcuate.content_hash": "x", "team": "ml"}
    )
    import_experiment(batches_of([row]), "e", recipient_context(recipient_store), source="p#s.d.t")
    (run,) = _runs(recipient_store)
    assert run.data.tags["arcuate.source_run_id"] == "a" * 32
    assert run.data.tags["arcuate.source"] == "p#s.d.t"
    assert run.data.tags["arcuate.content_hash"] != "x"
    assert run.data.tags["team"] == "ml"


def test_chunked_logged_model_file_and_model_metrics(recipient_store: Any) -> None:
    lm = {
        "model_id": "m-" + "1" * 32,
        "name": "model",
        "model_type": "sk",
        "status": "READY",
        "status_message": None,
        "creation_time": None,
        "step": 2,
        "tags": [{"key": "mlflow.modelVersions", "value": '[{"name": "x", "version": "1"}]'}],
        "params": [{"key": "alpha", "value": "1"}],
    }
    entry, chunks = chunk_rows(
        "a" * 32, "model.bin", bytes(range(256)) * 8, 700, owner=f"logged_models/{lm['model_id']}"
    )
    row = run_row(files=[entry], logged_models=[lm])
    row["run"]["metrics"][0].update(model_id=lm["model_id"], dataset_name="d", dataset_digest="abc")
    row["run"]["metrics"].append({**row["run"]["metrics"][0], "model_id": "m-" + "9" * 32})
    result = import_experiment(
        batches_of([*chunks, row], size=1), "e", recipient_context(recipient_store)
    )
    assert result.summary["unlinked"] == 1  # a point linked to a model that was not shared
    client = recipient_store.client()
    (model,) = client.search_logged_models(
        experiment_ids=[client.get_experiment_by_name("e").experiment_id]
    )
    assert model.tags["arcuate.source_model_id"] == lm["model_id"]
    assert "mlflow.modelVersions" not in model.tags  # the provider's registry means nothing here
    assert model.tags["arcuate.source_model_versions"] == '[{"name": "x", "version": "1"}]'
    assert [(m.key, m.dataset_name) for m in model.metrics] == [("loss", "d")]
    assert str(model.status) == "READY" and model.params == {"alpha": "1"}
    (run,) = _runs(recipient_store)
    assert [(o.model_id, o.step) for o in run.outputs.model_outputs] == [(model.model_id, 2)]


def test_version_numbers_that_cannot_be_kept_are_mapped(recipient_store: Any) -> None:
    """The target model already used numbers 1-3: shared versions 1, 2 become 4, 5."""
    client = recipient_store.client()
    ctx = recipient_context(recipient_store)
    import_experiment(batches_of([run_row()]), "e", ctx)
    (run,) = _runs(recipient_store)
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", f"runs:/{run.info.run_id}/x", run.info.run_id)
    client.delete_model_version("m", "3")
    result = import_model(batches_of([version_row(1), version_row(2, aliases=["best"])]), "m", ctx)
    assert result.summary["version_map"] == {1: 4, 2: 5}
    mv = client.get_model_version_by_alias("m", "best")
    assert int(mv.version) == 5 and mv.tags["arcuate.source_version"] == "2"
    assert {int(v.version) for v in client.search_model_versions("name = 'm'")} == {1, 2, 4, 5}
    again = import_model(batches_of([version_row(1), version_row(2, aliases=["best"])]), "m", ctx)
    assert again.summary["unchanged"] == 2 and again.summary["version_map"] == {1: 4, 2: 5}


def test_gap_in_new_model_is_recreated(recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    rows = [version_row(2), version_row(6, stage="Staging")]
    result = import_model(batches_of(rows), "m", ctx)
    assert "version_map" not in result.summary
    client = recipient_store.client()
    assert sorted(int(v.version) for v in client.search_model_versions("name = 'm'")) == [2, 6]
    assert client.get_model_version("m", "6").current_stage == "Staging"
    # the model-only import recreated the source run, with provenance, in its own experiment
    # (never in the one the share names, "provider exp")
    (run,) = _runs(recipient_store, "models/m")
    assert run.data.tags["arcuate.source_run_id"] == "a" * 32
    assert client.get_experiment_by_name("provider exp") is None
    assert client.get_model_version("m", "2").run_id == run.info.run_id


def test_run_deleted_here_stays_deleted_unless_overwrite(recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    import_experiment(batches_of([run_row()]), "e", ctx)
    (run,) = _runs(recipient_store)
    client = recipient_store.client()
    client.delete_run(run.info.run_id)
    again = import_experiment(batches_of([run_row()]), "e", ctx)
    assert again.summary["unchanged"] == 1 and _runs(recipient_store) == []
    exact = import_experiment(batches_of([run_row()]), "e", ctx, overwrite=True)
    assert exact.summary["updated"] == 1
    assert [r.info.run_id for r in _runs(recipient_store)] == [run.info.run_id]


def test_model_under_a_prompt_name_is_refused_before_any_write(recipient_store: Any) -> None:
    """A prompt is a registered model to MLflow's store (hidden from the model API): a model
    imported under its name must be refused, not written invisibly into the prompt."""
    from pathlib import Path

    from tests.imports.import_helpers import whole_store

    client = recipient_store.client()
    client.create_prompt("p", description="a prompt", tags={"team": "ml"})
    client.create_prompt_version("p", "Hello {{name}}", description="first")
    before = whole_store(recipient_store, recipient_store.root, Path.cwd() / "mlruns")
    with pytest.raises(ConflictError, match="'p' is a prompt"):
        import_model(batches_of([version_row(1)]), "p", recipient_context(recipient_store))
    assert whole_store(recipient_store, recipient_store.root, Path.cwd() / "mlruns") == before
    assert client.get_prompt_version("p", 1).template == "Hello {{name}}"
    assert [v.version for v in client.search_prompt_versions("p")] == [1]
