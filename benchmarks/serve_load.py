"""Load test of the embedded sharing server (not part of the unit suite).

Builds an experiment-format Delta table (``--runs`` runs, each with a ``--file-kb`` binary
artifact inline, written by DeltaLakeTableStore), shares it with one recipient, starts
``arcuate serve`` as a separate process, and runs ``--clients`` concurrent client processes
for ``--seconds``. Each client loops over what a reader does: GET metadata, POST query, then
GET every data file through its signed URL (whole files, as the Rust kernel reads them). The
first iteration of one client also reads the table with the real ``delta_sharing`` client (as
another recipient) and checks it against deltalake.

The load runs ``--rounds`` times with the access log off, then on, alternately (off, on, off,
on, ...: each time a fresh server on the same table), so that the access log's cost on the
median metadata latency is measured in the same run, under the same conditions. After each
round with the access log on, the log must hold exactly one record per request the clients
got an answer to (matched by ``X-Request-Id``), and none twice. The overhead is the ratio of
the medians of the rounds' metadata p50s (on over off), each round's p50 printed; it passes at
5% or less. On a noisy machine, run more, shorter rounds (``--rounds 8 --seconds 5``).

Prints, per mode and per round: requests/s, p50/p99 latency per request kind, MB/s of file
serving, errors (must be 0), the server's peak RSS (all its processes); then the access log's
overhead on the metadata p50 (PASS/FAIL) and the record check; exits 1 on any error, a missing
or doubled record, or a FAIL.

    /work/venv/bin/python benchmarks/serve_load.py --clients 16 --seconds 20

Options: ``--workers N`` (server worker processes), ``--runs``, ``--file-kb``, ``--rounds``,
``--keep DIR`` (build the table in DIR and leave it there).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

SERVE = "from arcuate.frontends.serve_cli import serve_command; serve_command()"


def build(root: Path, runs: int, file_kb: int) -> tuple[Path, str, str]:
    """The shared table, the catalog, the load's recipient token and the check's."""
    import datetime

    import pyarrow as pa

    from arcuate.backends.deltalake.store import DeltaLakeTableStore
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.format.schema import SCHEMA

    t0 = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)
    rng = os.urandom

    def batches() -> Any:
        for start in range(0, runs, 50):
            rows = []
            for i in range(start, min(runs, start + 50)):
                data = rng(file_kb * 1024)
                rows.append(
                    {
                        "format_version": 1,
                        "kind": "run",
                        "key": f"run{i:05d}",
                        "exported_at": t0,
                        "experiment": {"experiment_id": "1", "name": "load", "tags": []},
                        "run": {
                            "run_id": f"run{i:05d}",
                            "run_name": f"run {i}",
                            "status": "FINISHED",
                            "start_time": t0,
                            "params": [{"key": "i", "value": str(i)}],
                            "metrics": [
                                {"key": "loss", "value": 1 / (s + 1), "step": s, "timestamp": t0}
                                for s in range(50)
                            ],
                        },
                        "files": [
                            {
                                "owner": "artifacts",
                                "path": "model.bin",
                                "size": len(data),
                                "sha256": "0" * 64,
                                "data": data,
                                "chunks": 0,
                            }
                        ],
                    }
                )
            yield from pa.Table.from_pylist(rows, schema=SCHEMA).to_batches()

    store = DeltaLakeTableStore(str(root / "warehouse"))
    written = store.write(("mlflow", "load"), batches(), content="experiment")
    catalog = LocalShareCatalog(root / "warehouse" / "shares.yaml")
    catalog.add_table("bench", "mlflow", "load", written.location)
    tokens = []
    for name in ("bench", "check"):  # the check reads as another recipient: the log's
        _, token = catalog.create_recipient(name)  # bench records are the load's only
        assert token is not None
        catalog.grant("bench", name)
        tokens.append(token)
    return catalog.path, tokens[0], tokens[1]


def client(
    endpoint: str, token: str, start_at: float, deadline: float, check: str | None, out: Any
) -> None:
    """One reader: metadata, query, every file; repeated until the deadline. Reports its
    latencies and the ``X-Request-Id`` of every answer it got."""
    import httpx

    if check:
        import delta_sharing
        from deltalake import DeltaTable

        profile, location = check.split("|")
        got = delta_sharing.load_as_pandas(f"{profile}#bench.mlflow.load")
        assert len(got) == len(DeltaTable(location).to_pyarrow_table()), "row count differs"
    time.sleep(max(0.0, start_at - time.time()))  # all clients start together
    table = f"{endpoint}/shares/bench/schemas/mlflow/tables/load"
    auth = {"Authorization": f"Bearer {token}"}
    lat: dict[str, list[float]] = {"metadata": [], "query": [], "file": []}
    errors, nbytes, ids = 0, 0, []
    with httpx.Client(timeout=60) as http:
        while time.time() < deadline:
            t = time.perf_counter()
            r = http.get(table + "/metadata", headers=auth)
            lat["metadata"].append(time.perf_counter() - t)
            ids.append(r.headers.get("x-request-id"))
            errors += r.status_code != 200
            t = time.perf_counter()
            r = http.post(table + "/query", headers=auth, json={})
            lat["query"].append(time.perf_counter() - t)
            ids.append(r.headers.get("x-request-id"))
            if r.status_code != 200:
                errors += 1
                continue
            urls = [json.loads(x)["file"]["url"] for x in r.text.splitlines()[2:]]
            for url in urls:
                if time.time() >= deadline:
                    break
                t = time.perf_counter()
                with http.stream("GET", url) as f:
                    size = sum(len(chunk) for chunk in f.iter_bytes(1 << 20))
                lat["file"].append(time.perf_counter() - t)
                ids.append(f.headers.get("x-request-id"))
                errors += f.status_code != 200
                nbytes += size
    out.put({"lat": lat, "errors": errors, "bytes": nbytes, "ids": ids})


def rss_watch(pid: int, stop: threading.Event, peak: list[int], cpu: list[float]) -> None:
    """The server's peak RSS and its CPU seconds (user + system), all its processes."""
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            procs = [proc, *proc.children(recursive=True)]
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs))
            cpu[0] = sum(sum(p.cpu_times()[:2]) for p in procs)
        except psutil.Error:
            pass
        time.sleep(0.05)


def start_server(catalog_path: Path, workers: int, audit: bool) -> tuple[Any, str]:
    """``arcuate serve`` in its own process: (process, endpoint)."""
    port_args = ["--port", "0"] if workers == 1 else ["--port", "18765"]
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE,
            "--catalog",
            str(catalog_path),
            "--log-level",
            "warning",
            "--workers",
            str(workers),
            "--audit" if audit else "--no-audit",
            *port_args,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    endpoint = server.stdout.readline().split(" at ")[1].strip()
    time.sleep(1.5 if workers > 1 else 0.3)
    return server, endpoint


def run_round(
    args: Any, catalog_path: Path, tokens: tuple[str, str], audit: bool, first: bool
) -> dict[str, Any]:
    """One load run against a fresh server: what the clients saw, and the server's peak RSS."""
    from arcuate.backends.sharing.server import write_profile

    root = catalog_path.parent.parent
    location = root / "warehouse" / "mlflow" / "load"
    server, endpoint = start_server(catalog_path, args.workers, audit)
    stop, peak, cpu = threading.Event(), [0], [0.0]
    watcher = threading.Thread(target=rss_watch, args=(server.pid, stop, peak, cpu), daemon=True)
    watcher.start()
    profile = write_profile(root / "check.share", endpoint, tokens[1])
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 6  # time to spawn and import, off the clock
    deadline = start_at + args.seconds
    check = f"{profile}|{location}" if first else None
    procs = [
        ctx.Process(
            target=client,
            args=(endpoint, tokens[0], start_at, deadline, check if i == 0 else None, out),
        )
        for i in range(args.clients)
    ]
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu_at_start = cpu[0]  # the server's start-up and the clients' spawning, off the count
    results = [out.get(timeout=args.seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    time.sleep(0.1)  # one more sample of the server's CPU
    stop.set()
    server.send_signal(signal.SIGTERM)  # the access log is flushed before it exits
    server.wait(timeout=60)
    lat: dict[str, list[float]] = {"metadata": [], "query": [], "file": []}
    for r in results:
        for k, v in r["lat"].items():
            lat[k] += v
    return {
        "audit": audit,
        "lat": lat,
        "bytes": sum(r["bytes"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "ids": [i for r in results for i in r["ids"]],
        "peak": peak[0],
        "cpu": cpu[0] - cpu_at_start,
    }


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


def report(name: str, rounds: list[dict[str, Any]], seconds: float) -> None:
    lat: dict[str, list[float]] = {"metadata": [], "query": [], "file": []}
    for r in rounds:
        for k, v in r["lat"].items():
            lat[k] += v
    every = sorted(x for v in lat.values() for x in v)
    total = seconds * len(rounds)
    nbytes = sum(r["bytes"] for r in rounds)
    print(f"access log {name}: {len(rounds)} round(s) of ~{seconds:.0f} s")
    print(f"  requests: {len(every)}  ({len(every) / total:.1f} req/s)")
    for kind, xs in lat.items():
        if xs:
            print(
                f"  {kind:8s} n={len(xs):6d}  p50={pct(xs, 0.5):7.2f} ms  "
                f"p99={pct(xs, 0.99):7.1f} ms  mean={statistics.fmean(xs) * 1000:7.1f} ms"
            )
    print(f"  file serving: {nbytes / 1e6:.0f} MB, {nbytes / 1e6 / total:.1f} MB/s")
    print(f"  errors: {sum(r['errors'] for r in rounds)}")
    print(f"  server peak RSS: {max(r['peak'] for r in rounds) / 2**20:.0f} MiB")


#: The issue's bound on the access log's overhead on the median metadata latency.
MAX_OVERHEAD: Final = 0.05


def verdict(off: list[dict[str, Any]], on: list[dict[str, Any]]) -> bool:
    """The overhead as the ratio of the medians of the rounds' metadata p50s (on / off): one
    slow round (a neighbour's burst on a shared machine) moves a median of rounds less than
    a p50 pooled over them. Every round's figure is printed, so the noise shows."""
    p50s_off = [pct(r["lat"]["metadata"], 0.5) for r in off]
    p50s_on = [pct(r["lat"]["metadata"], 0.5) for r in on]
    print("metadata p50 per round (ms): off " + " ".join(f"{x:.1f}" for x in p50s_off))
    print("                                on  " + " ".join(f"{x:.1f}" for x in p50s_on))
    median_off, median_on = statistics.median(p50s_off), statistics.median(p50s_on)
    ratio = median_on / median_off
    ok = ratio <= 1 + MAX_OVERHEAD
    print(
        f"access log overhead on the metadata p50 (median of {len(off)} rounds each): "
        f"{median_off:.2f} -> {median_on:.2f} ms, x{ratio:.3f} ({(ratio - 1) * 100:+.1f}%)  "
        f"{'PASS' if ok else 'FAIL'} (bound +{MAX_OVERHEAD * 100:.0f}%)"
    )
    return ok


def check_log(catalog_path: Path, answered: list[str], before: set[str]) -> tuple[int, int, int]:
    """(answered, logged, missing) for one round: the log's new bench records against the
    request ids the clients got. Duplicates fail at once."""
    from deltalake import DeltaTable

    from arcuate.backends.sharing.audit import log_location

    rows = DeltaTable(str(log_location(catalog_path))).to_pyarrow_table(
        columns=["request_id", "recipient"]
    ).to_pylist()
    ids = [r["request_id"] for r in rows if r["recipient"] == "bench"]
    assert len(ids) == len(set(ids)), "a request is in the access log twice"
    new = set(ids) - before
    missing = set(answered) - new
    return len(answered), len(new), len(missing)


def logged_ids(catalog_path: Path) -> set[str]:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from arcuate.backends.sharing.audit import log_location

    try:
        table = DeltaTable(str(log_location(catalog_path))).to_pyarrow_table(columns=["request_id"])
    except TableNotFoundError:
        return set()
    return set(table["request_id"].to_pylist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--file-kb", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2, help="rounds per mode (off, on, off, ...)")
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="arcuate-load-"))
    catalog_path, token, check_token = build(root, args.runs, args.file_kb)
    location = root / "warehouse" / "mlflow" / "load"
    table_bytes = sum(p.stat().st_size for p in location.glob("*.parquet"))
    print(
        f"table: {args.runs} runs x {args.file_kb} KiB, {table_bytes / 1e6:.1f} MB on disk, "
        f"{len(list(location.glob('*.parquet')))} files"
    )
    print(f"clients: {args.clients} processes, server workers: {args.workers}")
    rounds: list[dict[str, Any]] = []
    checks: list[tuple[int, int, int]] = []
    for n in range(2 * args.rounds):
        audit = n % 2 == 1
        before = logged_ids(catalog_path) if audit else set()
        result = run_round(args, catalog_path, (token, check_token), audit, first=n == 0)
        rounds.append(result)
        p50 = pct(result["lat"]["metadata"], 0.5)
        line = f"round {n + 1}: access log {'on ' if audit else 'off'}  metadata p50 {p50:.2f} ms"
        # the server's CPU per answered request under load: what the log costs the
        # server, less moved by a neighbour's load than a latency is
        line += f"  server CPU {result['cpu'] * 1000 / max(1, len(result['ids'])):.1f} ms/req"
        if audit:
            checks.append(check_log(catalog_path, [i for i in result["ids"] if i], before))
            answered, logged, missing = checks[-1]
            line += f"  answered {answered}, logged {logged}, missing {missing}"
        print(line, flush=True)
    off = [r for r in rounds if not r["audit"]]
    on = [r for r in rounds if r["audit"]]
    report("off", off, args.seconds)
    report("on", on, args.seconds)
    ok = verdict(off, on)
    answered = sum(c[0] for c in checks)
    logged = sum(c[1] for c in checks)
    missing = sum(c[2] for c in checks)
    print(f"access log: {answered} answered requests, {logged} records, {missing} missing")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    if sum(r["errors"] for r in rounds) or missing or logged != answered or not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
