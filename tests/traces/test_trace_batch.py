"""Traces imported a batch at a time (one ``log_spans`` for the spans of many traces) come out
exactly as the trace-by-trace import does, on sqlite and over REST (issue 14, the benchmark)."""

from __future__ import annotations

import uuid
from typing import Any

from arcuate.backends.mlflow.traces import (
    BATCH_SPANS,
    BATCH_TRACES,
    _batches,
    read_traces,
    write_traces,
)
from arcuate.format.traces import SharedTrace, parse_trace
from tests.traces.trace_helpers import build_traces, global_uri, snapshot


def _parsed(store: Any, built: dict[str, Any]) -> list[SharedTrace]:
    rows = read_traces(store.tracking_uri, built["experiment_id"], "agent")
    return [parse_trace(r, i) for i, r in enumerate(rows)]


def _targets(store: Any, built: dict[str, Any]) -> tuple[str, dict[str, str]]:
    client = store.client()
    eid = client.create_experiment(f"agent-copy-{uuid.uuid4().hex[:8]}")
    run = client.create_run(eid)
    model = client.create_logged_model(eid, name="agent-model")
    return eid, {built["run_id"]: run.info.run_id, built["model_id"]: model.model_id}


def test_batches_bound_traces_and_spans() -> None:
    def fake(spans: int) -> SharedTrace:
        return SharedTrace(row=0, experiment_key=None, trace_id="t", info={}, spans=[{}] * spans)

    sizes = [len(b) for b in _batches([fake(10)] * (2 * BATCH_TRACES + 50))]
    assert sizes == [BATCH_TRACES, BATCH_TRACES, 50]
    big = BATCH_SPANS + 1
    spans = [[len(t.spans) for t in b] for b in _batches([fake(10), fake(big), fake(10)])]
    assert spans == [[10], [big], [10]]  # a trace over the bound goes alone


def test_batched_import_deep_equal_and_idempotent(
    mlflow_store: Any, recipient_store: Any
) -> None:
    """Nested traces, a 1 MiB attribute, a 300-span trace and assessments (one overridden),
    all in one batch: deep-equal to the provider, ids kept; a re-import adds nothing and a new
    assessment arrives alone."""
    built = build_traces(mlflow_store.tracking_uri, traces=4, wide=300)
    traces = _parsed(mlflow_store, built)
    assert len(list(_batches(traces))) == 1  # every trace in one log_spans call
    eid, mapping = _targets(recipient_store, built)
    added = write_traces(recipient_store.tracking_uri, eid, traces, mapping, mapping)
    assert sorted(added) == [0, 0, 1, 1, 2]
    source = snapshot(mlflow_store.tracking_uri, built["experiment_id"])
    assert snapshot(recipient_store.tracking_uri, eid, mapping, mapping) == source
    assert write_traces(recipient_store.tracking_uri, eid, traces, mapping, mapping) == [0] * 5
    assert snapshot(recipient_store.tracking_uri, eid, mapping, mapping) == source
    import mlflow

    with global_uri(mlflow_store.tracking_uri):
        mlflow.log_feedback(trace_id=built["trace_ids"][2], name="late", value="ok")
    again = write_traces(recipient_store.tracking_uri, eid, _parsed(mlflow_store, built),
                         mapping, mapping)
    assert sorted(again) == [0, 0, 0, 0, 1]
    source = snapshot(mlflow_store.tracking_uri, built["experiment_id"])
    assert snapshot(recipient_store.tracking_uri, eid, mapping, mapping) == source


def test_batched_import_to_mlflow_server(mlflow_store: Any, mlflow_server: Any) -> None:
    """Over REST the batch's spans go in one OTLP request: the server splits them by trace id,
    and every trace comes back as shared."""
    built = build_traces(mlflow_store.tracking_uri, traces=3, wide=50)
    traces = _parsed(mlflow_store, built)
    eid, mapping = _targets(mlflow_server, built)
    added = write_traces(mlflow_server.tracking_uri, eid, traces, mapping, mapping)
    assert sum(added) == 4
    source = snapshot(mlflow_store.tracking_uri, built["experiment_id"])
    assert snapshot(mlflow_server.tracking_uri, eid, mapping, mapping) == source
    assert write_traces(mlflow_server.tracking_uri, eid, traces, mapping, mapping) == [0] * 4
