"""A statement against MLflow's SQL stores (``sqlite://``, ``postgresql://``) reads and writes
experiments, runs and logged models with arcuate's own SQL client
(:mod:`arcuate.backends.mlflow.sqlclient`): MLflow's ``SqlAlchemyStore``, its ORM models and
alembic are not loaded. (``mlflow`` itself still is, for the files: the local artifact
repository is MLflow's in this branch; arcuate's own repositories replace it separately.)

A database the client does not cover (a new or empty one, another schema revision, another
workspace mode) or ``ARCUATE_MLFLOW_CLIENT=mlflow`` gets MLflow's client, which creates or
checks the schema.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.mlflow import sqlclient, sqltables
from arcuate.backends.mlflow.connect import client_for, is_sql
from tests.imports.import_helpers import (
    NOT_FOR_TINY,
    Share,
    command_modules_left_by,
    modules_left_by,
)

#: What only MLflow's SQL store needs (its class, its ORM models, alembic's schema check),
#: and MLflow itself: with arcuate's own repositories for local files, nothing imports it.
SQL_STORE = (
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.tracking.dbmodels.models",
    "alembic",
    "mlflow",
)


def _round_trip(share: Share, store: Any, cwd: Path, name: str) -> tuple[list[str], list[str]]:
    uris = {"tracking_uri": store.tracking_uri, "registry_uri": store.registry_uri}
    imported = modules_left_by(
        f"CREATE EXPERIMENT {name} AS '{share.experiment}'", cwd, SQL_STORE, **uris
    )
    exported = modules_left_by(
        f"CREATE SHARE {name} WITH TABLE s.t FROM EXPERIMENT {name}",
        cwd,
        SQL_STORE,
        warehouse=str(cwd / "wh"),
        **uris,
    )
    return imported, exported


def _command_round_trip(
    share: Share, store: Any, cwd: Path, name: str, modules: tuple[str, ...] = NOT_FOR_TINY
) -> list[list[str]]:
    """What ``arcuate run`` of an import then an export leaves loaded of MLflow's SQL store
    and ``modules`` (pandas above all)."""
    uris = {"tracking_uri": store.tracking_uri, "registry_uri": store.registry_uri}
    modules = (*SQL_STORE, *modules)
    statements = (
        (f"CREATE EXPERIMENT {name} AS '{share.experiment}'", {}),
        (f"CREATE SHARE {name} WITH TABLE s.t FROM EXPERIMENT {name}", {"warehouse": "wh"}),
    )
    return [
        command_modules_left_by(statement, cwd / f"step{i}", modules, **uris, **more)
        for i, (statement, more) in enumerate(statements)
    ]


def test_sqlite_import_and_export_load_no_sql_store(
    share: Share, recipient_store: Any, workdir: Path, import_path: str
) -> None:
    if import_path != "auto":
        pytest.skip("the bulk path is the one that writes runs without MLflow")
    assert _round_trip(share, recipient_store, workdir, "startup_sql") == ([], [])
    client = client_for(recipient_store.tracking_uri, recipient_store.registry_uri)
    assert is_sql(client)
    exp = client.get_experiment_by_name("startup_sql")
    assert exp is not None and len(client.search_runs([exp.experiment_id])) == 3


def test_the_command_on_sqlite_loads_no_pandas(
    share: Share, recipient_store: Any, workdir: Path, import_path: str
) -> None:
    if import_path != "auto":
        pytest.skip("the bulk path is the one that writes runs without MLflow")
    assert _command_round_trip(share, recipient_store, workdir, "startup_cli") == [[], []]


@pytest.mark.postgres
def test_postgresql_import_and_export_load_no_sql_store(
    share: Share, pg_store: Any, workdir: Path, import_path: str
) -> None:
    if import_path != "auto":
        pytest.skip("the bulk path is the one that writes runs without MLflow")
    assert _round_trip(share, pg_store, workdir, "startup_sql") == ([], [])
    client = client_for(pg_store.tracking_uri, pg_store.registry_uri)
    assert is_sql(client) and client.engine.dialect.driver == "psycopg"
    exp = client.get_experiment_by_name("startup_sql")
    # MLflow's default artifact location for a database outside a server: ./mlruns/<id>
    assert exp.artifact_location == f"{(workdir / 'mlruns').as_posix()}/{exp.experiment_id}"


@pytest.mark.postgres
@pytest.mark.s3
def test_the_command_on_postgresql_and_s3_loads_no_pandas(
    share: Share, pg_store: Any, s3: Any, workdir: Path, import_path: str
) -> None:
    """The production shape of a tiny command: PostgreSQL for the tables, S3 for the files
    (an experiment made first with an ``s3://`` location), ``arcuate run``."""
    if import_path != "auto":
        pytest.skip("the bulk path is the one that writes runs without MLflow")
    client = client_for(pg_store.tracking_uri, pg_store.registry_uri)
    client.create_experiment("startup_cli_s3", artifact_location=f"s3://{s3.bucket}/startup-cli")
    # boto3 imports cryptography itself where pyOpenSSL is installed (botocore.httpsession)
    modules = tuple(m for m in NOT_FOR_TINY if m != "cryptography")
    assert _command_round_trip(share, pg_store, workdir, "startup_cli_s3", modules) == [[], []]


def test_a_new_database_is_created_by_mlflow_then_read_by_arcuate(
    share: Share, workdir: Path, import_path: str
) -> None:
    if import_path != "auto":
        pytest.skip("one path is enough")
    uri = f"sqlite:///{workdir / 'new.db'}"
    uris = {"tracking_uri": uri, "registry_uri": uri}
    statement = f"CREATE EXPERIMENT fresh AS '{share.experiment}'"
    # MLflow creates the schema, so its store is loaded the first time only
    assert modules_left_by(statement, workdir, SQL_STORE, **uris) == list(SQL_STORE)
    assert modules_left_by(statement, workdir, SQL_STORE, **uris) == []
    assert not is_sql(client_for(f"sqlite:///{workdir / 'other.db'}", uri))


def test_other_revisions_and_the_mlflow_setting_take_mlflows_client(
    mlflow_template: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = workdir / "other.db"
    shutil.copyfile(mlflow_template, db)
    uri = f"sqlite:///{db}"
    assert is_sql(client_for(uri, uri))
    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", "mlflow")
    assert type(client_for(uri, uri)).__name__ == "MlflowClient"
    monkeypatch.delenv("ARCUATE_MLFLOW_CLIENT")
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert not is_sql(client_for(uri, uri))
    monkeypatch.delenv("MLFLOW_ENABLE_WORKSPACES")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f0000000000f'")
    engine, why = sqlclient.probe(uri)
    assert engine is None and "schema revision f0000000000f" in why
    assert type(client_for(uri, uri)).__name__ == "MlflowClient"
    empty = workdir / "empty.db"
    sqlite3.connect(empty).close()  # a file with no tables
    engine, why = sqlclient.probe(f"sqlite:///{empty}")
    assert engine is None and "no MLflow schema" in why


def test_no_credentials_in_what_the_client_shows() -> None:
    uri = "postgresql://ann:s3cr3t@127.0.0.1:1/mlflow"
    engine, why = sqlclient.probe(uri)  # nothing listens on port 1
    assert engine is None and "s3cr3t" not in why
    client = sqlclient.SqlClient(uri, uri, sqlclient.engine_for(uri))
    assert "s3cr3t" not in repr(client) and "ann" not in repr(client)


def test_the_tables_are_mlflows() -> None:
    """Every table and column arcuate writes is MLflow's, with the same type and keys."""
    import mlflow.store.tracking.dbmodels.models  # noqa: F401 - registers the tables
    from mlflow.store.db.base_sql_model import Base

    for name, mine in sqltables.METADATA.tables.items():
        if name == "alembic_version":
            continue
        theirs = Base.metadata.tables[name]
        assert [c.name for c in mine.columns] == [c.name for c in theirs.columns], name
        for col in mine.columns:
            other = theirs.c[col.name]
            where = f"{name}.{col.name}"
            assert type(col.type).__name__ == type(other.type).__name__, where
            assert getattr(col.type, "length", None) == getattr(other.type, "length", None), where
            assert col.primary_key == other.primary_key, where
            assert col.nullable == other.nullable, where


def test_uri_paths_are_appended_as_mlflow_appends_them() -> None:
    from mlflow.utils.uri import append_to_uri_path

    for uri in (
        "/abs/mlruns/1",
        "rel/path",
        "s3://bucket/root?x=1",
        "file:///tmp/a b",
        "file:rel/x",
        "gs://b",
        "mlflow-artifacts:/3",
    ):
        for parts in (("abc", "artifacts"), ("models", "m-1", "artifacts"), ("/x",)):
            assert sqlclient.append_to_uri_path(uri, *parts) == append_to_uri_path(uri, *parts)
