"""Deterministic source MLflow stores for the benchmark shapes (setup: never measured).

The same shape always gives the same run ids, names, parameters, tags, metric points and file
bytes. Runs, parameters, tags and metrics go straight into the sqlite tables with
``executemany`` in one transaction (the public API would take minutes for ``many-runs``);
the experiment, the registered model and its versions are made through MLflow's client, and
the result is checked through the client before anything is measured. File contents are
pseudo-random (incompressible, like model weights), written in 16 MiB blocks.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.shapes import MiB, Shape, mlmodel_text

#: 2024-05-01T00:00:00Z in epoch milliseconds: every timestamp is an offset from here.
T0_MS = 1_714_521_600_000
_BLOCK = 16 * MiB
#: Runs inserted per executemany round (bounds the generator's memory).
_RUNS_PER_ROUND = 250


@dataclass(frozen=True)
class Source:
    """A generated source store and what it holds."""

    shape: Shape
    root: Path
    uri: str
    experiment: str
    experiment_id: str
    model: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": self.shape.to_json(),
            "root": str(self.root),
            "uri": self.uri,
            "experiment": self.experiment,
            "experiment_id": self.experiment_id,
            "model": self.model,
        }


def make_template(path: Path) -> Path:
    """A migrated, empty sqlite MLflow database at ``path`` (reused when it exists)."""
    if path.exists():
        return path
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    uri = f"sqlite:///{tmp}"
    tracking = SqlAlchemyStore(uri, str(path.parent / "mlruns"))
    RegistryStore(uri)
    tracking.engine.dispose()
    tmp.rename(path)
    return path


def new_store(template: Path, root: Path) -> str:
    """A copy of the template at ``root/mlflow.db``; its sqlite URI."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "mlflow.db"
    shutil.copyfile(template, db)
    return f"sqlite:///{db}"


def run_id(shape: Shape, i: int) -> str:
    """The id of run ``i`` of ``shape`` (32 hex digits, like MLflow's)."""
    return hashlib.sha256(f"arcuate-bench:{shape.name}:run:{i}".encode()).hexdigest()[:32]


def _seed(*parts: object) -> int:
    text = ":".join(str(p) for p in ("arcuate-bench", *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def file_blocks(size: int, *seed: object) -> Iterator[bytes]:
    """The deterministic bytes of a file, in blocks of at most 16 MiB."""
    import numpy as np

    rng = np.random.Generator(np.random.PCG64(_seed(*seed)))
    left = size
    while left > 0:
        n = min(_BLOCK, left)
        yield rng.bytes(n)
        left -= n


def write_file(path: Path, size: int, *seed: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for block in file_blocks(size, *seed):
            fh.write(block)


def file_path(index: int) -> str:
    """Where file ``index`` of a run sits in its artifact root."""
    return f"summary_{index}.bin" if index == 0 else f"data/part_{index}.bin"


def param_value(i: int, j: int) -> str:
    if j % 5 == 0:
        return f"config-{i % 7}-" + "abcdefghij"[: (i + j) % 10] + "/layer" * (1 + j % 3)
    return f"{((i + 1) * 7919 + j * 104729) % 100003 / 100003:.6f}"


def metric_value(i: int, k: int, s: int) -> float:
    return 1.0 / (1.0 + s) + 0.01 * k + 1e-6 * i + 0.001 * math.sin(s + k)


def _run_rows(
    shape: Shape, i: int, experiment_id: str, artifact_root: str
) -> tuple[
    tuple[Any, ...],
    list[tuple[Any, ...]],
    list[tuple[Any, ...]],
    list[tuple[Any, ...]],
    list[tuple[Any, ...]],
]:
    rid = run_id(shape, i)
    start = T0_MS + i * 60_000
    end = start + 30_000 + shape.steps * 10
    name = f"run-{i:05d}"
    run = (
        rid,
        name,
        "LOCAL",
        "bench.py",
        "",
        "bench",
        "FINISHED",
        start,
        end,
        "",
        "active",
        f"{artifact_root}/{rid}/artifacts",
        int(experiment_id),
        None,
    )
    tags = [("mlflow.runName", name, rid), ("mlflow.user", "bench", rid)]
    tags += [(f"tag_{j:02d}", f"value {i % 11}-{j}", rid) for j in range(shape.tags)]
    params = [(f"param_{j:02d}", param_value(i, j), rid) for j in range(shape.params)]
    metrics = []
    latest = []
    for k in range(shape.metrics):
        key = f"metric_{k:02d}"
        for s in range(shape.steps):
            metrics.append((key, metric_value(i, k, s), start + s * 10 + k, rid, s, 0))
        if shape.steps:
            last = shape.steps - 1
            latest.append((key, metric_value(i, k, last), start + last * 10 + k, last, 0, rid))
    return run, tags, params, metrics, latest


def _insert_runs(db: Path, shape: Shape, experiment_id: str, artifact_root: str) -> None:
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA synchronous=OFF")
        with con:
            for first in range(0, shape.run_count, _RUNS_PER_ROUND):
                runs, tags, params, metrics, latest = [], [], [], [], []
                for i in range(first, min(shape.run_count, first + _RUNS_PER_ROUND)):
                    r, t, p, m, lm = _run_rows(shape, i, experiment_id, artifact_root)
                    runs.append(r)
                    tags += t
                    params += p
                    metrics += m
                    latest += lm
                con.executemany(
                    "INSERT INTO runs (run_uuid, name, source_type, source_name, "
                    "entry_point_name, user_id, status, start_time, end_time, source_version, "
                    "lifecycle_stage, artifact_uri, experiment_id, deleted_time) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    runs,
                )
                con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
                con.executemany(
                    "INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", params
                )
                con.executemany(
                    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    metrics,
                )
                con.executemany(
                    "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    latest,
                )
    finally:
        con.close()


def _write_artifacts(shape: Shape, artifacts: Path) -> None:
    for i in range(shape.run_count):
        rid = run_id(shape, i)
        base = artifacts / rid / "artifacts"
        if shape.is_model:
            (base / "model").mkdir(parents=True, exist_ok=True)
            (base / "model" / "MLmodel").write_bytes(mlmodel_text(i + 1))
            write_file(base / "model" / "model.bin", shape.model_bytes, shape.name, i, "model")
            continue
        for index, size in enumerate(shape.files):
            write_file(base / file_path(index), size, shape.name, i, index)


def generate(shape: Shape, root: Path, template: Path) -> Source:
    """Build the source store of ``shape`` under ``root`` (replacing what was there)."""
    from mlflow import MlflowClient

    if root.exists():
        shutil.rmtree(root)
    uri = new_store(template, root)
    artifacts = (root / "artifacts").absolute()
    artifacts.mkdir(parents=True)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = f"bench/{shape.name}"
    experiment_id = client.create_experiment(
        experiment, artifact_location=artifacts.as_uri(), tags={"bench.shape": shape.name}
    )
    _insert_runs(root / "mlflow.db", shape, experiment_id, artifacts.as_uri())
    _write_artifacts(shape, artifacts)
    model = None
    if shape.is_model:
        model = f"bench-{shape.name}"
        client.create_registered_model(
            model, tags={"bench.shape": shape.name}, description="benchmark model"
        )
        for i in range(shape.versions):
            rid = run_id(shape, i)
            client.create_model_version(
                model,
                source=f"{artifacts.as_uri()}/{rid}/artifacts/model",
                run_id=rid,
                description=f"version {i + 1}",
            )
        client.set_registered_model_alias(model, "champion", str(shape.versions))
    source = Source(shape, root, uri, experiment, experiment_id, model)
    _check(client, source)
    (root / "source.json").write_text(json.dumps(source.to_json(), indent=1))
    return source


def _check(client: Any, source: Source) -> None:
    """The generated store reads back through MLflow's client as intended."""
    shape = source.shape
    found = client.search_runs([source.experiment_id], max_results=shape.run_count + 1)
    if len(found) != shape.run_count:
        raise RuntimeError(f"generated {len(found)} runs, expected {shape.run_count}")
    run = client.get_run(run_id(shape, 0))
    if len(run.data.params) != shape.params or len(run.data.metrics) != shape.metrics:
        raise RuntimeError(f"run {run.info.run_id} reads back wrong: {run.data}")
    if shape.metrics and shape.steps:
        history = client.get_metric_history(run.info.run_id, "metric_00")
        if len(history) != shape.steps:
            raise RuntimeError(f"metric history has {len(history)} points, not {shape.steps}")
    if source.model:
        versions = client.search_model_versions(f"name = '{source.model}'")
        if len(versions) != shape.versions:
            raise RuntimeError(f"{len(versions)} model versions, expected {shape.versions}")
