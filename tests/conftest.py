"""Session-wide fixtures: real sqlite MLflow stores built from one migrated template.

A new sqlite store costs 2-3 s of alembic migrations, so the session migrates one template
database and every test gets a copy in its own temporary directory (and works from there, so
MLflow's CWD-relative ``./mlruns`` artifact root lands in the test's directory too).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

# Never touch the user's stores, never phone home, never draw MLflow's own progress bars.
for _var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ACTIVE_MODEL_ID"):
    os.environ.pop(_var, None)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@dataclass(frozen=True)
class MlflowStore:
    """A real sqlite MLflow store in a temporary directory."""

    root: Path
    tracking_uri: str
    registry_uri: str

    def client(self):  # type: ignore[no-untyped-def]
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated, empty sqlite MLflow database per test session."""
    from mlflow.store.model_registry.sqlalchemy_store import (
        SqlAlchemyStore as RegistryStore,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root = tmp_path_factory.mktemp("mlflow-template")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking = SqlAlchemyStore(uri, str(root / "mlruns"))
    RegistryStore(uri)
    tracking.engine.dispose()
    return root / "mlflow.db"


def make_store(template: Path, root: Path) -> MlflowStore:
    """A copy of the template at ``root/mlflow.db``."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "mlflow.db"
    shutil.copyfile(template, db)
    uri = f"sqlite:///{db}"
    return MlflowStore(root, uri, uri)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's temporary directory, made the CWD so nothing lands in the user's."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def mlflow_store(mlflow_template: Path, workdir: Path) -> MlflowStore:
    """A fresh, real sqlite MLflow store (the provider's, in two-store tests)."""
    return make_store(mlflow_template, workdir / "provider")


@pytest.fixture
def recipient_store(mlflow_template: Path, workdir: Path) -> MlflowStore:
    """A second, separate sqlite MLflow store (the recipient's)."""
    return make_store(mlflow_template, workdir / "recipient")
