"""Helpers of the concurrency tests: run imports at the same moment, compare with one import."""

from __future__ import annotations

import threading
from typing import Any

from arcuate.engine.imports import import_experiment, import_model
from tests.imports.import_helpers import (
    Share,
    assert_same,
    recipient_context,
    snapshot_experiment,
    snapshot_model,
    table_batches,
)


def both_at_once(work: list[Any]) -> list[Any]:
    """Run the callables in threads released together; their results (or errors)."""
    start = threading.Barrier(len(work))
    out: list[Any] = [None] * len(work)

    def run(i: int) -> None:
        start.wait()
        try:
            out[i] = work[i]()
        except BaseException as exc:  # reported by the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return out


def _model_view(store: Any, name: str) -> dict[str, Any]:
    snap = snapshot_model(store, name)
    for mv in snap["versions"].values():
        mv.pop("run_id"), mv.pop("source")
    return snap


def imported_runs(store: Any, name: str) -> list[str]:
    """Source run ids of the live runs of experiment ``name`` (one per run)."""
    client = store.client()
    eid = client.get_experiment_by_name(name).experiment_id
    return sorted(r.data.tags["arcuate.source_run_id"] for r in client.search_runs([eid]))


def concurrent_imports_equal_one(
    store: Any, share: Share, reference: Any, e: str = "e", m: str = "m"
) -> None:
    """Import the share's experiment twice at once, then its model twice at once, into
    ``store`` (as ``e`` and ``m``); the result equals one import of each into ``reference``."""
    one = recipient_context(reference)
    import_experiment(table_batches(share.experiment_table), "e", one)
    import_model(table_batches(share.model_table), "m", one)

    def experiment() -> Any:
        return import_experiment(table_batches(share.experiment_table), e, recipient_context(store))

    def model() -> Any:
        return import_model(table_batches(share.model_table), m, recipient_context(store))

    results = both_at_once([experiment, experiment])
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert sorted(r.summary["added"] for r in results) == [0, 3]
    assert sorted(r.summary["unchanged"] for r in results) == [0, 3]
    assert imported_runs(store, e) == imported_runs(reference, "e")
    assert_same(
        snapshot_experiment(store, e, imported=True),
        snapshot_experiment(reference, "e", imported=True),
    )
    results = both_at_once([model, model])
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert sorted(r.summary["added"] for r in results) == [0, 4]
    assert_same(_model_view(store, m), _model_view(reference, "m"))
    # nothing of the lease is left on the targets
    client = store.client()
    assert not [k for k in client.get_experiment_by_name(e).tags if "lock" in k]
    assert not [k for k in client.get_registered_model(m).tags if "lock" in k]
