"""Evaluation-dataset records through arcuate, beside MLflow's own write path (the floor).

Builds a provider sqlite store with one dataset of ``--records`` records (with expectations)
linked to an experiment, exports it with ``INCLUDING DATASETS`` into a Delta table, imports it
into a fresh sqlite store, imports it again (nothing to write: every record is read back and
compared), and, in the same run, writes the same records into a third store with MLflow's
``upsert_dataset_records`` in calls of 1,000 (what the import itself calls). Prints seconds.

    /work/venv/bin/python benchmarks/eval_records.py --records 10000
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def _store(root: Path) -> str:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root.mkdir(parents=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    SqlAlchemyStore(uri, str(root / "mlruns")).engine.dispose()
    Registry(uri)
    return uri


def _record(i: int) -> dict[str, Any]:
    return {
        "inputs": {"question": f"What is {i} + {i}?", "context": {"n": i}},
        "outputs": {"answer": str(2 * i)},
        "expectations": {"expected_response": str(2 * i), "score": i % 5},
        "tags": {"split": "test", "mlflow.user": "ana"},
        "source": {"source_type": "HUMAN", "source_data": {"annotator": "ana"}},
    }


def _fill(uri: str, records: list[dict[str, Any]]) -> float:
    """The records written into a new dataset with MLflow's store call; seconds."""
    from mlflow import MlflowClient

    client = MlflowClient(uri, uri)
    eid = client.create_experiment("agent")
    ds = client.create_dataset(name="qa-gold", experiment_id=[eid])
    store = client._tracking_client.store
    started = time.monotonic()
    for k in range(0, len(records), 1000):
        store.upsert_dataset_records(ds.dataset_id, records[k : k + 1000])
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args()
    from deltalake import DeltaTable

    from arcuate.config import resolve_settings
    from arcuate.engine.context import Context
    from arcuate.engine.export import export_experiment
    from arcuate.engine.imports.experiments import import_experiment
    from arcuate.plan.ops import ExportExperiment

    root = Path(tempfile.mkdtemp(prefix="eval-records-"))
    os.chdir(root)
    try:
        records = [_record(i) for i in range(args.records)]
        src, dst, floor = (_store(root / n) for n in ("provider", "recipient", "floor"))
        _fill(src, records)
        ctx = Context(resolve_settings(tracking_uri=src, registry_uri=src,
                                       warehouse=str(root / "wh"), progress=False))  # fmt: skip
        started = time.monotonic()
        stream = export_experiment(ExportExperiment("agent", datasets=True), ctx)
        location = ctx.table_store.write(("s", "agent"), stream.batches, content="experiment")
        exported = time.monotonic() - started
        into = Context(resolve_settings(tracking_uri=dst, registry_uri=dst, progress=False))
        times = []
        for _ in range(2):
            batches = DeltaTable(str(location.location)).to_pyarrow_table().to_batches()
            started = time.monotonic()
            result = import_experiment(batches, "agent", into, source="bench#s.d.agent")
            times.append(time.monotonic() - started)
        assert result.summary["eval_records_written"] == 0
        floor_s = _fill(floor, records)
        print(
            f"{args.records} records: export {exported:.1f} s, import {times[0]:.1f} s, "
            f"re-import (nothing written) {times[1]:.1f} s; MLflow's upsert_dataset_records "
            f"alone {floor_s:.1f} s; load average {os.getloadavg()[0]:.1f}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
