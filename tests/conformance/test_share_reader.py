"""The :class:`~arcuate.backends.protocols.ShareReader` contract, over every share reader,
against the real sharing server over HTTP.

A reader yields the rows of a shared arcuate table as record batches in the format's schema,
refuses a table that is not an arcuate table and a table that is not shared with the profile,
and names the server when it cannot be reached within ``retry_seconds``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from arcuate.backends.protocols import ShareReader
from arcuate.errors import NotFoundError, ShareDataError, UnreachableError
from arcuate.format.schema import SCHEMA
from tests.conformance.conftest import Built, Shared


def _read(reader: Built, coordinate: str) -> pa.Table:
    batches = list(reader.backend.batches(coordinate))
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    return pa.Table.from_batches(batches, schema=SCHEMA) if batches else SCHEMA.empty_table()


def test_the_reader_is_a_share_reader(share_reader: Built) -> None:
    assert isinstance(share_reader.backend, ShareReader)


def test_every_row_is_read_in_the_formats_schema(share_reader: Built, shared: Shared) -> None:
    table = _read(share_reader, shared.coordinate("runs"))
    assert table.schema == SCHEMA
    got = sorted(table.to_pylist(), key=lambda r: (r["kind"], r["key"], str(r["chunk"])))
    want = pa.Table.from_pylist(shared.rows, schema=SCHEMA).to_pylist()
    assert got == sorted(want, key=lambda r: (r["kind"], r["key"], str(r["chunk"])))


def test_an_empty_table_has_no_rows(share_reader: Built, shared: Shared) -> None:
    assert _read(share_reader, shared.coordinate("empty")).num_rows == 0


def test_a_table_that_is_not_arcuates_is_refused(share_reader: Built, shared: Shared) -> None:
    with pytest.raises(ShareDataError, match="is not an arcuate table"):
        _read(share_reader, shared.coordinate("foreign"))


def test_a_table_not_shared_with_the_profile_is_not_found(
    share_reader: Built, shared: Shared
) -> None:
    with pytest.raises(NotFoundError):
        _read(share_reader, shared.coordinate("runs", share="elsewhere"))


def test_a_server_that_is_down_is_named_after_retry_seconds(
    share_reader: Built, tmp_path: Path
) -> None:
    profile = tmp_path / "down.share"
    endpoint = "http://127.0.0.1:9/delta-sharing"
    profile.write_text(
        json.dumps(
            {"shareCredentialsVersion": 1, "endpoint": endpoint, "bearerToken": "tok-3f9a1c77"}
        )
    )
    with pytest.raises(UnreachableError) as info:
        _read(share_reader, f"{profile}#s.default.t")
    assert str(info.value).startswith(f"the sharing server at {endpoint} cannot be reached")
    assert "tok-3f9a1c77" not in str(info.value)
