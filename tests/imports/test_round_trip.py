"""Done-when of issue 4: export -> serve -> delta_sharing client -> import, compared field by field."""

from __future__ import annotations

from typing import Any

from export_helpers import EXPERIMENT, MODEL, Tricky
from import_helpers import (
    Share,
    recipient_context,
    snapshot_experiment,
    snapshot_model,
    assert_same,
)

from arcuate.backends.sharing.reader import DeltaSharingReader
from arcuate.engine.imports import import_experiment, import_model


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
