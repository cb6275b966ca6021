"""``arcuate --help`` and ``arcuate explain`` load neither MLflow nor the server stack.

Each command runs in a fresh interpreter (as :mod:`benchmarks.startup` measures it) and the
test reads which heavy libraries it left in ``sys.modules``: what is not imported costs no
start-up time, and this stays true without any timing assertion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.startup import CASES, HEAVY, heavy_modules


@pytest.mark.parametrize("case", list(CASES))
def test_the_command_loads_no_heavy_library(case: str) -> None:
    assert "mlflow" in HEAVY and "starlette" in HEAVY
    assert heavy_modules(CASES[case]) == []


def _fresh(code: str) -> Any:
    """What ``code`` prints last, as JSON, run in a fresh interpreter."""
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_command_defers_pandas_until_a_step_uses_it() -> None:
    """With :func:`~arcuate.frontends.lazy.defer_pandas` (what the command calls), pyarrow's
    typed conversions load no pandas; once pandas is imported, pyarrow sees pandas objects as
    it does without the deferral (a categorical becomes a dictionary array)."""
    code = """
import json, sys, datetime
from arcuate.frontends.lazy import defer_pandas
defer_pandas()
import pyarrow as pa, pyarrow.compute as pc
out = {}
pa.array(["a", None], pa.string())
pa.RecordBatch.from_pylist([{"a": 1}], schema=pa.schema([("a", pa.int64())]))
pa.array([datetime.datetime(2026, 1, 1)], pa.timestamp("us", tz="UTC"))
pc.multiply(pa.array([1, 2], pa.int64()), pa.scalar(1000, pa.int64()))
out["before"] = "pandas" in sys.modules
import pandas as pd
out["after"] = "pandas" in sys.modules
out["categorical"] = str(pa.array(pd.Series(["x", "y", "x"], dtype="category")).type)
out["frame"] = pa.Table.from_pandas(pd.DataFrame({"a": [1]})).num_rows
out["loader"] = type(pd.__spec__.loader).__name__
print(json.dumps(out))
"""
    got = _fresh(code)
    assert got == {
        "before": False,
        "after": True,
        "categorical": "dictionary<values=string, indices=int8, ordered=0>",
        "frame": 1,
        "loader": "SourceFileLoader",
    }


def test_pandas_imported_first_is_left_alone() -> None:
    code = """
import json, sys
import pandas as pd
from arcuate.frontends import lazy
lazy.defer_pandas()
import pyarrow as pa
print(json.dumps([len(lazy._installed), str(pa.array(pd.Series(["x"], dtype="category")).type)]))
"""
    assert _fresh(code) == [0, "dictionary<values=string, indices=int8, ordered=0>"]
