"""Hostile trace rows: each refused with a ShareDataError naming row and field (issue 14)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from arcuate.backends.mlflow.traces import read_traces
from arcuate.errors import ShareDataError
from arcuate.format import limits
from arcuate.format.traces import parse_trace
from tests.traces.trace_helpers import build_traces


@pytest.fixture(scope="module")
def row(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Any) -> dict[str, Any]:
    from tests.conftest import make_store

    store = make_store(mlflow_template, tmp_path_factory.mktemp("hostile"))
    built = build_traces(store.tracking_uri, traces=1)
    rows = read_traces(store.tracking_uri, built["experiment_id"], "agent")
    return rows[0]


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _spans(edit: Callable[[list[dict[str, Any]]], Any]) -> Callable[[dict[str, Any]], None]:
    def apply(r: dict[str, Any]) -> None:
        spans = json.loads(r["spans"])
        spans = edit(spans) or spans
        r["spans"] = json.dumps(spans)

    return apply


def _info(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def apply(r: dict[str, Any]) -> None:
        info = json.loads(r["info"])
        edit(info)
        r["info"] = json.dumps(info)

    return apply


def _cycle(spans: list[dict[str, Any]]) -> None:
    # root's child and grandchild point at each other; the root keeps no descendants there
    a, b = spans[1], spans[2]
    a["parent_span_id"], b["parent_span_id"] = b["span_id"], a["span_id"]


def _two_roots(spans: list[dict[str, Any]]) -> None:
    spans[1]["parent_span_id"] = None


def _orphan(spans: list[dict[str, Any]]) -> None:
    spans[2]["parent_span_id"] = _b64("00" * 8)


def _foreign_span(spans: list[dict[str, Any]]) -> None:
    spans[3]["trace_id"] = _b64("ab" * 16)


def _too_many(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    leaf = {**spans[-1], "attributes": {}, "events": []}  # small: the count is what is tested
    extra = [
        {**leaf, "span_id": _b64(f"{i:016x}"), "parent_span_id": spans[0]["span_id"]}
        for i in range(1, limits.MAX_TRACE_SPANS + 1)
    ]
    return spans + extra


def _big_attribute(spans: list[dict[str, Any]]) -> None:
    spans[1]["attributes"]["huge"] = json.dumps("x" * (limits.MAX_SPAN_ATTRIBUTE_LENGTH + 1))


def _deep_json(spans: list[dict[str, Any]]) -> None:
    spans[1]["attributes"]["deep"] = "[" * 200 + "]" * 200


def _override_missing(info: dict[str, Any]) -> None:
    info["assessments"][0]["overrides"] = "a-" + "0" * 32


def _assessment_span(info: dict[str, Any]) -> None:
    info["assessments"][0]["span_id"] = "ffffffffffffffff"


def _trace_id(r: dict[str, Any]) -> None:
    r["trace_id"] = "tr-" + "cd" * 16


def _foreign_id(r: dict[str, Any]) -> None:
    r["trace_id"] = "my-trace-1"


def _long_metadata(info: dict[str, Any]) -> None:
    info["trace_metadata"]["custom"] = "m" * 251  # REST would cut it to 250


CASES = [
    ("cycle", _spans(_cycle), "trace.spans", "cycle"),
    ("two roots", _spans(_two_roots), "trace.spans", "exactly one root"),
    ("parent missing", _spans(_orphan), "trace.spans[2].parent_span_id", "not in the trace"),
    ("span of another trace", _spans(_foreign_span), "trace.spans[3].trace_id", "another trace"),
    ("too many spans", _spans(_too_many), "trace.spans", "at most 5000"),
    ("attribute too large", _spans(_big_attribute), "trace.spans[1].attributes", "longer than"),
    ("JSON too deep", _spans(_deep_json), "trace.spans[1].attributes['deep']", "deeper"),
    ("override missing", _info(_override_missing), "trace.info.assessments[0].overrides",
     "not an assessment"),
    ("assessment span", _info(_assessment_span), "trace.info.assessments[0].span_id",
     "not in the trace"),
    ("trace id not the spans'", _trace_id, "trace.info.trace_id", "not the row's"),
    ("foreign trace id", _foreign_id, "trace.trace_id", "tr-<32"),
    ("metadata REST would cut", _info(_long_metadata), "trace.info.trace_metadata", "longer"),
]


@pytest.mark.parametrize(("edit", "field", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_trace_refused(row: dict[str, Any], edit: Callable[[dict[str, Any]], None],
                               field: str, words: str) -> None:
    bad = dict(row)
    edit(bad)
    with pytest.raises(ShareDataError) as caught:
        parse_trace(bad, 7)
    assert caught.value.row == 7
    assert caught.value.field == field
    assert words in str(caught.value)


def test_trace_id_must_match_the_spans(row: dict[str, Any]) -> None:
    """A row whose info and row ids agree but whose spans carry another OTel id is refused:
    over REST it would split into two traces (research notes §2.2)."""
    bad = dict(row)
    other = "tr-" + "cd" * 16
    bad["trace_id"] = other
    bad["info"] = json.dumps({**json.loads(row["info"]), "trace_id": other})
    with pytest.raises(ShareDataError) as caught:
        parse_trace(bad, 3)
    assert caught.value.field == "trace.spans[0].trace_id"


def test_a_run_row_carrying_a_trace_is_refused(recipient_store: Any) -> None:
    """Traces are rows of their own: a run row with a ``trace`` value is refused, store
    untouched."""
    from arcuate.engine.imports import import_experiment
    from tests.imports.import_helpers import batches_of, recipient_context, run_row, store_state

    rows = [run_row(), run_row()]
    rows[1]["trace"] = {"trace_id": "tr-" + "ab" * 16, "info": "{}", "spans": "[]"}
    before = store_state(recipient_store)
    with pytest.raises(ShareDataError, match="carries no trace") as caught:
        import_experiment(batches_of(rows), "e", recipient_context(recipient_store))
    assert (caught.value.row, caught.value.field) == (1, "trace")
    assert store_state(recipient_store) == before
