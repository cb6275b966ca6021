"""Serving a big artifact table from object storage (issue 13 item 2).

``python -m benchmarks.s3_serve [--size 1GiB] [--small 64MiB] [--smoke]`` starts moto's S3
server (its own process, :mod:`benchmarks.topology`), and for a small and a big artifact (the
``big-file`` shape: one run, one file) exports the experiment into a warehouse in S3, serves
it with arcuate's server (its own process) and measures, each step in a fresh process:

- ``export``: ``CREATE SHARE`` into ``s3://`` (peak RSS);
- ``download``: a recipient's whole read through the protocol: the ``delta_sharing`` client
  lists the files, then every pre-signed URL is read straight from S3 in 1 MiB pieces;
- ``s3-get``: the same files read from S3 directly with boto3 (the reference);
- ``import``: ``CREATE EXPERIMENT ... AS`` into a fresh sqlite store (peak RSS);

and, around ``download`` and ``import``, the server's own CPU time and the bytes it sent (its
response bodies): they stay the same whatever the file size, since it hands out URLs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.runner import Launcher, Measured, Server, child_env
from benchmarks.shapes import human, parse_size, resolve
from benchmarks.workload import generate, make_template, new_store

SHARE, SCHEMA, RECIPIENT = "bench", "bench", "bench-reader"
MIB = 1024 * 1024


def server_stats(server: Server) -> dict[str, Any]:
    """The server's counters and its CPU seconds so far (user + system, all threads)."""
    import psutil

    assert server.proc.stdin is not None and server.proc.stdout is not None
    server.proc.stdin.write("stats\n")
    server.proc.stdin.flush()
    stats: dict[str, Any] = json.loads(server.proc.stdout.readline())
    cpu = psutil.Process(server.proc.pid).cpu_times()
    stats["cpu_seconds"] = cpu.user + cpu.system
    return stats


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {k: after[k] - before[k] for k in after if isinstance(after[k], int | float)}


def run_size(size: int, root: Path, template: Path, bucket: str) -> dict[str, Any]:
    """Export, serve, download (through the protocol and directly) and import one artifact of
    ``size`` bytes; the figures."""
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import write_profile

    launcher = Launcher()
    label = f"s3-{human(size).replace(' ', '')}"
    shape = resolve("big-file", files=(size,), name=label)
    base = root / label
    start = time.perf_counter()
    source = generate(shape, base / "source", template)
    print(f"  {label}: source generated in {time.perf_counter() - start:.1f} s", flush=True)
    catalog = base / "provider" / "shares.yaml"
    table = label.replace("-", "_").lower()
    export_args = {
        "uri": source.uri,
        "statement": f"CREATE SHARE {SHARE} WITH TABLE {SCHEMA}.{table} "
        f"FROM EXPERIMENT '{source.experiment}'",
        "warehouse": f"s3://{bucket}/{label}",
        "catalog": str(catalog),
    }
    phases: dict[str, Measured] = {}
    phases["export"] = launcher.run("export", export_args, base / "export")
    location = str(phases["export"].result["summary"]["location"])
    _, token = LocalShareCatalog(catalog).create_recipient(RECIPIENT)
    assert token is not None
    LocalShareCatalog(catalog).grant(SHARE, RECIPIENT)
    server = Server(catalog, base / "provider" / "server.log")
    server_figures: dict[str, dict[str, Any]] = {}
    try:
        profile = write_profile(base / "provider" / "bench.share", server.endpoint, token)
        where = {"profile": str(profile), "share": SHARE, "schema": SCHEMA, "table": table}
        before = server_stats(server)
        phases["download"] = launcher.run("serve", {**where, "clients": 0}, base / "dl", server)
        after = server_stats(server)
        server_figures["download"] = _delta(before, after)
        phases["s3-get"] = launcher.run("s3-get", {"location": location}, base / "s3-get")
        dest = base / "import"
        uri = new_store(template, dest)
        coordinate = f"'{profile}#{SHARE}.{SCHEMA}.{table}'"
        import_args = {"uri": uri, "statement": f"CREATE EXPERIMENT 'imported' AS {coordinate}"}
        phases["import"] = launcher.run("import", import_args, dest, server)
        server_figures["import"] = _delta(after, server_stats(server))
        server_peak = server.peak
    finally:
        server.stop()
    return _figures(size, phases, server_figures, server_peak)


def _figures(
    size: int,
    phases: dict[str, Measured],
    server: dict[str, dict[str, Any]],
    server_peak: int,
) -> dict[str, Any]:
    download, direct = phases["download"].result, phases["s3-get"].result
    return {
        "size": size,
        "export_seconds": phases["export"].seconds,
        "export_peak_rss": phases["export"].peak_rss,
        "export_helper_rss": phases["export"].helper_rss,
        "export_base_rss": phases["export"].base_rss,
        "download_seconds": download["seconds"],
        "download_bytes": download["bytes"],
        "download_errors": download["errors"],
        "download_peak_rss": phases["download"].largest,
        "s3_get_seconds": direct["seconds"],
        "s3_get_bytes": direct["bytes"],
        "import_seconds": phases["import"].seconds,
        "import_peak_rss": phases["import"].peak_rss,
        "import_helper_rss": phases["import"].helper_rss,
        "import_base_rss": phases["import"].base_rss,
        "server": server,
        "server_peak_rss": server_peak,
    }


def _rss(peak: int, base: int) -> str:
    """Peak resident MiB, and what the work added to the imports (``+n``)."""
    return f"{peak / MIB:.0f} MiB (+{max(0, peak - base) / MIB:.0f})"


def _mb_s(n: float, seconds: float) -> float:
    return n / MIB / seconds if seconds > 0 else 0.0


def format_report(rows: list[dict[str, Any]]) -> str:
    """One table: a column per size."""
    lines = [
        "| | " + " | ".join(human(r["size"]) for r in rows) + " |",
        "|---|" + "---|" * len(rows),
    ]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("export to S3 (s, peak RSS; its helper)", [
        f"{r['export_seconds']:.1f} s, {_rss(r['export_peak_rss'], r['export_base_rss'])}; "
        f"{r['export_helper_rss'] / MIB:.0f} MiB"
        for r in rows
    ])  # fmt: skip
    row("recipient download via the server (MB/s)", [
        f"{_mb_s(r['download_bytes'], r['download_seconds']):.0f} ({r['download_seconds']:.2f} s)"
        for r in rows
    ])  # fmt: skip
    row("direct S3 GET, boto3 (MB/s)", [
        f"{_mb_s(r['s3_get_bytes'], r['s3_get_seconds']):.0f} ({r['s3_get_seconds']:.2f} s)"
        for r in rows
    ])  # fmt: skip
    row("download / direct GET", [
        f"{r['s3_get_seconds'] / r['download_seconds']:.0%}" for r in rows
    ])  # fmt: skip
    for phase in ("download", "import"):
        row(f"server during {phase}: CPU ms, bytes sent, requests, URLs", [
            f"{r['server'][phase]['cpu_seconds'] * 1000:.0f} ms, "
            f"{r['server'][phase]['response_bytes']:,} B, {r['server'][phase]['requests']}, "
            f"{r['server'][phase]['presigned_urls']}"
            for r in rows
        ])  # fmt: skip
    row("import (s, peak RSS; its helper)", [
        f"{r['import_seconds']:.1f} s, {_rss(r['import_peak_rss'], r['import_base_rss'])}; "
        f"{r['import_helper_rss'] / MIB:.0f} MiB"
        for r in rows
    ])  # fmt: skip
    row("peak RSS: downloader, server", [
        f"{r['download_peak_rss'] / MIB:.0f} MiB, {r['server_peak_rss'] / MIB:.0f} MiB"
        for r in rows
    ])  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks import topology

    parser = argparse.ArgumentParser(prog="python -m benchmarks.s3_serve", description=__doc__)
    parser.add_argument("--size", default="1GiB", help="the big artifact (1GiB)")
    parser.add_argument("--small", default="64MiB", help="the small artifact (64MiB)")
    parser.add_argument("--smoke", action="store_true", help="4 MiB and 16 MiB, in seconds")
    parser.add_argument("--dir", help="work here (kept) instead of a temporary directory")
    parser.add_argument("--json", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    sizes = [4 * MIB, 16 * MIB] if args.smoke else [parse_size(args.small), parse_size(args.size)]
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="arcuate-s3-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    template = make_template(root / "template" / "mlflow.db")
    s3 = topology.start_s3("bench", log=root / "moto.log")
    saved = dict(os.environ)
    os.environ.update(s3.env)  # every child (export, server, readers) reaches moto
    try:
        assert child_env()["AWS_ENDPOINT_URL"] == s3.endpoint
        rows = [run_size(size, root, template, s3.bucket) for size in sizes]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        s3.stop()
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    print(format_report(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
