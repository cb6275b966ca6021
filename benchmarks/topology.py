"""The production topology's real parts, started by the project itself (issue 13).

A throwaway PostgreSQL cluster on a free loopback port, an S3 endpoint (moto in server mode),
``mlflow server`` processes backed by them, and the peer tool (``databricks-mlflow-export-import``)
in its own cached venv. The test fixtures (``tests/conftest.py``) and the benchmarks both start
their parts here; nothing in this module imports arcuate.

PostgreSQL refuses to run as root, so under root the cluster runs as the ``postgres`` user, in a
temporary directory that user owns. Nothing here ever talks to real AWS: the S3 environment
points every AWS client at the local endpoint with dummy credentials.

``python -m benchmarks.topology`` is the smoke check: it starts PostgreSQL, moto and two
PostgreSQL-backed servers, logs a run into the provider, and moves it to the recipient with the
peer's export and import commands, printing how long each part took.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The peer measured beside arcuate (never a project dependency: it gets its own venv).
PEER = "databricks-mlflow-export-import"
PEER_VERSION = "1.2.1"
PEER_VENV = Path.home() / ".cache" / "arcuate-bench" / "peer-venv"
#: The database every test or benchmark store is cloned from (migrated once).
TEMPLATE_DB = "mlflow_template"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes] | None, log: Path, seconds: float) -> None:
    """Wait until ``url`` answers 2xx; fail with the log if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if 200 <= r.status < 300:
                    return
        except OSError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            raise RuntimeError(f"{url} did not come up; log {log}:\n{tail}")
        time.sleep(0.1)


def _stop_group(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    """Stop a process started in its own session, with everything it started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- PostgreSQL ---------------------------------------------------------------------------------
def pg_bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` live: PATH, else ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin`` (Debian's packages keep them off PATH)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
        "(apt-get install -y postgresql) or put them on PATH"
    )


def _pg_user() -> dict[str, Any]:
    """Popen arguments that run a PostgreSQL binary as a non-root user (``postgres``)."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, with no 'postgres' user to run PostgreSQL") from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


@dataclass
class Postgres:
    """A running throwaway cluster: superuser ``postgres``, trust auth, loopback only."""

    root: Path
    port: int
    bindir: Path
    started_s: float = 0.0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, db: str = "postgres") -> str:
        """A ``postgresql://`` URL of database ``db`` (what MLflow and SQLAlchemy take)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def execute(self, *statements: str, db: str = "postgres") -> None:
        """Run statements in autocommit (CREATE DATABASE cannot run in a transaction)."""
        import psycopg

        with psycopg.connect(self.url(db), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """A new database (a copy of ``template`` when given); its URL."""
        name = name or f"db_{uuid.uuid4().hex[:12]}"
        clause = f' TEMPLATE "{template}"' if template else ""
        self.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def stop(self) -> None:
        """Stop the cluster and delete it (an immediate shutdown: nothing in it is kept)."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                 "stop"],
                capture_output=True,
                **_pg_user(),
            )
        shutil.rmtree(self.root, ignore_errors=True)


def _pg_conf(root: Path, port: int) -> str:
    """A cluster tuned for throwaway stores: loopback only, no durability (it dies with us)."""
    return (
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{root}'\n"
        "max_connections = 300\n"
        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
    )


def start_postgres() -> Postgres:
    """Start a throwaway cluster in a new temporary directory; stop it with ``.stop()``."""
    began = time.monotonic()
    bindir = pg_bindir()
    user = _pg_user()
    root = Path(tempfile.mkdtemp(prefix="arcuate-pg-"))
    if user:
        os.chown(root, user["user"], user["group"])
    pg = Postgres(root, free_port(), bindir)
    try:
        _run_pg(
            [str(bindir / "initdb"), "-D", str(pg.data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync"], root,
        )  # fmt: skip
        with open(pg.data / "postgresql.conf", "a") as conf:
            conf.write(_pg_conf(root, pg.port))
        _run_pg(
            [str(bindir / "pg_ctl"), "-D", str(pg.data), "-l", str(root / "postgres.log"),
             "-w", "-t", "60", "start"], root,
        )  # fmt: skip
    except BaseException:
        pg.stop()
        raise
    pg.started_s = time.monotonic() - began
    return pg


def _run_pg(cmd: list[str], root: Path) -> None:
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, **_pg_user())
    if done.returncode != 0:
        log = root / "postgres.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"{Path(cmd[0]).name} failed:\n{done.stdout}{done.stderr}{tail}")


def migrate_template(pg: Postgres, name: str = TEMPLATE_DB) -> str:
    """Database ``name`` with MLflow's schema migrated (once), closed to connections so that
    ``pg.create_database(template=name)`` can copy it in a fraction of a second."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    url = pg.create_database(name)
    with tempfile.TemporaryDirectory() as tmp:
        tracking = SqlAlchemyStore(url, tmp)
        registry = RegistryStore(url)
        tracking.engine.dispose()
        registry.engine.dispose()
    pg.execute(
        f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false',
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
    )
    return name


# -- S3 (moto) ----------------------------------------------------------------------------------
@dataclass
class S3:
    """A local S3 endpoint with one bucket; ``env`` points AWS clients and MLflow at it."""

    endpoint: str
    bucket: str
    env: dict[str, str]
    _server: Any = field(repr=False)
    started_s: float = 0.0

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_DEFAULT_REGION"],
        )

    @property
    def pid(self) -> int | None:
        """The endpoint's process (None when it runs in a thread of this one)."""
        return self._server.pid if isinstance(self._server, subprocess.Popen) else None

    def stop(self) -> None:
        if isinstance(self._server, subprocess.Popen):
            _stop_group(self._server)
        else:
            self._server.stop()


def s3_env(endpoint: str) -> dict[str, str]:
    """Dummy credentials and the endpoint, for boto3, MLflow and delta-rs alike; no AWS config
    file or instance metadata is consulted, so nothing can reach real AWS."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def start_s3(bucket: str = "arcuate", *, in_thread: bool = False, log: Path | None = None) -> S3:
    """moto's S3 on a free loopback port, with ``bucket`` created; stop it with ``.stop()``.

    By default ``moto.server`` runs in its own process group: a ``ThreadedMotoServer`` in this
    process (``in_thread``) serves MLflow's boto3 calls, but deltalake's writes to it never
    get an answer (they time out after 180 s), and a benchmark's CPU figures would include it.
    """
    began = time.monotonic()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server: Any
    if in_thread:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
    else:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        if log:
            out.close()
    s3 = S3(endpoint, bucket, s3_env(endpoint), server)
    try:
        proc = None if in_thread else server
        _wait_http(f"{endpoint}/moto-api/", proc, log or Path(os.devnull), 60)
        s3.client().create_bucket(Bucket=bucket)
    except BaseException:
        s3.stop()
        raise
    s3.started_s = time.monotonic() - began
    return s3


# -- mlflow server ------------------------------------------------------------------------------
@dataclass
class MlflowServer:
    """A running ``mlflow server``: REST tracking and registry at ``url``."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    started_s: float = 0.0

    def stop(self) -> None:
        """SIGTERM to the group; once uvicorn and its workers have shut down, the ``mlflow``
        CLI above them is killed (it lingers about 4 s after they are gone)."""
        import psutil

        try:
            below = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            below = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        psutil.wait_procs(below, timeout=15)
        _stop_group(self.proc, timeout=0.5)


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without ambient MLflow URIs, without telemetry or the job runner (which
    would cost about 2 GB more), plus ``extra`` (the S3 variables)."""
    env = {**os.environ, **(extra or {})}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ACTIVE_MODEL_ID"):
        env.pop(var, None)
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    return env


def start_mlflow_server(
    backend_uri: str,
    artifacts_destination: str,
    root: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> MlflowServer:
    """``mlflow server`` on a free loopback port, in its own process group, serving artifacts
    itself (``mlflow-artifacts:/`` → ``artifacts_destination``); stop it with ``.stop()``."""
    began = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root / f"mlflow-server-{port}.log"
    out = open(log, "wb")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", backend_uri,
            "--artifacts-destination", artifacts_destination,
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        ],
        cwd=root, stdout=out, stderr=subprocess.STDOUT, env=server_env(env),
        start_new_session=True,
    )  # fmt: skip
    out.close()
    server = MlflowServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        _wait_http(f"{server.url}/health", proc, log, 120)
    except BaseException:
        server.stop()
        raise
    server.started_s = time.monotonic() - began
    return server


# -- the whole topology, for the benchmarks ------------------------------------------------------
@dataclass
class Topology:
    """PostgreSQL, S3 and two PostgreSQL-backed servers (provider and recipient)."""

    pg: Postgres
    s3: S3
    provider_db: str
    recipient_db: str
    provider: MlflowServer
    recipient: MlflowServer
    timings: dict[str, float]


@contextlib.contextmanager
def production(root: Path, *, workers: int = 1, bucket: str = "arcuate") -> Iterator[Topology]:
    """Start PostgreSQL, moto (its own process) and a provider and a recipient ``mlflow
    server`` (``--workers``), each on its own database and S3 prefix; stop all at the end."""
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        pg = start_postgres()
        stack.callback(pg.stop)
        s3 = start_s3(bucket, log=root / "moto.log")
        stack.callback(s3.stop)
        began = time.monotonic()
        template = migrate_template(pg)
        migrated = time.monotonic() - began
        dbs = {side: pg.create_database(f"{side}_{uuid.uuid4().hex[:8]}", template)
               for side in ("provider", "recipient")}  # fmt: skip
        servers: dict[str, MlflowServer] = {}

        def start(side: str) -> None:  # both at once: each mostly waits for its imports
            servers[side] = start_mlflow_server(
                dbs[side], f"s3://{bucket}/{side}", root / side, workers=workers, env=s3.env
            )
            stack.callback(servers[side].stop)

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(start, dbs))
        yield Topology(
            pg, s3, dbs["provider"], dbs["recipient"], servers["provider"],
            servers["recipient"],
            {"postgres": pg.started_s, "s3": s3.started_s, "migrate template": migrated,
             "provider server": servers["provider"].started_s,
             "recipient server": servers["recipient"].started_s},
        )  # fmt: skip


# -- the peer: databricks-mlflow-export-import in its own cached venv ----------------------------
def _peer_spec() -> list[str]:
    """What the peer's venv holds: the pinned peer, the same MLflow client version as ours,
    and what MLflow needs to open ``postgresql://`` stores itself (mlflow-skinny lacks it)."""
    from importlib.metadata import version

    return [
        f"{PEER}=={PEER_VERSION}",
        f"mlflow-skinny=={version('mlflow')}",
        "sqlalchemy>=2.1",
        "alembic",
        "psycopg[binary]>=3.1",
        "boto3",
    ]


def install_peer(venv: Path = PEER_VENV) -> Path:
    """The peer's venv, made once and reused while the spec is unchanged; its ``bin`` dir.
    Never a project dependency: it only ever runs as its own commands."""
    spec = "\n".join(_peer_spec())
    marker = venv / "arcuate-peer-spec.txt"
    if marker.exists() and marker.read_text() == spec:
        return venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", *spec.split("\n")],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        tail = f"{done.stdout[-2000:]}{done.stderr[-3000:]}"
        raise RuntimeError(f"installing the peer failed:\n{tail}")
    marker.write_text(spec)
    return venv / "bin"


def run_peer(
    command: str,
    *args: str,
    tracking_uri: str,
    env: Mapping[str, str] | None = None,
    venv: Path = PEER_VENV,
) -> float:
    """Run one of the peer's commands (``export-experiment``, ``import-model``...) against
    ``tracking_uri``; its wall-clock seconds. Raises with the end of its output if it fails."""
    run_env = server_env(env)
    run_env["MLFLOW_TRACKING_URI"] = run_env["MLFLOW_REGISTRY_URI"] = tracking_uri
    began = time.monotonic()
    done = subprocess.run(
        [str(venv / "bin" / command), *args], env=run_env, capture_output=True, text=True
    )
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError(f"peer {command} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                           f"{done.stderr[-3000:]}")  # fmt: skip
    return seconds


def peer_export_experiment(tracking_uri: str, experiment: str, out: Path, **kw: Any) -> float:
    return run_peer("export-experiment", "--experiment", experiment, "--output-dir", str(out),
                    tracking_uri=tracking_uri, **kw)  # fmt: skip


def peer_import_experiment(tracking_uri: str, experiment: str, src: Path, **kw: Any) -> float:
    return run_peer("import-experiment", "--experiment-name", experiment, "--input-dir", str(src),
                    tracking_uri=tracking_uri, **kw)  # fmt: skip


def peer_export_model(tracking_uri: str, model: str, out: Path, **kw: Any) -> float:
    return run_peer("export-model", "--model", model, "--output-dir", str(out),
                    tracking_uri=tracking_uri, **kw)  # fmt: skip


def peer_import_model(
    tracking_uri: str, model: str, experiment: str, src: Path, **kw: Any
) -> float:
    return run_peer("import-model", "--model", model, "--experiment-name", experiment,
                    "--input-dir", str(src), tracking_uri=tracking_uri, **kw)  # fmt: skip


# -- smoke check --------------------------------------------------------------------------------
def _log_small(url: str, root: Path) -> str:
    """A run with params, a metric history and a file in the provider; its experiment name."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(url, url)
    eid = client.create_experiment("smoke")
    run = client.create_run(eid, run_name="smoke run").info.run_id
    client.log_batch(
        run,
        metrics=[Metric("loss", 1 / (i + 1), 1_700_000_000_000 + i, i) for i in range(10)],
        params=[Param("lr", "0.1")],
    )
    (root / "notes.txt").write_text("hello\n")
    client.log_artifact(run, str(root / "notes.txt"))
    client.set_terminated(run)
    return "smoke"


def smoke(root: Path, workers: int) -> dict[str, float]:
    """Start the topology, move one small experiment with the peer (from the provider server
    and from its database directly), check the recipient got it; the seconds of each part."""
    from mlflow import MlflowClient

    with production(root, workers=workers) as topo:
        figures = dict(topo.timings)
        name = _log_small(topo.provider.url, root)
        began = time.monotonic()
        install_peer()
        figures["peer venv (cached after the first run)"] = time.monotonic() - began
        env = topo.s3.env
        figures["peer export (REST)"] = peer_export_experiment(
            topo.provider.url, name, root / "peer-rest", env=env
        )
        figures["peer export (postgresql:// directly)"] = peer_export_experiment(
            topo.provider_db, name, root / "peer-db", env=env
        )
        figures["peer import (REST)"] = peer_import_experiment(
            topo.recipient.url, name, root / "peer-rest", env=env
        )
        client = MlflowClient(topo.recipient.url, topo.recipient.url)
        exp = client.get_experiment_by_name(name)
        (run,) = client.search_runs([exp.experiment_id])
        assert run.data.params == {"lr": "0.1"}, run.data.params
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 10
        assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["notes.txt"]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.topology", description=__doc__)
    parser.add_argument("--workers", type=int, default=1, help="mlflow server --workers")
    parser.add_argument("--dir", help="where logs and exports go (default: a temp dir)")
    args = parser.parse_args(argv)
    root = Path(args.dir or tempfile.mkdtemp(prefix="arcuate-topology-")).absolute()
    root.mkdir(parents=True, exist_ok=True)
    figures = smoke(root, args.workers)
    for what, seconds in figures.items():
        print(f"{what:<45} {seconds:7.2f} s")
    print(f"ok: peer moved the smoke experiment between PostgreSQL-backed servers ({root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
