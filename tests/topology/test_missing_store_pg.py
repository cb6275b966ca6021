"""An export from a PostgreSQL database without MLflow's tables fails and creates none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arcuate.errors import NotFoundError
from tests.export.export_helpers import export_from


def test_an_empty_postgresql_database_gets_no_schema(postgres: Any, workdir: Path) -> None:
    import psycopg

    url = postgres.pg.create_database()
    with pytest.raises(NotFoundError) as info:
        export_from(workdir, url)
    assert "has no MLflow tables" in str(info.value)
    database = url.rsplit("/", 1)[1]
    assert "no MLflow database at postgresql://127.0.0.1:" in str(info.value)
    assert f"/{database}: " in str(info.value)  # the store is named, its user left out
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)
