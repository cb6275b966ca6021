"""Traces through the dialect: CREATE SHARE … FROM EXPERIMENT e INCLUDING TRACES on the
provider, the embedded sharing server over HTTP and the real ``delta_sharing`` client,
CREATE EXPERIMENT … AS '<coordinate>' into a fresh sqlite store and a real ``mlflow server``;
deep compare through MLflow's public API (ids kept, run and model links mapped)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import arcuate
from arcuate.backends.mlflow.traces import read_traces
from tests.traces.trace_helpers import build_traces, global_uri, snapshot


def rootless_trace(uri: str, experiment_id: str, like: str) -> str:
    """A trace whose root span was never logged (as when MLflow's async queue drops it): a
    copy of trace ``like`` under a new id, without its root."""
    import base64
    import uuid

    from mlflow.entities import Span, TraceInfo, TraceLocation
    from mlflow.tracing.client import TracingClient

    (row,) = [r for r in read_traces(uri, experiment_id, "agent") if r["trace_id"] == like]
    otel = uuid.uuid4().hex
    trace_id = f"tr-{otel}"
    spans = [s for s in json.loads(row["spans"]) if s.get("parent_span_id") is not None]
    for s in spans:
        s["trace_id"] = base64.b64encode(bytes.fromhex(otel)).decode()
        s["attributes"]["mlflow.traceRequestId"] = json.dumps(trace_id)
    info = {**json.loads(row["info"]), "trace_id": trace_id, "assessments": []}
    info["trace_location"] = TraceLocation.from_experiment_id(experiment_id).to_dict()
    client = TracingClient(uri)
    client.log_spans(experiment_id, [Span.from_dict(s) for s in spans])
    client.start_trace(TraceInfo.from_dict(info))
    return trace_id


def mapping(store: Any, experiment_id: str) -> dict[str, str]:
    """Provider run and logged-model ids -> the recipient's (from arcuate's provenance)."""
    client = store.client()
    out = {}
    for run in client.search_runs([experiment_id]):
        out[run.data.tags["arcuate.source_run_id"]] = run.info.run_id
    for model in client.search_logged_models([experiment_id]):
        if "arcuate.source_model_id" in model.tags:
            out[model.tags["arcuate.source_model_id"]] = model.model_id
    return out


def recipient_snapshot(store: Any, name: str) -> dict[str, Any]:
    eid = store.client().get_experiment_by_name(name).experiment_id
    ids = mapping(store, eid)
    return snapshot(store.tracking_uri, eid, ids, ids)


def share(store: Any, warehouse: Path, statement: str) -> dict[str, Any]:
    (result,) = arcuate.execute(
        statement,
        tracking_uri=store.tracking_uri,
        registry_uri=store.registry_uri,
        warehouse=str(warehouse),
        progress=False,
    )
    return dict(result.summary)


@pytest.fixture
def served(workdir: Path) -> Iterator[str]:
    """The sharing server over ``workdir/wh``'s catalog; the coordinate of table ``agent``."""
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    catalog = LocalShareCatalog(workdir / "wh" / "shares.yaml")
    _record, token = catalog.create_recipient("ann")
    handle = serve_in_thread(str(workdir / "wh" / "shares.yaml"))
    try:
        assert token is not None
        profile = write_profile(workdir / "ann.share", handle.endpoint, token)
        yield f"{profile}#genai.default.agent"
    finally:
        handle.stop()


def _import(store: Any, coordinate: str, name: str, overwrite: bool = False) -> dict[str, Any]:
    ow = " OVERWRITE" if overwrite else ""
    (result,) = arcuate.execute(
        f"CREATE EXPERIMENT{ow} `{name}` AS '{coordinate}'",
        tracking_uri=store.tracking_uri,
        registry_uri=store.registry_uri,
        progress=False,
    )
    return dict(result.summary)


def _grant(workdir: Path) -> None:
    from arcuate.backends.sharing.catalog import LocalShareCatalog

    LocalShareCatalog(workdir / "wh" / "shares.yaml").grant("genai", "ann")


SHARE = "CREATE SHARE genai WITH TABLE agent FROM EXPERIMENT agent INCLUDING TRACES"


def _trip(provider: Any, recipient: Any, workdir: Path, coordinate: str) -> None:
    import uuid

    name = f"agent-{uuid.uuid4().hex[:8]}"  # the server is shared by the session
    built = build_traces(provider.tracking_uri, traces=3)
    rootless = rootless_trace(provider.tracking_uri, built["experiment_id"], built["trace_ids"][2])
    summary = share(provider, workdir / "wh", SHARE)
    assert summary["traces"] == 3

    (line,) = summary["skipped_traces"]
    assert rootless in line and "no root span" in line, line
    _grant(workdir)
    source = snapshot(provider.tracking_uri, built["experiment_id"])
    source.pop(rootless, None)  # MLflow's own span read leaves it out too

    first = _import(recipient, coordinate, name)
    assert (first["traces_added"], first["assessments_added"]) == (3, 4)
    assert recipient_snapshot(recipient, name) == source
    # ids kept, and the run and logged model links point at the imported ones
    eid = recipient.client().get_experiment_by_name(name).experiment_id
    ids = mapping(recipient, eid)
    meta = snapshot(recipient.tracking_uri, eid)[built["trace_ids"][0]]["info"]["trace_metadata"]
    assert meta["mlflow.sourceRun"] == ids[built["run_id"]]

    again = _import(recipient, coordinate, name)
    assert (again["traces_added"], again["assessments_added"]) == (0, 0)
    assert recipient_snapshot(recipient, name) == source

    # an incremental change (a late feedback, a new trace) arrives alone
    import mlflow

    with global_uri(provider.tracking_uri):
        mlflow.log_feedback(trace_id=built["trace_ids"][1], name="late", value="ok")
        mlflow.set_experiment(experiment_id=built["experiment_id"])
        with mlflow.start_span("late-agent") as span:
            span.set_inputs({"q": "new"})
        mlflow.flush_trace_async_logging()
    share(provider, workdir / "wh", SHARE)
    later = _import(recipient, coordinate, name)
    assert (later["traces_added"], later["assessments_added"]) == (1, 1)
    source = snapshot(provider.tracking_uri, built["experiment_id"])
    source.pop(rootless, None)  # MLflow's own span read leaves it out too
    assert recipient_snapshot(recipient, name) == source
    # OVERWRITE: nothing rewritten, nothing lost
    over = _import(recipient, coordinate, name, overwrite=True)
    assert (over["traces_added"], over["assessments_added"]) == (0, 0)
    assert recipient_snapshot(recipient, name) == source


def test_traces_through_statements_into_sqlite(
    mlflow_store: Any, recipient_store: Any, workdir: Path, served: str
) -> None:
    _trip(mlflow_store, recipient_store, workdir, served)


@pytest.mark.server
def test_traces_through_statements_into_mlflow_server(
    mlflow_store: Any, mlflow_server: Any, workdir: Path, served: str
) -> None:
    _trip(mlflow_store, mlflow_server, workdir, served)


def test_a_trace_filter_selects_and_describe_counts(
    mlflow_store: Any, recipient_store: Any, workdir: Path, served: str
) -> None:
    """``INCLUDING TRACES WHERE`` goes to MLflow's trace search; EXPLAIN says so and writes
    nothing; DESCRIBE counts the table's traces, spans and assessments and writes nothing."""
    from tests.imports.import_helpers import whole_store

    built = build_traces(mlflow_store.tracking_uri, traces=3)
    wanted = built["trace_ids"][0]  # metadata custom = '0', its feedback overridden
    statement = f"{SHARE} WHERE metadata.custom = '0' AND trace.status = 'OK'"
    (plan,) = arcuate.execute(f"EXPLAIN {statement}", tracking_uri=mlflow_store.tracking_uri,
                              warehouse=str(workdir / "wh"), progress=False)  # fmt: skip
    assert "its traces WHERE metadata.custom = '0' AND trace.status = 'OK'" in plan.text
    assert not (workdir / "wh" / "agent").exists()
    summary = share(mlflow_store, workdir / "wh", statement)
    assert summary["traces"] == 1 and "skipped_traces" not in summary
    _grant(workdir)
    before = whole_store(recipient_store)
    (described,) = arcuate.execute(f"DESCRIBE '{served}'",
                                   tracking_uri=recipient_store.tracking_uri, progress=False)
    d = described.summary
    assert (d["valid"], d["traces"], d["spans"], d["assessments"]) == (True, 1, 8, 2)
    assert whole_store(recipient_store) == before
    got = _import(recipient_store, served, "agent")
    assert (got["traces"], got["traces_added"], got["assessments_added"]) == (1, 1, 2)
    assert set(recipient_snapshot(recipient_store, "agent")) == {wanted}


# The full-size trace torture fixture (200 agent traces 6 deep, a 1,000-span trace, a
# 1 MiB attribute, ...) goes through the statements in tests/genai/test_torture_all.py, with
# every other GenAI kind, into sqlite and a real mlflow server.
