"""Issue 13's first part: today's code paths on the production topology, through execute().

MLflow on PostgreSQL, read and written directly (``postgresql://``) and behind a real
``mlflow server`` whose artifacts live in S3 (moto). The content is the tricky experiment and
registered model; exports are checked row by row and byte by byte as in tests/export, round
trips are compared deeply as in tests/imports (everything MLflow's API shows, keyed by source
id, ``arcuate.*`` provenance left out).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import arcuate
from tests.export.export_helpers import EXPERIMENT, MODEL, Tricky, reassemble, rows_deltalake
from tests.export.test_export_experiment import check_rows
from tests.export.test_export_model import check as check_model_rows
from tests.imports.import_helpers import (
    assert_same,
    snapshot_experiment,
    snapshot_model,
    store_state,
)
from tests.imports.test_import_round_trip import _check_model
from tests.topology.topology_helpers import Shared, share_with_statements

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


def _check_export(provider: Tricky, shared: Shared) -> None:
    """The shared tables hold the provider's experiment and every model version, byte for byte."""
    exp, model = shared.exported
    assert (exp["runs"], model["versions"]) == (3, 4)
    check_rows(rows_deltalake(exp["location"]), provider)
    assert provider.registered is not None
    check_model_rows(rows_deltalake(model["location"]), provider, provider.registered, {1, 2, 3, 5})


def _import(store: Any, shared: Shared, experiment: str, model: str) -> list[dict[str, Any]]:
    """The recipient's own words; the two import summaries."""
    results = arcuate.execute(
        f"CREATE EXPERIMENT '{experiment}' AS '{shared.experiment}';\n"
        f"CREATE MODEL '{model}' AS '{shared.model}'",
        tracking_uri=store.tracking_uri,
        registry_uri=store.registry_uri,
        progress=False,
    )
    return [r.summary for r in results]


def _check_round_trip(provider: Tricky, store: Any, experiment: str, model: str) -> None:
    """The recipient equals the provider in everything MLflow's API shows."""
    assert_same(
        snapshot_experiment(store, experiment, imported=True),
        snapshot_experiment(provider.store, EXPERIMENT, imported=False),
    )
    target, source = snapshot_model(store, model), snapshot_model(provider.store, MODEL)
    for snap in (target, source):
        for mv in snap["versions"].values():
            mv.pop("run_id"), mv.pop("source")  # mapped to the recipient's runs (checked apart)
    assert_same(target, source)


def _s3_keys(s3: Any, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", ())]


def test_export_from_postgres_directly(pg_provider: Tricky, pg_share: Shared) -> None:
    """CREATE SHARE against ``postgresql://`` with the artifacts in S3."""
    assert pg_provider.store.tracking_uri.startswith("postgresql://")
    assert (
        pg_provider.store.client()
        .get_run(pg_provider.parent_id)
        .info.artifact_uri.startswith("s3://")
    )
    _check_export(pg_provider, pg_share)


def test_round_trip_into_postgres_directly(
    pg_provider: Tricky, pg_share: Shared, pg_store: Any, s3: Any
) -> None:
    """Import into ``postgresql://``, into an experiment whose artifacts live in S3."""
    prefix = f"recipient/{uuid.uuid4().hex}"
    pg_store.client().create_experiment("imported", artifact_location=f"s3://{s3.bucket}/{prefix}")
    exp, model = _import(pg_store, pg_share, "imported", "churn")
    assert (exp["added"], model["added"]) == (3, 4)
    assert "version_map" not in model
    _check_round_trip(pg_provider, pg_store, "imported", "churn")
    _check_model(pg_provider, pg_store, "churn", "imported")  # lineage, files of each version
    keys = _s3_keys(s3, prefix)
    assert any(k.endswith("/artifacts/big/blob.bin") for k in keys), keys
    # again: nothing changes
    state = store_state(pg_store)
    again = _import(pg_store, pg_share, "imported", "churn")
    assert [s["unchanged"] for s in again] == [3, 4]
    assert store_state(pg_store) == state


def test_round_trip_into_postgres_backed_server(
    pg_provider: Tricky, pg_share: Shared, mlflow_server_pg: Any, s3: Any
) -> None:
    """Import over REST into ``mlflow server`` on PostgreSQL, artifacts proxied to S3."""
    exp, model = _import(mlflow_server_pg, pg_share, "served", "served-model")
    assert (exp["added"], model["added"]) == (3, 4)
    _check_round_trip(pg_provider, mlflow_server_pg, "served", "served-model")
    client = mlflow_server_pg.client()
    eid = client.get_experiment_by_name("served").experiment_id
    (parent,) = (
        r
        for r in client.search_runs([eid])
        if r.data.tags["arcuate.source_run_id"] == pg_provider.parent_id
    )
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:/")
    versions = snapshot_model(mlflow_server_pg, "served-model")["versions"]
    assert versions[2]["source"] == f"runs:/{parent.info.run_id}/model"
    assert versions[5]["source"] == f"{parent.info.artifact_uri}/a/b"
    run_path = f"server/{eid}/{parent.info.run_id}/artifacts/"
    assert f"{run_path}big/blob.bin" in _s3_keys(s3, run_path)


def test_export_from_behind_postgres_backed_server(
    server_provider: Tricky, workdir: Path, pg_store: Any
) -> None:
    """CREATE SHARE against a PostgreSQL-backed server (REST, artifacts proxied from S3), then
    the round trip into ``postgresql://``."""
    from arcuate.backends.sharing.server import serve_in_thread

    handle = serve_in_thread(str(workdir / "shares.yaml"))
    try:
        shared = share_with_statements(server_provider.store, workdir, handle.endpoint)
        _check_export(server_provider, shared)
        exp, model = _import(pg_store, shared, "from-server", "from-server-model")
    finally:
        handle.stop()
    assert (exp["added"], model["added"]) == (3, 4)
    _check_round_trip(server_provider, pg_store, "from-server", "from-server-model")
    _, files = reassemble(rows_deltalake(shared.exported[0]["location"]))
    assert files[(server_provider.parent_id, "artifacts", "big/blob.bin")]


def test_bulk_path_into_postgres_equals_the_provider(
    pg_provider: Tricky, pg_share: Shared, pg_store: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk path (set-based SQL) into ``postgresql://``, files into S3: the same as the
    provider in everything MLflow's API shows; again, nothing changes."""
    monkeypatch.setenv("ARCUATE_IMPORT_PATH", "bulk")  # a ConfigurationError if not eligible
    prefix = f"recipient/{uuid.uuid4().hex}"
    pg_store.client().create_experiment("imported", artifact_location=f"s3://{s3.bucket}/{prefix}")
    exp, model = _import(pg_store, pg_share, "imported", "churn")
    assert (exp["added"], model["added"]) == (3, 4)
    _check_round_trip(pg_provider, pg_store, "imported", "churn")
    _check_model(pg_provider, pg_store, "churn", "imported")
    keys = _s3_keys(s3, prefix)
    assert any(k.endswith("/artifacts/big/blob.bin") for k in keys), keys
    state = store_state(pg_store)
    again = _import(pg_store, pg_share, "imported", "churn")
    assert [s["unchanged"] for s in again] == [3, 4]
    assert store_state(pg_store) == state


def test_a_failed_upload_to_s3_leaves_no_run_and_no_object(
    pg_provider: Tricky, pg_share: Shared, pg_store: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk path sends a batch's rows while its files go up to S3: one upload fails, so
    the transaction is rolled back, the files that went up are taken back, and the error is
    the upload's; the same statement then imports everything."""
    from arcuate.backends.mlflow.objects import S3Repo

    monkeypatch.setenv("ARCUATE_IMPORT_PATH", "bulk")
    prefix = f"recipient/{uuid.uuid4().hex}"
    client = pg_store.client()
    eid = client.create_experiment("upload-fails", artifact_location=f"s3://{s3.bucket}/{prefix}")
    real = S3Repo.put_spooled
    calls: list[str] = []

    def flaky(self: Any, f: dict[str, Any], path: str) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError("the store refused the third file")
        real(self, f, path)

    monkeypatch.setattr(S3Repo, "put_spooled", flaky)
    with pytest.raises(arcuate.ArcuateError, match="the store refused the third file"):
        _import(pg_store, pg_share, "upload-fails", "upload-fails-model")
    assert len(calls) >= 3
    assert client.search_runs([eid]) == []
    assert _s3_keys(s3, prefix) == []
    monkeypatch.setattr(S3Repo, "put_spooled", real)
    exp, _model = _import(pg_store, pg_share, "upload-fails", "upload-fails-model")
    assert exp["added"] == 3
    _check_round_trip(pg_provider, pg_store, "upload-fails", "upload-fails-model")


@pytest.fixture(scope="module")
def s3_shared(
    pg_provider: Tricky, s3: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shared]:
    """The PostgreSQL provider's content shared from a warehouse in S3, and served."""
    from arcuate.backends.sharing.server import serve_in_thread

    root = tmp_path_factory.mktemp("s3-share")
    handle = serve_in_thread(str(root / "shares.yaml"))
    try:
        yield share_with_statements(
            pg_provider.store, root, handle.endpoint, warehouse=f"s3://{s3.bucket}/warehouse"
        )
    finally:
        handle.stop()


def test_share_written_to_a_warehouse_in_s3(pg_provider: Tricky, s3_shared: Shared) -> None:
    """CREATE SHARE with ``warehouse='s3://...'``: the tables land in S3, byte for byte."""
    assert all(s["location"].startswith("s3://arcuate/warehouse/") for s in s3_shared.exported)
    _check_export(pg_provider, s3_shared)


def test_warehouse_in_s3_served_to_the_official_client(s3_shared: Shared) -> None:
    import delta_sharing

    frame = delta_sharing.load_as_pandas(s3_shared.experiment)
    assert len(frame) == len(rows_deltalake(s3_shared.exported[0]["location"]))


def test_warehouse_in_s3_imported_by_arcuate(
    pg_provider: Tricky, s3_shared: Shared, pg_store: Any
) -> None:
    """The recipient's own statements read the tables in S3 through the store's pre-signed
    URLs; what lands equals the provider in everything MLflow's API shows."""
    exp, model = _import(pg_store, s3_shared, "from-s3", "from-s3-model")
    assert (exp["added"], model["added"]) == (3, 4)
    _check_round_trip(pg_provider, pg_store, "from-s3", "from-s3-model")
    _check_model(pg_provider, pg_store, "from-s3-model", "from-s3")


def test_metric_rows_formatted_for_copy_read_back_exactly(pg_store: Any) -> None:
    """The bulk path has Arrow format metric rows for PostgreSQL's COPY: keys with the
    characters COPY escapes and the floats hardest to spell (NaN, ±inf stored as ±max, -0.0,
    the smallest subnormal, 0.1 + 0.2) read back exactly, as the rows psycopg formats
    (``write_row``) do."""
    import sqlalchemy as sa

    from arcuate.backends.mlflow import bulk
    from arcuate.backends.mlflow.metric_rows import metric_block
    from arcuate.format.history import MetricColumns

    url = pg_store.tracking_uri
    engine = sa.create_engine(
        url if "+" in url.split("://")[0] else url.replace("://", "+psycopg://", 1)
    )
    meta = sa.MetaData()
    columns = [
        sa.Column("key", sa.String(250)),
        sa.Column("value", sa.Float(precision=53)),
        sa.Column("timestamp", sa.BigInteger),
        sa.Column("step", sa.BigInteger),
        sa.Column("is_nan", sa.Boolean),
        sa.Column("run_uuid", sa.String(32)),
    ]
    mine = sa.Table("copy_text", meta, *columns)
    theirs = sa.Table("copy_rows", meta, *(c.copy() for c in columns))
    points = [  # (key, value, timestamp, step, run)
        ("tab\there", 0.1 + 0.2, 1, 0, "a"),
        ("back\\slash\\N", float("nan"), 2, -1, "b"),
        ("new\nline\rcr", 5e-324, 3, 2**62, "c"),
        ("plain", float("inf"), -(2**62), 4, "d"),
        ("ünïcode ✓", float("-inf"), 5, 5, "e"),
        ("tab\there", 1.5, 6, 6, "a"),  # a key again in a run
        ("zero", -0.0, 7, 7, "f"),
    ]
    blocks = []
    for run in sorted({p[4] for p in points}):
        history = MetricColumns.of(
            [{"key": k, "value": v, "timestamp": t, "step": s, "model_id": None,
              "dataset_name": None, "dataset_digest": None}
             for k, v, t, s, r in points if r == run]
        )  # fmt: skip
        blocks.append(metric_block(history, run * 32)[0])
    rows = [row for block in blocks for row in block.tuples()]
    meta.create_all(engine)
    try:
        with engine.begin() as conn:
            bulk._insert_histories(conn, mine, blocks)  # the text Arrow made
            bulk._copy(conn, theirs, bulk._METRIC_COLUMNS[::-1], [r[::-1] for r in rows])
        with engine.connect() as conn:
            got = [tuple(r) for r in conn.execute(sa.select(mine).order_by(mine.c.timestamp))]
            want = [tuple(r) for r in conn.execute(sa.select(theirs).order_by(theirs.c.timestamp))]
    finally:
        meta.drop_all(engine)
        engine.dispose()
    assert got == want == sorted(rows, key=lambda r: r[2])
    assert [str(r[1]) for r in got] == [str(r[1]) for r in sorted(rows, key=lambda r: r[2])]
    assert [r[4] for r in got].count(True) == 1 and str(got[-1][1]) == "-0.0"


def _objects_by_path(s3: Any, prefix: str) -> Counter[tuple[str, str, bytes, str]]:
    """The objects under ``prefix`` as (run or logged model, path under ``artifacts/``, bytes,
    content type): the ids in the keys differ between two imports, nothing else may."""
    c = s3.client()
    out: Counter[tuple[str, str, bytes, str]] = Counter()
    for key in _s3_keys(s3, prefix):
        owner, sep, path = key[len(prefix) + 1 :].partition("/artifacts/")
        assert sep, key
        got = c.get_object(Bucket=s3.bucket, Key=key)
        kind = "model" if owner.startswith("models/") else "run"
        out[(kind, path, got["Body"].read(), got.get("ContentType", ""))] += 1
    return out


@pytest.mark.parametrize("path", ["api", "bulk"])
def test_import_into_s3_puts_the_objects_mlflows_repository_puts(
    pg_share: Shared, pg_store: Any, s3: Any, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """arcuate's S3 repository (the default) and MLflow's (``ARCUATE_MLFLOW_CLIENT=mlflow``)
    write the same objects, byte for byte, at the same paths with the same content types."""
    monkeypatch.setenv("ARCUATE_IMPORT_PATH", path)
    client = pg_store.client()
    got = {}
    for mode in ("rest", "mlflow"):
        monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", mode)
        prefix = f"recipient/{uuid.uuid4().hex}"
        client.create_experiment(f"objects-{mode}", artifact_location=f"s3://{s3.bucket}/{prefix}")
        exp, _model = _import(pg_store, pg_share, f"objects-{mode}", f"objects-{mode}-model")
        assert exp["added"] == 3
        got[mode] = _objects_by_path(s3, prefix)
    assert got["rest"] == got["mlflow"]
    assert any(p == "big/blob.bin" for (_k, p, _b, _t) in got["rest"])
