"""The recipient's own words: import statements through execute(), and the seed's Python API."""

from __future__ import annotations

from typing import Any

import delta_sharing

import arcuate
from delta_sharing_mlflow import import_experiments, import_models
from tests.export.export_helpers import EXPERIMENT, MODEL, Tricky
from tests.imports.import_helpers import Share, assert_same, snapshot_experiment, snapshot_model


def _source(provider: Tricky) -> dict[str, Any]:
    """The provider's experiment as exported.

    MLflow itself writes ``registered_model_meta`` into a local model directory whenever
    ``models:/name/version`` is loaded in place (other tests load the provider's model), so that
    file, added after the export, is not part of what was shared.
    """
    snap = snapshot_experiment(provider.store, EXPERIMENT, imported=False)
    for run in snap["runs"].values():
        for model in run["logged_models"].values():
            model["files"].pop("registered_model_meta", None)
    return snap


def test_statements_import_experiment_and_model(
    provider: Tricky, share: Share, recipient_store: Any
) -> None:
    uris = {"tracking_uri": recipient_store.tracking_uri, "progress": False}
    results = arcuate.execute(
        f"CREATE EXPERIMENT imported AS PANDAS '{share.experiment}';\n"
        f"CREATE MODEL churn AS '{share.model}'",
        **uris,
    )
    assert [r.summary["added"] for r in results] == [3, 4]
    assert_same(
        snapshot_experiment(recipient_store, "imported", imported=True),
        _source(provider),
    )
    # again: nothing changes
    again = arcuate.execute(f"CREATE EXPERIMENT imported AS PANDAS '{share.experiment}'", **uris)
    assert again[0].summary["added"] == 0 and again[0].summary["updated"] == 0
    assert again.to_pandas()["unchanged"].tolist() == [3]
    source_model = snapshot_model(provider.store, MODEL)
    target_model = snapshot_model(recipient_store, "churn")
    assert sorted(source_model["versions"]) == sorted(target_model["versions"])


def test_seed_python_api_imports_a_load_as_pandas_frame(
    provider: Tricky, share: Share, recipient_store: Any
) -> None:
    # the seed: df = delta_sharing.load_as_pandas(coordinate); import_experiments(df, name)
    df = delta_sharing.load_as_pandas(share.experiment)
    result = import_experiments(
        df, "from-frame", tracking_uri=recipient_store.tracking_uri, progress=False
    )
    assert result.summary["added"] == 3
    assert_same(
        snapshot_experiment(recipient_store, "from-frame", imported=True),
        _source(provider),
    )
    models = delta_sharing.load_as_pandas(share.model)
    done = import_models(models, "churn", tracking_uri=recipient_store.tracking_uri, progress=False)
    assert done.summary["added"] == 4


def test_describe_previews_without_writing(share: Share, recipient_store: Any) -> None:
    from tests.imports.import_helpers import store_state

    before = store_state(recipient_store)
    (result,) = arcuate.execute(
        f"DESCRIBE '{share.experiment}'", tracking_uri=recipient_store.tracking_uri
    )
    assert result.summary["runs"] == 3
    assert store_state(recipient_store) == before
