"""A small provider: one experiment with two runs, and a registered model with one version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MlflowStore


@pytest.fixture
def provider(mlflow_store: MlflowStore, workdir: Path) -> MlflowStore:
    client = mlflow_store.client()
    eid = client.create_experiment(
        "churn", artifact_location=str(workdir / "provider" / "artifacts")
    )
    for i in range(2):
        run = client.create_run(eid, run_name=f"run-{i}")
        client.log_metric(run.info.run_id, "auc", 0.5 + i / 10, step=0)
        client.log_param(run.info.run_id, "depth", str(i))
        (workdir / "note.txt").write_text(f"run {i}")
        client.log_artifact(run.info.run_id, str(workdir / "note.txt"))
        client.set_terminated(run.info.run_id)
    client.create_registered_model("churn-model", description="the churn model")
    client.create_model_version(
        "churn-model", source=str(workdir / "provider" / "artifacts"), run_id=run.info.run_id
    )
    return mlflow_store


@pytest.fixture(scope="session")
def ipython() -> Iterator[Any]:
    """The process's one test IPython shell, with the magics loaded."""
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()  # a shell can be started once per process
    assert shell is not None
    if "arcuate" not in shell.extension_manager.loaded:
        shell.run_line_magic("load_ext", "arcuate")
    yield shell
