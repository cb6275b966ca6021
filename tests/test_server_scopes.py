"""The suite's xdist scheduler: each server fixture starts once per run, on one worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.server_scopes import server_units

_CONFTEST = """
import os
import pytest

def _started(name):
    with open(os.environ["STARTS"], "a") as f:
        f.write(f"{name} {os.environ.get('PYTEST_XDIST_WORKER', 'main')}\\n")

@pytest.fixture(scope="session")
def postgres():
    _started("postgres")

@pytest.fixture(scope="session")
def s3():
    _started("s3")

@pytest.fixture(scope="session")
def sail_port():
    _started("sail_port")
"""


def test_tests_sharing_a_server_share_one_unit() -> None:
    units = server_units(
        {
            "a.py::t": {"postgres", "tmp_path"},
            "b.py::t": {"s3"},
            "c.py::t": {"s3", "postgres"},
            "d.py::t": {"sail_port"},
            "e.py::t": {"tmp_path"},
        }
    )
    assert units == {
        "a.py::t": "servers:postgres,s3",
        "b.py::t": "servers:postgres,s3",
        "c.py::t": "servers:postgres,s3",
        "d.py::t": "servers:sail_port",
    }


def test_tests_sharing_a_costly_build_share_one_unit() -> None:
    """A module fixture that takes a minute to build (BUILDS) keeps its tests on one worker,
    with the servers any of them uses; it is not counted as a server."""
    units = server_units(
        {
            "t.py::sqlite": {"torture_provider", "tmp_path"},
            "t.py::server": {"torture_provider", "mlflow_server"},
            "u.py::t": {"mlflow_server"},
            "v.py::t": {"tmp_path"},
        }
    )
    assert set(units) == {"t.py::sqlite", "t.py::server", "u.py::t"}
    assert len(set(units.values())) == 1


def test_each_server_starts_once_in_a_two_worker_run(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(_CONFTEST)
    for i in range(3):
        (suite / f"test_pg_{i}.py").write_text(
            "".join(f"def test_{j}(postgres):\n    pass\n" for j in range(4))
        )
    (suite / "test_both.py").write_text("def test_both(postgres, s3):\n    pass\n")
    (suite / "test_sail.py").write_text(
        "".join(f"def test_{j}(sail_port):\n    pass\n" for j in range(4))
    )
    (suite / "test_plain.py").write_text("".join(f"def test_{j}():\n    pass\n" for j in range(20)))
    starts = tmp_path / "starts.txt"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "STARTS": str(starts), "PYTHONPATH": str(root)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
         "tests.server_scopes", "-n", "2", "--dist", "load", str(suite)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "37 passed" in run.stdout
    lines = starts.read_text().split()
    started = sorted(lines[0::2])
    assert started == ["postgres", "s3", "sail_port"], lines
    assert "servers started: postgres 1x, s3 1x, sail_port 1x" in run.stdout
