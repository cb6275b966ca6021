"""An export from a SQL store read by arcuate's own SQL client
(:mod:`arcuate.backends.mlflow.sqlclient`) is the table MLflow's client gives, row for row and
byte for byte, on the tricky experiment (NaN points, a nested run, a deleted run, dataset
inputs with tags, a logged model whose metric points are linked to a dataset)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.mlflow.connect import is_sql
from arcuate.engine.export import export_experiment
from arcuate.plan.ops import ExportExperiment
from tests.export.export_helpers import EXPERIMENT, Tricky, reassemble, rows_deltalake


def _export(tricky: Tricky, warehouse: Path, **op: Any) -> tuple[Any, Any, Any]:
    ctx = tricky.context(warehouse)
    stream = export_experiment(ExportExperiment(EXPERIMENT, **op), ctx)
    table = ctx.table_store.write(("s", "t"), stream.batches, content=stream.content)
    records, files = reassemble(rows_deltalake(table.location))
    for row in records.values():  # each export's own time stamp
        row.pop("exported_at", None)
    return records, files, ctx.model_source.client  # type: ignore[attr-defined]


def _comparable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    return value


@pytest.mark.parametrize("op", [{}, {"filter": "params.kind = 'child'"}], ids=["all", "filter"])
def test_the_sql_client_exports_what_mlflows_client_exports(
    tricky: Tricky, workdir: Path, monkeypatch: pytest.MonkeyPatch, op: dict[str, Any]
) -> None:
    mine, my_files, client = _export(tricky, workdir / "sql", **op)
    assert is_sql(client)
    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", "mlflow")
    theirs, their_files, other = _export(tricky, workdir / "mlflow", **op)
    assert type(other).__name__ == "MlflowClient"
    assert _comparable(mine) == _comparable(theirs)
    assert my_files == their_files
    runs = [r for r in mine.values() if r.get("run")]
    assert len(runs) == (1 if op else 3)
    if not op:
        assert my_files  # the parent's artifacts and the logged model's files
        parent = next(r["run"] for r in runs if r["run"]["run_id"] == tricky.parent_id)
        assert parent["inputs"] and parent["logged_models"]
        assert any(m["model_id"] for m in parent["metrics"])
