"""The round trip into a real ``mlflow server`` process (REST tracking, proxied artifacts).

The server runs once per session in its own process group on a free loopback port, backed by
a fresh sqlite store and serving artifacts itself (``mlflow-artifacts:/``); it is stopped at
the end of the session.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from export_helpers import EXPERIMENT, MODEL, Tricky
from import_helpers import (
    Share,
    assert_same,
    recipient_context,
    snapshot_experiment,
    snapshot_model,
    store_state,
)

from arcuate.backends.sharing.reader import DeltaSharingReader
from arcuate.engine.imports import import_experiment, import_model

pytestmark = pytest.mark.server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerStore:
    """A recipient store that is an ``mlflow server`` URL."""

    def __init__(self, url: str) -> None:
        self.tracking_uri = self.registry_uri = url

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri, self.registry_uri)


@pytest.fixture(scope="session")
def mlflow_server(
    mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerStore]:
    root = tmp_path_factory.mktemp("mlflow-server")
    shutil.copyfile(mlflow_template, root / "mlflow.db")
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(var, None)
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((root / "server.log").read_text()) from None
                time.sleep(0.2)
        yield ServerStore(url)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_round_trip_into_mlflow_server(
    provider: Tricky, share: Share, mlflow_server: ServerStore, workdir: Path
) -> None:
    ctx = recipient_context(mlflow_server)
    reader = DeltaSharingReader()
    exp = import_experiment(
        reader.batches(share.experiment), "served", ctx, source=share.experiment
    )
    model = import_model(reader.batches(share.model), "served-model", ctx, source=share.model)
    assert exp.summary["added"] == 3 and model.summary["added"] == 4
    assert "version_map" not in model.summary
    assert_same(
        snapshot_experiment(mlflow_server, "served", imported=True),
        snapshot_experiment(provider.store, EXPERIMENT, imported=False),
    )
    target, source = (
        snapshot_model(mlflow_server, "served-model"),
        snapshot_model(provider.store, MODEL),
    )
    client = mlflow_server.client()
    eid = client.get_experiment_by_name("served").experiment_id
    parent = next(
        r
        for r in client.search_runs([eid])
        if r.data.tags["arcuate.source_run_id"] == provider.parent_id
    )
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert target["versions"][2]["source"] == f"runs:/{parent.info.run_id}/model"
    assert target["versions"][5]["source"] == f"{parent.info.artifact_uri}/a/b"
    for snap in (target, source):
        for mv in snap["versions"].values():
            mv.pop("run_id"), mv.pop("source")
    assert_same(target, source)
    # and again: nothing changes
    state = store_state(mlflow_server)
    again = import_experiment(reader.batches(share.experiment), "served", ctx)
    again_model = import_model(reader.batches(share.model), "served-model", ctx)
    assert again.summary["unchanged"] == 3 and again_model.summary["unchanged"] == 4
    assert store_state(mlflow_server) == state
