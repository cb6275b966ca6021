"""Load test of the embedded sharing server (not part of the unit suite).

Builds an experiment-format Delta table (``--runs`` runs, each with a ``--file-kb`` binary
artifact inline, written by DeltaLakeTableStore), shares it with one recipient, starts
``arcuate serve`` as a separate process, and runs ``--clients`` concurrent client processes
for ``--seconds``. Each client loops over what a reader does: GET metadata, POST query, then
GET every data file through its signed URL (whole files, as the Rust kernel reads them). The
first iteration of one client also reads the table with the real ``delta_sharing`` client and
checks it against deltalake.

Prints requests/s, p50/p99 latency per request kind, MB/s of file serving, errors (must be
0) and the server's peak RSS (all its processes).

    /work/venv/bin/python benchmarks/serve_load.py --clients 8 --seconds 20

Options: ``--workers N`` (server worker processes), ``--runs``, ``--file-kb``, ``--keep DIR``
(build the table in DIR and leave it there).
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
from typing import Any

SERVE = "from arcuate.frontends.serve_cli import serve_command; serve_command()"


def build(root: Path, runs: int, file_kb: int) -> tuple[Path, str]:
    """The shared table, the catalog and a recipient token."""
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
    _, token = catalog.create_recipient("bench")
    assert token is not None
    catalog.grant("bench", "bench")
    return catalog.path, token


def client(
    endpoint: str, token: str, start_at: float, deadline: float, check: str | None, out: Any
) -> None:
    """One reader: metadata, query, every file; repeated until the deadline."""
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
    errors, nbytes = 0, 0
    with httpx.Client(timeout=60) as http:
        while time.time() < deadline:
            t = time.perf_counter()
            r = http.get(table + "/metadata", headers=auth)
            lat["metadata"].append(time.perf_counter() - t)
            errors += r.status_code != 200
            t = time.perf_counter()
            r = http.post(table + "/query", headers=auth, json={})
            lat["query"].append(time.perf_counter() - t)
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
                errors += f.status_code != 200
                nbytes += size
    out.put({"lat": lat, "errors": errors, "bytes": nbytes})


def rss_watch(pid: int, stop: threading.Event, peak: list[int]) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            procs = [proc, *proc.children(recursive=True)]
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs))
        except psutil.Error:
            pass
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--file-kb", type=int, default=256)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="arcuate-load-"))
    catalog_path, token = build(root, args.runs, args.file_kb)
    location = root / "warehouse" / "mlflow" / "load"
    table_bytes = sum(p.stat().st_size for p in location.glob("*.parquet"))
    port_args = ["--port", "0"] if args.workers == 1 else ["--port", "18765"]
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
            str(args.workers),
            *port_args,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    endpoint = server.stdout.readline().split(" at ")[1].strip()
    time.sleep(1.5 if args.workers > 1 else 0.3)
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=rss_watch, args=(server.pid, stop, peak), daemon=True)
    watcher.start()

    from arcuate.backends.sharing.server import write_profile

    profile = write_profile(root / "bench.share", endpoint, token)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 6  # time to spawn and import, off the clock
    deadline = start_at + args.seconds
    procs = [
        ctx.Process(
            target=client,
            args=(
                endpoint,
                token,
                start_at,
                deadline,
                f"{profile}|{location}" if i == 0 else None,
                out,
            ),
        )
        for i in range(args.clients)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=args.seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    stop.set()
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)

    lat: dict[str, list[float]] = {"metadata": [], "query": [], "file": []}
    for r in results:
        for k, v in r["lat"].items():
            lat[k] += v
    every = sorted(x for v in lat.values() for x in v)
    total_bytes = sum(r["bytes"] for r in results)
    errors = sum(r["errors"] for r in results)
    seconds = args.seconds

    def pct(xs: list[float], q: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")

    print(
        f"table: {args.runs} runs x {args.file_kb} KiB, {table_bytes / 1e6:.1f} MB on disk, "
        f"{len(list(location.glob('*.parquet')))} files"
    )
    print(f"clients: {args.clients} processes, server workers: {args.workers}, ~{seconds:.0f} s")
    print(f"requests: {len(every)}  ({len(every) / seconds:.1f} req/s)")
    for kind, xs in lat.items():
        if xs:
            print(
                f"  {kind:8s} n={len(xs):6d}  p50={pct(xs, 0.5):7.1f} ms  "
                f"p99={pct(xs, 0.99):7.1f} ms  mean={statistics.fmean(xs) * 1000:7.1f} ms"
            )
    print(f"all      p50={pct(every, 0.5):.1f} ms  p99={pct(every, 0.99):.1f} ms")
    print(f"file serving: {total_bytes / 1e6:.0f} MB, {total_bytes / 1e6 / seconds:.1f} MB/s")
    print(f"errors: {errors}")
    print(f"server peak RSS: {peak[0] / 2**20:.0f} MiB")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
