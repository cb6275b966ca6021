"""Helpers of the production-topology tests: building a provider, sharing it with statements."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

import arcuate
from arcuate.backends.mlflow.connect import spark_guard
from tests.export.export_helpers import EXPERIMENT, MODEL, Tricky, build_registered, build_tricky


def build_provider(
    store: Any, root: Path, artifact_location: str | None, proxied_to: str | None = None
) -> Tricky:
    """The tricky experiment and model in ``store`` (MLflow's global URIs point there only
    while they are built); ``proxied_to``: a server's ``--artifacts-destination``."""
    import mlflow
    import mlflow.tracking.fluent as fluent_mod

    with spark_guard(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
        mp.setenv("MLFLOW_REGISTRY_URI", store.registry_uri)
        mp.chdir(root)
        try:
            built = build_tricky(store, root, artifact_location)
            built.registered = build_registered(built, proxied_to)
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
            fluent_mod._active_experiment_id = None
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    return built


@dataclass(frozen=True)
class Shared:
    """What a provider's statements shared: the recipient's coordinates and the summaries."""

    profile: Path
    experiment: str
    model: str
    exported: tuple[dict[str, Any], dict[str, Any]]


def share_with_statements(
    store: Any, root: Path, endpoint: str, warehouse: str | None = None
) -> Shared:
    """The provider's own words: export the experiment and the model into ``warehouse``
    (``root/warehouse`` by default), make recipient ``ann`` (profile at ``root/ann.share``)
    and grant the share."""
    profile = root / "ann.share"
    results = arcuate.execute(
        f"CREATE SHARE ml WITH TABLE ml.experiment FROM EXPERIMENT '{EXPERIMENT}';\n"
        f"CREATE SHARE ml WITH TABLE ml.model FROM MODEL '{MODEL}';\n"
        f"CREATE RECIPIENT ann PROFILE '{profile}';\n"
        "GRANT SELECT ON SHARE ml TO RECIPIENT ann",
        tracking_uri=store.tracking_uri,
        registry_uri=store.registry_uri,
        warehouse=warehouse or str(root / "warehouse"),
        catalog=str(root / "shares.yaml"),
        endpoint=endpoint,
        chunk_bytes=4096,
        progress=False,
    )
    exp, model = (r.summary for r in list(results)[:2])
    return Shared(profile, f"{profile}#ml.ml.experiment", f"{profile}#ml.ml.model", (exp, model))


@dataclass
class CliShare:
    """What the command line printed while sharing (``arcuate run``) and serving (``arcuate
    serve``), and the table the official client read from that server."""

    run_output: str
    serve_output: str
    frame: Any


def share_and_serve_with_the_cli(
    workdir: Path, experiment: str, warehouse: str, store: Any, env: dict[str, str]
) -> CliShare:
    """``arcuate run`` of CREATE SHARE cli (table ``runs`` of ``experiment`` in MLflow
    ``store``) into ``warehouse``, a recipient bob and the grant, then ``arcuate serve`` until
    the official client has read ``cli.default.runs`` with bob's profile. Both commands get
    ``env`` (the store's credentials) and their settings as environment variables."""
    import delta_sharing

    from benchmarks.topology import free_port

    port = free_port()
    env = {
        **env,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "ARCUATE_WAREHOUSE": warehouse,
        "ARCUATE_CATALOG": str(workdir / "shares.yaml"),
        "ARCUATE_ENDPOINT": f"http://127.0.0.1:{port}/delta-sharing",
        "MLFLOW_TRACKING_URI": store.tracking_uri,
        "MLFLOW_REGISTRY_URI": store.registry_uri,
    }
    script = workdir / "share.arcsql"
    script.write_text(
        f"CREATE SHARE cli WITH TABLE runs FROM EXPERIMENT '{experiment}';\n"
        f"CREATE RECIPIENT bob PROFILE '{workdir / 'bob.share'}';\n"
        "GRANT SELECT ON SHARE cli TO RECIPIENT bob;\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "arcuate", "run", str(script)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    serve = subprocess.Popen(
        [sys.executable, "-m", "arcuate", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/delta-sharing/shares", timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):  # still starting (busy CPUs)
                assert serve.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        frame = delta_sharing.load_as_pandas(f"{workdir / 'bob.share'}#cli.default.runs")
    finally:
        serve.terminate()
        out, err = serve.communicate(timeout=30)
    assert f"{warehouse}/runs" in (workdir / "shares.yaml").read_text()
    assert "bob POST /delta-sharing/shares/cli/schemas/default/tables/runs/query 200" in err
    return CliShare(done.stdout + done.stderr, out + err, frame)
