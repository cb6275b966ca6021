"""A statement against a tracking server (REST) loads no SQL store (MLflow's
``SqlAlchemyStore``, sqlalchemy, alembic: about a second of start-up that no REST step uses)
and no Spark Connect (which MLflow's probe for a Spark session imports on every request
unless :func:`~arcuate.backends.mlflow.connect.spark_guard` refuses it: about 0.6 s, and in a
``python -c`` process it exits the process).

An experiment import or export over REST does not import ``mlflow`` at all (arcuate's own
REST client, :mod:`arcuate.backends.mlflow.rest`, talks to the server).

Each statement runs as ``python -c "import arcuate; arcuate.execute(...)"`` and the test reads
which of those modules it left in ``sys.modules`` (no timing assertion).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.imports.import_helpers import Share, modules_left_by

pytestmark = pytest.mark.server

#: Modules only a SQL tracking store needs, and Spark Connect.
NOT_NEEDED = (
    "mlflow.store.tracking.sqlalchemy_store",
    "sqlalchemy",
    "alembic",
    "pyspark.sql.connect",
)


def loaded_by(
    statement: str, cwd: Path, modules: tuple[str, ...] = NOT_NEEDED, **settings: str
) -> list[str]:
    """The ``modules`` left loaded by running ``statement`` in a fresh interpreter."""
    return modules_left_by(statement, cwd, modules, **settings)


def test_import_and_export_over_rest_load_no_sql_store(
    share: Share, mlflow_server: Any, tmp_path: Path, import_path: str
) -> None:
    if import_path != "api":
        pytest.skip("one run is enough: a server is written through its REST API either way")
    uris = {"tracking_uri": mlflow_server.tracking_uri, "registry_uri": mlflow_server.tracking_uri}
    imported = loaded_by(
        f"CREATE EXPERIMENT startup_rest AS '{share.experiment}'",
        tmp_path,
        (*NOT_NEEDED, "mlflow"),
        **uris,
    )
    exported = loaded_by(
        "CREATE SHARE startup_rest WITH TABLE s.t FROM EXPERIMENT startup_rest",
        tmp_path,
        (*NOT_NEEDED, "mlflow"),
        warehouse=str(tmp_path / "wh"),
        **uris,
    )
    # arcuate's own REST client writes and reads the experiment: MLflow is not even imported
    assert (imported, exported) == ([], [])
