"""Session-wide fixtures: real sqlite MLflow stores built from one migrated template.

A new sqlite store costs 2-3 s of alembic migrations, so the session migrates one template
database and every test gets a copy in its own temporary directory (and works from there, so
MLflow's CWD-relative ``./mlruns`` artifact root lands in the test's directory too).

The production topology (issue 13) is started the same way, once per session and only when a
test asks for it: a throwaway PostgreSQL cluster whose migrated template database is cloned per
test (``postgres``, ``pg_store``), an S3 endpoint (``s3``, moto) and an ``mlflow server`` on
both (``mlflow_server_pg``); the starting code is :mod:`benchmarks.topology`, which the
benchmarks share.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks import topology
from tests.processes import healthy, mlflow_server_command, running

# Never touch the user's stores, never phone home, never draw MLflow's own progress bars.
for _var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ACTIVE_MODEL_ID"):
    os.environ.pop(_var, None)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def _spark_home() -> None:
    """Point ``SPARK_HOME`` at the installed ``pyspark`` (pyspark-client has no Spark to
    find): without it, the first import of ``pyspark.sql.connect`` in a process whose
    ``__main__`` has no file, as in a pytest-xdist worker, calls ``sys.exit``."""
    from importlib.util import find_spec

    spec = find_spec("pyspark")
    if spec is not None and spec.origin is not None:
        os.environ.setdefault("SPARK_HOME", os.path.dirname(spec.origin))


_spark_home()


# -- pytest-xdist: each server starts once per run ----------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    """Register :mod:`tests.server_scopes` as a plugin: a conftest's own hooks do not see the
    session-scoped fixtures' setup, nor run in xdist's controller before collection."""
    from tests import server_scopes

    if not config.pluginmanager.is_registered(server_scopes):
        config.pluginmanager.register(server_scopes, "arcuate-server-scopes")


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


class ServerStore:
    """An ``mlflow server`` URL used as a tracking and registry store."""

    def __init__(self, url: str, root: Path) -> None:
        self.tracking_uri = self.registry_uri = url
        self.root = root

    def client(self):  # type: ignore[no-untyped-def]
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri, self.registry_uri)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def mlflow_server(mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One real ``mlflow server`` on loopback for the whole session (REST, proxied artifacts).

    Started in its own process group without the job-queue workers (which would cost about
    2 GB more), and stopped with its whole group at the end. Tests use their own experiment
    and model names on it.
    """
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
    cmd = mlflow_server_command(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", port, 2)
    url = f"http://127.0.0.1:{port}"
    with running(cmd, root / "server.log", healthy(url), cwd=root, env=env):
        yield ServerStore(url, root)


# -- the production topology: PostgreSQL, S3, an mlflow server on both ---------------------------
@dataclass(frozen=True)
class PgCluster:
    """The session's PostgreSQL cluster and its migrated MLflow template database."""

    pg: topology.Postgres
    template: str

    def new_store(self, root: Path) -> MlflowStore:
        """A fresh MLflow database, copied from the template (a fraction of a second)."""
        root.mkdir(parents=True, exist_ok=True)
        url = self.pg.create_database(template=self.template)
        return MlflowStore(root, url, url)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster on a free loopback port (as user ``postgres`` under
    root), MLflow's schema migrated once into a template; stopped and deleted at the end."""
    pg = topology.start_postgres()
    try:
        yield PgCluster(pg, topology.migrate_template(pg))
    finally:
        pg.stop()


@pytest.fixture
def pg_store(postgres: PgCluster, workdir: Path) -> MlflowStore:
    """A fresh MLflow store in its own PostgreSQL database (``postgresql://`` URIs)."""
    return postgres.new_store(workdir / "pg")


@pytest.fixture(scope="session")
def s3() -> Iterator[topology.S3]:
    """moto's S3 server (its own process) on a free loopback port with bucket ``arcuate``;
    while it runs, the AWS variables (dummy credentials, ``MLFLOW_S3_ENDPOINT_URL``,
    ``AWS_ENDPOINT_URL``) point every client at it: MLflow, boto3 and deltalake alike."""
    server = topology.start_s3("arcuate")
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in server.env.items():
                mp.setenv(key, value)
            yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Any]:
    """Azurite's blob service (Microsoft's Azure Storage emulator, from npm: installed into a
    cache on first use) on a free loopback port; skipped where npm is not installed."""
    from tests.topology import azurite as emulator

    try:
        emulator.install()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    server = emulator.start()
    try:
        yield server
    finally:
        server.stop()


class PgServerStore(ServerStore):
    """An ``mlflow server`` on PostgreSQL with its artifacts in S3."""

    def __init__(self, url: str, root: Path, backend_uri: str, artifacts: str) -> None:
        super().__init__(url, root)
        self.backend_uri = backend_uri
        self.artifacts = artifacts


@pytest.fixture(scope="session")
def mlflow_server_pg(
    postgres: PgCluster, s3: topology.S3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PgServerStore]:
    """One real ``mlflow server --backend-store-uri postgresql://... --artifacts-destination
    s3://arcuate/server`` for the session (``--workers 1``, no job runner, its own process
    group); tests use their own experiment and model names on it."""
    root = tmp_path_factory.mktemp("mlflow-server-pg")
    backend = postgres.pg.create_database("mlflow_server", postgres.template)
    artifacts = f"s3://{s3.bucket}/server"
    server = topology.start_mlflow_server(backend, artifacts, root, workers=1, env=s3.env)
    try:
        yield PgServerStore(server.url, root, backend, artifacts)
    finally:
        server.stop()


# -- Spark: a real Sail Spark Connect server (tests/spark, the Spark half of tests/conformance) ---
def _stop(proc: Any) -> None:
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def sail_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Sail Spark Connect server on 127.0.0.1 (its port), for the whole session.

    Sail runs in its own process (``tests/spark/sail_server.py``), so Python UDFs run apart
    from pytest, as on a cluster; it is stopped with its process group at the end.
    """
    import subprocess
    import sys

    pytest.importorskip("pysail")
    root = tmp_path_factory.mktemp("sail")
    # one session serves the whole run: Sail's idle-session timeout (minutes) must not end it
    # while other tests run between the Spark ones
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RUST_LOG": "warn",
        "SAIL_SPARK__SESSION_TIMEOUT_SECS": "86400",
    }
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "SPARK_REMOTE"):
        env.pop(var, None)
    log = open(root / "sail.log", "wb")  # noqa: SIM115 - closed below
    server = Path(__file__).parent / "spark" / "sail_server.py"
    proc = subprocess.Popen(
        [sys.executable, "-u", str(server)],
        cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"Sail did not start: {(root / 'sail.log').read_text()}")
        yield int(line)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _stop(proc)
        log.close()


@pytest.fixture(scope="session")
def spark(sail_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A pyspark Spark Connect session to the Sail server (managed tables in a temp dir)."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(f"sc://127.0.0.1:{sail_port}").getOrCreate()
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session.conf.set("spark.sql.warehouse.dir", str(warehouse))
    try:
        yield session
    finally:
        session.stop()
