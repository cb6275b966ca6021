"""An export reads a store; it never creates one. A tracking URI naming a sqlite file that
does not exist, or a database without MLflow's tables, is an error that names the store, and
nothing is written there (MLflow's client would create the file, its folders and the schema)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from arcuate.errors import NotFoundError
from tests.export.export_helpers import export_from


def test_a_missing_sqlite_file_is_not_created(workdir: Path) -> None:
    path = workdir / "typo" / "mlflow.db"
    with pytest.raises(NotFoundError) as info:
        export_from(workdir, f"sqlite:///{path}")
    text = str(info.value)
    assert info.value.code == "ARC404"
    assert f"no MLflow database at sqlite:///{path}" in text and "does not exist" in text
    assert "--tracking-uri" in (info.value.hint or "")
    assert not (workdir / "typo").exists()
    assert not (workdir / "wh").exists()


def test_a_database_without_mlflows_tables_is_left_as_it_was(workdir: Path) -> None:
    path = workdir / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(NotFoundError) as info:
        export_from(workdir, f"sqlite:///{path}")
    assert "has no MLflow tables" in str(info.value)
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"notes"}
