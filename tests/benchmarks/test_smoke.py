"""The benchmark runner's smoke sizes run end to end and print their figures (no timing asserts).

``python -m benchmarks <shapes> --smoke`` is run as documented in docs/performance.md, twice in
parallel: all four shapes with the smoke default (phases forked from a preloaded fork server),
and bench-200 without the floor through ``--launcher spawn`` (a fresh interpreter per phase,
the full runs' path). Both reuse the session's migrated template database. What is checked is
what a reader of the output relies on: a table per shape with every phase, the MLflow floor
next to arcuate's figures, and the destination stores holding what the source held.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FLOOR = ("MLflow floor: read", "MLflow floor: write", "MLflow floor: round trip")
OURS = (
    "arcuate export",
    "arcuate serve, 1 client",
    "arcuate import",
    "arcuate round trip",
    "disk read of the table",
)


def _start(workdir: Path, template: Path, name: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    env.pop("MLFLOW_REGISTRY_URI", None)
    cmd = [
        sys.executable, "-m", "benchmarks", *args, "--smoke",
        "--template", str(template),
        "--dir", str(workdir / name),
        "--json", str(workdir / f"{name}.json"),
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_every_shape_runs_at_smoke_size_and_prints_its_figures(
    mlflow_template: Path, workdir: Path
) -> None:
    shapes = ("bench-200", "many-runs", "big-file", "model")
    runs = {
        "forked": _start(workdir, mlflow_template, "forked", *shapes),
        "spawned": _start(
            workdir, mlflow_template, "spawned", "bench-200", "--launcher", "spawn",
            "--skip", "floor",
        ),
    }  # fmt: skip
    outputs = {}
    for name, proc in runs.items():
        out, _ = proc.communicate(timeout=300)
        outputs[name] = out
        print(out)  # the figures, for whoever runs pytest -s
        assert proc.returncode == 0, f"{name} run failed:\n{out[-3000:]}"
    forked, spawned = outputs["forked"], outputs["spawned"]

    for name in shapes:
        assert f"\n{name} (smoke): " in forked
    assert "\nbench-200 (smoke): " in spawned
    for phase in FLOOR:
        assert forked.count(f"\n{phase} ") == 4 and f"\n{phase} " not in spawned, phase
    for phase in (*OURS, "arcuate serve, 4 clients"):
        assert forked.count(f"\n{phase} ") == 4 and spawned.count(f"\n{phase} ") == 1, phase
    for text in outputs.values():
        assert "MISMATCH" not in text
    assert forked.count("check: import: ") == 4 and forked.count("check: floor write: ") == 4

    spawned_report = json.loads((workdir / "spawned.json").read_text())["shapes"][0]
    assert set(spawned_report["phases"]) == {"export", "disk-read", "serve", "import"}
    reports = json.loads((workdir / "forked.json").read_text())["shapes"]
    by_name = {s["shape"]["name"]: s for s in reports}
    assert set(by_name) == set(shapes)
    for report in reports:
        phases = report["phases"]
        assert set(phases) == {"floor-read", "floor-write", *spawned_report["phases"]}
        for figures in phases.values():
            assert figures["seconds"] >= 0 and figures["peak_rss"] > 0
        serve = phases["serve"]["result"]
        assert serve["errors"] == 0 and serve["concurrent"]["errors"] == 0
        assert serve["bytes"] == phases["disk-read"]["result"]["bytes"] > 0
        shape = report["shape"]
        runs = max(shape["runs"], shape["versions"])
        points = runs * shape["metrics"] * shape["steps"]
        assert phases["floor-read"]["result"]["points"] == points
        assert phases["floor-write"]["result"]["points"] == points
    # the exported table carries every artifact byte of the source (big-file is chunked)
    big = by_name["big-file"]["phases"]
    assert big["export"]["result"]["summary"]["bytes"] == 20 * 1024 * 1024
    assert by_name["model"]["phases"]["export"]["result"]["summary"]["versions"] == 2
