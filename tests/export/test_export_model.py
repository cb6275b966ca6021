"""Registered-model exports: all versions, a VERSION subset, an ALIAS subset, gaps kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from arcuate.engine.export import export_model
from arcuate.format.schema import FORMAT_VERSION, parse_description
from arcuate.plan.ops import ExportModel
from tests.export.export_helpers import (
    EXPERIMENT,
    MODEL,
    Registered,
    Tricky,
    reassemble,
    rows_deltalake,
    rows_polars,
)


def ms(value: datetime) -> int:
    assert value.utcoffset() == timedelta(0)
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def kv(items: list[dict[str, Any]]) -> dict[str, str]:
    return {i["key"]: i["value"] for i in items}


def export(tricky: Tricky, workdir: Path, op: ExportModel, table: str) -> tuple[str, Any]:
    ctx = tricky.context(workdir / "warehouse")
    stream = export_model(op, ctx)
    written = ctx.table_store.write(("models", table), stream.batches, content=stream.content)
    return written.location, stream


def check(
    rows: list[dict[str, Any]], tricky: Tricky, registered: Registered, wanted: set[int]
) -> None:
    client = tricky.store.client()
    records, files = reassemble(rows)
    assert set(records) == {str(v) for v in wanted}
    rm = client.get_registered_model(MODEL)
    for v in wanted:
        row = records[str(v)]
        assert row["kind"] == "model_version"
        mv = client.get_model_version(MODEL, str(v))
        info = row["model_version"]
        assert info["name"] == MODEL
        assert info["model_description"] == "Churn model ✓" == rm.description
        assert kv(info["model_tags"]) == {"owner": "ana ✓"}
        assert info["version"] == v
        assert info["description"] == f"version {v} ✓"
        assert kv(info["tags"]) == {"v": str(v)} == mv.tags
        assert sorted(info["aliases"]) == sorted(mv.aliases)
        assert info["stage"] == mv.current_stage
        assert info["status"] == "READY"
        assert ms(info["creation_time"]) == mv.creation_timestamp
        assert ms(info["last_updated_time"]) == mv.last_updated_timestamp
        assert info["user_id"] == mv.user_id
        assert info["source"] == registered.sources[v] == mv.source
        assert info["run_id"] == (mv.run_id or None)  # REST returns "" for none
        assert info["model_id"] == (tricky.model_id if v == 1 else None)
        got = {p: d for (k, owner, p), d in files.items() if k == str(v)}
        assert {o for (k, o, _p) in files if k == str(v)} <= {"model"}
        assert got == registered.versions[v], f"files of version {v}"
        if registered.run_ids[v]:
            assert row["experiment"]["name"] == EXPERIMENT
            assert row["run"]["run_id"] == registered.run_ids[v]
            assert len(row["run"]["metrics"]) > 0
            assert row["run"]["logged_models"][0]["model_id"] == tricky.model_id
        else:
            assert row["experiment"] is None and row["run"] is None


def test_all_versions_keep_their_numbers_and_gaps(
    tricky: Tricky, registered: Registered, workdir: Path
) -> None:
    location, stream = export(tricky, workdir, ExportModel(MODEL), "all")
    rows = rows_deltalake(location)
    check(rows, tricky, registered, {1, 2, 3, 5})
    check(rows_polars(location), tricky, registered, {1, 2, 3, 5})
    records, _ = reassemble(rows)
    assert records["2"]["model_version"]["aliases"] == ["champion"]
    assert records["5"]["model_version"]["aliases"] == ["chällenger"]
    assert records["3"]["model_version"]["stage"] == "Production"
    assert [r["key"] for r in rows if r["kind"] == "model_version"] == ["1", "2", "3", "5"]
    assert stream.versions == 4
    assert stream.files == sum(len(f) for f in registered.versions.values())
    from deltalake import DeltaTable

    assert parse_description(DeltaTable(location).metadata().description) == (FORMAT_VERSION, "model")


def test_version_subset(tricky: Tricky, registered: Registered, workdir: Path) -> None:
    location, stream = export(tricky, workdir, ExportModel(MODEL, versions=(5, 3)), "some")
    check(rows_deltalake(location), tricky, registered, {3, 5})
    assert stream.versions == 2


def test_alias_subset(tricky: Tricky, registered: Registered, workdir: Path) -> None:
    op = ExportModel(MODEL, aliases=("chällenger", "champion"))
    location, _ = export(tricky, workdir, op, "aliased")
    check(rows_deltalake(location), tricky, registered, {2, 5})


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (ExportModel("chürn-classifer"), "registered model 'chürn-classifer' does not exist"),
        (ExportModel(MODEL, versions=(4,)), "has no version 4 (versions: 1, 2, 3, 5)"),
        (ExportModel(MODEL, versions=(9,)), "has no version 9"),
        (
            ExportModel(MODEL, aliases=("champ",)),
            "has no alias 'champ' (aliases: champion, chällenger)",
        ),
    ],
)
def test_missing_model_version_or_alias_is_a_clear_error_that_writes_nothing(
    tricky: Tricky, registered: Registered, workdir: Path, op: ExportModel, message: str
) -> None:
    from arcuate.errors import NotFoundError

    ctx = tricky.context(workdir / "warehouse")
    with pytest.raises(NotFoundError) as info:
        export_model(op, ctx)
    assert message in str(info.value)
    if op.model != MODEL:
        assert f"did you mean {MODEL!r}?" in str(info.value)
    assert not (workdir / "warehouse").exists()
