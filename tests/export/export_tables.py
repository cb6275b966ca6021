"""Reading an exported table back with independent readers, and reassembling its files."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from arcuate.format.schema import CHUNK


def rows_deltalake(location: str) -> list[dict[str, Any]]:
    from deltalake import DeltaTable

    return DeltaTable(location).to_pyarrow_table().to_pylist()  # type: ignore[no-any-return]


def rows_polars(location: str) -> list[dict[str, Any]]:
    import polars as pl

    return pl.read_delta(location).to_dicts()


def rows_duckdb(location: str) -> list[dict[str, Any]]:
    """The data files of the current version, read by DuckDB's own Parquet reader."""
    import duckdb
    from deltalake import DeltaTable

    files = DeltaTable(location).file_uris()
    con = duckdb.connect()
    try:
        cur = con.execute("SELECT * FROM read_parquet(?)", [files])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def reassemble(
    rows: list[dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str, str], bytes]]:
    """(records by key, file bytes by (key, owner, path)), checking sizes, chunks and SHA-256."""
    records: dict[str, dict[str, Any]] = {}
    chunks: dict[tuple[str, str, str], list[tuple[int, int, bytes]]] = defaultdict(list)
    for row in rows:
        assert row["format_version"] == 1
        if row["kind"] == CHUNK:
            c = row["chunk"]
            chunks[(row["key"], c["owner"], c["path"])].append(
                (c["index"], c["offset"], bytes(c["data"]))
            )
        else:
            assert row["key"] not in records, f"duplicate record {row['key']}"
            assert row["chunk"] is None
            records[row["key"]] = row
    files: dict[tuple[str, str, str], bytes] = {}
    for key, row in records.items():
        for f in row["files"] or ():
            ident = (key, f["owner"], f["path"])
            assert ident not in files, f"duplicate file {ident}"
            if f["data"] is not None:
                assert f["chunks"] == 0
                assert ident not in chunks
                data = bytes(f["data"])
            else:
                parts = sorted(chunks.pop(ident, []))
                assert [p[0] for p in parts] == list(range(f["chunks"])), ident
                offset = 0
                for _index, off, piece in parts:
                    assert off == offset
                    offset += len(piece)
                data = b"".join(p[2] for p in parts)
            assert len(data) == f["size"], ident
            assert hashlib.sha256(data).hexdigest() == f["sha256"], ident
            files[ident] = data
    assert not chunks, f"chunk rows without an owner: {sorted(chunks)}"
    return records, files
