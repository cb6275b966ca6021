"""``python -m benchmarks traces [--traces N] [--spans S]``: trace export and import cost.

Builds N traces of S spans in a fresh sqlite store with MLflow's own fluent API (the floor:
what MLflow pays per trace to create one), then reads them as ``trace`` rows and checks them
(export), then re-creates them with ids kept in a second fresh store (import). All three are
measured in the same run, on the same machine load, and printed in ms per trace.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _store(root: Path) -> str:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root.mkdir(parents=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    SqlAlchemyStore(uri, str(root / "mlruns")).engine.dispose()
    RegistryStore(uri)
    return uri


def _build(uri: str, traces: int, spans: int) -> str:
    import os

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
    return str(eid)


def main(argv: list[str]) -> int:
    """Print the three costs; 0 when every trace arrived."""
    from arcuate.backends.mlflow.traces import read_traces, trace_ids, write_trace
    from arcuate.format.traces import parse_trace

    parser = argparse.ArgumentParser(prog="python -m benchmarks traces")
    parser.add_argument("--traces", type=int, default=10_000)
    parser.add_argument("--spans", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = _store(Path(tmp, "src")), _store(Path(tmp, "dst"))
        t0 = time.perf_counter()
        eid = _build(src, args.traces, args.spans)
        t1 = time.perf_counter()
        traces = [parse_trace(r, i) for i, r in enumerate(read_traces(src, eid, "bench"))]
        t2 = time.perf_counter()
        from mlflow import MlflowClient

        new = MlflowClient(dst, dst).create_experiment("bench")
        for t in traces:
            write_trace(dst, new, t, {}, {}, new=True)  # as CREATE EXPERIMENT does for new ids
        t3 = time.perf_counter()
        ok = len(trace_ids(dst, new)) == args.traces
    n = args.traces
    print(f"{n} traces x {args.spans} spans (sqlite)")
    print(f"  MLflow fluent API, creating  {1000 * (t1 - t0) / n:8.2f} ms/trace")
    print(f"  arcuate export (read+check)  {1000 * (t2 - t1) / n:8.2f} ms/trace")
    print(f"  arcuate import (ids kept)    {1000 * (t3 - t2) / n:8.2f} ms/trace")
    print(f"  all arrived: {ok}")
    return 0 if ok else 1
