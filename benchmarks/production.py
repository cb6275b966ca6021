"""``python -m benchmarks production``: arcuate and the peer on the production topology (issue 13).

One invocation starts PostgreSQL, moto's S3 server and two ``mlflow server`` processes on them
(provider and recipient, ``--workers N``; :mod:`benchmarks.topology`), seeds the provider
(:mod:`benchmarks.prod_workload`), and measures, every step a fresh process started as a user
starts it (``arcuate run script.arcsql``, the peer's own commands), for ``bench-200``, a 3-run
share and a small registered model:

(a) **REST**: arcuate exports from the provider server into a Delta table in a local warehouse
    and in an S3 warehouse, ``arcuate serve`` serves them (*transfer*: the ``delta_sharing``
    client lists and downloads the whole table), and arcuate imports the S3 table into the
    recipient server;
(b) **databases reachable**: arcuate exports reading the provider's ``postgresql://`` directly
    and imports writing the recipient's ``postgresql://`` directly (with ``import_path`` at its
    default, ``auto``; the report says which path that took). A direct read cannot reach the
    artifacts the server proxies (``mlflow-artifacts:/``), so (b) reads a copy of each
    experiment whose artifact location is ``s3://`` (a *probe* step says whether the proxied
    one still fails), and imports into an experiment made first with an ``s3://`` location;
(c) **the peer** (``databricks-mlflow-export-import``, in its cached venv): its export and
    import of the same experiments and model over REST, and from/into the databases directly.

Each step's wall time, the statement's own seconds (arcuate) and the peak RSS of each process
(the command, its largest helper, ``arcuate serve``) are printed with the ratios peer / arcuate,
and every destination is checked against the source (runs, metric points per history, values,
params, tags, versions, artifact files and bytes), so a fast wrong copy fails the run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import topology
from benchmarks.phases import MARK
from benchmarks.prod_workload import Counts, Seeded, check, counts, seed
from benchmarks.runner import child_env, machine, process_rss, tree_cpu, tree_rss
from benchmarks.shapes import KiB, Shape, human, resolve

SHARE, SCHEMA, RECIPIENT = "prod", "bench", "bench-reader"
MIB = 1024 * 1024
_SAMPLE_SECONDS = 0.05
#: Where the rows of a workload's table come from, and what each part compares.
PARTS = {
    "a": "(a) REST: provider server -> Delta table -> arcuate serve -> recipient server",
    "b": "(b) databases reachable: postgresql:// read and written directly",
}


# -- one measured command -------------------------------------------------------------------------
@dataclass
class Step:
    """One command of one tool: its wall time, its peaks, and whether its result was right."""

    tool: str
    #: what the step is: a key of :data:`LABELS`
    key: str
    #: more about it (which path ``auto`` took)
    detail: str = ""
    wall: float = 0.0
    #: the statement's own seconds (arcuate's summary; a transfer's clock), without start-up
    work: float | None = None
    peak: int = 0
    helper: int = 0
    serve_peak: int = 0
    error: str | None = None
    check: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    #: CPU seconds the tracking server this step talked to spent meanwhile (its whole process
    #: tree), and the PostgreSQL cluster's: the floor no client can go under
    server_cpu: float | None = None
    db_cpu: float | None = None
    #: ... the S3 endpoint's and arcuate's sharing server's, and the command's own (its
    #: process and its helpers): with the others, how busy the machine's CPUs were
    s3_cpu: float | None = None
    serve_cpu: float | None = None
    own_cpu: float | None = None

    @property
    def label(self) -> str:
        return LABELS[self.key] + (f" ({self.detail})" if self.detail else "")

    @property
    def ok(self) -> bool:
        return self.error is None and not (self.check or "").startswith("MISMATCH")

    def rss(self) -> str:
        """Peak RSS of the command, of its largest helper, and of the sharing server."""
        if not self.peak:
            return "-"
        text = f"{self.peak / MIB:.0f}"
        if self.helper:
            text += f" (helper {self.helper / MIB:.0f})"
        if self.serve_peak:
            text += f"; serve {self.serve_peak / MIB:.0f}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "label": self.label, "ok": self.ok}


class Serve:
    """``arcuate serve`` in its own process group on a free port, sampled for its RSS."""

    def __init__(
        self, command: list[str], port: int, catalog: Path, env: dict[str, str], log: Path
    ) -> None:
        self.port = port
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*command, "serve", "--catalog", str(catalog), "--port", str(self.port),
             "--log-level", "warning"],
            env=env, cwd=catalog.parent, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.log = log
        self.peak = 0

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=1
            ):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"arcuate serve did not start: {_tail(self.log)}")
            time.sleep(0.1)

    def sample(self) -> None:
        self.peak = max(self.peak, tree_rss(self.proc.pid))

    def stop(self) -> None:
        topology._stop_group(self.proc)
        self._log.close()


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def measure(
    cmd: list[str], env: dict[str, str], cwd: Path, log: Path, serve: Serve | None = None
) -> tuple[float, int, int, int, int]:
    """Run ``cmd`` (stdout and stderr to ``log``), sampling its RSS, its largest helper's and
    the server's; (wall seconds, exit status, own peak, helper peak, server peak)."""
    cwd.mkdir(parents=True, exist_ok=True)
    peak = helper = 0
    if serve is not None:
        serve.peak = 0
    began = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            own, child = process_rss(proc.pid)
            peak, helper = max(peak, own), max(helper, child)
            if serve is not None:
                serve.sample()
            time.sleep(_SAMPLE_SECONDS)
    wall = time.perf_counter() - began
    return wall, proc.returncode, peak, helper, serve.peak if serve is not None else 0


# -- the tools --------------------------------------------------------------------------------
def arcuate_command() -> list[str]:
    """The ``arcuate`` console script beside this interpreter (as a user runs it)."""
    script = Path(sys.executable).with_name("arcuate")
    return [str(script)] if script.exists() else [sys.executable, "-m", "arcuate"]


class Bench:
    """One invocation: the topology, the sharing server, the work directory, the steps."""

    def __init__(self, topo: topology.Topology, root: Path, peer: bool) -> None:
        self.topo = topo
        self.root = root
        self.peer = peer
        self.env = {**child_env(), **topo.s3.env, "ARCUATE_PROGRESS": "off"}
        self.peer_env = topology.server_env(topo.s3.env)
        self.arcuate = arcuate_command()
        self.catalog = root / "provider" / "shares.yaml"
        self.profile = root / "recipient" / "bench.share"
        self.local_warehouse = root / "provider" / "warehouse"
        self.s3_warehouse = f"s3://{topo.s3.bucket}/warehouse"
        self.serve: Serve | None = None
        self.steps: list[Step] = []
        self._count = 0

    def _cpu(self, tracking_uri: str) -> dict[str, float]:
        """CPU seconds so far of what a step makes work: the tracking server at
        ``tracking_uri`` (none for a database URI), the PostgreSQL cluster (postmaster and
        backends), the S3 endpoint, arcuate's sharing server, and this process's children
        that have ended (the step's command and its helpers, once it has ended)."""
        servers = {self.topo.provider.url: self.topo.provider, self.topo.recipient.url:
                   self.topo.recipient}  # fmt: skip
        pids: dict[str, int | None] = {"server": None, "db": None}
        server = servers.get(tracking_uri)
        if server is not None:
            pids["server"] = server.proc.pid
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids["db"] = int((self.topo.pg.data / "postmaster.pid").read_text().split()[0])
        pids["s3"] = self.topo.s3.pid
        pids["serve"] = self.serve.proc.pid if self.serve is not None else None
        spent = {name: tree_cpu(pid) for name, pid in pids.items() if pid is not None}
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent["own"] = usage.ru_utime + usage.ru_stime
        return spent

    @contextlib.contextmanager
    def metered(self, step: Step, tracking_uri: str) -> Iterator[None]:
        """The CPU the servers, the database and the command spend during the block, kept
        on ``step``."""
        before = self._cpu(tracking_uri)
        yield
        after = self._cpu(tracking_uri)
        spent = {name: after[name] - before[name] for name in after if name in before}
        step.server_cpu, step.db_cpu = spent.get("server"), spent.get("db")
        step.s3_cpu, step.serve_cpu = spent.get("s3"), spent.get("serve")
        step.own_cpu = spent.get("own")

    # -- arcuate ------------------------------------------------------------------------------
    def arcuate_run(self, step: Step, script: str, tracking_uri: str, **settings: str) -> Step:
        """``arcuate run --format json`` of one script in a fresh process; its summary (and
        for an import, the sharing server's peak RSS meanwhile)."""
        self._count += 1
        cwd = self.root / "arcuate" / f"{self._count:02d}"
        cwd.mkdir(parents=True, exist_ok=True)
        (cwd / "step.arcsql").write_text(script + "\n")
        cmd = [*self.arcuate, "run", "--format", "json", "step.arcsql",
               "--tracking-uri", tracking_uri, "--registry-uri", tracking_uri,
               "--catalog", str(self.catalog)]  # fmt: skip
        for key, value in settings.items():
            cmd += [f"--{key.replace('_', '-')}", value]
        env = dict(self.env)
        serve = self.serve if step.key.startswith("import") else None
        with self.metered(step, tracking_uri):
            step.wall, code, step.peak, step.helper, step.serve_peak = measure(
                cmd, env, cwd, cwd / "out.log", serve
            )
        entries = [json.loads(x) for x in (cwd / "out.log").read_text().splitlines()
                   if x.startswith("{")]  # fmt: skip
        for entry in entries:
            step.summary.update(entry.get("summary") or {})
            if entry.get("status") != "ok" and step.error is None:
                error = entry.get("error") or {}
                step.error = f"{error.get('code')}: {error.get('message', '')}".strip()
        if code != 0 and step.error is None:
            step.error = f"exit {code}: {_tail(cwd / 'out.log', 5)}"
        seconds = step.summary.get("seconds")
        step.work = float(seconds) if isinstance(seconds, int | float) else None
        return step

    def setup_sharing(self) -> None:
        """The recipient, its profile and ``arcuate serve`` (setup: not measured)."""
        port = topology.free_port()
        step = Step("arcuate", "setup")
        script = f"CREATE RECIPIENT IF NOT EXISTS `{RECIPIENT}` PROFILE '{self.profile}'"
        self.catalog.parent.mkdir(parents=True, exist_ok=True)
        endpoint = f"http://127.0.0.1:{port}/delta-sharing"
        self.arcuate_run(step, script, self.topo.provider.url, endpoint=endpoint)
        if step.error:
            raise RuntimeError(f"setting up the recipient failed: {step.error}")
        self.serve = Serve(self.arcuate, port, self.catalog, self.env, self.root / "serve.log")
        self.serve.wait_ready()

    def grant(self) -> None:
        step = Step("arcuate", "setup")
        script = f"GRANT SELECT ON SHARE {SHARE} TO RECIPIENT `{RECIPIENT}`"
        self.arcuate_run(step, script, self.topo.provider.url)
        if step.error:
            raise RuntimeError(f"granting the share failed: {step.error}")

    def transfer(self, step: Step, table: str) -> Step:
        """The whole table through ``arcuate serve`` to the ``delta_sharing`` client
        (``benchmarks.phases serve``: list the files, download every URL)."""
        self._count += 1
        cwd = self.root / "transfer" / f"{self._count:02d}"
        cwd.mkdir(parents=True, exist_ok=True)
        args = {"profile": str(self.profile), "share": SHARE, "schema": SCHEMA, "table": table,
                "clients": 0}  # fmt: skip
        (cwd / "args.json").write_text(json.dumps(args))
        cmd = [sys.executable, "-m", "benchmarks.phases", "serve", str(cwd / "args.json")]
        step.wall, code, step.peak, step.helper, step.serve_peak = measure(
            cmd, self.env, cwd, cwd / "out.log", self.serve
        )
        lines = [x for x in (cwd / "out.log").read_text().splitlines() if x.startswith(MARK)]
        if code != 0 or not lines:
            step.error = f"exit {code}: {_tail(cwd / 'out.log', 5)}"
            return step
        result = json.loads(lines[-1][len(MARK) :])
        step.work = float(result["seconds"])
        step.summary = {k: result[k] for k in ("files", "bytes", "errors")}
        bad = result["errors"] or not result["bytes"]
        step.check = (f"{'MISMATCH' if bad else 'ok'}: {human(result['bytes'])} in "
                      f"{result['files']} files, {result['errors']} errors")  # fmt: skip
        return step

    # -- the peer -----------------------------------------------------------------------------
    def peer_run(self, step: Step, command: str, tracking_uri: str, *args: str) -> Step:
        """One of the peer's commands against ``tracking_uri``, in a fresh process."""
        self._count += 1
        cwd = self.root / "peer" / f"{self._count:02d}"
        env = dict(self.peer_env)
        env["MLFLOW_TRACKING_URI"] = env["MLFLOW_REGISTRY_URI"] = tracking_uri
        cmd = [str(topology.PEER_VENV / "bin" / command), *args]
        with self.metered(step, tracking_uri):
            step.wall, code, step.peak, step.helper, _ = measure(cmd, env, cwd, cwd / "out.log")
        if code != 0:
            step.error = _peer_error(cwd / "out.log", code)
        return step


def _peer_error(log: Path, code: int) -> str:
    """The last line of a failed peer command's traceback (the exception)."""
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    for line in reversed(lines):
        if not line.startswith(" ") and ("Error" in line or "Exception" in line):
            return line.strip()
    return f"exit {code}: {lines[-1].strip() if lines else ''}"


# -- checks of what an export wrote --------------------------------------------------------------
def check_arcuate_export(step: Step, shape: Shape) -> None:
    """The export's summary names every run (version) and file of the source."""
    s = step.summary
    want = {"runs": shape.run_count if not shape.is_model else None,
            "versions": shape.versions or None, "files": shape.file_count,
            "bytes": shape.file_bytes}  # fmt: skip
    wrong = [f"{k} {s.get(k)} (expected {v})" for k, v in want.items()
             if v is not None and s.get(k) != v]  # fmt: skip
    got = f"{s.get('runs', s.get('versions'))} runs, {s.get('files')} files ({s.get('bytes')} B)"
    step.check = f"MISMATCH: {'; '.join(wrong)}" if wrong else f"ok: {got}"


def _peer_runs(out: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(out.rglob("run.json")):
        yield json.loads(path.read_text())["mlflow"]


def check_peer_export(step: Step, out: Path, shape: Shape) -> None:
    """The peer's export directory holds every run, metric point and artifact file."""
    runs = points = 0
    for run in _peer_runs(out):
        runs += 1
        points += sum(len(h) for h in run["metrics"].values())
    files = [p for p in out.rglob("*") if p.is_file() and "artifacts" in p.parts]
    size = sum(p.stat().st_size for p in files)
    got = f"{runs} runs, {points:,} metric points, {len(files)} files ({size:,} B)"
    want = (shape.run_count, shape.points, shape.file_count, shape.file_bytes)
    if shape.is_model:  # the peer also writes each version's MLmodel copy: at least the files
        bad = runs != want[0] or points != want[1] or len(files) < want[2]
    else:
        bad = (runs, points, len(files), size) != want
    step.check = f"{'MISMATCH' if bad else 'ok'}: {got}"
    if bad:
        step.check += f" (expected {want[0]} runs, {want[1]:,} points, {want[2]} files)"


# -- one workload ------------------------------------------------------------------------------
@dataclass
class Workload:
    """A workload's source: the proxied experiment (and model), and for (b) a copy whose
    artifact location is ``s3://`` (the direct paths cannot reach proxied artifacts)."""

    key: str
    shape: Shape
    proxied: Seeded
    direct: Seeded | None
    source: Counts
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: PostgreSQL alone, after the bulk import: (metric rows, wall seconds, its CPU seconds)
    floor: tuple[int, float, float | None] | None = None

    @property
    def slug(self) -> str:
        return self.key.replace("-", "_")

    def find(self, tool: str, key: str) -> Step | None:
        return next((s for s in self.steps if s.tool == tool and s.key == key), None)


def _verify(bench: Bench, w: Workload, step: Step, name: str, kind: str = "experiment") -> None:
    """Check what a step imported against the source (skipped when the step failed)."""
    if step.error:
        return
    got = counts(bench.topo, "recipient", name, kind=kind, steps=w.shape.steps,
                 root=bench.root)  # fmt: skip
    step.check = check(w.source, got, "recipient")


LABELS = {
    "setup": "setup",
    "export_local": "export: REST -> local warehouse",
    "export_s3": "export: REST -> S3 warehouse",
    "transfer_local": "transfer: arcuate serve, local table",
    "transfer_s3": "transfer: arcuate serve, S3 table (pre-signed URLs)",
    "import_rest": "import: REST",
    "export_db": "export: postgresql:// -> S3 warehouse",
    "export_db_proxied": "export: postgresql://, artifacts proxied by the server",
    "import_db": "import: postgresql://",
    "peer_export_rest": "export: REST",
    "peer_export_db": "export: postgresql://",
    "peer_import_rest": "import: REST",
    "peer_import_db": "import: postgresql://",
}


def run_experiment(bench: Bench, w: Workload) -> None:
    """Parts (a), (b) and (c) for one experiment workload."""
    _exports(bench, w)
    bench.grant()
    _transfers(bench, w)
    _imports(bench, w)


def _add(w: Workload, step: Step) -> Step:
    w.steps.append(step)
    status = "ok" if step.ok else f"FAILED: {_first(step.error or step.check or '')}"
    work = f" (work {step.work:.2f} s)" if step.work is not None else ""
    print(f"  {w.key}: {step.tool} {step.label}: {step.wall:.2f} s{work}, peak RSS "
          f"{step.rss()} MiB, {status}", flush=True)  # fmt: skip
    return step


def _exports(bench: Bench, w: Workload) -> None:
    topo, what = bench.topo, f"EXPERIMENT '{w.proxied.experiment}'"
    for key, warehouse in (("export_local", str(bench.local_warehouse)),
                           ("export_s3", bench.s3_warehouse)):  # fmt: skip
        table = f"{SCHEMA}.{w.slug}_{key.removeprefix('export_')}"
        step = Step("arcuate", key)
        bench.arcuate_run(step, f"CREATE SHARE {SHARE} WITH TABLE {table} FROM {what}",
                          topo.provider.url, warehouse=warehouse)  # fmt: skip
        check_arcuate_export(step, w.shape)
        _add(w, step)
    if bench.peer:
        out = bench.root / "peer-export" / f"{w.slug}_rest"
        step = bench.peer_run(Step("peer", "peer_export_rest"),
                              "export-experiment", topo.provider.url, "--experiment",
                              w.proxied.experiment, "--output-dir", str(out))  # fmt: skip
        if not step.error:
            check_peer_export(step, out, w.shape)
        _add(w, step)
    if w.direct is not None:
        _direct_exports(bench, w, w.direct)


def _direct_exports(bench: Bench, w: Workload, direct: Seeded) -> None:
    topo = bench.topo
    table = f"{SCHEMA}.{w.slug}_db"
    step = Step("arcuate", "export_db")
    bench.arcuate_run(step, f"CREATE SHARE {SHARE} WITH TABLE {table} FROM EXPERIMENT "
                      f"'{direct.experiment}'", topo.provider_db,
                      warehouse=bench.s3_warehouse)  # fmt: skip
    check_arcuate_export(step, w.shape)
    _add(w, step)
    if bench.peer:
        out = bench.root / "peer-export" / f"{w.slug}_db"
        step = bench.peer_run(Step("peer", "peer_export_db"),
                              "export-experiment", topo.provider_db, "--experiment",
                              direct.experiment, "--output-dir", str(out))  # fmt: skip
        if not step.error:
            check_peer_export(step, out, w.shape)
        _add(w, step)


def probe_proxied_db_export(bench: Bench, w: Workload) -> None:
    """Whether a direct ``postgresql://`` export reaches artifacts the server proxies
    (``mlflow-artifacts:/``): not timed against anything, reported."""
    step = Step("arcuate", "export_db_proxied")
    table = f"{SCHEMA}.{w.slug}_db_proxied"
    bench.arcuate_run(step, f"CREATE SHARE {SHARE} WITH TABLE {table} FROM EXPERIMENT "
                      f"'{w.proxied.experiment}'", bench.topo.provider_db,
                      warehouse=bench.s3_warehouse)  # fmt: skip
    if not step.error:
        check_arcuate_export(step, w.shape)
    _add(w, step)


def _transfers(bench: Bench, w: Workload) -> None:
    for key in ("transfer_local", "transfer_s3"):
        table = f"{w.slug}_{key.removeprefix('transfer_')}"
        _add(w, bench.transfer(Step("arcuate", key), table))


def _imports(bench: Bench, w: Workload) -> None:
    topo = bench.topo
    coordinate = f"'{bench.profile}#{SHARE}.{SCHEMA}.{w.slug}"
    name = f"{w.proxied.experiment} (arcuate rest)"
    step = Step("arcuate", "import_rest")
    bench.arcuate_run(step, f"CREATE EXPERIMENT '{name}' AS {coordinate}_s3'", topo.recipient.url)
    _verify(bench, w, step, name)
    _add(w, step)
    if bench.peer:
        peer_name = f"{w.proxied.experiment} (peer rest)"
        out = bench.root / "peer-export" / f"{w.slug}_rest"
        step = bench.peer_run(Step("peer", "peer_import_rest"),
                              "import-experiment", topo.recipient.url, "--experiment-name",
                              peer_name, "--input-dir", str(out))  # fmt: skip
        _verify(bench, w, step, peer_name)
        _add(w, step)
    if w.direct is not None:
        _direct_imports(bench, w, coordinate)


def _direct_imports(bench: Bench, w: Workload, coordinate: str) -> None:
    """(b): into the recipient's database. The destination experiment is made first through
    the recipient server with an ``s3://`` artifact location: left to itself, a direct import
    creates it with MLflow's default for a database URI, ``./mlruns`` of the importing
    process, which no server would serve."""
    from mlflow import MlflowClient

    topo = bench.topo
    client = MlflowClient(topo.recipient.url, topo.recipient.url)
    name = f"{w.proxied.experiment} (arcuate db)"
    client.create_experiment(name, artifact_location=f"s3://{topo.s3.bucket}/direct/{w.slug}-a")
    step = Step("arcuate", "import_db", import_path_label(topo))
    bench.arcuate_run(step, f"CREATE EXPERIMENT '{name}' AS {coordinate}_db'", topo.recipient_db)
    _verify(bench, w, step, name)
    _add(w, step)
    if step.ok:
        w.floor = copy_floor(bench, name)
        print(f"  {w.key}: {floor_line(w.floor)}", flush=True)
    if bench.peer:
        # no experiment made first: the peer makes its own (and fails before it writes one)
        peer_name = f"{w.proxied.experiment} (peer db)"
        out = bench.root / "peer-export" / f"{w.slug}_db"
        step = bench.peer_run(Step("peer", "peer_import_db"),
                              "import-experiment", topo.recipient_db, "--experiment-name",
                              peer_name, "--input-dir", str(out))  # fmt: skip
        _verify(bench, w, step, peer_name)
        _add(w, step)


def copy_floor(bench: Bench, name: str) -> tuple[int, float, float | None]:
    """The part of a bulk import no client can go under: PostgreSQL's own ``COPY`` of the
    metric rows the import wrote into experiment ``name``, sent again into ``metrics`` (keys
    suffixed, so new rows under the same three indexes and foreign key) from memory over one
    connection, then rolled back; (rows, wall seconds, PostgreSQL's CPU seconds meanwhile)."""
    import psycopg

    select = (
        "COPY (SELECT m.key || '~', m.value, m.timestamp, m.step, m.is_nan, m.run_uuid "
        "FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid JOIN experiments e ON "
        "e.experiment_id = r.experiment_id WHERE e.name = {}) TO STDOUT"
    )
    into = "COPY metrics (key, value, timestamp, step, is_nan, run_uuid) FROM STDIN"
    with psycopg.connect(bench.topo.recipient_db) as conn:
        literal = psycopg.sql.Literal(name).as_string(conn)
        data = bytearray()
        with conn.cursor() as cur, cur.copy(select.format(literal)) as out:
            for chunk in out:
                data += chunk
        rows = data.count(b"\n")
        with conn.transaction(force_rollback=True):
            before = bench._cpu(bench.topo.recipient_db).get("db")
            began = time.perf_counter()
            with conn.cursor() as cur, cur.copy(into) as copy:
                copy.write(bytes(data))
            wall = time.perf_counter() - began
            after = bench._cpu(bench.topo.recipient_db).get("db")
    cpu = after - before if before is not None and after is not None else None
    return rows, wall, cpu


def floor_line(floor: tuple[int, float, float | None]) -> str:
    rows, wall, cpu = floor
    spent = f", PostgreSQL CPU {cpu:.2f} s" if cpu is not None else ""
    return (f"PostgreSQL alone: COPY of the import's {rows:,} metric rows into metrics (3 "
            f"indexes, a foreign key), from memory, no arcuate process: {wall:.2f} s{spent}")


def import_path_label(topo: topology.Topology) -> str:
    """What ``import_path = auto`` does for the recipient's database, asked of arcuate's own
    eligibility check (its reason when it is not the bulk path)."""
    try:
        from arcuate.backends.mlflow.bulk import eligible_store
        from arcuate.backends.mlflow.connect import client_for

        engine, why = eligible_store(client_for(topo.recipient_db, topo.recipient_db))
    except Exception as exc:  # the check moved or failed: say so rather than guess
        return f"auto: path not known ({type(exc).__name__})"
    if engine is not None:
        with contextlib.suppress(Exception):
            engine.dispose()
        return "auto = bulk path"
    return f"auto = public API: {why}"


def run_model(bench: Bench, w: Workload) -> None:
    """The registered model over REST, both tools."""
    topo, model = bench.topo, w.proxied.model
    step = Step("arcuate", "export_s3")
    bench.arcuate_run(step, f"CREATE SHARE {SHARE} WITH TABLE {SCHEMA}.{w.slug}_s3 FROM MODEL "
                      f"'{model}'", topo.provider.url, warehouse=bench.s3_warehouse)  # fmt: skip
    check_arcuate_export(step, w.shape)
    _add(w, step)
    out = bench.root / "peer-export" / w.slug
    if bench.peer:
        step = bench.peer_run(Step("peer", "peer_export_rest"),
                              "export-model", topo.provider.url, "--model", str(model),
                              "--output-dir", str(out))  # fmt: skip
        if not step.error:
            check_peer_export(step, out, w.shape)
        _add(w, step)
    bench.grant()
    _add(w, bench.transfer(Step("arcuate", "transfer_s3"),
                           f"{w.slug}_s3"))  # fmt: skip
    name = f"{model}-arcuate"
    step = Step("arcuate", "import_rest")
    bench.arcuate_run(step, f"CREATE MODEL '{name}' AS '{bench.profile}#{SHARE}.{SCHEMA}."
                      f"{w.slug}_s3'", topo.recipient.url)  # fmt: skip
    _verify(bench, w, step, name, kind="model")
    _add(w, step)
    if bench.peer:
        name = f"{model}-peer"
        step = bench.peer_run(Step("peer", "peer_import_rest"),
                              "import-model", topo.recipient.url, "--model", name,
                              "--experiment-name", f"{name}-runs",
                              "--input-dir", str(out))  # fmt: skip
        _verify(bench, w, step, name, kind="model")
        _add(w, step)


# -- seeding --------------------------------------------------------------------------------------
def _source(bench: Bench, seeded: Seeded) -> Counts:
    kind, name = ("model", seeded.model) if seeded.model else ("experiment", seeded.experiment)
    return counts(bench.topo, "provider", str(name), kind=kind, steps=seeded.shape.steps,
                  root=bench.root)  # fmt: skip


def make_workload(bench: Bench, key: str, shape: Shape, *, direct: bool) -> Workload:
    """Seed one workload in the provider (setup: not measured)."""
    began = time.perf_counter()
    topo = bench.topo
    if shape.is_model:
        proxied = seed(topo, shape, f"bench/{key}-runs", model=f"bench-{key}")
        other = None
    else:
        proxied = seed(topo, shape, f"bench/{key}")
        location = f"s3://{topo.s3.bucket}/provider-direct/{key}"
        other = seed(topo, shape, f"bench/{key}@s3", location=location) if direct else None
    w = Workload(key, shape, proxied, other, _source(bench, proxied))
    print(f"  {key}: seeded in {time.perf_counter() - began:.1f} s: {w.source.describe()}",
          flush=True)  # fmt: skip
    return w


# -- the report ---------------------------------------------------------------------------------
#: (row, the peer's step, arcuate's step) of each part's table.
ROWS: dict[str, list[tuple[str, str | None, str]]] = {
    "a": [
        ("export, REST -> local warehouse", None, "export_local"),
        ("export, REST -> S3 warehouse", "peer_export_rest", "export_s3"),
        ("transfer: arcuate serve, local table", None, "transfer_local"),
        ("transfer: arcuate serve, S3 table", None, "transfer_s3"),
        ("import, REST (arcuate: from the S3 table)", "peer_import_rest", "import_rest"),
    ],
    "b": [
        ("export, postgresql:// (arcuate: -> S3 warehouse)", "peer_export_db", "export_db"),
        ("import, postgresql://", "peer_import_db", "import_db"),
    ],
}
#: (row, the peer's steps, arcuate's steps) of the round trips.
TRIPS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "a": ("round trip, REST", ("peer_export_rest", "peer_import_rest"),
          ("export_s3", "import_rest")),
    "b": ("round trip, databases (peer: REST)", ("peer_export_rest", "peer_import_rest"),
          ("export_db", "import_db")),
}  # fmt: skip


def _secs(step: Step | None, work: bool = True) -> str:
    if step is None:
        return "-"
    if step.error:
        return "fails"
    text = f"{step.wall:.2f}"
    if work and step.work is not None:
        text += f" ({step.work:.2f})"
    return text


def _ratio(peer: float | None, ours: float | None) -> str:
    if not peer or not ours:
        return "-"
    return f"{peer / ours:.2f}x"


def _sum(w: Workload, tool: str, keys: tuple[str, ...]) -> tuple[float | None, int]:
    """The wall seconds of steps together (None when one is missing or failed), largest RSS."""
    steps = [w.find(tool, k) for k in keys]
    if any(s is None or s.error for s in steps):
        return None, 0
    return sum(s.wall for s in steps if s), max(max(s.peak, s.helper) for s in steps if s)


def table_rows(w: Workload, part: str) -> list[list[str]]:
    """The rows of one part of a workload's table (rows with no step at all are left out)."""
    rows = []
    for label, peer_key, our_key in ROWS[part]:
        peer = w.find("peer", peer_key) if peer_key else None
        ours = w.find("arcuate", our_key)
        if peer is None and ours is None:
            continue
        ratio = _ratio(peer.wall if peer and not peer.error else None,
                       ours.wall if ours and not ours.error else None)  # fmt: skip
        rows.append([label, _secs(peer, False), _secs(ours), ratio,
                     peer.rss() if peer else "-", ours.rss() if ours else "-",
                     _checks(peer, ours)])  # fmt: skip
    label, peer_keys, our_keys = TRIPS[part]
    peer_s, peer_rss = _sum(w, "peer", peer_keys)
    our_s, our_rss = _sum(w, "arcuate", our_keys)
    if peer_s is not None or our_s is not None:
        rows.append([label, f"{peer_s:.2f}" if peer_s else "-", f"{our_s:.2f}" if our_s else "-",
                     _ratio(peer_s, our_s), f"{peer_rss / MIB:.0f}" if peer_rss else "-",
                     f"{our_rss / MIB:.0f}" if our_rss else "-", ""])  # fmt: skip
    return rows


def _checks(peer: Step | None, ours: Step | None) -> str:
    parts = []
    for who, step in (("peer", peer), ("arcuate", ours)):
        if step is not None and step.check:
            parts.append(f"{who} {step.check.split(':')[0]}")
    return ", ".join(parts)


HEADER = ["phase", "peer s", "arcuate s (work)", "peer / arcuate", "peer RSS MiB",
          "arcuate RSS MiB", "checks"]  # fmt: skip


def format_table(rows: list[list[str]]) -> str:
    """A markdown table (pastes into docs/performance.md as it is)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|---|" + "---:|" * 3 + "---|" * 3]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def format_workload(w: Workload) -> str:
    out = [f"{w.key}: {w.shape.describe()}; {w.shape.points:,} metric points, "
           f"{human(w.shape.file_bytes)} of files"]  # fmt: skip
    for part, title in PARTS.items():
        rows = table_rows(w, part)
        if rows:
            out += ["", title, "", format_table(rows)]
    other = [s for s in w.steps if s.key == "export_db_proxied"]
    for step in other:
        status = f"fails: {_first(step.error)}" if step.error else f"ok, {step.wall:.2f} s"
        out.append(f"\n  probe: {step.label}: {status}")
    for step in w.steps:
        if step.error and step.key != "export_db_proxied":
            out.append(f"  {step.tool} {step.label} fails: {_first(step.error)}")
        elif step.check and step.check.startswith("MISMATCH"):
            out.append(f"  {step.tool} {step.label}: {step.check}")
    for step in w.steps:
        if step.key == "import_db" and step.detail:
            out.append(f"  arcuate import, postgresql://: {step.detail}")
    if w.floor is not None:
        out.append(f"  {floor_line(w.floor)}")
    out += [f"  check: {s.tool} {s.label}: {s.check}" for s in w.steps
            if s.check and s.key.startswith(("import", "peer_import"))]  # fmt: skip
    out += [f"  server CPU: {s.tool} {s.label}: {cpu_line(s)}" for s in w.steps
            if not s.error and (s.server_cpu is not None or s.db_cpu is not None)]  # fmt: skip
    return "\n".join(out)


def cpu_line(step: Step) -> str:
    """What the tracking server, PostgreSQL, the S3 endpoint, the sharing server and the
    command itself spent of CPU during a step, beside its wall; how busy the machine's CPUs
    were, and the wall the others' CPU alone needs on them (what no client goes under)."""
    named = [("mlflow server", step.server_cpu), ("PostgreSQL", step.db_cpu),
             ("S3 endpoint", step.s3_cpu), ("sharing server", step.serve_cpu),
             (f"{step.tool} itself", step.own_cpu)]  # fmt: skip
    parts = [f"{name} {cpu:.2f} s" for name, cpu in named if cpu is not None]
    line = f"{', '.join(parts)} in {step.wall:.2f} s wall"
    cpus = os.cpu_count() or 1
    total = sum(cpu for _, cpu in named if cpu is not None)
    if step.wall > 0 and step.own_cpu is not None:
        others = total - step.own_cpu
        line += (f"; {total:.2f} CPU-s, {total / (step.wall * cpus):.0%} of {cpus} CPUs; "
                 f"all but {step.tool}'s own fill them {others / cpus:.2f} s")  # fmt: skip
    return line


def _first(text: str, limit: int = 400) -> str:
    """The first line of an error, at most ``limit`` characters."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def tiny_line(w: Workload) -> str:
    """The wall time of a tiny export and import command, as a user runs them."""
    def wall(tool: str, key: str) -> str:
        step = w.find(tool, key)
        return "-" if step is None else ("fails" if step.error else f"{step.wall:.2f} s")

    return (f"tiny commands ({w.shape.run_count} runs, each a fresh process; target < 2 s): "
            f"arcuate export {wall('arcuate', 'export_s3')} (REST -> S3 warehouse), "
            f"{wall('arcuate', 'export_local')} (REST -> local), "
            f"{wall('arcuate', 'export_db')} (postgresql://); import "
            f"{wall('arcuate', 'import_rest')} (REST), {wall('arcuate', 'import_db')} "
            f"(postgresql://); peer export {wall('peer', 'peer_export_rest')}, import "
            f"{wall('peer', 'peer_import_rest')} (REST)")  # fmt: skip


# -- main -----------------------------------------------------------------------------------------
def shapes(args: argparse.Namespace) -> dict[str, Shape]:
    """The workloads of this invocation: bench-200 (``--runs``), the small share
    (``--small-runs``; left out when it is the same size) and a small registered model."""
    big = resolve("bench-200", smoke=args.smoke, runs=args.runs)
    small = dataclasses.replace(big, name="share-3", runs=args.small_runs)
    versions = 2 if args.smoke else 3
    model = Shape("model-3", 0, 5, 2, 3, 10, versions=versions, model_bytes=64 * KiB)
    out = {"bench-200": big, "share-3": small, "model-3": model}
    skip = {"model-3" if k == "model" else k for k in args.skip}
    if small.runs == big.runs:
        skip.add("share-3")  # the same workload twice: measured once, as bench-200
    return {k: v for k, v in out.items() if k not in skip}


def use_peer(args: argparse.Namespace) -> bool:
    """Whether the peer runs: never with ``--skip peer``; with ``--peer cached`` (the default
    of ``--smoke``) only when its venv is already made; else made (once) if needed."""
    if "peer" in args.skip:
        return False
    mode = args.peer or ("cached" if args.smoke else "install")
    if mode == "cached":
        marker = topology.PEER_VENV / "arcuate-peer-spec.txt"
        spec = "\n".join(topology._peer_spec())
        if not (marker.exists() and marker.read_text() == spec):
            print("  the peer is left out: its venv is not cached (--peer install makes it)")
            return False
        return True
    began = time.perf_counter()
    topology.install_peer()
    print(f"  peer venv ready in {time.perf_counter() - began:.1f} s", flush=True)
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks production", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=1, help="mlflow server --workers (1)")
    ap.add_argument("--runs", type=int, help="runs of bench-200 (200; --smoke: 3)")
    ap.add_argument("--small-runs", type=int, default=3, help="runs of the small share (3)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes (3 runs x 10 steps), the peer only if cached")
    ap.add_argument("--skip", action="append", default=[],
                    choices=["peer", "model", "bulk", "bench-200", "share-3"],
                    help="leave a tool, a workload or part (b) out (repeatable)")
    ap.add_argument("--peer", choices=["install", "cached"],
                    help="install: make the peer's venv if needed (default); cached: use it "
                    "only if it is made (default with --smoke)")
    ap.add_argument("--dir", type=Path, help="work here (kept) instead of a temporary directory")
    ap.add_argument("--json", type=Path, help="also write every figure as JSON here")
    return ap.parse_args(argv)


def run_all(bench: Bench, workloads: list[Workload], bulk: bool) -> None:
    probed = False
    for w in workloads:
        if w.shape.is_model:
            run_model(bench, w)
            continue
        run_experiment(bench, w)
        if bulk and not probed and (w.key == "share-3" or len(workloads) == 1 or
                                    all(x.key != "share-3" for x in workloads)):
            probe_proxied_db_export(bench, w)
            probed = True


def report(args: argparse.Namespace, info: dict[str, Any], topo_s: dict[str, float],
           workloads: list[Workload]) -> str:
    head = (f"production topology, mlflow server --workers {args.workers} on PostgreSQL, "
            f"artifacts in S3 (moto); {info['cpus']} CPUs, Python {info['python']}, MLflow "
            f"{info['mlflow']}, deltalake {info['deltalake']}, {info['date']}, load average "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    out = [head, "seconds: wall time of each command in a fresh process (arcuate: its "
           "statement's own seconds in parentheses); RSS: peak per process (helper: the "
           "command's largest child; serve: arcuate serve meanwhile)",
           "start-up: " + ", ".join(f"{k} {v:.1f} s" for k, v in topo_s.items())]  # fmt: skip
    for w in workloads:
        out += ["", format_workload(w)]
    small = next((w for w in workloads if w.key == "share-3"), None)
    small = small or next((w for w in workloads if w.shape.run_count <= 3 and not
                           w.shape.is_model), None)  # fmt: skip
    if small is not None:
        out += ["", tiny_line(small)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.runs is None and not args.smoke:
        args.runs = 200
    root = (args.dir or Path(tempfile.mkdtemp(prefix="arcuate-prod-bench-"))).absolute()
    root.mkdir(parents=True, exist_ok=True)
    print(f"arcuate production benchmark in {root}", flush=True)
    peer = use_peer(args)
    plan = shapes(args)
    saved = dict(os.environ)
    workloads: list[Workload] = []
    try:
        with topology.production(root / "topology", workers=args.workers) as topo:
            os.environ.update(topo.s3.env)  # this process's boto3 and MLflow reach moto
            bench = Bench(topo, root, peer)
            workloads = [make_workload(bench, k, s, direct="bulk" not in args.skip)
                         for k, s in plan.items()]  # fmt: skip
            bench.setup_sharing()
            try:
                run_all(bench, workloads, "bulk" not in args.skip)
            finally:
                if bench.serve is not None:
                    bench.serve.stop()
            timings = topo.timings
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    info = machine()
    print()
    print(report(args, info, timings, workloads))
    if args.json:
        args.json.write_text(json.dumps({
            "command": "python -m benchmarks production " + " ".join(
                sys.argv[2:] if argv is None else argv),
            "machine": info, "workers": args.workers, "peer": peer, "topology": timings,
            "workloads": [{"key": w.key, "shape": w.shape.to_json(),
                           "source": dataclasses.asdict(w.source),
                           "steps": [s.to_json() for s in w.steps], "copy_floor": w.floor}
                          for w in workloads],
        }, indent=1))  # fmt: skip
    return 0 if all_ours_ok(workloads) else 1


def all_ours_ok(workloads: list[Workload]) -> bool:
    """Every arcuate step worked and checked (the probe only reports)."""
    return all(s.ok for w in workloads for s in w.steps
               if s.tool == "arcuate" and s.key != "export_db_proxied")  # fmt: skip


__all__ = ["main"]
