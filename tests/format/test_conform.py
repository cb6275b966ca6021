"""Shared rows brought to the format's schema: one function for every reader and store.

What comes back from a sharing server, Spark or a Parquet file holds the format's columns with
the right values but not always the exact Arrow types (list item names, timestamp zones, int
widths) or name case; a value that cannot fit is left for validation to name.
"""

from __future__ import annotations

import datetime

import pyarrow as pa
import pytest

from arcuate.format.schema import SCHEMA, conform

T0 = datetime.datetime(2024, 5, 1, 12, 0)


def _as_read_back(rows: int = 2) -> dict[str, pa.Array]:
    """Columns the way another engine returns them: int64, naive timestamps, upper case."""
    return {
        "FORMAT_VERSION": pa.array([1] * rows, pa.int64()),
        "Kind": pa.array(["run"] * rows),
        "key": pa.array([f"r{i}" for i in range(rows)]),
        "exported_at": pa.array([T0] * rows, pa.timestamp("us")),
        "files": pa.array(
            [[{"owner": "artifacts", "path": "a", "size": 1, "sha256": "0", "data": b"x",
               "chunks": 0}]] * rows,
            pa.list_(pa.field("element", SCHEMA.field("files").type.value_type)),
        ),
        "unrelated": pa.array(["dropped"] * rows),
    }  # fmt: skip


@pytest.mark.parametrize("shape", ["batch", "table"])
def test_columns_are_matched_without_case_and_cast_to_the_format(shape: str) -> None:
    columns = _as_read_back()
    data: pa.RecordBatch | pa.Table = (
        pa.RecordBatch.from_pydict(columns) if shape == "batch" else pa.table(columns)
    )
    out = conform(data)
    assert type(out) is type(data)
    assert out.schema.names == ["format_version", "kind", "key", "exported_at", "files"]
    for name in out.schema.names:
        assert out.schema.field(name).type.equals(SCHEMA.field(name).type), name
    assert out.column("exported_at").to_pylist()[0] == T0.replace(tzinfo=datetime.UTC)
    assert out.column("files").to_pylist()[0][0]["data"] == b"x"


def test_a_partition_value_stands_for_a_missing_column() -> None:
    columns = _as_read_back(3)
    del columns["Kind"]
    out = conform(pa.RecordBatch.from_pydict(columns), {"KIND": "run"})
    assert out.column("kind").to_pylist() == ["run"] * 3
    assert "run" not in conform(pa.RecordBatch.from_pydict(columns)).schema.names


def test_a_value_that_does_not_fit_is_left_for_validation() -> None:
    columns = _as_read_back()
    columns["format_version"] = pa.array(["one", "two"])
    del columns["FORMAT_VERSION"]
    out = conform(pa.table(columns))
    assert out.schema.field("format_version").type == pa.string()
    assert out.column("format_version").to_pylist() == ["one", "two"]
    assert out.schema.field("kind").type == pa.string()
