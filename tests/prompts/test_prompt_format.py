"""Format 2 next to format 1: a table with version 1's columns only imports as before, a
table written now says format 2, and a prompt row in a model table points to CREATE PROMPT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from arcuate.engine.imports import import_experiment, import_model
from arcuate.errors import ShareDataError
from arcuate.format.schema import FORMAT_VERSION, REQUIRED_COLUMNS, SCHEMA, conform
from tests.imports.import_helpers import (
    batches_of,
    export_to,
    provider_context,
    recipient_context,
    run_row,
    table_batches,
    version_row,
)
from tests.prompts.test_prompt_hostile import prompt_row


def _v1(rows: list[dict[str, Any]]) -> list[pa.RecordBatch]:
    """Rows as batches with exactly format 1's columns (no prompt_version, no scorer)."""
    v1 = pa.schema([SCHEMA.field(n) for n in REQUIRED_COLUMNS])
    return pa.Table.from_pylist(rows, schema=v1).to_batches(max_chunksize=2)


def test_a_v1_table_imports_unchanged(recipient_store: Any) -> None:
    assert FORMAT_VERSION == 2 and "prompt_version" not in REQUIRED_COLUMNS
    ctx = recipient_context(recipient_store)
    batch = _v1([run_row()])[0]
    assert batch.schema.names == list(REQUIRED_COLUMNS)
    assert conform(batch).schema.names == list(REQUIRED_COLUMNS)  # missing columns stay missing
    assert import_experiment([batch], "e", ctx).summary["added"] == 1
    assert import_model(_v1([version_row(1)]), "m", ctx).summary["added"] == 1


def test_tables_written_now_are_format_2(mlflow_store: Any, workdir: Path) -> None:
    client = mlflow_store.client()
    eid = client.create_experiment("e")
    client.create_run(eid)
    location = export_to(provider_context(mlflow_store, workdir / "wh"), ("s", "e"), experiment="e")
    (batch, *_) = list(table_batches(location))
    assert set(batch.column("format_version").to_pylist()) == {2}
    assert batch.schema.names[-4:] == ["prompt_version", "scorer", "eval_record", "trace"]


def test_prompt_row_in_a_model_table_says_create_prompt(recipient_store: Any) -> None:
    rows = [version_row(1), prompt_row(2)]
    with pytest.raises(ShareDataError, match="use CREATE PROMPT") as info:
        import_model(batches_of(rows), "m", recipient_context(recipient_store))
    assert (info.value.row, info.value.field) == (1, "kind")
