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

from pathlib import Path

import pytest

from tests.imports.import_helpers import Share, modules_left_by

WATCHED = ("delta_sharing", "pandas", "pyspark", "mlflow")


def loaded_by(statement: str, cwd: Path, **settings: str) -> list[str]:
    """The :data:`WATCHED` modules left loaded by running ``statement`` in a fresh interpreter
    (which must succeed)."""
    return modules_left_by(statement, cwd, WATCHED, **settings)


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
