"""Helpers of the export tests: the tricky content, and reading tables back independently.

The content is built with MLflow's own APIs (fluent where only the fluent API does it, e.g.
``mlflow.sklearn.log_model``). What the tests expect is read back from MLflow and from the
artifact directories *independently* of arcuate's source.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import arcuate
from arcuate.config import Settings
from arcuate.engine.context import Context
from arcuate.format.schema import CHUNK as CHUNK_KIND
from arcuate.format.schema import FORMAT_VERSION

EXPERIMENT = "/Users/ana@corp.com/chürn ✓"
MODEL = "chürn-classifier"
CHUNK = 4096
LONG_PARAM = ("αβγ-long-" * 700)[:6000]


def files_under(root: str | Path) -> dict[str, bytes]:
    """Every file below ``root`` by relative '/' path, read straight from disk."""
    root = Path(root)
    out: dict[str, bytes] = {}
    if not root.exists():
        return out
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = Path(dirpath) / name
            out[full.relative_to(root).as_posix()] = full.read_bytes()
    return out


def local_path(uri: str) -> str:
    from mlflow.utils.file_utils import local_file_uri_to_path

    return str(local_file_uri_to_path(uri))


def artifact_files(store: Any, uri: str) -> dict[str, bytes]:
    """Every file below artifact ``uri``: read from disk when local, else downloaded through
    MLflow (``s3://``, ``mlflow-artifacts:/``)."""
    import tempfile

    if urlparse(uri).scheme in ("", "file"):
        return files_under(local_path(uri))
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(uri, tracking_uri=store.tracking_uri)
    if not repo.list_artifacts():  # MLflow takes an empty S3 directory for a missing file
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        return files_under(repo.download_artifacts("", dst_path=tmp))


@dataclass
class Tricky:
    """The experiment's source of truth, as MLflow reports it."""

    store: Any
    experiment_id: str
    parent_id: str
    child_id: str
    plain_id: str
    deleted_id: str
    model_id: str
    metric_points: dict[str, list[tuple[str, float, int, int]]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    model_files: dict[str, bytes] = field(default_factory=dict)
    registered: Registered | None = None

    def context(self, warehouse: Path, **kw: Any) -> Context:
        settings = Settings(
            tracking_uri=self.store.tracking_uri,
            registry_uri=self.store.registry_uri,
            warehouse=str(warehouse),
            chunk_bytes=kw.pop("chunk_bytes", CHUNK),
            progress=kw.pop("progress", False),
            **kw,
        )
        return Context(settings)


def _history(client: Any, run_id: str) -> list[tuple[str, float, int, int]]:
    run = client.get_run(run_id)
    points = []
    for key in run.data.metrics:
        points.extend(
            (m.key, m.value, m.step, m.timestamp) for m in client.get_metric_history(run_id, key)
        )
    return points


def build_tricky(store: Any, root: Path, artifact_location: str | None = "") -> Tricky:
    """An experiment with everything that tends to break an exporter.

    ``artifact_location``: "" for a directory under ``root``, None for the store's default (a
    server's proxied artifacts), or any URI (``s3://...``).
    """
    import mlflow
    import numpy as np
    from mlflow.entities import Metric
    from sklearn.linear_model import LogisticRegression

    client = store.client()
    exp_id = client.create_experiment(
        EXPERIMENT,
        artifact_location=(
            str(root / "mlruns" / "tricky") if artifact_location == "" else artifact_location
        ),
        tags={"team": "ünïcode ✓", "note": "x" * 500},
    )
    mlflow.set_experiment(experiment_id=exp_id)

    src = root / "artifacts-src"
    (src / "a" / "b" / "c").mkdir(parents=True)
    (src / "a" / "b" / "c" / "deep.txt").write_text("deep ✓\n", encoding="utf-8")
    (src / "a" / "b" / "sibling.json").write_text('{"k": [1, 2, 3]}')
    (src / "empty.bin").write_bytes(b"")
    (src / "exact.bin").write_bytes(bytes(range(256)) * (CHUNK // 256))  # exactly one chunk
    rng = random.Random(7)
    (src / "big").mkdir()
    (src / "big" / "blob.bin").write_bytes(rng.randbytes(3 * CHUNK + 17))  # 4 chunks
    (src / "dïr ✓").mkdir()
    (src / "dïr ✓" / "naïve file.txt").write_text("naïve\n", encoding="utf-8")

    base_ts = 1_700_000_000_000
    with mlflow.start_run(run_name="parent ✓ run") as parent:
        pid = parent.info.run_id
        mlflow.log_params({"long": LONG_PARAM, "ключ": "значение ✓", "empty": ""})
        mlflow.set_tags({"stage": "train", "multi line": "a\nb", "emoji": "🚀"})
        metrics = [
            Metric("loss", v, base_ts + i, step)
            for i, (step, v) in enumerate(
                [(-5, 1.5), (-1, float("nan")), (0, 0.75), (0, 0.7), (3, 1e-300), (7, -2.5)]
            )
        ]
        metrics += [Metric("nan_only", float("nan"), base_ts + 100 + i, i) for i in range(3)]
        metrics += [Metric("loss", 0.5, base_ts + 50, -5)]  # same step, later timestamp
        client.log_batch(pid, metrics=metrics)
        mlflow.log_artifacts(str(src))

        x = np.array([[0.0], [1.0], [2.0], [3.0]])
        y = np.array([0, 0, 1, 1])
        ds = mlflow.data.from_numpy(x, targets=y, name="train ✓")
        mlflow.log_input(ds, context="training", tags={"split": "80/20"})
        model = LogisticRegression().fit(x, y)
        info = mlflow.sklearn.log_model(model, name="model")
        mlflow.log_metric("accuracy", 0.75, step=2, model_id=info.model_id, dataset=ds)

        with mlflow.start_run(run_name="child", nested=True) as child:
            cid = child.info.run_id
            mlflow.log_param("kind", "child")
            mlflow.log_metric("child_metric", 3.0, step=-2)

    plain = client.create_run(exp_id, run_name="no artifacts", start_time=base_ts - 1000)
    client.log_param(plain.info.run_id, "kind", "plain")
    client.set_terminated(plain.info.run_id, "FAILED", end_time=base_ts - 500)
    gone = client.create_run(exp_id, run_name="deleted run")
    client.delete_run(gone.info.run_id)

    lm = client.get_logged_model(info.model_id)
    t = Tricky(
        store=store,
        experiment_id=exp_id,
        parent_id=pid,
        child_id=cid,
        plain_id=plain.info.run_id,
        deleted_id=gone.info.run_id,
        model_id=info.model_id,
    )
    for rid in (pid, cid, plain.info.run_id):
        t.metric_points[rid] = _history(client, rid)
        t.artifacts[rid] = artifact_files(store, client.get_run(rid).info.artifact_uri)
    t.model_files = artifact_files(store, lm.artifact_location)
    assert t.artifacts[pid]["big/blob.bin"] and len(t.artifacts[pid]["big/blob.bin"]) > CHUNK
    assert t.artifacts[cid] == {} and t.artifacts[plain.info.run_id] == {}
    assert t.model_files, "log_model wrote no files"
    return t


@dataclass
class Registered:
    """A registered model with a gap, aliases, a stage, descriptions and tags."""

    name: str
    versions: dict[int, dict[str, bytes]]  # version -> expected files
    sources: dict[int, str]
    run_ids: dict[int, str | None]


def build_registered(tricky: Tricky, proxied_to: str | None = None) -> Registered:
    """Versions 1, 2, 3, 5 of MODEL (4 deleted): logged model, runs:/, plain path sources.

    ``proxied_to``: the ``--artifacts-destination`` of a server whose runs keep their
    artifacts at ``mlflow-artifacts:/`` URIs; a server takes such a source only with its run,
    so version 3 (no run) names the same directory in the destination itself.
    """
    client = tricky.store.client()
    client.create_registered_model(MODEL, tags={"owner": "ana ✓"}, description="Churn model ✓")
    parent = client.get_run(tricky.parent_id)
    uri = parent.info.artifact_uri
    art_dir = local_path(uri) if urlparse(uri).scheme in ("", "file") else uri
    sources = {
        1: f"models:/{tricky.model_id}",
        2: f"runs:/{tricky.parent_id}/model",
        3: f"{art_dir}/a",
        4: f"{art_dir}/a/b",
        5: f"{art_dir}/a/b",
    }
    if proxied_to and uri.startswith("mlflow-artifacts:/"):
        sources[3] = f"{proxied_to.rstrip('/')}/{uri[len('mlflow-artifacts:/') :]}/a"
    for v in range(1, 6):
        mv = client.create_model_version(
            MODEL,
            sources[v],
            run_id=tricky.parent_id if v != 3 else None,
            description=f"version {v} ✓",
            tags={"v": str(v)},
            model_id=tricky.model_id if v == 1 else None,  # a server insists on it
        )
        assert int(mv.version) == v
    client.delete_model_version(MODEL, "4")
    client.set_registered_model_alias(MODEL, "champion", "2")
    client.set_registered_model_alias(MODEL, "chällenger", "5")
    client.transition_model_version_stage(MODEL, "3", "Production")
    a_files = artifact_files(tricky.store, f"{art_dir}/a")
    ab_files = artifact_files(tricky.store, f"{art_dir}/a/b")
    return Registered(
        name=MODEL,
        versions={1: tricky.model_files, 2: tricky.model_files, 3: a_files, 5: ab_files},
        sources={v: s for v, s in sources.items() if v != 4},
        run_ids={1: tricky.parent_id, 2: tricky.parent_id, 3: None, 5: tricky.parent_id},
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def rows_deltalake(location: str) -> list[dict[str, Any]]:
    from deltalake import DeltaTable

    return DeltaTable(location).to_pyarrow_table().to_pylist()  # type: ignore[no-any-return]


def rows_polars(location: str) -> list[dict[str, Any]]:
    import polars as pl

    return pl.read_delta(location).to_dicts()


def rows_duckdb(location: str) -> list[dict[str, Any]]:
    """The data files of the current version, read by DuckDB's own Parquet reader."""
    import duckdb
    from deltalake import DeltaTable

    files = DeltaTable(location).file_uris()
    con = duckdb.connect()
    try:
        cur = con.execute("SELECT * FROM read_parquet(?)", [files])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def reassemble(
    rows: list[dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str, str], bytes]]:
    """(records by key, file bytes by (key, owner, path)), checking sizes, chunks and SHA-256."""
    records: dict[str, dict[str, Any]] = {}
    chunks: dict[tuple[str, str, str], list[tuple[int, int, bytes]]] = defaultdict(list)
    for row in rows:
        assert row["format_version"] == FORMAT_VERSION
        if row["kind"] == CHUNK_KIND:
            c = row["chunk"]
            chunks[(row["key"], c["owner"], c["path"])].append(
                (c["index"], c["offset"], bytes(c["data"]))
            )
        else:
            assert row["key"] not in records, f"duplicate record {row['key']}"
            assert row["chunk"] is None
            records[row["key"]] = row
    files: dict[tuple[str, str, str], bytes] = {}
    for key, row in records.items():
        for f in row["files"] or ():
            ident = (key, f["owner"], f["path"])
            assert ident not in files, f"duplicate file {ident}"
            if f["data"] is not None:
                assert f["chunks"] == 0
                assert ident not in chunks
                data = bytes(f["data"])
            else:
                parts = sorted(chunks.pop(ident, []))
                assert [p[0] for p in parts] == list(range(f["chunks"])), ident
                offset = 0
                for _index, off, piece in parts:
                    assert off == offset
                    offset += len(piece)
                data = b"".join(p[2] for p in parts)
            assert len(data) == f["size"], ident
            assert hashlib.sha256(data).hexdigest() == f["sha256"], ident
            files[ident] = data
    assert not chunks, f"chunk rows without an owner: {sorted(chunks)}"
    return records, files


def export_from(workdir: Path, uri: str) -> Any:
    """``CREATE SHARE … FROM EXPERIMENT x`` reading the store at ``uri`` (both URIs)."""
    settings = Settings(
        tracking_uri=uri,
        registry_uri=uri,
        warehouse=str(workdir / "wh"),
        catalog=str(workdir / "shares.yaml"),
        progress=False,
    )
    return arcuate.execute("CREATE SHARE s WITH TABLE a.b FROM EXPERIMENT x", settings=settings)
