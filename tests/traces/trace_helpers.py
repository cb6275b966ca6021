"""The trace part of the issue 14 torture fixture (a smaller agent), and a deep compare."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def global_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent tracing writes only through the global tracking URI. Both global URIs
    and their environment variables are put back after: arcuate reads its settings from
    ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``, so a later test wrote to this store."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for key, value in env.items():  # set_tracking_uri exports the URI to the environment
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _nest(mlflow: Any, depth: int) -> None:
    with mlflow.start_span(f"step-{depth}", span_type="CHAIN") as span:
        span.set_inputs({"depth": depth, "text": "ünïcødé ✓ 日本"})
        if depth == 3:
            span.add_event(mlflow.entities.SpanEvent("retry", attributes={"n": 2}))
        if depth < 6:
            _nest(mlflow, depth + 1)
        span.set_outputs([depth])


def _wide(mlflow: Any, spans: int) -> str:
    """A trace of ``spans`` spans: a root and its children."""
    with mlflow.start_span("fan-out", span_type="AGENT") as root:
        for i in range(spans - 1):
            with mlflow.start_span(f"call-{i}", span_type="TOOL") as span:
                span.set_attribute("i", i)
    return str(root.trace_id)


def build_traces(uri: str, traces: int = 5, wide: int = 0) -> dict[str, Any]:
    """An agent experiment: ``traces`` traces nested 6 deep under a run and a logged model, a
    1 MiB attribute, an ERROR span with an exception event, human and LLM feedback and
    expectations on traces and spans, one overridden feedback."""
    import mlflow
    from mlflow.entities import AssessmentSource

    with global_uri(uri):
        eid = mlflow.create_experiment("agent")
        mlflow.set_experiment(experiment_id=eid)
        ids = []
        with mlflow.start_run() as run:
            # made in the run, so the run's export carries it and the trace link maps
            model = mlflow.create_external_model(name="agent-model")
            mlflow.set_active_model(model_id=model.model_id)
            for i in range(traces):
                with mlflow.start_span("agent", span_type="AGENT") as root:
                    root.set_inputs({"question": f"q{i} ⏰"})
                    mlflow.update_current_trace(tags={"ünï": "✓"}, metadata={"custom": str(i)},
                                                client_request_id=f"req-{i}")
                    _nest(mlflow, 1)
                    with mlflow.start_span("llm", span_type="CHAT_MODEL") as llm:
                        if i == 0:
                            llm.set_attribute("big", "x" * (1 << 20))
                        llm.set_status("ERROR")
                        llm.record_exception(ValueError("rate limited"))
                ids.append(root.trace_id)
            mlflow.clear_active_model()
        if wide:
            ids.append(_wide(mlflow, wide))
        mlflow.flush_trace_async_logging()
        human = AssessmentSource("HUMAN", "alice@example.com")
        judge = AssessmentSource("LLM_JUDGE", "gpt-4o-judge")
        fb = mlflow.log_feedback(trace_id=ids[0], name="correct", value=True, source=judge,
                                 rationale="matches", metadata={"judge.version": "3"})
        mlflow.log_feedback(trace_id=ids[traces - 1], name="llm_ok", value=0.5, source=human,
                            span_id=llm.span_id)
        mlflow.log_expectation(trace_id=ids[1 % traces], name="expected",
                               value={"answer": "10 Uhr"}, source=human)
        mlflow.override_feedback(trace_id=ids[0], assessment_id=fb.assessment_id, value=False,
                                 rationale="human says no", source=human)
    return {"experiment_id": eid, "run_id": run.info.run_id, "model_id": model.model_id,
            "trace_ids": ids}


def snapshot(uri: str, experiment_id: str, runs: dict[str, str] | None = None,
             models: dict[str, str] | None = None) -> dict[str, Any]:
    """Every trace of the experiment through MLflow's public API, ids mapped back to the
    provider's, comparable with ``==`` (attributes compared as parsed JSON: REST re-serializes
    them, research notes §2.2)."""
    from mlflow.tracing.client import TracingClient

    back_runs = {v: k for k, v in (runs or {}).items()}
    back_models = {v: k for k, v in (models or {}).items()}
    out, traces, token = {}, [], None
    client = TracingClient(uri)
    while True:
        page = client.search_traces(locations=[experiment_id], max_results=100,
                                    page_token=token, include_spans=True)
        traces.extend(page)
        if not (token := page.token):
            break
    for t in traces:
        d = copy.deepcopy(t.to_dict())
        info = d["info"]
        info.pop("trace_location")
        info["tags"].pop("mlflow.artifactLocation", None)
        meta = info["trace_metadata"]
        for key, back in (("mlflow.sourceRun", back_runs), ("mlflow.modelId", back_models)):
            if key in meta:
                meta[key] = back.get(meta[key], meta[key])
        for a in info.get("assessments", []):
            a.setdefault("valid", True)
        info["assessments"] = sorted(info.get("assessments", []),
                                     key=lambda a: a["assessment_id"])
        for s in d["data"]["spans"]:
            s["attributes"] = {k: json.loads(v) for k, v in s["attributes"].items()}
            for e in s.get("events", []):
                e["attributes"] = {k: _loads(v) for k, v in e.get("attributes", {}).items()}
        out[info["trace_id"]] = d
    return out


def _loads(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value
