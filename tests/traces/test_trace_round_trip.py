"""Traces re-created with trace, span and assessment ids kept, links mapped (issue 14)."""

from __future__ import annotations

import uuid
from typing import Any

from arcuate.backends.mlflow.traces import read_traces, trace_ids, write_trace
from arcuate.format.traces import parse_trace
from tests.traces.trace_helpers import build_traces, snapshot


def _import(src: Any, dst: Any, built: dict[str, Any]) -> tuple[str, dict[str, str], int]:
    client = dst.client()
    eid = client.create_experiment(f"agent-copy-{uuid.uuid4().hex[:8]}")
    run = client.create_run(eid)
    model = client.create_logged_model(eid, name="agent-model")
    runs = {built["run_id"]: run.info.run_id}
    models = {built["model_id"]: model.model_id}
    rows = read_traces(src.tracking_uri, built["experiment_id"], "agent")
    traces = [parse_trace(r, i) for i, r in enumerate(rows)]  # all checked before any write
    added = sum(write_trace(dst.tracking_uri, eid, t, runs, models) for t in traces)
    return eid, {**runs, **models}, added


def test_traces_round_trip_with_ids_kept(mlflow_store: Any, recipient_store: Any) -> None:
    built = build_traces(mlflow_store.tracking_uri, traces=3)
    eid, mapping, added = _import(mlflow_store, recipient_store, built)
    assert added == 4
    source = snapshot(mlflow_store.tracking_uri, built["experiment_id"])
    copied = snapshot(recipient_store.tracking_uri, eid, mapping, mapping)
    assert set(copied) == set(built["trace_ids"])
    assert copied == source
    depth = max(len(t["data"]["spans"]) for t in copied.values())
    assert depth == 8  # root, six nested steps, the llm span


def test_reimport_changes_nothing_and_new_assessment_arrives_alone(
    mlflow_store: Any, recipient_store: Any
) -> None:
    import mlflow

    from tests.traces.trace_helpers import global_uri

    built = build_traces(mlflow_store.tracking_uri, traces=2)
    client = recipient_store.client()
    eid = client.create_experiment("agent-copy")
    rows = read_traces(mlflow_store.tracking_uri, built["experiment_id"], "agent")
    for i, r in enumerate(rows):
        write_trace(recipient_store.tracking_uri, eid, parse_trace(r, i), {}, {})
    first = snapshot(recipient_store.tracking_uri, eid)
    rows = read_traces(mlflow_store.tracking_uri, built["experiment_id"], "agent")
    again = [write_trace(recipient_store.tracking_uri, eid, parse_trace(r, i), {}, {})
             for i, r in enumerate(rows)]
    assert again == [0, 0]
    assert snapshot(recipient_store.tracking_uri, eid) == first
    with global_uri(mlflow_store.tracking_uri):
        mlflow.log_feedback(trace_id=built["trace_ids"][1], name="late", value="ok")
    rows = read_traces(mlflow_store.tracking_uri, built["experiment_id"], "agent")
    added = sorted(write_trace(recipient_store.tracking_uri, eid, parse_trace(r, i), {}, {})
                   for i, r in enumerate(rows))
    assert added == [0, 1]
    assert trace_ids(recipient_store.tracking_uri, eid) == set(built["trace_ids"])
    # links to a run or model not imported are dropped, not left pointing at provider ids
    meta = snapshot(recipient_store.tracking_uri, eid)[built["trace_ids"][0]]["info"]
    assert "mlflow.sourceRun" not in meta["trace_metadata"]


def test_traces_round_trip_to_mlflow_server(mlflow_store: Any, mlflow_server: Any) -> None:
    """Over REST the spans go as OTLP and the server derives the trace id from their OTel id:
    the ids still come back as shared, and a second import adds nothing."""
    built = build_traces(mlflow_store.tracking_uri, traces=2)
    eid, mapping, added = _import(mlflow_store, mlflow_server, built)
    assert added == 4
    source = snapshot(mlflow_store.tracking_uri, built["experiment_id"])
    assert snapshot(mlflow_server.tracking_uri, eid, mapping, mapping) == source
    rows = read_traces(mlflow_store.tracking_uri, built["experiment_id"], "agent")
    again = [write_trace(mlflow_server.tracking_uri, eid, parse_trace(r, i), mapping, mapping)
             for i, r in enumerate(rows)]
    assert again == [0, 0]
    assert snapshot(mlflow_server.tracking_uri, eid, mapping, mapping) == source
