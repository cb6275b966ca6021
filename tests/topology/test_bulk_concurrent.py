"""The bulk path into PostgreSQL writes two batches at the same time (two backends, two CPUs
for MLflow's indexes and foreign keys), each still all or nothing; batches that use datasets
take turns, so a dataset shared by runs of two batches is one row, not a conflict."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.mlflow import bulk
from arcuate.engine.imports import experiments
from arcuate.engine.imports.experiments import import_experiment
from tests.imports.import_helpers import batches_of, recipient_context, run_row

pytestmark = [pytest.mark.postgres]

RUNS = 5


def _rows(*, dataset: bool) -> list[dict[str, Any]]:
    """Five runs of 50 points each; with ``dataset``, each used the same training set."""
    rows = []
    for i in range(RUNS):
        points = [(f"m{k}", i + k / 10, step, 1_700_000_000_000 + step) for k in range(5) for step in range(10)]  # fmt: skip
        row = run_row(f"{i:032x}", name=f"run {i}", params={"i": str(i)}, metrics=points, files=[])
        if dataset:
            row["run"]["inputs"] = [
                {
                    "name": "train ✓",
                    "digest": "d1g357",
                    "source_type": "code",
                    "source": '{"tags": {}}',
                    "schema": None,
                    "profile": None,
                    "tags": [{"key": "mlflow.data.context", "value": "training"}],
                }
            ]
        rows.append(row)
    return rows


def _together(monkeypatch: pytest.MonkeyPatch, where: str) -> list[int]:
    """The first two calls of ``BulkRunWriter.<where>`` wait for each other (ten seconds at
    most): they pass only if two batches are written at the same time. The calls' count."""
    meet = threading.Barrier(2, timeout=10)
    real = getattr(bulk.BulkRunWriter, where)
    calls: list[int] = []
    lock = threading.Lock()

    def both(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            calls.append(len(calls))
            first_two = len(calls) <= 2
        if first_two:
            meet.wait()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(bulk.BulkRunWriter, where, both)
    return calls


@pytest.fixture
def pg_recipient(postgres: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ARCUATE_IMPORT_PATH", "bulk")
    monkeypatch.setattr(experiments, "BULK_RUNS", 1)  # a transaction per run
    return postgres.new_store(workdir / "recipient")


def _history(client: Any, run_id: str) -> list[tuple[str, float, int, int]]:
    return sorted(
        (m.key, m.value, m.step, m.timestamp)
        for key in client.get_run(run_id).data.metrics
        for m in client.get_metric_history(run_id, key)
    )


def test_two_batches_are_committed_side_by_side(
    pg_recipient: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _together(monkeypatch, "_commit")
    result = import_experiment(
        batches_of(_rows(dataset=False)), "e", recipient_context(pg_recipient)
    )
    assert result.summary["added"] == RUNS
    assert len(calls) == RUNS
    client = pg_recipient.client()
    runs = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"run {i}" for i in range(RUNS)]
    for run in runs:
        i = int(run.data.params["i"])
        expected = sorted((f"m{k}", i + k / 10, s, 1_700_000_000_000 + s) for k in range(5) for s in range(10))  # fmt: skip
        assert _history(client, run.info.run_id) == expected
    again = import_experiment(
        batches_of(_rows(dataset=False)), "e", recipient_context(pg_recipient)
    )
    assert again.summary["unchanged"] == RUNS


def test_batches_that_share_a_dataset_take_turns(
    pg_recipient: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches are under way at once (both reached their pending marks); each uses the
    same dataset, which is one row afterwards, every run an input of it."""
    import psycopg

    _together(monkeypatch, "_mark")
    result = import_experiment(
        batches_of(_rows(dataset=True)), "e", recipient_context(pg_recipient)
    )
    assert result.summary["added"] == RUNS
    client = pg_recipient.client()
    runs = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert len(runs) == RUNS
    for run in runs:
        (used,) = run.inputs.dataset_inputs
        assert (used.dataset.name, used.dataset.digest) == ("train ✓", "d1g357")
    with psycopg.connect(pg_recipient.tracking_uri) as conn:
        assert conn.execute("SELECT count(*) FROM datasets").fetchone() == (1,)


def test_sqlite_takes_one_batch_at_a_time(mlflow_store: Any) -> None:
    from arcuate.backends.mlflow.sink import MlflowSink

    sink = MlflowSink(mlflow_store.tracking_uri, mlflow_store.registry_uri)
    assert sink.bulk_runs("0")
    assert sink.bulk_concurrency() == 1
