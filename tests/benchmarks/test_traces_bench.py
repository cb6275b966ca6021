"""``python -m benchmarks traces`` at a small size runs end to end and prints every figure
docs/performance.md quotes (no timing asserts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_traces_benchmark_prints_floor_export_import(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["TMPDIR"] = str(tmp_path)
    cmd = [sys.executable, "-m", "benchmarks", "traces", "--traces", "30", "--spans", "4",
           "--floor-sample", "3"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "30 traces x 4 spans (sqlite), MLflow floor on a sample of 3" in out
    for line in ("MLflow fluent API, creating (floor)", "arcuate export (read + check)",
                 "arcuate import, batched (ids kept)", "arcuate import, trace by trace",
                 "peak RSS", "all arrived: True"):
        assert line in out, out
    assert "% of the floor" in out
