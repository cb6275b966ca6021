"""Re-running imports: nothing changes when nothing changed; provider updates flow in."""

from __future__ import annotations

from typing import Any

from arcuate.engine.imports import import_experiment, import_model
from tests.export.export_helpers import Tricky
from tests.imports.import_helpers import Share, recipient_context, store_state, table_batches


def test_same_import_again_changes_nothing(
    provider: Tricky, share: Share, recipient_store: Any
) -> None:
    ctx = recipient_context(recipient_store)
    first_exp = import_experiment(table_batches(share.experiment_table), "e", ctx)
    first_model = import_model(table_batches(share.model_table), "m", ctx)
    before = store_state(recipient_store)
    again_exp = import_experiment(table_batches(share.experiment_table), "e", ctx)
    again_model = import_model(table_batches(share.model_table), "m", ctx)
    assert store_state(recipient_store) == before
    assert first_exp.summary["added"] == 3
    assert first_model.summary["added"] == 4
    assert {
        k: again_exp.summary[k] for k in ("added", "updated", "unchanged", "removed", "files")
    } == {"added": 0, "updated": 0, "unchanged": 3, "removed": 0, "files": 0}
    assert {k: again_model.summary[k] for k in ("added", "updated", "unchanged", "removed")} == {
        "added": 0,
        "updated": 0,
        "unchanged": 4,
        "removed": 0,
    }
