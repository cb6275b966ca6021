"""Reading a share loads neither the official ``delta_sharing`` client nor, for DESCRIBE,
pandas (issue 13: a tiny import finishes in under 2 s).

``import delta_sharing`` costs about 0.9 s of CPU: its ``__init__`` imports pandas, and
``pyspark.sql`` when it is installed. arcuate reads shares with its own protocol client
(:mod:`arcuate.backends.sharing.client`) and pyarrow; only ``AS PANDAS`` frames in the Python
API use the official client. Each statement runs as ``python -c "import arcuate;
arcuate.execute(...)"`` and the test reads which modules it left in ``sys.modules`` (no timing
assertion). An import into an MLflow store loads pandas anyway: MLflow imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.imports.import_helpers import Share

WATCHED = ("delta_sharing", "pandas", "pyspark", "mlflow")


def loaded_by(statement: str, cwd: Path, **settings: str) -> list[str]:
    """The :data:`WATCHED` modules left loaded by running ``statement`` in a fresh interpreter
    (which must succeed)."""
    code = (
        "import json, sys, arcuate\n"
        f"arcuate.execute({statement!r}, progress=False, **{settings!r})\n"
        f"print(json.dumps([m for m in {WATCHED!r} if m in sys.modules]))\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return loaded


def test_describe_loads_neither_delta_sharing_nor_pandas(
    share: Share, tmp_path: Path, import_path: str
) -> None:
    if import_path != "api":
        pytest.skip("one run is enough: DESCRIBE writes nothing")
    assert loaded_by(f"DESCRIBE '{share.experiment}'", tmp_path) == []
    assert loaded_by(f"DESCRIBE '{share.model}'", tmp_path) == []
    assert loaded_by(f"SHOW SHARES IN PROVIDER '{share.profile}'", tmp_path) == []


def test_an_import_into_sqlite_does_not_load_delta_sharing(
    share: Share, tmp_path: Path, import_path: str
) -> None:
    if import_path != "api":
        pytest.skip("one run is enough: the share is read the same way by both paths")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    loaded = loaded_by(
        f"CREATE EXPERIMENT startup_share AS '{share.experiment}'",
        tmp_path,
        tracking_uri=uri,
        registry_uri=uri,
    )
    assert "delta_sharing" not in loaded and "mlflow" in loaded
    assert "pandas" in loaded  # MLflow's own import loads it
