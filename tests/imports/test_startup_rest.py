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

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.imports.import_helpers import (
    NOT_FOR_TINY,
    Share,
    command_modules_left_by,
    modules_left_by,
)

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


@pytest.mark.s3
def test_files_to_and_from_s3_and_a_local_location_load_no_mlflow(
    share: Share, mlflow_server: Any, s3: Any, tmp_path: Path, import_path: str
) -> None:
    """Experiments on the server whose artifacts live in ``s3://`` and in a ``file://``
    directory (written and read by the client, not proxied): their files go through arcuate's
    own repositories, so neither import nor export loads MLflow's artifact repositories (nor
    MLflow at all)."""
    if import_path != "api":
        pytest.skip("one run is enough: a server is written through its REST API either way")
    uris = {"tracking_uri": mlflow_server.tracking_uri, "registry_uri": mlflow_server.tracking_uri}
    prefix = f"startup/{uuid.uuid4().hex}"
    local = tmp_path / "local-artifacts"
    client = mlflow_server.client()
    client.create_experiment("startup_s3", artifact_location=f"s3://{s3.bucket}/{prefix}")
    client.create_experiment("startup_local", artifact_location=local.as_uri())
    modules = ("mlflow.store.artifact", "mlflow", "mlflow.store.artifact.s3_artifact_repo")
    for name in ("startup_s3", "startup_local"):
        imported = loaded_by(
            f"CREATE EXPERIMENT {name} AS '{share.experiment}'", tmp_path, modules, **uris
        )
        exported = loaded_by(
            f"CREATE SHARE {name} WITH TABLE s.t FROM EXPERIMENT {name}",
            tmp_path,
            modules,
            warehouse=str(tmp_path / f"wh-{name}"),
            **uris,
        )
        assert (imported, exported) == ([], []), name
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", ())]
    assert any(k.endswith("/artifacts/big/blob.bin") for k in keys), keys
    assert any(p.as_posix().endswith("/artifacts/big/blob.bin") for p in local.rglob("*"))


def test_the_command_over_rest_loads_no_pandas(
    share: Share, mlflow_server: Any, tmp_path: Path, import_path: str
) -> None:
    """``arcuate run`` of a REST import and export, as a user runs them: besides the SQL store
    and Spark Connect, neither loads pandas (pyarrow's probe is deferred by the command),
    MLflow, the official sharing client nor cryptography."""
    if import_path != "api":
        pytest.skip("one run is enough: a server is written through its REST API either way")
    uris = {"tracking_uri": mlflow_server.tracking_uri, "registry_uri": mlflow_server.tracking_uri}
    modules = (*NOT_NEEDED, *NOT_FOR_TINY)
    imported = command_modules_left_by(
        f"CREATE EXPERIMENT startup_cli AS '{share.experiment}'",
        tmp_path / "import",
        modules,
        **uris,
    )
    exported = command_modules_left_by(
        "CREATE SHARE startup_cli WITH TABLE s.t FROM EXPERIMENT startup_cli",
        tmp_path / "export",
        modules,
        warehouse=str(tmp_path / "wh"),
        **uris,
    )
    assert (imported, exported) == ([], [])
