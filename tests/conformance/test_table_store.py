"""The :class:`~arcuate.backends.protocols.TableStore` contract, over every table store.

A store writes an export as one atomic commit of the format's rows (chunk rows cut from each
:class:`ChunkedFile`), marks the table as an arcuate table, keeps the previous version when a
write fails, and can hold exactly the table names its capabilities declare.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from arcuate.backends.protocols import ChunkedFile, FileRef, TableStore
from arcuate.errors import BackendError, ConfigurationError, ConflictError, NotFoundError
from arcuate.format.schema import FORMAT_VERSION, SCHEMA, parse_description
from tests.conformance.conftest import Built
from tests.server.conftest import experiment_rows

#: Name parts to try against each store's declared name rule.
NAMES = ("runs", "a_b-c", "Runs2", "_x", "-x", "tablé", "my table", "a/b", "x" * 255, "x" * 256)


def _batches(generation: int) -> list[pa.RecordBatch]:
    """The rows of an export, two to a batch, each batch built on its own (as an export's)."""
    rows = [r for r in experiment_rows(generation) if r["kind"] != "chunk"]
    return [pa.RecordBatch.from_pylist(rows[i : i + 2], schema=SCHEMA) for i in (0, 2, 4)]


def _keys(table: pa.Table) -> list[tuple[str, str]]:
    return sorted(zip(table["kind"].to_pylist(), table["key"].to_pylist(), strict=True))


def _exported_at(table: pa.Table) -> set[Any]:
    return set(table["exported_at"].to_pylist())


def test_the_store_is_a_table_store(table_store: Built) -> None:
    assert isinstance(table_store.backend, TableStore)
    assert table_store.backend.name == table_store.name


def test_a_write_reads_back_row_for_row(table_store: Built) -> None:
    store = table_store.backend
    written = store.write(("ml", "runs"), _batches(0), content="experiment")
    assert written.location == store.location(("ml", "runs"))
    assert written.rows == 5
    back = store.read(("ml", "runs"))
    assert back.schema == SCHEMA
    expected = pa.Table.from_batches(_batches(0))
    assert _keys(back) == _keys(expected)
    files = {r["key"]: r["files"] for r in back.to_pylist()}
    assert files == {r["key"]: r["files"] for r in expected.to_pylist()}


def test_the_table_is_marked_as_an_arcuate_table(table_store: Built) -> None:
    from deltalake import DeltaTable

    written = table_store.backend.write(("ml", "models"), _batches(0), content="model")
    description = DeltaTable(written.location).metadata().description
    assert parse_description(description) == (FORMAT_VERSION, "model")


@pytest.mark.notyet(
    ["spark"],
    reason="Sail cannot set delta.enableChangeDataFeed (Databricks and Delta Spark do)",
    raises=AssertionError,
)
def test_the_table_has_change_data_feed(table_store: Built) -> None:
    from deltalake import DeltaTable

    written = table_store.backend.write(("ml", "cdf"), _batches(0), content="experiment")
    configuration = DeltaTable(written.location).metadata().configuration
    assert configuration.get("delta.enableChangeDataFeed") == "true"


def test_an_overwrite_is_the_next_version_and_the_previous_stays_readable(
    table_store: Built,
) -> None:
    store = table_store.backend
    first = store.write(("ml", "runs"), _batches(0), content="experiment")
    second = store.write(("ml", "runs"), _batches(1), content="experiment")
    assert second.version == first.version + 1
    assert _exported_at(store.read(("ml", "runs"))) != _exported_at(
        store.read(("ml", "runs"), version=first.version)
    )
    assert _exported_at(store.read(("ml", "runs"), version=first.version)) == _exported_at(
        pa.Table.from_batches(_batches(0))
    )


def test_mode_error_refuses_an_existing_table(table_store: Built) -> None:
    store = table_store.backend
    store.write(("ml", "runs"), _batches(0), content="experiment")
    with pytest.raises(ConflictError, match="already exists"):
        store.write(("ml", "runs"), _batches(1), content="experiment", mode="error")
    assert _exported_at(store.read(("ml", "runs"))) == _exported_at(
        pa.Table.from_batches(_batches(0))
    )


def test_a_failing_producer_commits_nothing(table_store: Built) -> None:
    store = table_store.backend
    first = store.write(("ml", "runs"), _batches(0), content="experiment")

    def failing() -> Iterator[pa.RecordBatch]:
        yield from _batches(1)[:1]
        raise RuntimeError("the export broke")

    with pytest.raises(RuntimeError, match="the export broke"):
        store.write(("ml", "runs"), failing(), content="experiment")
    after = store.read(("ml", "runs"))
    assert _exported_at(after) == _exported_at(store.read(("ml", "runs"), version=first.version))


@pytest.mark.notimpl(
    ["spark"],
    raises=BackendError,
    reason="a batch sliced from a larger one (offset > 0) with nulls in a list of timestamps "
    "fails in pyspark's createDataFrame (ArrowNotImplementedError: Null bitmap with offsets "
    "slice not supported); the store could hand Spark unsliced arrays",
)
def test_batches_sliced_from_a_larger_table_are_written(table_store: Built) -> None:
    rows = [r for r in experiment_rows(0) if r["kind"] != "chunk"]
    sliced = pa.Table.from_pylist(rows, schema=SCHEMA).to_batches(max_chunksize=2)
    assert sliced[1].column("run").offset > 0 or sliced[1].column("run").field(0).offset > 0
    written = table_store.backend.write(("ml", "sliced"), sliced, content="experiment")
    assert written.rows == 5
    assert _keys(table_store.backend.read(("ml", "sliced"))) == _keys(pa.Table.from_pylist(rows))


def test_an_empty_export_is_an_empty_table(table_store: Built) -> None:
    store = table_store.backend
    written = store.write(("ml", "empty"), [], content="model")
    assert written.rows == 0
    assert store.read(("ml", "empty")).num_rows == 0


def test_a_chunked_file_becomes_its_chunk_rows(table_store: Built) -> None:
    data = bytes(range(256)) * 33  # 8448 bytes: 9 chunks of 1024
    ref = FileRef("artifacts", "big.bin", len(data), lambda: io.BytesIO(data))
    digest = hashlib.sha256(data).hexdigest()
    chunked = ChunkedFile("run99", ref, len(data), digest, 1024)
    store = table_store.backend
    store.write(("ml", "chunks"), [*_batches(0), chunked], content="experiment")
    rows = [r for r in store.read(("ml", "chunks")).to_pylist() if r["kind"] == "chunk"]
    assert len(rows) == math.ceil(len(data) / 1024)
    rows.sort(key=lambda r: r["chunk"]["index"])
    assert b"".join(r["chunk"]["data"] for r in rows) == data
    assert {(r["key"], r["chunk"]["path"]) for r in rows} == {("run99", "big.bin")}


def test_reading_a_missing_table_is_not_found(table_store: Built) -> None:
    with pytest.raises(NotFoundError):
        table_store.backend.read(("ml", "absent"))


@pytest.mark.parametrize("part", NAMES, ids=lambda p: p if len(p) < 20 else f"{len(p)} chars")
def test_the_declared_table_names_are_the_names_it_takes(table_store: Built, part: str) -> None:
    """The planner refuses names by the store's capabilities: they must tell the truth."""
    rule = table_store.plugin.capabilities_for(table_store.settings).table_names
    declared = rule is None or rule.accepts(part)
    try:
        table_store.backend.location(("ml", part))
        takes = True
    except ConfigurationError:
        takes = False
    assert declared == takes
