"""Helpers of the Spark tests: a synthetic export built with arcuate's own record packing."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from arcuate.format.files import FileRef
from arcuate.format.records import run_rows, to_batches
from arcuate.format.schema import SCHEMA

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EXPERIMENT = {
    "experiment_id": "7",
    "name": "spark exp ✓",
    "lifecycle_stage": "active",
    "tags": [{"key": "team", "value": "ml"}],
}


def _ref(owner: str, path: str, data: bytes) -> FileRef:
    return FileRef(owner, path, len(data), lambda: io.BytesIO(data))


def run_record(i: int, *, parent: str | None = None) -> dict[str, Any]:
    rid = f"{i:032x}"
    return {
        "run_id": rid,
        "run_name": f"run-{i}",
        "status": "FINISHED",
        "start_time": T0 + dt.timedelta(seconds=i),
        "end_time": T0 + dt.timedelta(seconds=i, milliseconds=1500),
        "user_id": "ann",
        "lifecycle_stage": "active",
        "parent_run_id": parent,
        "params": [{"key": "alpha", "value": str(i / 10)}],
        "tags": [{"key": "mlflow.runName", "value": f"run-{i}"}]
        + ([{"key": "mlflow.parentRunId", "value": parent}] if parent else []),
        "metrics": [
            {
                "key": "loss",
                "value": 1.0 / (s + 1) if s != 2 else float("nan"),
                "step": s,
                "timestamp": T0 + dt.timedelta(seconds=i, milliseconds=s),
                "model_id": None,
                "dataset_name": None,
                "dataset_digest": None,
            }
            for s in range(4)
        ],
        "inputs": [],
        "model_inputs": [],
        "logged_models": [],
    }


def run_files(i: int, big: int = 0) -> list[FileRef]:
    files = [_ref("artifacts", "notes/ü.txt", f"run {i} ✓\n".encode())]
    if big:
        files.append(_ref("artifacts", "blob.bin", bytes((i + k) % 251 for k in range(big))))
    return files


def synthetic_rows(n: int, *, big: int = 0, chunk_bytes: int = 4096) -> Iterator[dict[str, Any]]:
    for i in range(n):
        parent = f"{0:032x}" if i and i % 3 == 0 else None
        yield from run_rows(
            EXPERIMENT,
            run_record(i, parent=parent),
            run_files(i, big),
            chunk_bytes=chunk_bytes,
            exported_at=T0,
        )


def synthetic_batches(n: int, *, big: int = 0, max_rows: int = 1000) -> Iterator[pa.RecordBatch]:
    return to_batches(synthetic_rows(n, big=big), max_rows=max_rows)


def canonical(table: pa.Table) -> list[dict[str, Any]]:
    """Rows in a stable order (kind, key, chunk index), NaN spelled out for comparison."""
    assert table.schema.equals(SCHEMA, check_metadata=False), table.schema
    rows = table.to_pylist()

    def fix(v: Any) -> Any:
        if isinstance(v, float) and v != v:
            return "NaN"
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    rows = [fix(r) for r in rows]
    return sorted(
        rows,
        key=lambda r: (
            r["kind"],
            r["key"],
            (r["chunk"] or {}).get("path") or "",
            (r["chunk"] or {}).get("index") or 0,
        ),
    )


class ServerStore:
    """An ``mlflow server`` URL used as a tracking and registry store."""

    def __init__(self, url: str, root: Path) -> None:
        self.tracking_uri = self.registry_uri = url
        self.root = root

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri, self.registry_uri)


class SparkShare:
    """The server experiment exported twice (deltalake, and Spark tasks) and shared."""

    def __init__(self, profile: Path, warehouse: Path, catalog: Path) -> None:
        self.profile = profile
        self.warehouse = warehouse
        self.catalog = catalog

    def coordinate(self, table: str) -> str:
        return f"{self.profile}#ml.default.{table}"
