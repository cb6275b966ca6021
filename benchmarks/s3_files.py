"""``python -m benchmarks s3-files``: an experiment export whose files live in S3, read through
arcuate's own S3 repository (the default) and through MLflow's (``ARCUATE_MLFLOW_CLIENT=mlflow``).

A moto S3 server (its own process) and a sqlite MLflow store hold ``--runs`` runs of the
``bench-200`` shape's files (two per run, 1 and 10 KiB, at ``<location>/<run>/artifacts/``;
params only, no metrics, so the files dominate). Each mode exports the experiment into a local
Delta table in a fresh process (``--repeat`` times) and prints the export's wall time, the
process's wall time, its peak RSS, the S3 requests it made by operation (counted in the
process around botocore's ``_make_api_call`` and obstore's ``get``, ``put`` and ``list``, a
listing once) and whether MLflow's S3 repository was loaded.
The tables of both modes are compared (the same rows, the same file bytes). The machine's load
average is printed first and last: the figures are only comparable on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from benchmarks import topology

MODES: Final = ("mlflow", "arcuate")

_CHILD: Final = r"""
import json, resource, sys, time
from collections import Counter
from botocore.client import BaseClient
calls = Counter()
real = BaseClient._make_api_call
def counted(self, operation, params):
    calls[operation] += 1
    return real(self, operation, params)
BaseClient._make_api_call = counted
try:  # obstore's requests under boto3's names (a listing once, however many pages it reads)
    import obstore
    def through(name, fn):
        def call(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return call
    for fn, name in (("get", "GetObject"), ("put", "PutObject"), ("list", "ListObjectsV2")):
        setattr(obstore, fn, through(name, getattr(obstore, fn)))
except ImportError:
    pass
from arcuate.config import Settings
from arcuate.engine.context import Context
from arcuate.engine.export import export_experiment
from arcuate.plan.ops import ExportExperiment
tracking, warehouse, name = sys.argv[1:4]
ctx = Context(Settings(tracking_uri=tracking, registry_uri=tracking, warehouse=warehouse,
                       progress=False))
began = time.monotonic()
stream = export_experiment(ExportExperiment(name), ctx)
table = ctx.table_store.write(("s", "t"), stream.batches, content=stream.content)
took = time.monotonic() - began
print(json.dumps({
    "export_s": took,
    "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "calls": dict(calls),
    "mlflow_s3_repo": "mlflow.store.artifact.s3_artifact_repo" in sys.modules,
    "location": table.location,
}))
"""


def _seed(s3: topology.S3, root: Path, runs: int) -> tuple[str, str]:
    """A sqlite store with one experiment of ``runs`` runs whose files are in S3."""
    from mlflow import MlflowClient

    tracking = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    name = "s3-files"
    prefix = f"bench/{uuid.uuid4().hex}"
    eid = client.create_experiment(name, artifact_location=f"s3://{s3.bucket}/{prefix}")
    jobs = []
    for i in range(runs):
        run = client.create_run(eid, run_name=f"run-{i}")
        client.log_param(run.info.run_id, "i", str(i))
        client.set_terminated(run.info.run_id)
        base = f"{prefix}/{run.info.run_id}/artifacts"
        jobs.append((f"{base}/data/small.bin", os.urandom(1024)))
        jobs.append((f"{base}/data/large.bin", os.urandom(10 * 1024)))
    s3c = s3.client()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda j: s3c.put_object(Bucket=s3.bucket, Key=j[0], Body=j[1]), jobs))
    return tracking, name


def _export(mode: str, tracking: str, name: str, warehouse: Path) -> dict[str, Any]:
    env = {**os.environ, "ARCUATE_MLFLOW_CLIENT": "mlflow" if mode == "mlflow" else "rest"}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, tracking, str(warehouse), name],
        env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = time.monotonic() - began
    return out


def _table(location: str) -> Any:
    from tests.export.export_helpers import reassemble, rows_deltalake

    records, files = reassemble(rows_deltalake(location))
    for row in records.values():
        row.pop("exported_at", None)
    return repr((records, files))


def main(argv: list[str] | None = None, s3: topology.S3 | None = None) -> int:
    """The benchmark; against ``s3`` if given (the test suite's endpoint), else one it starts."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks s3-files", description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="runs (200)")
    parser.add_argument("--repeat", type=int, default=1, help="exports per mode (1)")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="arcuate-s3-files-") as tmp:
        root = Path(tmp)
        own = s3 is None
        s3 = topology.start_s3("arcuate") if s3 is None else s3
        saved = dict(os.environ)
        try:
            os.environ.update(s3.env)
            tracking, name = _seed(s3, root, args.runs)
            tables = {}
            for n in range(args.repeat):
                for mode in MODES:
                    got = _export(mode, tracking, name, root / f"wh-{mode}-{n}")
                    tables[mode] = _table(got.pop("location"))
                    print(f"{mode:8} {json.dumps(got, sort_keys=True)}", flush=True)
            same = tables["mlflow"] == tables["arcuate"]
            print(f"same table both ways: {same}")
        finally:
            os.environ.clear()
            os.environ.update(saved)
            if own:
                s3.stop()
    print(f"load average after: {os.getloadavg()}")
    return 0 if same else 1
