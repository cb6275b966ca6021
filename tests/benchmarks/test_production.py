"""``python -m benchmarks production --smoke`` runs end to end and prints its figures.

It starts its own PostgreSQL cluster, moto S3 server and two ``mlflow server`` processes, seeds
a 3-run experiment, and runs every step as a fresh ``arcuate run`` process, as a user does:
about 10 commands of 3-4 s each plus 15 s of start-up, so this test takes 40-60 s on the
2-CPU development machine (marked ``slow``; the figures themselves are not asserted). The
peer runs only when its venv is already cached (``~/.cache/arcuate-bench/peer-venv``): the
smoke size never downloads it. The registered-model workload is left out here
(``--skip model``); it shares the REST steps measured here.

What is checked is what a reader of the output relies on: both parts' tables with every
phase, the "tiny commands" line, every arcuate step ok, and the destinations holding what the
source held (a wrong copy makes the run exit 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import topology
from benchmarks.prod_workload import Counts, check

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.s3, pytest.mark.server]


def _peer_cached() -> bool:
    marker = topology.PEER_VENV / "arcuate-peer-spec.txt"
    return marker.exists() and marker.read_text() == "\n".join(topology._peer_spec())


def test_production_smoke_runs_every_step_and_checks_the_destinations(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "AWS_"))}
    env.pop("MLFLOW_REGISTRY_URI", None)
    figures = workdir / "production.json"
    cmd = [
        sys.executable, "-m", "benchmarks", "production", "--smoke", "--skip", "model",
        "--dir", str(workdir / "production"), "--json", str(figures),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    print(out)  # the figures, for whoever runs pytest -s
    assert done.returncode == 0, out[-4000:]
    assert "bytecode compiled before timing, as pip install leaves it: arcuate " in out

    for row in (
        "| export, REST -> local warehouse |",
        "| export, REST -> S3 warehouse |",
        "| transfer: arcuate serve, local table |",
        "| transfer: arcuate serve, S3 table |",
        "| import, REST (arcuate: from the S3 table) |",
        "| round trip, REST |",
        "| export, postgresql:// (arcuate: -> S3 warehouse) |",
        "| import, postgresql:// |",
        "| round trip, databases (peer: REST) |",
    ):
        assert row in out, row
    assert "tiny commands (3 runs, each a fresh process; target < 2 s): arcuate export " in out
    assert "arcuate import, postgresql://: auto" in out  # which path `auto` took is said
    # the floor under the bulk import: PostgreSQL's own COPY of the same rows
    assert "PostgreSQL alone: COPY of the import's 300 metric rows into metrics" in out

    report = json.loads(figures.read_text())
    (workload,) = report["workloads"]
    assert workload["copy_floor"][0] == 300 and workload["copy_floor"][1] > 0
    steps = workload["steps"]
    ours = [s for s in steps if s["tool"] == "arcuate" and s["key"] != "export_db_proxied"]
    assert {s["key"] for s in ours} == {
        "export_local", "export_s3", "export_db", "transfer_local", "transfer_s3",
        "import_rest", "import_db",
    }  # fmt: skip
    for step in ours:
        assert step["ok"] and step["check"].startswith("ok"), step
        assert step["wall"] > 0 and step["peak"] > 0, step
    imports = [s for s in ours if s["key"].startswith("import")]
    for step in imports:
        assert "3 runs, 300 metric points in 30 histories" in step["check"], step
    peer = [s for s in steps if s["tool"] == "peer"]
    if _peer_cached():
        assert {s["key"] for s in peer} == {
            "peer_export_rest", "peer_export_db", "peer_import_rest", "peer_import_db",
        }  # fmt: skip
    else:
        assert not peer and "the peer is left out" in out


def _counts(**changes: object) -> Counts:
    base = dict(runs=3, histories=30, short_histories=0, points=300, value_sum=29.5, params=60,
                tags=18, versions=0, files=6, file_bytes=33792)  # fmt: skip
    return Counts(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"runs": 2}, "runs 2 (expected 3)"),
        ({"points": 299, "short_histories": 1}, "1 metric histories of the wrong length"),
        ({"value_sum": 29.6}, "metric values sum to 29.6"),
        ({"file_bytes": 1024}, "file_bytes 1,024 (expected 33,792)"),
    ],
)
def test_a_wrong_copy_is_a_mismatch(changes: dict[str, object], reason: str) -> None:
    line = check(_counts(), _counts(**changes), "recipient")
    assert line.startswith("MISMATCH: recipient: ") and reason in line


def test_a_faithful_copy_is_ok() -> None:
    assert check(_counts(), _counts(), "recipient").startswith("ok: recipient: 3 runs")
