"""``python -m benchmarks traces [--traces N] [--spans S] [--floor-sample K]``: trace export and
import cost beside MLflow's own, in one run.

1. The floor: K traces of S spans created with MLflow's fluent API (synchronous logging), in a
   fresh sqlite store: what MLflow pays per trace to create one. K is a sample because at
   ~0.1-0.8 s a trace, 10,000 would take hours.
2. The source store: N traces built fast by arcuate's own batched importer from trace rows
   cloned from the floor's traces with fresh trace and span ids (MLflow's API is too slow
   for N, and this is the path being measured anyway).
3. Export: every trace read as a ``trace`` row and checked (``parse_trace``).
4. Import: the N rows re-created with ids kept in a fresh store, a batch at a time
   (``write_traces``); and, for comparison, K of them trace by trace (one batch each).

Per-trace costs, their ratios to the floor, the load average and the peak RSS are printed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _store(root: Path) -> str:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root.mkdir(parents=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    SqlAlchemyStore(uri, str(root / "mlruns")).engine.dispose()
    RegistryStore(uri)
    return uri


def _experiment(uri: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient(uri, uri).create_experiment("bench"))


def _floor(uri: str, traces: int, spans: int) -> str:
    """MLflow creating ``traces`` traces itself; the experiment id."""
    # synchronous: the async queue drops spans when full, leaving rootless traces behind
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    import mlflow

    mlflow.set_tracking_uri(uri)
    eid = mlflow.create_experiment("bench")
    mlflow.set_experiment(experiment_id=eid)
    for i in range(traces):
        with mlflow.start_span("agent", span_type="AGENT") as root:
            root.set_inputs({"q": i})
            for j in range(spans - 1):
                with mlflow.start_span(f"step-{j}", span_type="TOOL") as span:
                    span.set_outputs({"j": j})
    mlflow.flush_trace_async_logging()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    return str(eid)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _clone(row: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """``row`` (a ``trace`` row) with a fresh trace id and fresh span ids, tree kept."""
    otel = rng.randbytes(16)
    trace_id = "tr-" + otel.hex()
    spans = json.loads(row["spans"])
    ids = {s["span_id"]: _b64(rng.randbytes(8)) for s in spans}
    for s in spans:
        s["trace_id"] = _b64(otel)
        s["span_id"] = ids[s["span_id"]]
        s["parent_span_id"] = ids.get(s["parent_span_id"])
        s["attributes"]["mlflow.traceRequestId"] = json.dumps(trace_id)
    info = json.loads(row["info"])
    info["trace_id"] = trace_id
    return {**row, "trace_id": trace_id, "info": json.dumps(info), "spans": json.dumps(spans)}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _source(uri: str, experiment_id: str, templates: list[dict[str, Any]], n: int) -> float:
    """Fill the source store with ``n`` clones of ``templates``; the seconds it took."""
    from arcuate.backends.mlflow.traces import write_traces
    from arcuate.format.traces import parse_trace

    rng = random.Random(14)
    rows = [_clone(templates[i % len(templates)], rng) for i in range(n)]
    _, took = _timed(lambda: write_traces(
        uri, experiment_id, [parse_trace(r, i) for i, r in enumerate(rows)], {}, {}))
    return float(took)


def _run(tmp: Path, n: int, spans: int, sample: int) -> dict[str, Any]:
    from arcuate.backends.mlflow.traces import read_traces, trace_ids, write_trace, write_traces
    from arcuate.format.traces import parse_trace

    floor, src, dst, one = (_store(tmp / name) for name in ("floor", "src", "dst", "one"))
    floor_eid, t_floor = _timed(lambda: _floor(floor, sample, spans))
    templates = read_traces(floor, floor_eid, "bench")
    src_eid = _experiment(src)
    t_build = _source(src, src_eid, templates, n)
    traces, t_export = _timed(
        lambda: [parse_trace(r, i) for i, r in enumerate(read_traces(src, src_eid, "bench"))])
    dst_eid = _experiment(dst)
    _, t_import = _timed(lambda: write_traces(dst, dst_eid, traces, {}, {}))
    one_eid = _experiment(one)
    _, t_one = _timed(lambda: [write_trace(one, one_eid, t, {}, {}) for t in traces[:sample]])
    arrived = trace_ids(dst, dst_eid) == {t.trace_id for t in traces} and len(traces) == n
    return {"floor": t_floor / sample, "build": t_build / n, "export": t_export / n,
            "import": t_import / n, "one": t_one / sample, "arrived": arrived}


def main(argv: list[str]) -> int:
    """Print the costs; 0 when every trace arrived."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks traces")
    parser.add_argument("--traces", type=int, default=10_000)
    parser.add_argument("--spans", type=int, default=10)
    parser.add_argument("--floor-sample", type=int, default=200)
    args = parser.parse_args(argv)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        r = _run(Path(tmp), args.traces, args.spans, min(args.floor_sample, args.traces))
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ms = {k: 1000 * v for k, v in r.items() if k != "arrived"}
    print(f"{args.traces} traces x {args.spans} spans (sqlite), MLflow floor on a sample of"
          f" {min(args.floor_sample, args.traces)}")
    print(f"  MLflow fluent API, creating (floor)   {ms['floor']:8.2f} ms/trace")
    print(f"  arcuate export (read + check)         {ms['export']:8.2f} ms/trace"
          f"  ({ms['export'] / ms['floor']:.1%} of the floor)")
    print(f"  arcuate import, batched (ids kept)    {ms['import']:8.2f} ms/trace"
          f"  ({ms['import'] / ms['floor']:.1%} of the floor)")
    print(f"  arcuate import, trace by trace        {ms['one']:8.2f} ms/trace"
          f"  (sample; batched is {ms['one'] / ms['import']:.1f}x faster)")
    print(f"  source store built (batched import)   {ms['build']:8.2f} ms/trace")
    print(f"  wall {wall:.0f} s, peak RSS {rss:.0f} MiB,"
          f" load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"  all arrived: {r['arrived']}")
    return 0 if r["arrived"] else 1
