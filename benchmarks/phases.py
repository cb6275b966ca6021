"""The measured steps, each run as ``python -m benchmarks.phases <phase> <args.json>``.

Every phase does its imports first, then times only its work with ``perf_counter`` and prints
one line ``@@bench-result@@ {json}`` with its figures and its own peak RSS (``VmHWM``);
the runner adds the peak it sampled with psutil over the whole process tree. Running each
phase in a fresh process keeps their peaks separate and comparable.

The MLflow floor is what a copier built on MLflow's public API must at least do:
reading with ``search_runs`` + ``get_metric_history`` per (run, key) + ``download_artifacts``,
writing with ``create_run`` + ``log_batch`` + ``log_artifacts`` + ``set_terminated`` (plus
``create_registered_model``/``create_model_version`` for the model shape). The read phase
dumps what it read (its own JSON lines, off the clock) for the write phase to replay.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MARK = "@@bench-result@@"
_READ = 1 << 20
#: The RSS a phase had when its clock started (see start_clock).
_BASELINE = {"rss": 0}


def _status(field: str) -> int:
    """A size field of ``/proc/self/status`` in bytes (0 where there is none)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss() -> int:
    """This process's peak resident bytes (``VmHWM``).

    Not ``ru_maxrss``: Linux carries the parent's peak across fork and exec into it, so every
    child of a large runner would report at least the runner's size.
    """
    return _status("VmHWM")


def start_clock() -> float:
    """Note the RSS the work starts from (imports done), then start the clock."""
    _BASELINE["rss"] = _status("VmRSS")
    return time.perf_counter()


def _pin_uris(uri: str) -> None:
    """Point this (child) process's MLflow at ``uri``: some MLflow internals build their own
    client from the tracking URI alone, and resolving a registry without one can exit the
    process when pyspark is installed."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_REGISTRY_URI"] = uri


def _preload(*modules: str) -> None:
    """Import what a phase needs before its clock starts: module imports are process start-up
    (the same for MLflow's floor and for arcuate), not work on the data."""
    import importlib

    for name in (
        "mlflow",
        "mlflow.store.tracking.sqlalchemy_store",
        "mlflow.store.model_registry.sqlalchemy_store",
        *modules,
    ):
        importlib.import_module(name)


def _dir_bytes(path: Path) -> tuple[int, int]:
    """(files, bytes) under ``path``."""
    files = size = 0
    for p in path.rglob("*"):
        if p.is_file():
            files += 1
            size += p.stat().st_size
    return files, size


# --- the MLflow public-API floor ---------------------------------------------------------


def floor_read(args: dict[str, Any]) -> dict[str, Any]:
    """Read every run (or every version and its run) with the public API; dump it."""
    _preload()
    from mlflow import MlflowClient

    uri, dump = args["uri"], Path(args["dump"])
    _pin_uris(uri)
    (dump / "artifacts").mkdir(parents=True, exist_ok=True)
    start = start_clock()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    off_clock = 0.0
    points = runs = 0
    out = open(dump / "runs.jsonl", "w", encoding="utf-8")  # noqa: SIM115 - closed below

    def read_run(run: Any, version: Any = None) -> None:
        nonlocal off_clock, points, runs
        rid = run.info.run_id
        history = []
        for key in run.data.metrics:
            history.extend(client.get_metric_history(rid, key))
        target = dump / "artifacts" / rid
        target.mkdir(parents=True, exist_ok=True)
        client.download_artifacts(rid, "model" if version is not None else "", str(target))
        points += len(history)
        runs += 1
        t = time.perf_counter()
        record = {
            "run_id": rid,
            "run_name": run.info.run_name,
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
            "status": run.info.status,
            "params": run.data.params,
            "tags": {k: v for k, v in run.data.tags.items() if k != "mlflow.runName"},
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in history],
        }
        if version is not None:
            record["version"] = {
                "version": int(version.version),
                "description": version.description,
                "tags": version.tags,
            }
        out.write(json.dumps(record) + "\n")
        off_clock += time.perf_counter() - t

    if args.get("model"):
        model = args["model"]
        client.get_registered_model(model)
        versions = client.search_model_versions(f"name = '{model}'")
        for mv in sorted(versions, key=lambda v: int(v.version)):
            read_run(client.get_run(mv.run_id), mv)
    else:
        token = None
        found: list[Any] = []
        while True:
            page = client.search_runs([args["experiment_id"]], max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        for run in found:
            read_run(run)
    seconds = time.perf_counter() - start - off_clock
    out.close()
    files, size = _dir_bytes(dump / "artifacts")
    return {"seconds": seconds, "runs": runs, "points": points, "files": files, "bytes": size}


def _dump_lines(dump: Path) -> Iterator[tuple[dict[str, Any], float]]:
    """(record, seconds spent parsing it) for each run the read phase dumped."""
    with open(dump / "runs.jsonl", encoding="utf-8") as fh:
        for line in fh:
            t = time.perf_counter()
            record = json.loads(line)
            yield record, time.perf_counter() - t


def floor_write(args: dict[str, Any]) -> dict[str, Any]:
    """Write the dumped runs (and versions) into a fresh store with the public API."""
    _preload()
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    uri, dump = args["uri"], Path(args["dump"])
    _pin_uris(uri)
    artifacts = Path.cwd() / "floor-artifacts"
    off_clock = 0.0
    runs = points = 0
    start = start_clock()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("bench-floor", artifact_location=artifacts.as_uri())
    model = args.get("model")
    if model:
        client.create_registered_model(model)
    for record, parse in _dump_lines(dump):
        off_clock += parse
        run = client.create_run(
            experiment_id,
            start_time=record["start_time"],
            tags=record["tags"],
            run_name=record["run_name"],
        )
        rid = run.info.run_id
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in record["metrics"]]
        params = [Param(k, v) for k, v in record["params"].items()]
        client.log_batch(rid, metrics=metrics, params=params)
        local = dump / "artifacts" / record["run_id"] / ("model" if model else "")
        if local.is_dir() and any(local.iterdir()):
            client.log_artifacts(rid, str(local), "model" if model else None)
        client.set_terminated(rid, record["status"], end_time=record["end_time"])
        if model:
            client.create_model_version(
                model,
                source=f"{run.info.artifact_uri}/model",
                run_id=rid,
                description=record["version"]["description"],
                tags=record["version"]["tags"],
            )
        runs += 1
        points += len(metrics)
    seconds = time.perf_counter() - start - off_clock
    files, size = _dir_bytes(artifacts)
    return {"seconds": seconds, "runs": runs, "points": points, "files": files, "bytes": size}


# --- arcuate -------------------------------------------------------------------------------


def _execute(args: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    import arcuate

    settings = {
        "tracking_uri": args["uri"],
        "registry_uri": args["uri"],
        "progress": False,
    }
    for key in ("warehouse", "catalog", "import_path"):
        if args.get(key):
            settings[key] = args[key]
    start = start_clock()
    results = arcuate.execute(args["statement"], **settings)
    seconds = time.perf_counter() - start
    summary: dict[str, Any] = {}
    for result in results:
        summary.update({k: v for k, v in result.summary.items() if _jsonable(v)})
    return seconds, summary


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None))


def export(args: dict[str, Any]) -> dict[str, Any]:
    """``CREATE SHARE ... FROM EXPERIMENT|MODEL`` through ``arcuate.execute``."""
    _preload(
        "arcuate.api",
        "arcuate.engine.export",
        "arcuate.backends.mlflow.source",
        "arcuate.backends.deltalake.store",
        "arcuate.backends.sharing.catalog",
    )
    seconds, summary = _execute(args)
    return {"seconds": seconds, "summary": summary}


def import_(args: dict[str, Any]) -> dict[str, Any]:
    """``CREATE EXPERIMENT|MODEL ... AS <coordinate>`` through ``arcuate.execute``."""
    _preload(
        "arcuate.api",
        "arcuate.engine.imports",
        "arcuate.backends.mlflow.sink",
        "arcuate.backends.sharing.reader",
    )
    seconds, summary = _execute(args)
    return {"seconds": seconds, "summary": summary}


def _read_table(profile: str, share: str, schema: str, table: str) -> tuple[int, int, int]:
    """Everything a reader fetches through the sharing protocol: (files, bytes, errors).

    The real ``delta_sharing`` client lists the table's files; each signed URL is then read
    whole, in 1 MiB pieces, and checked against the size the server announced.
    """
    import requests
    from delta_sharing.protocol import DeltaSharingProfile, Table
    from delta_sharing.rest_client import DataSharingRestClient

    client = DataSharingRestClient(DeltaSharingProfile.read_from_file(profile))
    try:
        listing = client.list_files_in_table(Table(name=table, share=share, schema=schema))
    finally:
        client.close()
    files = size = errors = 0
    with requests.Session() as http:
        for add in listing.add_files:
            try:
                with http.get(add.url, stream=True, timeout=600) as r:
                    r.raise_for_status()
                    n = sum(len(piece) for piece in r.iter_content(_READ))
            except requests.RequestException:
                errors += 1
                continue
            files += 1
            size += n
            errors += n != add.size
    return files, size, errors


def _warm_up(profile: str, share: str, schema: str, table: str) -> None:
    """One metadata request off the clock, so the server's first-request set-up (loading
    deltalake, opening the table) is not charged to the throughput figure."""
    from delta_sharing.protocol import DeltaSharingProfile, Table
    from delta_sharing.rest_client import DataSharingRestClient

    client = DataSharingRestClient(DeltaSharingProfile.read_from_file(profile))
    try:
        client.query_table_metadata(Table(name=table, share=share, schema=schema))
    finally:
        client.close()


def serve(args: dict[str, Any]) -> dict[str, Any]:
    """One reader, then ``clients`` concurrent readers, of the whole shared table."""
    from concurrent.futures import ThreadPoolExecutor

    import delta_sharing.rest_client  # noqa: F401 - imported off the clock
    import requests  # noqa: F401

    where = (args["profile"], args["share"], args["schema"], args["table"])
    _warm_up(*where)
    start = start_clock()
    files, size, errors = _read_table(*where)
    single = time.perf_counter() - start
    clients = int(args.get("clients", 0))
    result: dict[str, Any] = {
        "seconds": single,
        "files": files,
        "bytes": size,
        "errors": errors,
        "mark": time.time(),
    }
    if args.get("location") and evict(_table_paths(args["location"])):
        # The same read with the table's pages evicted: the server reads the disk.
        start = time.perf_counter()
        _, cold_size, cold_errors = _read_table(*where)
        result["cold"] = {
            "seconds": time.perf_counter() - start,
            "bytes": cold_size,
            "errors": cold_errors,
        }
    if clients > 1:
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            done = list(pool.map(lambda _: _read_table(*where), range(clients)))
        result["concurrent"] = {
            "clients": clients,
            "seconds": time.perf_counter() - start,
            "bytes": sum(d[1] for d in done),
            "errors": sum(d[2] for d in done),
        }
    return result


def _table_paths(location: str) -> list[str]:
    from deltalake import DeltaTable

    return [u.removeprefix("file://") for u in DeltaTable(location).file_uris()]


def evict(paths: list[str]) -> bool:
    """Drop these files' pages from the page cache (``POSIX_FADV_DONTNEED`` after a sync), so
    the next read comes from the disk. Only these files: other jobs keep their cache. False
    where the platform cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def _read_files(paths: list[str]) -> int:
    size = 0
    for path in paths:
        with open(path, "rb") as fh:
            while piece := fh.read(_READ):
                size += len(piece)
    return size


def _loopback(paths: list[str]) -> tuple[int, float]:
    """The files sent over one bare loopback TCP connection (``os.sendfile`` in, ``recv_into``
    out, no HTTP): what any server on this machine can give one local client. (bytes, s)"""
    import socket
    import threading

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def send() -> None:
            conn, _ = listener.accept()
            with conn:
                for path in paths:
                    with open(path, "rb") as fh:
                        size, offset = os.fstat(fh.fileno()).st_size, 0
                        while offset < size:
                            offset += os.sendfile(conn.fileno(), fh.fileno(), offset, size - offset)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        view = memoryview(bytearray(_READ))
        got = 0
        with socket.create_connection(("127.0.0.1", port)) as client:
            start = time.perf_counter()
            while n := client.recv_into(view):
                got += n
            seconds = time.perf_counter() - start
        sender.join()
    return got, seconds


def disk_read(args: dict[str, Any]) -> dict[str, Any]:
    """Read the table's data files straight from disk (the reference for serving): once cold
    (its pages evicted from the page cache first, when ``cold``), then warm; then send them
    over a bare loopback socket (the transport's ceiling)."""
    paths = _table_paths(args["location"])
    result: dict[str, Any] = {"files": len(paths)}
    if args.get("cold") and evict(paths):
        start = time.perf_counter()
        result["cold_bytes"] = _read_files(paths)
        result["cold_seconds"] = time.perf_counter() - start
    start = start_clock()
    result["bytes"] = _read_files(paths)
    result["seconds"] = time.perf_counter() - start
    result["loopback_bytes"], result["loopback_seconds"] = _loopback(paths)
    return result


def s3_get(args: dict[str, Any]) -> dict[str, Any]:
    """The reference for a download from object storage: the table's data files read straight
    from the store with boto3 (GetObject, streamed in 1 MiB pieces), as its owner would."""
    from urllib.parse import urlparse

    import boto3
    from deltalake import DeltaTable

    uris = DeltaTable(args["location"]).file_uris()
    client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    start = start_clock()
    size = 0
    for uri in uris:
        parsed = urlparse(uri)
        body = client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
        size += sum(len(piece) for piece in body.iter_chunks(_READ))
    return {"seconds": time.perf_counter() - start, "bytes": size, "files": len(uris)}


PHASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "floor-read": floor_read,
    "floor-write": floor_write,
    "export": export,
    "serve": serve,
    "import": import_,
    "disk-read": disk_read,
    "s3-get": s3_get,
}


def run_forked(phase: str, args: dict[str, Any], cwd: str, log: str, conn: Any) -> None:
    """The body of a phase forked from the runner's fork server (``--smoke``)."""
    os.chdir(cwd)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    result = PHASES[phase](args)
    result["hwm_rss"] = peak_rss()
    result["baseline_rss"] = _BASELINE["rss"]
    result["pid"] = os.getpid()
    conn.send(result)
    conn.close()


def main() -> None:
    phase, path = sys.argv[1], sys.argv[2]
    args = json.loads(Path(path).read_text())
    result = PHASES[phase](args)
    result["hwm_rss"] = peak_rss()
    result["baseline_rss"] = _BASELINE["rss"]
    result["pid"] = os.getpid()
    sys.stdout.write(MARK + " " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
