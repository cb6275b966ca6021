"""A provider and a recipient on one machine, named as the docs name them, and the block runners.

The provider's MLflow store holds experiment ``churn`` (three finished runs with params, metric
histories and model files) and registered model ``churn`` (versions 1-4, alias ``champion``).
Each document runs in a world of its own: the provider works in ``provider/`` (its MLflow's
default ``mlflow.db``, warehouse ``warehouse``, a sharing server on a free loopback port whose
endpoint is the ``endpoint`` setting), the recipient in ``recipient/`` (its own ``mlflow.db``).
A profile the provider writes is "sent": copied to the recipient's directory, where the docs
read it (``acme.share``).

Who runs what: a SQL statement that reads a share (CREATE EXPERIMENT/MODEL ... AS, DESCRIBE
'<coordinate>', SHOW SHARES IN PROVIDER) runs as the recipient, every other as the provider;
python and bash blocks run as the recipient in ``docs/recipient.md`` and as the provider
elsewhere. A document that creates no recipient starts where the README's provider statements
leave off (:data:`PRESHARE`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.docs.blocks import ROOT, Block

RECIPIENT_DOCS = frozenset({"docs/recipient.md", "docs/trust.md"})
PRESHARE = """
CREATE SHARE ml WITH TABLE churn_runs FROM EXPERIMENT churn;
CREATE SHARE ml WITH TABLE churn_model FROM MODEL churn;
CREATE RECIPIENT acme PROFILE 'acme.share';
GRANT SELECT ON SHARE ml TO RECIPIENT acme;
"""
#: ``export.arcsql``, which the README runs with ``arcuate run``.
EXPORT_SCRIPT = """CREATE SHARE ml WITH TABLE churn_runs FROM EXPERIMENT churn;
CREATE SHARE ml WITH TABLE churn_model FROM MODEL churn;
"""
_MLMODEL = """artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.sklearn
    python_version: 3.11.9
  sklearn:
    sklearn_version: 1.5.0
"""


def build_provider(db: Path) -> None:
    """Experiment ``churn`` and registered model ``churn`` in the sqlite store ``db``."""
    from arcuate.backends.mlflow.connect import make_client

    uri = f"sqlite:///{db}"
    client = make_client(uri, uri)
    eid = client.create_experiment("churn", artifact_location=str(db.parent / "mlruns" / "churn"))
    files = db.parent / "files"
    (files / "model").mkdir(parents=True, exist_ok=True)
    (files / "model" / "MLmodel").write_text(_MLMODEL)
    (files / "model" / "requirements.txt").write_text("scikit-learn==1.5.0\n")
    runs = []
    for i, (kind, auc) in enumerate((("xgboost", 0.91), ("xgboost", 0.86), ("logreg", 0.74))):
        run = client.create_run(eid, run_name=f"{kind}-{i}", start_time=1_700_000_000_000 + i)
        rid = run.info.run_id
        client.log_param(rid, "model", kind)
        for step in range(3):
            client.log_metric(rid, "auc", auc - 0.02 * (2 - step), step=step)
        (files / "model" / "weights.json").write_text(f'{{"run": {i}}}')
        client.log_artifacts(rid, str(files / "model"), "model")
        client.set_terminated(rid, "FINISHED", end_time=1_700_000_060_000 + i)
        runs.append(rid)
    client.create_registered_model("churn", description="churn classifier")
    for v in range(1, 5):
        rid = runs[(v - 1) % 3]
        client.create_model_version("churn", f"runs:/{rid}/model", run_id=rid)
    client.set_registered_model_alias("churn", "champion", "2")


@dataclass
class Role:
    """Where one side works: its directory, environment and ``execute`` settings."""

    name: str
    cwd: Path
    env: dict[str, str | None]
    settings: dict[str, str]


@dataclass
class World:
    """One document's provider, recipient and sharing server."""

    root: Path
    provider: Role
    recipient: Role
    server: Any
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__docs__"})
    shells: dict[str, CellSession] = field(default_factory=dict)

    def close(self) -> None:
        """Stop the document's IPython shells and its sharing server."""
        for shell in self.shells.values():
            shell.close()
        self.server.stop()

    @contextlib.contextmanager
    def acting(self, role: Role) -> Iterator[None]:
        """Work as ``role`` (directory and environment); a provider's profiles are then sent."""
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(role.cwd)
            for key, value in role.env.items():
                if value is None:
                    mp.delenv(key, raising=False)
                else:
                    mp.setenv(key, value)
            yield
        if role is self.provider:
            self.send_profiles()

    def send_profiles(self) -> None:
        """What the provider does by mail: the profiles it wrote go to the recipient."""
        for profile in self.provider.cwd.glob("*.share"):
            shutil.copy2(profile, self.recipient.cwd / profile.name)

    def subprocess_env(self, role: Role) -> dict[str, str]:
        """The environment of a bash block: this checkout's arcuate, the venv's ``arcuate``."""
        env = {k: v for k, v in os.environ.items() if k not in role.env}
        env.update({k: v for k, v in role.env.items() if v is not None})
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        return env


def make_world(root: Path, provider_db: Path, template_db: Path) -> World:
    """A provider (a copy of the docs' store), an empty recipient and a running server."""
    from arcuate.backends.sharing.server import serve_in_thread

    provider_dir, recipient_dir = root / "provider", root / "recipient"
    provider_dir.mkdir(parents=True)
    recipient_dir.mkdir(parents=True)
    shutil.copyfile(provider_db, provider_dir / "mlflow.db")
    shutil.copyfile(template_db, recipient_dir / "mlflow.db")
    (provider_dir / "export.arcsql").write_text(EXPORT_SCRIPT)
    warehouse = provider_dir / "warehouse"
    server = serve_in_thread(str(warehouse / "shares.yaml"))
    mlflow_env: dict[str, str | None] = {"MLFLOW_TRACKING_URI": None, "MLFLOW_REGISTRY_URI": None}
    provider = Role(
        "provider",
        provider_dir,
        {**mlflow_env, "ARCUATE_WAREHOUSE": str(warehouse), "ARCUATE_ENDPOINT": server.endpoint},
        {"tracking_uri": f"sqlite:///{provider_dir / 'mlflow.db'}", "warehouse": str(warehouse)},
    )
    provider.settings["endpoint"] = server.endpoint
    recipient = Role(
        "recipient",
        recipient_dir,
        {**mlflow_env, "ARCUATE_WAREHOUSE": str(recipient_dir / "warehouse")},
        {"tracking_uri": f"sqlite:///{recipient_dir / 'mlflow.db'}"},
    )
    return World(root, provider, recipient, server)


# -- running blocks ----------------------------------------------------------------------------


def run_block(world: World, block: Block) -> None:
    """Run one block as the docs mean it; an error names the block."""
    runner = {"sql": run_sql, "python": run_python, "bash": run_bash, "sh": run_bash}[block.lang]
    try:
        runner(world, block)
    except Exception as exc:
        raise AssertionError(f"{block.where} ({block.lang}) failed: {exc}") from exc


def block_role(world: World, block: Block) -> Role:
    return world.recipient if block.doc in RECIPIENT_DOCS else world.provider


def statement_role(world: World, stmt: Any) -> Role:
    from arcuate.syntax import ast

    reads = (ast.CreateExperiment, ast.CreateModel, ast.DescribeShared, ast.ShowProviderShares)
    return world.recipient if isinstance(stmt, reads) else world.provider


def run_sql(world: World, block: Block) -> None:
    """Each statement through ``arcuate.execute``, as the side it belongs to."""
    import arcuate

    script = arcuate.parse_script(block.text, source=block.where)
    for stmt in script.statements:
        role = statement_role(world, stmt)
        text = script.text[stmt.span.start : stmt.span.end]
        where = f"{block.doc}:{block.line + stmt.span.line - 1}"
        with world.acting(role):
            try:
                arcuate.execute(text, source=where, **role.settings)
            except Exception as exc:
                raise AssertionError(f"{where}: {text}\n{exc}") from exc


def run_python(world: World, block: Block) -> None:
    """Plain Python in the document's namespace; a block with magics is one IPython cell."""
    role = block_role(world, block)
    if any(line.startswith("%") for line in block.text.splitlines()):
        if role.name not in world.shells:
            world.shells[role.name] = CellSession(world, role)
        world.shells[role.name].run(block.text)
        if role is world.provider:
            world.send_profiles()
        return
    with world.acting(role):
        exec(compile(block.text, block.where, "exec"), world.namespace)


#: A real IPython shell in its own process: one JSON-encoded cell per stdin line, one JSON
#: answer per stdout line (what the cell prints goes to stderr).
_SHELL = r"""
import contextlib, json, sys
from IPython.testing.globalipapp import start_ipython
shell, answers = start_ipython(), sys.stdout
for line in sys.stdin:
    with contextlib.redirect_stdout(sys.stderr):
        result = shell.run_cell(json.loads(line), store_history=False)
    error = result.error_before_exec or result.error_in_exec
    text = None if error is None else f"{type(error).__name__}: {error}"
    answers.write(json.dumps({"ok": result.success, "error": text}) + "\n")
    answers.flush()
"""


class CellSession:
    """An IPython shell of the document's (cells share its state, as in a notebook), in a
    process of its own so that no global shell of the test session is touched."""

    def __init__(self, world: World, role: Role) -> None:
        self.log = world.root / f"ipython-{role.name}.log"
        self._err = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SHELL],
            cwd=role.cwd,
            env=world.subprocess_env(role),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )

    def run(self, cell: str) -> None:
        import json

        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cell) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the IPython shell ended: {self.log.read_text()}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise AssertionError(f"{answer['error']}\n{self.log.read_text()[-2000:]}")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


def _commands(text: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments dropped."""
    joined = text.replace("\\\n", " ")
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def run_bash(world: World, block: Block) -> None:
    """Each command with this checkout's ``arcuate``; ``arcuate serve`` in the background."""
    role = block_role(world, block)
    env = world.subprocess_env(role)
    for words in _commands(block.text):
        if words[:2] == ["arcuate", "serve"]:
            _serve(world, words, env, role)
            continue
        done = subprocess.run(
            words, cwd=role.cwd, env=env, capture_output=True, text=True, timeout=180
        )
        if done.returncode != 0:
            raise AssertionError(f"{shlex.join(words)} exited {done.returncode}: {done.stderr}")
        if role is world.provider:
            world.send_profiles()


def _serve(world: World, words: list[str], env: dict[str, str], role: Role) -> None:
    """``arcuate serve`` as written, on a free port (parallel test runs share the machine):
    wait for its banner, read the shares with acme's profile, stop it with SIGTERM."""
    import httpx

    args = list(words)
    if "--port" in args:
        args[args.index("--port") + 1] = "0"
    else:
        args += ["--port", "0"]
    proc = subprocess.Popen(
        args, cwd=role.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        banner = _banner(proc)
        port = next(int(b.split(":")[-1].split()[0]) for b in banner if "listening on" in b)
        prefix = args[args.index("--prefix") + 1] if "--prefix" in args else "/delta-sharing"
        token = _token(world.provider.cwd / "acme.share")
        answer = httpx.get(
            f"http://127.0.0.1:{port}{prefix}/shares",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert answer.status_code == 200 and {"name": "ml"} in answer.json()["items"], answer.text
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "arcuate: stopped" in out, err


def _banner(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    while not lines or "press Ctrl+C" not in lines[-1]:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(
                f"arcuate serve ended: {lines} {proc.stderr and proc.stderr.read()}"
            )
        lines.append(line.rstrip("\n"))
    return lines


def _token(profile: Path) -> str:
    import json

    return str(json.loads(profile.read_text())["bearerToken"])
