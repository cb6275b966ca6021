"""Provider re-exports flow into the recipient: new runs and versions added, changed ones
updated, keyed by provenance, never duplicated; OVERWRITE makes the target exact."""

from __future__ import annotations

from typing import Any

from mlflow.entities import Metric

from arcuate.engine.imports import import_experiment, import_model
from tests.imports.import_helpers import (
    BASE_TS,
    Small,
    assert_same,
    recipient_context,
    snapshot_experiment,
    snapshot_model,
    store_state,
    table_batches,
)


def _counts(result: Any) -> dict[str, int]:
    return {k: result.summary[k] for k in ("added", "updated", "unchanged", "removed")}


def _imp(small: Small, ctx: Any, target: str = "e", **kw: Any) -> Any:
    exp_loc, _ = small.export()
    return import_experiment(table_batches(exp_loc), target, ctx, **kw)


def test_small_round_trip(small: Small, recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    result = _imp(small, ctx)
    assert _counts(result) == {"added": 3, "updated": 0, "unchanged": 0, "removed": 0}
    assert result.summary["files"] == 4 and result.summary["metric_points"] == 8
    assert_same(
        snapshot_experiment(recipient_store, "e", imported=True),
        snapshot_experiment(small.store, "small", imported=False),
    )


def test_provider_changes_flow_in(small: Small, recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    _imp(small, ctx)
    client = small.client
    # the running run finishes, gets a tag, new points and a new file; a new run appears
    client.log_batch(small.running, metrics=[Metric("loss", 0.1, BASE_TS + 200, 1)])
    client.set_tag(small.running, "note", "done ✓")
    (small.root / "extra.txt").write_text("new file\n")
    client.log_artifact(small.running, str(small.root / "extra.txt"), "late")
    client.set_terminated(small.running, "KILLED", end_time=BASE_TS + 300)
    new = client.create_run(small.experiment_id, run_name="new", start_time=BASE_TS + 400)
    client.log_param(new.info.run_id, "lr", "0.3")
    result = _imp(small, ctx)
    assert _counts(result) == {"added": 1, "updated": 1, "unchanged": 2, "removed": 0}
    assert result.summary["files"] == 1 and result.summary["metric_points"] == 1
    assert_same(
        snapshot_experiment(recipient_store, "e", imported=True),
        snapshot_experiment(small.store, "small", imported=False),
    )
    # and once more: nothing left to do
    state = store_state(recipient_store)
    assert _counts(_imp(small, ctx))["unchanged"] == 4
    assert store_state(recipient_store) == state


def test_parent_shared_later_is_linked(small: Small, recipient_store: Any) -> None:
    """A child imported without its parent gets mlflow.parentRunId once the parent arrives."""
    ctx = recipient_context(recipient_store)
    exp_loc, _ = small.export(overwrite_filter="attributes.run_name != 'parent'")
    import_experiment(table_batches(exp_loc), "e", ctx)
    client = recipient_store.client()
    eid = client.get_experiment_by_name("e").experiment_id
    (child,) = client.search_runs([eid], "attributes.run_name = 'child'")
    assert "mlflow.parentRunId" not in child.data.tags
    assert child.data.tags["arcuate.source_parent_run_id"] == small.parent
    result = _imp(small, ctx)
    assert _counts(result) == {"added": 1, "updated": 1, "unchanged": 1, "removed": 0}
    (child,) = client.search_runs([eid], "attributes.run_name = 'child'")
    (parent,) = client.search_runs([eid], "attributes.run_name = 'parent'")
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert "arcuate.source_parent_run_id" not in child.data.tags


def test_overwrite_with_fewer_runs(small: Small, recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    _imp(small, ctx)
    client = recipient_store.client()
    eid = client.get_experiment_by_name("e").experiment_id
    mine = client.create_run(eid, run_name="recipient's own run").info.run_id
    small.client.delete_run(small.running)
    # without OVERWRITE the recipient keeps what it has
    kept = _imp(small, ctx)
    assert _counts(kept) == {"added": 0, "updated": 0, "unchanged": 2, "removed": 0}
    assert len(client.search_runs([eid])) == 4
    # with OVERWRITE the experiment holds exactly the shared runs
    exact = _imp(small, ctx, overwrite=True)
    assert _counts(exact) == {"added": 0, "updated": 0, "unchanged": 2, "removed": 2}
    assert mine not in {r.info.run_id for r in client.search_runs([eid])}
    assert_same(
        snapshot_experiment(recipient_store, "e", imported=True),
        snapshot_experiment(small.store, "small", imported=False),
    )


def test_overwrite_with_more_runs(small: Small, recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    exp_loc, _ = small.export(overwrite_filter="attributes.run_name = 'parent'")
    assert (
        _counts(import_experiment(table_batches(exp_loc), "e", ctx, overwrite=True))["added"] == 1
    )
    result = _imp(small, ctx, overwrite=True)
    assert _counts(result) == {"added": 2, "updated": 0, "unchanged": 1, "removed": 0}
    assert_same(
        snapshot_experiment(recipient_store, "e", imported=True),
        snapshot_experiment(small.store, "small", imported=False),
    )


def test_overwrite_removes_tags_and_points_the_provider_no_longer_has(
    small: Small, recipient_store: Any
) -> None:
    """Changes made here to an imported run are undone by OVERWRITE (rebuilt if need be)."""
    ctx = recipient_context(recipient_store)
    _imp(small, ctx)
    client = recipient_store.client()
    eid = client.get_experiment_by_name("e").experiment_id
    (child,) = client.search_runs([eid], "attributes.run_name = 'child'")
    (running,) = client.search_runs([eid], "attributes.run_name = 'running'")
    client.set_tag(child.info.run_id, "local", "note")
    client.log_metric(running.info.run_id, "loss", 7.0, step=9)
    plain = _imp(small, ctx)
    assert _counts(plain)["unchanged"] == 3  # additions here are left alone without OVERWRITE
    exact = _imp(small, ctx, overwrite=True)
    assert _counts(exact) == {"added": 0, "updated": 2, "unchanged": 1, "removed": 0}
    assert_same(
        snapshot_experiment(recipient_store, "e", imported=True),
        snapshot_experiment(small.store, "small", imported=False),
    )


def test_model_versions_flow_in(small: Small, recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    _, model_loc = small.export()
    assert _counts(import_model(table_batches(model_loc), "m", ctx))["added"] == 2
    client = small.client
    client.create_model_version(
        "small-model", f"runs:/{small.parent}/model", run_id=small.parent, description="third"
    )
    client.set_registered_model_alias("small-model", "champion", "3")
    client.update_model_version("small-model", "1", description="first, revised")
    client.transition_model_version_stage("small-model", "1", "Archived")
    client.set_registered_model_tag("small-model", "reviewed", "yes")
    _, model_loc = small.export()
    result = import_model(table_batches(model_loc), "m", ctx)
    assert _counts(result) == {"added": 1, "updated": 1, "unchanged": 1, "removed": 0}
    target, source = (
        snapshot_model(recipient_store, "m"),
        snapshot_model(small.store, "small-model"),
    )
    for snap in (target, source):
        for mv in snap["versions"].values():
            mv.pop("run_id"), mv.pop("source")
    assert_same(target, source)
    state = store_state(recipient_store)
    assert _counts(import_model(table_batches(model_loc), "m", ctx))["unchanged"] == 3
    assert store_state(recipient_store) == state


def test_model_overwrite_with_fewer_versions(small: Small, recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    _, model_loc = small.export()
    import_model(table_batches(model_loc), "m", ctx)
    small.client.delete_model_version("small-model", "2")
    _, model_loc = small.export()
    kept = import_model(table_batches(model_loc), "m", ctx)
    assert _counts(kept) == {"added": 0, "updated": 0, "unchanged": 1, "removed": 0}
    exact = import_model(table_batches(model_loc), "m", ctx, overwrite=True)
    assert _counts(exact) == {"added": 0, "updated": 0, "unchanged": 1, "removed": 1}
    assert sorted(snapshot_model(recipient_store, "m")["versions"]) == [1]
    # a new provider version gets number 3, the one after the deleted 2, here too
    small.client.create_model_version(
        "small-model", f"runs:/{small.parent}/model", run_id=small.parent
    )
    _, model_loc = small.export()
    import_model(table_batches(model_loc), "m", ctx, overwrite=True)
    assert sorted(snapshot_model(recipient_store, "m")["versions"]) == [1, 3]


def test_progress_bars_go_to_stderr(small: Small, recipient_store: Any, capsys: Any) -> None:
    ctx = recipient_context(recipient_store, progress=True)
    exp_loc, model_loc = small.export()
    import_experiment(table_batches(exp_loc), "e", ctx)
    import_model(table_batches(model_loc), "m", ctx)
    err = capsys.readouterr().err
    assert "importing runs into e" in err and "importing versions into m" in err
    assert "validating shared rows" in err
