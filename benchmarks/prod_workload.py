"""The production benchmark's source data and its checks (setup and verification: never timed).

The provider is an ``mlflow server`` on PostgreSQL with its artifacts in S3 (moto), as
:mod:`benchmarks.topology` starts it. An experiment of a :class:`~benchmarks.shapes.Shape` is
made there as a user's would be: the experiment through the server's REST API (so its artifact
location is the server's ``mlflow-artifacts:/<id>``), its runs, params, tags and metrics
copied into the provider's PostgreSQL database with ``COPY`` (the REST API would take minutes
for 200,000 points), and its files put into the S3 prefix the server maps that location to.
The rows are the same deterministic ones :mod:`benchmarks.workload` writes into sqlite.

A model is a registered model whose versions each come from a run of its own experiment, with
``model/MLmodel`` and ``model/model.bin`` (``model_bytes``) among the run's artifacts.

:func:`check` counts what a destination experiment (or model) holds in the recipient's
database and artifact store, against what the provider holds, so that a fast wrong copy
cannot pass: runs, metric points per (run, key), the sum of every metric value, params,
tags that are the source's, model versions and artifact files with their bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from benchmarks.shapes import Shape, mlmodel_text
from benchmarks.topology import Topology
from benchmarks.workload import _run_rows, file_blocks, file_path, run_id

_RUN_COLUMNS = (
    "run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, "
    "end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time"
)


@dataclass(frozen=True)
class Seeded:
    """What the provider holds for one workload: an experiment, or a model and its runs."""

    shape: Shape
    experiment: str
    experiment_id: str
    model: str | None = None

    @property
    def label(self) -> str:
        return f"model {self.model}" if self.model else f"experiment {self.experiment}"


def _copy_rows(url: str, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    """``COPY`` rows into one table of a PostgreSQL database (one transaction)."""
    import psycopg

    statement = f"COPY {table} ({columns}) FROM STDIN"
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cur,
        cur.copy(statement) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _insert(url: str, shape: Shape, experiment_id: str, root: str) -> None:
    """The runs of ``shape`` with their tags, params and metrics, straight into PostgreSQL."""
    runs, tags, params, metrics, latest = [], [], [], [], []
    for i in range(shape.run_count):
        run, t, p, m, lm = _run_rows(shape, i, experiment_id, root)
        runs.append(run)
        tags += t
        params += p
        metrics += [(k, v, ts, rid, step, bool(nan)) for k, v, ts, rid, step, nan in m]
        latest += [(k, v, ts, step, bool(nan), rid) for k, v, ts, step, nan, rid in lm]
    _copy_rows(url, "runs", _RUN_COLUMNS, runs)
    _copy_rows(url, "tags", "key, value, run_uuid", tags)
    _copy_rows(url, "params", "key, value, run_uuid", params)
    _copy_rows(url, "metrics", "key, value, timestamp, run_uuid, step, is_nan", metrics)
    _copy_rows(url, "latest_metrics", "key, value, timestamp, step, is_nan, run_uuid", latest)


def _salted(shape: Shape, salt: str) -> Shape:
    """The shape under another name: run ids (and file bytes) differ between workloads."""
    import dataclasses

    return dataclasses.replace(shape, name=f"{shape.name}:{salt}")


def _s3_prefix(location: str) -> str:
    """The S3 key prefix of an artifact location: ``s3://<bucket>/<key>``, or the provider
    server's ``mlflow-artifacts:/<path>`` (served from ``s3://<bucket>/provider/<path>``)."""
    parsed = urlparse(location)
    if parsed.scheme == "s3":
        return parsed.path.strip("/")
    return f"provider/{parsed.path.strip('/')}".rstrip("/")


def _files(shape: Shape, i: int) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of each file of run ``i``."""
    if shape.is_model:
        yield "model/MLmodel", mlmodel_text(i + 1)
        yield "model/model.bin", b"".join(file_blocks(shape.model_bytes, shape.name, i, "m"))
        return
    for index, size in enumerate(shape.files):
        yield file_path(index), b"".join(file_blocks(size, shape.name, i, index))


def _upload(topo: Topology, shape: Shape, prefix: str) -> None:
    """Every run's files into the provider's S3 prefix (a few threads: moto is slow per put)."""
    client = topo.s3.client()
    jobs = [
        (f"{prefix}/{run_id(shape, i)}/artifacts/{path}", data)
        for i in range(shape.run_count)
        for path, data in _files(shape, i)
    ]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda j: client.put_object(Bucket=topo.s3.bucket, Key=j[0], Body=j[1]),
                      jobs))  # fmt: skip


def seed(
    topo: Topology,
    shape: Shape,
    experiment: str,
    *,
    model: str | None = None,
    location: str | None = None,
) -> Seeded:
    """Make ``experiment`` (and, for a model shape, registered ``model``) in the provider;
    its artifacts at ``location`` (an ``s3://`` URI in the topology's bucket), or by default
    where the server puts them (``mlflow-artifacts:/<id>``, proxied by the server)."""
    from mlflow import MlflowClient

    url = topo.provider.url
    client = MlflowClient(url, url)
    tags = {"bench.shape": shape.name}
    eid = client.create_experiment(experiment, artifact_location=location, tags=tags)
    root = client.get_experiment(eid).artifact_location
    salted = _salted(shape, experiment)
    _insert(topo.provider_db, salted, eid, root)
    _upload(topo, salted, _s3_prefix(root))
    if model is not None:
        client.create_registered_model(model, description="benchmark model")
        for i in range(shape.versions):
            rid = run_id(salted, i)
            client.create_model_version(
                model, f"{root}/{rid}/artifacts/model", rid, description=f"version {i + 1}"
            )
    seeded = Seeded(shape, experiment, eid, model)
    _check_source(client, seeded)
    return seeded


def _check_source(client: Any, seeded: Seeded) -> None:
    """The seeded workload reads back through the provider's REST API as intended."""
    shape = seeded.shape
    found = client.search_runs([seeded.experiment_id], max_results=shape.run_count + 1)
    if len(found) != shape.run_count:
        raise RuntimeError(f"seeded {len(found)} runs, expected {shape.run_count}")
    run = found[0]
    if len(run.data.params) != shape.params or len(run.data.metrics) != shape.metrics:
        raise RuntimeError(f"run {run.info.run_id} reads back wrong: {run.data}")
    history = client.get_metric_history(run.info.run_id, "metric_00")
    if len(history) != shape.steps:
        raise RuntimeError(f"metric history has {len(history)} points, not {shape.steps}")
    listed = client.list_artifacts(run.info.run_id)
    if not listed:
        raise RuntimeError(f"run {run.info.run_id} lists no artifacts")


# -- verification ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Counts:
    """What an experiment holds in a store: the figures :func:`check` compares."""

    runs: int
    histories: int
    short_histories: int
    points: int
    value_sum: float
    params: int
    tags: int
    versions: int
    files: int
    file_bytes: int

    def describe(self) -> str:
        text = (
            f"{self.runs} runs, {self.points:,} metric points in {self.histories:,} histories, "
            f"{self.params:,} params, {self.tags:,} tags, {self.files} files "
            f"({self.file_bytes:,} B)"
        )
        return f"{text}, {self.versions} versions" if self.versions else text


#: The runs an experiment (by name) or a registered model (its versions' runs) holds.
_RUNS_OF = {
    "experiment": "SELECT r.run_uuid, r.artifact_uri FROM runs r JOIN experiments e "
    "ON e.experiment_id = r.experiment_id WHERE e.name = %(name)s AND r.lifecycle_stage = 'active'",
    "model": "SELECT r.run_uuid, r.artifact_uri FROM runs r WHERE r.run_uuid IN "
    "(SELECT run_id FROM model_versions WHERE name = %(name)s)",
}
_COUNTS_SQL = """
WITH r AS ({runs}), h AS (
    SELECT m.run_uuid, m.key, count(*) AS n, sum(m.value) AS total
    FROM metrics m JOIN r ON r.run_uuid = m.run_uuid GROUP BY m.run_uuid, m.key
)
SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM h),
       (SELECT count(*) FROM h WHERE n <> %(steps)s), (SELECT coalesce(sum(n), 0) FROM h),
       (SELECT coalesce(sum(total), 0) FROM h),
       (SELECT count(*) FROM params p JOIN r ON r.run_uuid = p.run_uuid),
       (SELECT count(*) FROM tags t JOIN r ON r.run_uuid = t.run_uuid
        WHERE t.key LIKE 'tag\\_%%' OR t.key = 'mlflow.runName')
"""


def _artifact_files(topo: Topology, uris: list[str], side: str, root: Path) -> tuple[int, int]:
    """(files, bytes) under the runs' artifact URIs: S3 prefixes (``s3://``, or the
    server's ``mlflow-artifacts:/``, mapped to the ``side`` server's prefix) or local paths
    (relative ones under ``root``)."""
    files = size = 0
    client = topo.s3.client()
    for uri in uris:
        parsed = urlparse(uri)
        if parsed.scheme in ("s3", "mlflow-artifacts"):
            bucket = parsed.netloc if parsed.scheme == "s3" else topo.s3.bucket
            key = parsed.path.lstrip("/")
            prefix = key if parsed.scheme == "s3" else f"{side}/{key}"
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix.rstrip("/") + "/"
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    files += 1
                    size += obj["Size"]
        else:
            path = Path(parsed.path if parsed.scheme == "file" else uri)
            path = path if path.is_absolute() else root / path
            for f in path.rglob("*") if path.exists() else []:
                if f.is_file():
                    files += 1
                    size += f.stat().st_size
    return files, size


def counts(
    topo: Topology, side: str, name: str, *, kind: str = "experiment", steps: int, root: Path
) -> Counts:
    """What experiment ``name`` (``kind="model"``: the runs of registered model ``name``'s
    versions, and the versions) holds in the ``side`` (provider or recipient) store, with the
    files under those runs' artifact URIs; histories of other than ``steps`` points are
    counted apart."""
    import psycopg

    db_url = topo.provider_db if side == "provider" else topo.recipient_db
    runs_sql = _RUNS_OF[kind]
    args = {"name": name, "steps": steps}
    with psycopg.connect(db_url) as conn:
        figures = conn.execute(_COUNTS_SQL.format(runs=runs_sql), args).fetchone()
        uris = [u for _, u in conn.execute(runs_sql, args)]
        versions = 0
        if kind == "model":
            got = conn.execute("SELECT count(*) FROM model_versions WHERE name = %s", (name,))
            versions = int(got.fetchone()[0])  # type: ignore[index]
    assert figures is not None
    files, size = _artifact_files(topo, uris, side, root)
    runs, histories, short, points, total, params, tags = figures
    return Counts(int(runs), int(histories), int(short), int(points), float(total), int(params),
                  int(tags), versions, files, size)  # fmt: skip


def check(source: Counts, got: Counts, what: str) -> str:
    """One line: ``ok`` and what the destination holds when it holds what the source held,
    else ``MISMATCH`` and every difference."""
    wrong = []
    for name in ("runs", "histories", "points", "params", "tags", "versions", "files",
                 "file_bytes"):  # fmt: skip
        want, have = getattr(source, name), getattr(got, name)
        if want != have:
            wrong.append(f"{name} {have:,} (expected {want:,})")
    if got.short_histories:
        wrong.append(f"{got.short_histories} metric histories of the wrong length")
    if abs(source.value_sum - got.value_sum) > 1e-6 * max(1.0, abs(source.value_sum)):
        wrong.append(f"metric values sum to {got.value_sum!r} (expected {source.value_sum!r})")
    if wrong:
        return f"MISMATCH: {what}: {'; '.join(wrong)}"
    return f"ok: {what}: {got.describe()}"


__all__ = ["Counts", "Seeded", "check", "counts", "seed"]
