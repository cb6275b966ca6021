"""Trace rows refused by CREATE EXPERIMENT before anything is written (the whole store, files
included, is unchanged): repeated ids across rows, a trace without a root, a row whose key is
not its trace id, a trace row in a model table, a trace id that lives in another experiment."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from arcuate.backends.mlflow.traces import read_traces
from arcuate.engine.imports import import_experiment
from arcuate.errors import ConflictError, ShareDataError
from arcuate.format.records import trace_row
from tests.imports.import_helpers import batches_of, recipient_context, run_row, whole_store
from tests.traces.trace_helpers import build_traces


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Any) -> list[dict[str, Any]]:
    """Two real traces (the first with assessments) as ``trace`` column values."""
    from tests.conftest import make_store

    store = make_store(mlflow_template, tmp_path_factory.mktemp("hostile-import"))
    built = build_traces(store.tracking_uri, traces=2)
    rows = read_traces(store.tracking_uri, built["experiment_id"], "agent")
    return sorted(rows, key=lambda r: -len(json.loads(r["info"]).get("assessments") or []))


def _rows(traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [run_row(), *(trace_row(dict(t)) for t in traces)]


def _repeat_trace(rows: list[dict[str, Any]]) -> None:
    rows[2] = trace_row(dict(rows[1]["trace"]))


def _repeat_assessment(rows: list[dict[str, Any]]) -> None:
    first = json.loads(rows[1]["trace"]["info"])["assessments"][0]
    info = json.loads(rows[2]["trace"]["info"])
    info["assessments"] = [{**first, "trace_id": info["trace_id"], "span_id": None,
                            "overrides": None}]  # fmt: skip
    rows[2]["trace"] = {**rows[2]["trace"], "info": json.dumps(info)}


def _no_root(rows: list[dict[str, Any]]) -> None:
    spans = [s for s in json.loads(rows[2]["trace"]["spans"]) if s["parent_span_id"]]
    rows[2]["trace"] = {**rows[2]["trace"], "spans": json.dumps(spans)}


def _wrong_key(rows: list[dict[str, Any]]) -> None:
    rows[2]["key"] = "tr-" + "0" * 32


def _carries_a_run(rows: list[dict[str, Any]]) -> None:
    rows[2]["run"] = rows[0]["run"]


CASES = [
    ("trace twice", _repeat_trace, 2, "trace.trace_id", "also row 1"),
    ("assessment id twice", _repeat_assessment, 2, "trace.info.assessments[0].assessment_id",
     "also in row 1"),
    ("no root span", _no_root, 2, "trace.spans", "exactly one root"),
    ("key not the trace id", _wrong_key, 2, "key", "not the trace id"),
    ("trace row carrying a run", _carries_a_run, 2, "run", "carries no run"),
]


@pytest.mark.parametrize(("edit", "row", "field", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_hostile_trace_rows_refused_before_any_write(
    traces: list[dict[str, Any]], recipient_store: Any,
    edit: Callable[[list[dict[str, Any]]], None], row: int, field: str, words: str,
) -> None:  # fmt: skip
    rows = _rows(traces)
    edit(rows)
    before = whole_store(recipient_store)
    with pytest.raises(ShareDataError) as caught:
        import_experiment(batches_of(rows), "agent", recipient_context(recipient_store))
    assert (caught.value.row, caught.value.field) == (row, field)
    assert words in str(caught.value)
    assert whole_store(recipient_store) == before


def test_trace_row_in_a_model_table_is_refused(
    traces: list[dict[str, Any]], recipient_store: Any
) -> None:
    from arcuate.engine.imports import import_model

    before = whole_store(recipient_store)
    with pytest.raises(ShareDataError, match="CREATE EXPERIMENT") as caught:
        import_model(batches_of([trace_row(dict(traces[0]))]), "m",
                     recipient_context(recipient_store))  # fmt: skip
    assert (caught.value.row, caught.value.field) == (0, "kind")
    assert whole_store(recipient_store) == before


def test_trace_id_of_another_experiment_is_refused_before_any_write(
    traces: list[dict[str, Any]], recipient_store: Any
) -> None:
    """MLflow's trace ids are unique in a store: importing the same traces into a second
    experiment would move or merge them. Refused before anything is written."""
    ctx = recipient_context(recipient_store)
    import_experiment(batches_of(_rows(traces)), "first", ctx)
    before = whole_store(recipient_store)
    with pytest.raises(ConflictError, match="already exists here in experiment"):
        import_experiment(batches_of(_rows(traces)), "second", ctx)
    assert whole_store(recipient_store) == before
