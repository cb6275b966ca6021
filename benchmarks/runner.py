"""Runs the benchmark phases for one or more shapes and prints one table of figures per shape.

For each shape: generate the source store (setup, not measured), then, each in a fresh child
process while this process samples its RSS with psutil: the MLflow floor read and write,
arcuate's export, a plain disk read of the exported table (reference), serving the table to
one and then N concurrent ``delta_sharing`` clients through arcuate's server (itself a child
process, sampled too), and arcuate's import into a fresh sqlite store. Everything lives in a
temporary directory (or ``--dir``); the user's ``./mlflow.db`` is never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.phases import MARK
from benchmarks.shapes import SHAPES, Shape, human, parse_size, resolve
from benchmarks.workload import Source, generate, make_template, new_store

REPO = Path(__file__).resolve().parent.parent
SHARE, SCHEMA, RECIPIENT = "bench", "bench", "bench-reader"
_SAMPLE_SECONDS = 0.02
MIB = 1024 * 1024


class PhaseError(RuntimeError):
    """A measured phase failed; the message carries the end of its log."""


def child_env() -> dict[str, str]:
    """The environment of every child: no ambient MLflow URIs, no telemetry, no proxy."""
    env = dict(os.environ)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ACTIVE_MODEL_ID"):
        env.pop(var, None)
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        GIT_PYTHON_REFRESH="quiet",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p),
    )
    hosts = "127.0.0.1,localhost"
    env["NO_PROXY"] = env["no_proxy"] = ",".join(x for x in (env.get("NO_PROXY"), hosts) if x)
    return env


def process_rss(pid: int) -> tuple[int, int]:
    """Resident bytes of a process, and of the largest of its descendants (its helpers);
    (0, 0) once it is gone. Each process is one figure: the targets are per process."""
    import psutil

    try:
        proc = psutil.Process(pid)
        own = proc.memory_info().rss
        children = proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    largest = 0
    for child in children:
        with contextlib.suppress(psutil.Error):
            largest = max(largest, child.memory_info().rss)
    return own, largest


def _tree_sum(pid: int, figure: Callable[[Any], float]) -> float:
    """``figure`` of a process plus that of all its descendants (0 once it is gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += figure(p)
    return total


def _cpu_seconds(p: Any) -> float:
    t = p.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants, the ones it has
    reaped included: what a server spent, whoever asked it."""
    return _tree_sum(pid, _cpu_seconds)


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (0 once it is gone)."""
    return int(_tree_sum(pid, lambda p: p.memory_info().rss))


class Server:
    """arcuate's sharing server in a child process (``benchmarks.server``)."""

    def __init__(self, catalog: Path, log: Path) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.server", str(catalog)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=child_env(),
            cwd=str(catalog.parent),
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http"):
            self.stop()
            raise PhaseError(f"the sharing server did not start; see {log}")
        self.endpoint = line
        self.peak = 0
        self.base = 0

    def sample(self) -> None:
        self.peak = max(self.peak, tree_rss(self.proc.pid))

    def reset(self) -> None:
        self.peak = self.base = tree_rss(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(timeout=10)
        self._log.close()


@dataclass
class Measured:
    """One phase: what the child reported, and the peaks sampled around it."""

    phase: str
    result: dict[str, Any]
    peak_rss: int
    #: peak of the phase's largest helper process (0: it started none)
    helper_rss: int
    wall: float
    server_peak: int | None = None
    server_base: int | None = None

    @property
    def base_rss(self) -> int:
        """RSS when the phase's clock started (interpreter and imports): peak - base is what
        the work itself added."""
        return int(self.result.get("baseline_rss", 0))

    @property
    def rss(self) -> str:
        own = _mib(self.peak_rss, self.base_rss)
        return f"{own}; helper {_mib(self.helper_rss)}" if self.helper_rss else own

    @property
    def largest(self) -> int:
        """The peak of the phase's largest process (itself or a helper)."""
        return max(self.peak_rss, self.helper_rss)

    @property
    def server_rss(self) -> str:
        return _mib(self.server_peak, self.server_base)

    @property
    def seconds(self) -> float:
        return float(self.result["seconds"])


def _wait(pid_alive: Any, pid: int, server: Server | None) -> tuple[int, int]:
    """Sample the RSS of process ``pid``, of its largest helper (and the server) until
    ``pid_alive()`` is false; the two peaks."""
    peak = helper = 0
    while pid_alive():
        own, child = process_rss(pid)
        peak, helper = max(peak, own), max(helper, child)
        if server is not None:
            server.sample()
        time.sleep(_SAMPLE_SECONDS)
    return peak, helper


class Launcher:
    """Runs a phase in a fresh process: ``python -m benchmarks.phases`` (full runs)."""

    fork = False

    def run(
        self, phase: str, args: dict[str, Any], cwd: Path, server: Server | None = None
    ) -> Measured:
        """Run one phase; sample its (and the server's) RSS until it ends."""
        cwd.mkdir(parents=True, exist_ok=True)
        arg_file = cwd / f"{phase}.args.json"
        arg_file.write_text(json.dumps(args))
        out_path, err_path = cwd / f"{phase}.out", cwd / f"{phase}.log"
        if server is not None:
            server.reset()
        start = time.perf_counter()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.phases", phase, str(arg_file)],
                cwd=str(cwd),
                env=child_env(),
                stdout=out,
                stderr=err,
            )
            peak = _wait(lambda: proc.poll() is None, proc.pid, server)
        wall = time.perf_counter() - start
        lines = [x for x in out_path.read_text().splitlines() if x.startswith(MARK)]
        if proc.returncode != 0 or not lines:
            raise PhaseError(_failure(phase, proc.returncode, err_path))
        result = json.loads(lines[-1][len(MARK) :])
        return _measured(phase, result, peak, wall, server)


class ForkLauncher(Launcher):
    """Forks each phase from a fork server that imported MLflow, arcuate, deltalake and
    delta_sharing once (``--smoke``): seconds instead of minutes for the smoke test, but every
    phase's RSS then includes all of those modules."""

    fork = True

    def __init__(self) -> None:
        import multiprocessing

        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["benchmarks.phases", *PRELOAD])

    def run(
        self, phase: str, args: dict[str, Any], cwd: Path, server: Server | None = None
    ) -> Measured:
        from benchmarks.phases import run_forked

        cwd.mkdir(parents=True, exist_ok=True)
        err_path = cwd / f"{phase}.log"
        if server is not None:
            server.reset()
        receive, send = self._ctx.Pipe(duplex=False)
        start = time.perf_counter()
        proc = self._ctx.Process(
            target=run_forked, args=(phase, args, str(cwd), str(err_path), send)
        )
        proc.start()
        send.close()
        assert proc.pid is not None
        peak = _wait(proc.is_alive, proc.pid, server)
        proc.join()
        wall = time.perf_counter() - start
        try:
            result = receive.recv() if receive.poll() else None
        except EOFError:  # it ended without a result: its log says why
            result = None
        receive.close()
        if proc.exitcode != 0 or result is None:
            raise PhaseError(_failure(phase, proc.exitcode, err_path))
        return _measured(phase, result, peak, wall, server)


#: What the fork server of ``--smoke`` imports once.
PRELOAD = (
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "arcuate.api",
    "arcuate.engine.export",
    "arcuate.engine.imports",
    "arcuate.backends.mlflow.source",
    "arcuate.backends.mlflow.sink",
    "arcuate.backends.deltalake.store",
    "arcuate.backends.sharing.reader",
    "delta_sharing",
    "requests",
)


def _failure(phase: str, code: int | None, log: Path) -> str:
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
    return f"phase {phase} failed (exit {code}); {log}:\n{tail}"


def _measured(
    phase: str, result: dict[str, Any], peaks: tuple[int, int], wall: float, server: Server | None
) -> Measured:
    summary = result.get("summary") or {}
    return Measured(
        phase,
        result,
        max(peaks[0], int(result.get("hwm_rss", 0))),
        max(peaks[1], int(summary.get("helper_peak_rss", 0) or 0)),
        wall,
        server.peak if server is not None else None,
        server.base if server is not None else None,
    )


@dataclass
class ShapeReport:
    """Every phase of one shape."""

    shape: Shape
    setup_seconds: float
    phases: dict[str, Measured] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": self.shape.to_json(),
            "describe": self.shape.describe(),
            "setup_seconds": self.setup_seconds,
            "checks": self.checks,
            "phases": {
                name: {
                    "seconds": m.seconds,
                    "wall": m.wall,
                    "peak_rss": m.peak_rss,
                    "helper_rss": m.helper_rss,
                    "base_rss": m.base_rss,
                    "server_peak": m.server_peak,
                    "server_base": m.server_base,
                    "result": m.result,
                }
                for name, m in self.phases.items()
            },
        }


class Bench:
    """The state shared by the shapes of one invocation: directory, template, share, server."""

    def __init__(
        self, root: Path, template: Path, clients: int, skip: set[str], launcher: Launcher
    ) -> None:
        self.launcher = launcher
        self.root = root
        self.template = template
        self.clients = clients
        self.skip = skip
        self.provider = root / "provider"
        self.catalog = self.provider / "shares.yaml"
        self.profile = self.provider / "bench.share"
        self.server: Server | None = None
        self._token: str | None = None
        #: ``--dest postgresql``: the cluster and its migrated MLflow template database
        self.postgres: tuple[Any, str] | None = None
        #: ``--signed``: the provider's key pair, and the rounds of plain/verified imports
        self.keys: tuple[Path, Path] | None = None
        self.signed_rounds = 0

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _ensure_server(self) -> Server:
        """Recipient, grant, server and profile, made once the first export made the share."""
        if self.server is None:
            from arcuate.backends.sharing.catalog import LocalShareCatalog
            from arcuate.backends.sharing.server import write_profile

            catalog = LocalShareCatalog(self.catalog)
            _, token = catalog.create_recipient(RECIPIENT)
            assert token is not None
            catalog.grant(SHARE, RECIPIENT)
            self.server = Server(self.catalog, self.provider / "server.log")
            write_profile(self.profile, self.server.endpoint, token)
        return self.server

    def run(self, shape: Shape) -> ShapeReport:
        base = self.root / shape.name
        start = time.perf_counter()
        source = generate(shape, base / "source", self.template)
        report = ShapeReport(shape, time.perf_counter() - start)
        print(f"  {shape.name}: source generated in {report.setup_seconds:.1f} s", flush=True)
        if "floor" not in self.skip:
            self._floor(source, base, report)
        self._ours(source, base, report)
        return report

    def _step(self, report: ShapeReport, name: str, measured: Measured) -> None:
        report.phases[name] = measured
        print(
            f"  {report.shape.name}: {name} {measured.seconds:.2f} s, "
            f"peak {measured.rss} (process {measured.wall:.1f} s)",
            flush=True,
        )

    def _floor(self, source: Source, base: Path, report: ShapeReport) -> None:
        dump = base / "floor-read" / "dump"
        read_args = {
            "uri": source.uri,
            "experiment_id": source.experiment_id,
            "model": source.model,
            "dump": str(dump),
        }
        measured = self.launcher.run("floor-read", read_args, base / "floor-read")
        self._step(report, "floor-read", measured)
        dest = base / "floor-write"
        uri = new_store(self.template, dest)
        write_args = {"uri": uri, "dump": str(dump), "model": source.model}
        self._step(report, "floor-write", self.launcher.run("floor-write", write_args, dest))
        report.checks.append(_check_store(dest / "mlflow.db", source.shape, "floor write"))
        shutil.rmtree(dump / "artifacts", ignore_errors=True)

    def _ours(self, source: Source, base: Path, report: ShapeReport) -> None:
        shape = source.shape
        table = shape.name.replace("-", "_")
        what = f"MODEL '{source.model}'" if source.model else f"EXPERIMENT '{source.experiment}'"
        signed = f" SIGNED BY '{self.keys[0]}'" if self.keys else ""
        export_args = {
            "uri": source.uri,
            "statement": f"CREATE SHARE {SHARE} WITH TABLE {SCHEMA}.{table} FROM {what}{signed}",
            "warehouse": str(self.provider / "warehouse"),
            "catalog": str(self.catalog),
        }
        self._step(report, "export", self.launcher.run("export", export_args, base / "export"))
        location = str(report.phases["export"].result["summary"]["location"])
        disk_args = {"location": location, "cold": True}
        measured = self.launcher.run("disk-read", disk_args, base / "disk")
        self._step(report, "disk-read", measured)
        server = self._ensure_server()
        if "serve" not in self.skip:
            serve_args = {
                "profile": str(self.profile),
                "share": SHARE,
                "schema": SCHEMA,
                "table": table,
                "clients": self.clients,
                "location": location,
            }
            measured = self.launcher.run("serve", serve_args, base / "serve", server)
            self._step(report, "serve", measured)
        dest = base / "import"
        uri = new_store(self.template, dest)
        coordinate = f"'{self.profile}#{SHARE}.{SCHEMA}.{table}'"
        target = (
            f"MODEL 'bench-import-{shape.name}'"
            if source.model
            else f"EXPERIMENT 'bench-import/{shape.name}'"
        )
        import_args = {"uri": uri, "statement": f"CREATE {target} AS {coordinate}"}
        self._step(report, "import", self.launcher.run("import", import_args, dest, server))
        report.checks.append(_check_store(dest / "mlflow.db", shape, "import"))
        if self.keys is not None:
            self._signed(report, import_args["statement"], base, server)
        if self.postgres is not None:
            self._into_postgres(report, import_args["statement"], base, server)

    def _signed(self, report: ShapeReport, statement: str, base: Path, server: Server) -> None:
        """``--signed``: the signed table imported without and with ``VERIFIED BY``, in
        alternating rounds into fresh stores (the load of a shared machine drifts)."""
        assert self.keys is not None
        verified = f"{statement} VERIFIED BY '{self.keys[1]}'"
        for n in range(self.signed_rounds):
            pair = ((f"import-plain-{n}", statement), (f"import-verified-{n}", verified))
            for name, text in pair:
                dest = base / name
                args = {"uri": new_store(self.template, dest), "statement": text}
                self._step(report, name, self.launcher.run("import", args, dest, server))
                report.checks.append(_check_store(dest / "mlflow.db", report.shape, name))

    def _into_postgres(
        self, report: ShapeReport, statement: str, base: Path, server: Server
    ) -> None:
        """``--dest postgresql``: the same import into fresh ``postgresql://`` databases, once
        by the bulk path and once by MLflow's public API, in this run."""
        assert self.postgres is not None
        pg, template = self.postgres
        for path in ("bulk", "api"):
            uri = pg.create_database(template=template)
            args = {"uri": uri, "statement": statement, "import_path": path}
            name = f"import-pg-{path}"
            self._step(report, name, self.launcher.run("import", args, base / name, server))
            report.checks.append(_check_pg(uri, report.shape, name))


def _check_store(db: Path, shape: Shape, what: str) -> str:
    """Counts of what landed in a destination store, against the shape."""
    con = sqlite3.connect(db)
    try:
        runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
        points = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
        versions = con.execute("SELECT count(*) FROM model_versions").fetchone()[0]
    finally:
        con.close()
    want_runs, want_points = shape.run_count, shape.points
    ok = points == want_points and (runs == want_runs or shape.is_model)
    ok = ok and (versions == shape.versions)
    status = "ok" if ok else "MISMATCH"
    detail = f"{runs} runs, {points} metric points, {versions} model versions"
    return f"{what}: {detail} ({status}; expected {want_runs} runs, {want_points} points)"


def _check_pg(uri: str, shape: Shape, what: str) -> str:
    """:func:`_check_store` for a ``postgresql://`` destination."""
    import psycopg

    with psycopg.connect(uri) as conn:
        runs, points, versions = (
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in ("runs", "metrics", "model_versions")
        )
    ok = points == shape.points and (runs == shape.run_count or shape.is_model)
    ok = ok and versions == shape.versions
    detail = f"{runs} runs, {points} metric points, {versions} model versions"
    return f"{what}: {detail} ({'ok' if ok else 'MISMATCH'}; expected {shape.points} points)"


# --- the table -----------------------------------------------------------------------------


def _rate(n: float, seconds: float) -> str:
    if seconds <= 0 or n <= 0:
        return "-"
    value = n / seconds
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _mb(n: float, seconds: float) -> str:
    return "-" if seconds <= 0 or n <= 0 else f"{n / 1e6 / seconds:,.1f}"


def _mib(n: int | None, base: int | None = None) -> str:
    if not n:
        return "-"
    grew = f" (+{max(0, n - base) / MIB:,.0f})" if base else ""
    return f"{n / MIB:,.0f} MiB{grew}"


def _ratio(ours: float, floor: float | None) -> str:
    if not floor or ours <= 0:
        return "-"
    r = ours / floor
    return f"{r:.3f} ({floor / ours:.1f}x faster)" if r < 1 else f"{r:.2f} ({r:.1f}x slower)"


def _loopback_mbps(disk: Measured | None) -> float:
    """MB/s of the bare loopback transfer the disk phase made (0: none)."""
    if disk is None or not disk.result.get("loopback_seconds"):
        return 0.0
    return float(disk.result["loopback_bytes"]) / 1e6 / float(disk.result["loopback_seconds"])


def table_rows(report: ShapeReport) -> list[list[str]]:
    """The rows of a shape's table: phase, seconds, runs/s, points/s, MB/s, RSS, ratio, notes."""
    p = report.phases
    shape = report.shape
    runs, points, data = shape.run_count, shape.points, shape.file_bytes
    rows: list[list[str]] = []

    def row(label: str, secs: float, rss: str, ratio: str, note: str = "", mb: str = "") -> None:
        rows.append(
            [
                label,
                f"{secs:.2f}",
                _rate(runs, secs),
                _rate(points, secs),
                mb or _mb(data, secs),
                rss,
                ratio,
                note,
            ]
        )

    fr, fw = p.get("floor-read"), p.get("floor-write")
    if fr and fw:
        row(
            "MLflow floor: read",
            fr.seconds,
            fr.rss,
            "1 (floor)",
            "search_runs + get_metric_history per key + download_artifacts",
        )
        row(
            "MLflow floor: write",
            fw.seconds,
            fw.rss,
            "1 (floor)",
            "create_run + log_batch + log_artifacts + set_terminated",
        )
        row(
            "MLflow floor: round trip",
            fr.seconds + fw.seconds,
            _mib(max(fr.peak_rss, fw.peak_rss)),
            "1 (floor)",
            "read + write",
        )
    ex, im = p["export"], p.get("import")
    row(
        "arcuate export",
        ex.seconds,
        ex.rss,
        _ratio(ex.seconds, fr.seconds if fr else None),
        "vs floor read",
    )
    disk = p.get("disk-read")
    sv = p.get("serve")
    if sv:
        served = sv.result["bytes"]
        mbps = served / 1e6 / sv.seconds if sv.seconds > 0 else 0.0
        disk_mbps = disk.result["bytes"] / 1e6 / disk.seconds if disk and disk.seconds else 0.0
        vs_disk = f"{mbps / disk_mbps:.2f} of warm disk" if disk_mbps else "-"
        disk_cold = (
            disk.result["cold_bytes"] / 1e6 / disk.result["cold_seconds"]
            if disk and disk.result.get("cold_seconds")
            else 0.0
        )
        if disk_cold:
            vs_disk = f"{mbps / disk_cold:.2f} of cold disk, {vs_disk}"
        loop = _loopback_mbps(disk)
        if loop:
            vs_disk = f"{vs_disk}, {mbps / loop:.2f} of loopback TCP"
        row(
            "arcuate serve, 1 client",
            sv.seconds,
            f"server {sv.server_rss}",
            vs_disk,
            f"{human(served)} in {sv.result['files']} files, {sv.result['errors']} errors, "
            f"client {sv.rss}",
            mb=_mb(served, sv.seconds),
        )
        cold = sv.result.get("cold")
        if cold:
            cold_mbps = cold["bytes"] / 1e6 / cold["seconds"] if cold["seconds"] > 0 else 0.0
            row(
                "arcuate serve, 1 client, cold",
                cold["seconds"],
                f"server {sv.server_rss}",
                f"{cold_mbps / disk_cold:.2f} of cold disk" if disk_cold else "-",
                f"table evicted from the page cache first; {cold['errors']} errors",
                mb=_mb(cold["bytes"], cold["seconds"]),
            )
        conc = sv.result.get("concurrent")
        if conc:
            row(
                f"arcuate serve, {conc['clients']} clients",
                conc["seconds"],
                f"server {sv.server_rss}",
                "-",
                f"{human(conc['bytes'])} total, {conc['errors']} errors",
                mb=_mb(conc["bytes"], conc["seconds"]),
            )
    if im:
        row(
            "arcuate import",
            im.seconds,
            f"{im.rss}, server {im.server_rss}",
            _ratio(im.seconds, fw.seconds if fw else None),
            "vs floor write",
        )
        rt_floor = fr.seconds + fw.seconds if fr and fw else None
        row(
            "arcuate round trip",
            ex.seconds + im.seconds,
            _mib(max(ex.largest, im.largest, im.server_peak or 0)),
            _ratio(ex.seconds + im.seconds, rt_floor),
            "export + import, vs floor round trip",
        )
    pg_api = p.get("import-pg-api")
    for path, label in (("bulk", "bulk path"), ("api", "public API")):
        m = p.get(f"import-pg-{path}")
        if m:
            ratio = _ratio(m.seconds, pg_api.seconds if pg_api else None)
            label = f"arcuate import into PostgreSQL, {label}"
            row(label, m.seconds, m.rss, ratio, "vs public API")
    if disk and disk.result.get("cold_seconds"):
        rows.append(
            [
                "disk read, cold",
                f"{disk.result['cold_seconds']:.2f}",
                "-",
                "-",
                _mb(disk.result["cold_bytes"], disk.result["cold_seconds"]),
                disk.rss,
                "-",
                "the table's pages evicted from the page cache (fadvise DONTNEED) first",
            ]
        )
    if disk and _loopback_mbps(disk):
        rows.append(
            [
                "loopback TCP, no HTTP",
                f"{disk.result['loopback_seconds']:.2f}",
                "-",
                "-",
                _mb(disk.result["loopback_bytes"], disk.result["loopback_seconds"]),
                disk.rss,
                "-",
                "the same files by os.sendfile into recv_into on one 127.0.0.1 socket "
                "(the transport's ceiling)",
            ]
        )
    if disk:
        rows.append(
            [
                "disk read of the table",
                f"{disk.seconds:.2f}",
                "-",
                "-",
                _mb(disk.result["bytes"], disk.seconds),
                disk.rss,
                "-",
                f"{human(disk.result['bytes'])} in {disk.result['files']} files "
                "(reference for serving)",
            ]
        )
    return rows


HEADER = [
    "phase",
    "seconds",
    "runs/s",
    "points/s",
    "MB/s",
    "peak RSS per process (+work)",
    "vs floor",
    "notes",
]


def format_table(report: ShapeReport) -> str:
    """A fixed-width table of one shape's figures."""
    rows = [HEADER, *table_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    numeric = {1, 2, 3, 4}
    lines = []
    for n, r in enumerate(rows):
        cells = [
            r[i].rjust(widths[i]) if i in numeric and n else r[i].ljust(widths[i])
            for i in range(len(HEADER))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import deltalake
    import mlflow
    import pyarrow

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mlflow": mlflow.__version__,
        "deltalake": deltalake.__version__,
        "pyarrow": pyarrow.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def make_keys(folder: Path, name: str = "provider") -> tuple[Path, Path]:
    """An ECDSA P-256 key pair for ``--signed`` (and the signing tests): (private PEM,
    public PEM) as ``<name>.pem`` and ``<name>.pub``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def signed_summary(
    report: ShapeReport, before: tuple[float, float, float], after: tuple[float, float, float]
) -> str:
    """``--signed``: the median import without and with verification, and the overhead."""
    import statistics

    def median(prefix: str) -> float:
        found = [m.seconds for n, m in report.phases.items() if n.startswith(prefix)]
        return statistics.median(found) if found else float("nan")

    plain, verified = median("import-plain-"), median("import-verified-")
    rounds = sum(1 for n in report.phases if n.startswith("import-plain-"))
    return (
        f"  signed: import {plain:.2f} s, verified import {verified:.2f} s (medians of"
        f" {rounds} alternating rounds): {100 * (verified / plain - 1):+.1f} %; load average"
        f" {before[0]:.2f} before, {after[0]:.2f} after"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="arcuate export/serve/import against MLflow's public-API floor.",
        epilog="Also: python -m benchmarks startup (the command's start-up), python -m "
        "benchmarks production (PostgreSQL-backed mlflow servers with S3 artifacts, arcuate "
        "and the peer; see its --help).",
    )
    ap.add_argument(
        "shapes",
        nargs="+",
        choices=sorted(SHAPES),
        metavar="shape",
        help=f"one or more of: {', '.join(SHAPES)}",
    )
    ap.add_argument("--smoke", action="store_true", help="tiny sizes that run in seconds")
    ap.add_argument("--dir", type=Path, help="work here (kept) instead of a temporary directory")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--template", type=Path, help="a migrated empty sqlite MLflow database")
    ap.add_argument("--clients", type=int, help="concurrent serving clients (16; smoke: 4)")
    ap.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["floor", "serve"],
        help="leave out the MLflow floor or the serving phase (repeatable)",
    )
    ap.add_argument(
        "--launcher",
        choices=["spawn", "fork"],
        help="spawn: a fresh interpreter per phase (default; honest RSS); fork: fork phases "
        "from a preloaded fork server (default with --smoke; fast, RSS includes every module)",
    )
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    ap.add_argument(
        "--signed",
        type=int,
        nargs="?",
        const=3,
        default=0,
        metavar="ROUNDS",
        help="export signed (SIGNED BY) and import the table without and with VERIFIED BY, "
        "alternating, ROUNDS times each (3); prints the verification overhead",
    )
    ap.add_argument(
        "--dest",
        choices=["postgresql"],
        help="also import into a throwaway PostgreSQL cluster (benchmarks/topology.py), by the "
        "bulk path and by MLflow's public API",
    )
    group = ap.add_argument_group("shape overrides (scaling runs; one shape only)")
    group.add_argument("--label", help="name of the overridden shape in the output")
    for name in ("runs", "params", "tags", "metrics", "steps", "versions"):
        group.add_argument(f"--{name}", type=int)
    group.add_argument("--files", help="file sizes per run, comma-separated (1KiB,10KiB)")
    group.add_argument("--model-bytes", help="size of each model version's weights (50MiB)")
    return ap.parse_args(argv)


def shapes_from(args: argparse.Namespace) -> list[Shape]:
    overrides: dict[str, Any] = {
        k: getattr(args, k) for k in ("runs", "params", "tags", "metrics", "steps", "versions")
    }
    if args.files is not None:
        overrides["files"] = tuple(parse_size(x) for x in args.files.split(",") if x.strip())
    if args.model_bytes is not None:
        overrides["model_bytes"] = parse_size(args.model_bytes)
    if args.label:
        overrides["name"] = args.label
    changed = any(v is not None for v in overrides.values())
    if changed and len(args.shapes) > 1:
        raise SystemExit("shape overrides apply to one shape at a time")
    return [resolve(name, smoke=args.smoke, **overrides) for name in args.shapes]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shapes = shapes_from(args)
    clients = args.clients if args.clients is not None else (4 if args.smoke else 16)
    temporary = args.dir is None
    root = Path(tempfile.mkdtemp(prefix="arcuate-bench-")) if temporary else args.dir
    root = root.absolute()
    root.mkdir(parents=True, exist_ok=True)
    env = child_env()  # this process's too: the fork server and the generator inherit it
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ACTIVE_MODEL_ID"):
        os.environ.pop(var, None)
    os.environ.update(env)
    print(f"arcuate benchmarks in {root}", flush=True)
    template = args.template or make_template(root / "template" / "mlflow.db")
    launcher_name = args.launcher or ("fork" if args.smoke else "spawn")
    launcher = ForkLauncher() if launcher_name == "fork" else Launcher()
    bench = Bench(root, template, clients, set(args.skip), launcher)
    if args.signed:
        bench.keys = make_keys(root / "keys")
        bench.signed_rounds = args.signed
        os.environ["XDG_STATE_HOME"] = str(root / "state")  # the replay state of the imports
    load_before = os.getloadavg()
    reports: list[ShapeReport] = []
    try:
        if args.dest == "postgresql":
            from benchmarks import topology

            pg = topology.start_postgres()
            bench.postgres = (pg, topology.migrate_template(pg))
        for shape in shapes:
            reports.append(bench.run(shape))
    finally:
        bench.close()
        if bench.postgres is not None:
            bench.postgres[0].stop()
        if temporary and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    info = machine()
    print()
    print(
        f"{info['cpus']} CPUs, Python {info['python']}, MLflow {info['mlflow']}, "
        f"deltalake {info['deltalake']}, pyarrow {info['pyarrow']}, {info['date']}"
    )
    for report in reports:
        shape = report.shape
        print()
        print(
            f"{shape.name}{' (smoke)' if args.smoke else ''}: {shape.describe()}; "
            f"{shape.points:,} metric points, {human(shape.file_bytes)} of files"
        )
        print(format_table(report))
        for check in report.checks:
            print(f"  check: {check}")
        if args.signed:
            print(signed_summary(report, load_before, os.getloadavg()))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": "python -m benchmarks "
                    + " ".join(sys.argv[1:] if argv is None else argv),
                    "machine": info,
                    "smoke": args.smoke,
                    "shapes": [r.to_json() for r in reports],
                },
                indent=1,
            )
        )
    failed = [c for r in reports for c in r.checks if "MISMATCH" in c]
    return 1 if failed else 0


__all__ = ["Bench", "Measured", "ShapeReport", "main"]
