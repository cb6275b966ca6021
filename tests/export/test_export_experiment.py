"""Done-when of issue 2: a tricky experiment exported to Delta, read back byte for byte."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from arcuate.engine.export import export_experiment
from arcuate.format.schema import FORMAT_VERSION, parse_description
from arcuate.plan.ops import ExportExperiment
from tests.export.export_helpers import (
    CHUNK,
    EXPERIMENT,
    LONG_PARAM,
    Tricky,
    reassemble,
    rows_deltalake,
    rows_duckdb,
    rows_polars,
)

TABLE = ("ml", "tricky")


def ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    assert value.utcoffset() == timedelta(0), "timestamps must be timezone-aware UTC"
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def kv(items: list[dict[str, Any]]) -> dict[str, str]:
    out = {i["key"]: i["value"] for i in items}
    assert len(out) == len(items), "duplicate keys"
    return out


def point(m: dict[str, Any]) -> tuple[str, Any, int, int | None]:
    value = "nan" if math.isnan(m["value"]) else m["value"]
    return (m["key"], value, m["step"], ms(m["timestamp"]))


def expected_points(
    points: list[tuple[str, float, int, int]],
) -> Counter[tuple[str, Any, int, int]]:
    return Counter((k, "nan" if math.isnan(v) else v, s, t) for k, v, s, t in points)


@pytest.fixture
def exported(tricky: Tricky, workdir: Path) -> tuple[str, Any]:
    ctx = tricky.context(workdir / "warehouse")
    stream = export_experiment(ExportExperiment(EXPERIMENT), ctx)
    written = ctx.table_store.write(TABLE, stream.batches, content=stream.content)
    return written.location, stream


def check_rows(rows: list[dict[str, Any]], tricky: Tricky) -> None:
    client = tricky.store.client()
    records, files = reassemble(rows)
    run_ids = {tricky.parent_id, tricky.child_id, tricky.plain_id}
    assert set(records) == run_ids, "active runs only: the deleted run is not exported"
    everything = [*tricky.model_files.values()]
    everything += [d for a in tricky.artifacts.values() for d in a.values()]
    n_chunks = sum(math.ceil(len(d) / CHUNK) for d in everything if len(d) > CHUNK)
    assert sum(1 for r in rows if r["kind"] == "chunk") == n_chunks >= 4

    exp = client.get_experiment(tricky.experiment_id)
    for rid in run_ids:
        row = records[rid]
        assert row["kind"] == "run"
        assert row["model_version"] is None
        assert row["exported_at"].utcoffset() == timedelta(0)
        e = row["experiment"]
        assert (e["experiment_id"], e["name"], e["lifecycle_stage"]) == (
            exp.experiment_id,
            EXPERIMENT,
            "active",
        )
        assert kv(e["tags"]) == exp.tags

        src = client.get_run(rid)
        run = row["run"]
        assert run["run_id"] == rid
        assert run["run_name"] == src.info.run_name
        assert run["status"] == src.info.status
        assert ms(run["start_time"]) == src.info.start_time
        assert ms(run["end_time"]) == src.info.end_time
        assert run["user_id"] == src.info.user_id
        assert run["lifecycle_stage"] == "active"
        assert kv(run["params"]) == src.data.params
        assert kv(run["tags"]) == src.data.tags
        got = Counter(point(m) for m in run["metrics"] if m["model_id"] is None)
        linked = [m for m in run["metrics"] if m["model_id"] is not None]
        got.update(point(m) for m in linked)
        assert got == expected_points(tricky.metric_points[rid]), "full history, every point"
        art = {p: d for (k, owner, p), d in files.items() if k == rid and owner == "artifacts"}
        assert art == tricky.artifacts[rid], "every artifact, byte for byte"

    parent = records[tricky.parent_id]["run"]
    child = records[tricky.child_id]["run"]
    assert child["parent_run_id"] == tricky.parent_id
    assert parent["parent_run_id"] is None
    assert kv(parent["params"])["long"] == LONG_PARAM and len(LONG_PARAM) == 6000
    assert kv(parent["params"])["empty"] == ""
    assert kv(parent["tags"])["multi line"] == "a\nb"
    loss = [point(m) for m in parent["metrics"] if m["key"] == "loss"]
    assert ("loss", "nan", -1, 1_700_000_000_001) in loss
    assert ("loss", 1.5, -5, 1_700_000_000_000) in loss and (
        "loss",
        0.5,
        -5,
        1_700_000_000_050,
    ) in loss
    assert ("loss", 1e-300, 3, 1_700_000_000_004) in loss
    assert (
        sum(1 for m in parent["metrics"] if m["key"] == "nan_only" and math.isnan(m["value"])) == 3
    )
    assert min(m["step"] for m in child["metrics"]) == -2
    plain = records[tricky.plain_id]["run"]
    assert plain["status"] == "FAILED" and plain["run_name"] == "no artifacts"
    assert records[tricky.plain_id]["files"] == []

    # dataset input, with its tags
    (ds,) = parent["inputs"]
    src_ds = client.get_run(tricky.parent_id).inputs.dataset_inputs[0]
    assert ds["name"] == "train ✓" == src_ds.dataset.name
    for f in ("digest", "source_type", "source", "schema", "profile"):
        assert ds[f] == getattr(src_ds.dataset, f), f
    assert kv(ds["tags"]) == {t.key: t.value for t in src_ds.tags}
    assert kv(ds["tags"])["mlflow.data.context"] == "training"
    assert child["inputs"] == [] and child["logged_models"] == []

    # the MLflow 3 logged model: metadata, output step, linked metric, every file
    lm = client.get_logged_model(tricky.model_id)
    (model,) = parent["logged_models"]
    assert model["model_id"] == tricky.model_id
    assert model["name"] == "model" == lm.name
    assert model["status"] == "READY"
    assert model["model_type"] == lm.model_type
    assert ms(model["creation_time"]) == lm.creation_timestamp
    assert model["step"] == 0
    assert kv(model["tags"]) == lm.tags and kv(model["params"]) == lm.params
    linked = {
        (
            m["key"],
            m["step"],
            ms(m["timestamp"]),
            m["model_id"],
            m["dataset_name"],
            m["dataset_digest"],
        )
        for m in parent["metrics"]
        if m["model_id"] is not None
    }
    assert linked == {
        (m.key, m.step, m.timestamp, m.model_id, m.dataset_name, m.dataset_digest)
        for m in lm.metrics
    }, "every point of the logged model's metrics is linked, NaN included"
    assert any(k == "nan_only" for k, *_ in linked)
    (acc,) = [m for m in parent["metrics"] if m["key"] == "accuracy"]
    assert (acc["key"], acc["value"], acc["step"]) == ("accuracy", 0.75, 2)
    assert (acc["model_id"], acc["dataset_name"]) == (tricky.model_id, "train ✓")
    assert acc["dataset_digest"] == src_ds.dataset.digest
    owner = f"logged_models/{tricky.model_id}"
    model_files = {p: d for (k, o, p), d in files.items() if o == owner}
    assert model_files == tricky.model_files
    assert "MLmodel" in model_files
    assert all(k == tricky.parent_id for (k, o, _p) in files if o == owner)

    # edge files: 0 bytes inline, exactly one chunk inline, larger one chunked
    entries = {
        f["path"]: f for f in records[tricky.parent_id]["files"] if f["owner"] == "artifacts"
    }
    assert entries["empty.bin"]["size"] == 0 and entries["empty.bin"]["chunks"] == 0
    assert entries["exact.bin"]["size"] == CHUNK and entries["exact.bin"]["chunks"] == 0
    assert entries["big/blob.bin"]["data"] is None and entries["big/blob.bin"]["chunks"] == 4
    assert "dïr ✓/naïve file.txt" in entries and "a/b/c/deep.txt" in entries


def test_tricky_experiment_is_in_the_table_byte_for_byte(
    tricky: Tricky, exported: tuple[str, Any]
) -> None:
    location, stream = exported
    rows = rows_deltalake(location)
    check_rows(rows, tricky)
    check_rows(rows_polars(location), tricky)

    assert stream.runs == 3
    expected_files = sum(len(a) for a in tricky.artifacts.values()) + len(tricky.model_files)
    assert stream.files == expected_files
    assert stream.bytes == sum(len(d) for a in tricky.artifacts.values() for d in a.values()) + sum(
        len(d) for d in tricky.model_files.values()
    )
    from deltalake import DeltaTable

    meta = DeltaTable(location).metadata()
    assert parse_description(meta.description) == (FORMAT_VERSION, "experiment")


def test_a_third_reader_sees_the_same_bytes(tricky: Tricky, exported: tuple[str, Any]) -> None:
    """DuckDB reads the Parquet files itself: the files reassemble to the same bytes."""
    location, _ = exported
    _, by_delta = reassemble(rows_deltalake(location))
    _, by_duck = reassemble(rows_duckdb(location))
    assert by_duck == by_delta


def test_filter_exports_matching_runs_only(tricky: Tricky, workdir: Path) -> None:
    ctx = tricky.context(workdir / "warehouse")
    stream = export_experiment(ExportExperiment(EXPERIMENT, "params.kind = 'plain'"), ctx)
    written = ctx.table_store.write(("ml", "plain"), stream.batches, content=stream.content)
    records, _ = reassemble(rows_deltalake(written.location))
    assert list(records) == [tricky.plain_id]
    assert stream.runs == 1


def test_progress_bar_when_asked(
    tricky: Tricky, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tricky.context(workdir / "warehouse", progress=True)
    stream = export_experiment(ExportExperiment(EXPERIMENT, "params.kind = 'child'"), ctx)
    ctx.table_store.write(("ml", "child"), stream.batches, content=stream.content)
    assert "experiment" in capsys.readouterr().err
    ctx = tricky.context(workdir / "warehouse", progress=False)
    stream = export_experiment(ExportExperiment(EXPERIMENT, "params.kind = 'child'"), ctx)
    ctx.table_store.write(("ml", "child"), stream.batches, content=stream.content)
    assert capsys.readouterr().err == ""
