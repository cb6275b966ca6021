"""Parquet data files of one table version, and the one Delta commit that publishes them.

Shared by :mod:`.store` (batches written in this process) and :mod:`.chunk_worker` (chunk
rows written by a helper process, which also commits): both depend on this module, neither on
the other. Files are invisible to readers until :func:`commit` adds them to the Delta log, so a
writer that fails deletes its files (:meth:`ParquetFiles.abort`) and the table stays as it was.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from arcuate.errors import BackendError, ConflictError, redact_secrets
from arcuate.format.schema import SCHEMA, Content, table_description

#: A data file is closed and a new one started once it holds this many bytes.
FILE_BYTES: Final = 128 * 1024 * 1024
#: A row group holds at most this many rows ...
ROW_GROUP_ROWS: Final = 64
#: ... and about this many bytes (at least one row), so readers can stream it in small steps.
ROW_GROUP_BYTES: Final = 8 * 1024 * 1024
#: Table properties every arcuate table carries (servers send change data feed from them).
CONFIGURATION: Final = {"delta.enableChangeDataFeed": "true"}
#: Longest string kept as a min/max statistic (longer values are simply not recorded).
_STAT_STRING_MAX: Final = 32
#: Top-level columns whose min/max/null count go into each file's statistics.
_STAT_COLUMNS: Final = ("format_version", "kind", "key")


def _leaf_paths(schema: pa.Schema) -> list[str]:
    """Dotted Parquet column paths of ``schema`` (``files.list.element.data`` ...)."""
    out: list[str] = []

    def walk(prefix: str, typ: pa.DataType) -> None:
        if pa.types.is_struct(typ):
            for i in range(typ.num_fields):
                child = typ.field(i)
                walk(f"{prefix}.{child.name}", child.type)
        elif pa.types.is_list(typ) or pa.types.is_large_list(typ):
            walk(f"{prefix}.list.element", typ.value_type)
        else:
            out.append(prefix)

    for f in schema:
        walk(f.name, f.type)
    return out


#: File bytes (``files[].data``, ``chunk.data``): neither dictionary-encoded nor given
#: statistics, which would cost a hash table or a copy of every blob.
_BLOB_COLUMNS: Final = frozenset(p for p in _leaf_paths(SCHEMA) if p.endswith(".data"))
_SMALL_COLUMNS: Final = [p for p in _leaf_paths(SCHEMA) if p not in _BLOB_COLUMNS]


class _FileStats:
    """numRecords, and min/max/null counts of a few top-level columns, of one data file."""

    def __init__(self) -> None:
        self.rows = 0
        self.mins: dict[str, Any] = {}
        self.maxs: dict[str, Any] = {}
        self.nulls: dict[str, int] = dict.fromkeys(_STAT_COLUMNS, 0)
        self.dropped: set[str] = set()

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for name in _STAT_COLUMNS:
            column = batch.column(name)
            self.nulls[name] += column.null_count
            if name in self.dropped or column.null_count == len(column):
                continue
            mm = pc.min_max(column)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            if isinstance(lo, str) and max(len(lo), len(hi)) > _STAT_STRING_MAX:
                self.dropped.add(name)  # a truncated bound would need care; leave it out
                self.mins.pop(name, None)
                self.maxs.pop(name, None)
                continue
            self.mins[name] = lo if name not in self.mins else min(self.mins[name], lo)
            self.maxs[name] = hi if name not in self.maxs else max(self.maxs[name], hi)

    def json(self) -> str:
        return json.dumps(
            {
                "numRecords": self.rows,
                "minValues": self.mins,
                "maxValues": self.maxs,
                "nullCount": self.nulls,
            },
            separators=(",", ":"),
        )


class ParquetFiles:
    """Writes record batches into Parquet data files of one (future) table version.

    Memory: one row group (about :data:`ROW_GROUP_BYTES`) is encoded at a time, and finished
    pages go straight to the file.
    """

    def __init__(self, location: str, fs: pafs.FileSystem | None, prefix: str = "part") -> None:
        self.location = location
        self.fs = fs
        self.prefix = prefix
        self.adds: list[AddAction] = []
        self.written: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._sink: Any = None
        self._name = ""
        self._stats = _FileStats()

    def _open(self) -> None:
        self._name = f"{self.prefix}-{len(self.written):05d}-{uuid.uuid4()}-c000.zstd.parquet"
        self.written.append(self._name)
        path = self._path(self._name)
        self._sink = self.fs.open_output_stream(path) if self.fs else pa.OSFile(path, "wb")
        self._writer = pq.ParquetWriter(
            self._sink,
            SCHEMA,
            compression="zstd",
            use_dictionary=_SMALL_COLUMNS,
            write_statistics=_SMALL_COLUMNS,
        )
        self._stats = _FileStats()

    def _path(self, name: str) -> str:
        # With a cloud filesystem, paths are relative to the table root.
        return f"{self.location}/{name}" if self.location else name

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if not batch.schema.equals(SCHEMA):
            batch = pa.Table.from_batches([batch]).cast(SCHEMA).combine_chunks().to_batches()[0]
        per_row = max(1, batch.nbytes // batch.num_rows)
        step = max(1, min(ROW_GROUP_ROWS, ROW_GROUP_BYTES // per_row))
        for start in range(0, batch.num_rows, step):
            if self._writer is None:
                self._open()
            assert self._writer is not None
            piece = batch.slice(start, step)
            self._writer.write_batch(piece)
            self._stats.add(piece)
            if self._sink.tell() >= FILE_BYTES:
                self._close()

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        size = int(self._sink.tell())
        self._sink.close()
        self._writer = None
        self.adds.append(
            AddAction(
                path=self._name,
                size=size,
                partition_values={},
                modification_time=int(time.time() * 1000),
                data_change=True,
                stats=self._stats.json(),
            )
        )

    def finish(self) -> list[AddAction]:
        """Close the open file; the add actions of every file written."""
        self._close()
        return self.adds

    def abort(self) -> None:
        """Close and delete every file written so far (none of them was committed)."""
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        with contextlib.suppress(Exception):
            if self._sink is not None:
                self._sink.close()
        self._writer = None
        for name in self.written:
            with contextlib.suppress(Exception):
                if self.fs is not None:
                    self.fs.delete_file(self._path(name))
                else:
                    Path(self.location, name).unlink(missing_ok=True)


def open_table(location: str, storage_options: dict[str, str] | None) -> DeltaTable | None:
    """The Delta table at ``location``; None when there is none.

    Raises:
        BackendError: the store could not be read (unreachable, refused, a missing bucket or
            container), naming the location and the store's answer.
    """
    try:
        return DeltaTable(location, storage_options=storage_options)
    except TableNotFoundError:
        return None
    except OSError as exc:  # object_store's errors: its request URLs come redacted
        raise BackendError(f"cannot read the Delta table at {location}: {_plain(exc)}") from None


#: The terminal colour codes deltalake puts in its error chains (``↳`` lines in red).
_COLOURS: Final = re.compile(r"\x1b\[[0-9;]*m")
#: The most of a store's message an error quotes (its answer can be a whole XML document).
_MESSAGE_CHARS: Final = 2000


def _plain(exc: BaseException) -> str:
    """deltalake's message without colours or credentials, bounded."""
    text = redact_secrets(_COLOURS.sub("", str(exc)))
    return text if len(text) <= _MESSAGE_CHARS else f"{text[:_MESSAGE_CHARS]}..."


def commit(
    location: str,
    existing: DeltaTable | None,
    adds: list[AddAction],
    content: Content,
    name: str,
    storage_options: dict[str, str] | None = None,
) -> int:
    """One transaction: the new files in, every previous file out (unless new table); the
    table version it made.

    Raises:
        ConflictError: another writer committed to (or created) the table since ``existing``.
        BackendError: the commit failed otherwise.
    """
    properties = CommitProperties(
        custom_metadata={"arcuate.content": content, "arcuate.format": "1"}
    )
    description = table_description(content)
    try:
        if existing is not None and _same_metadata(existing, name, description):
            actions: list[AddAction | RemoveAction] = list(adds)
            existing.create_write_transaction(
                actions, mode="overwrite", schema=SCHEMA, commit_properties=properties
            )
        else:
            # A new table, or one whose name, description, schema or properties differ:
            # the commit carries fresh metadata (history stays readable by version).
            create_table_with_add_actions(
                location,
                DeltaSchema.from_arrow(SCHEMA),
                adds,
                mode="error" if existing is None else "overwrite",
                name=name,
                description=description,
                configuration=dict(CONFIGURATION),
                storage_options=storage_options,
                commit_properties=properties,
            )
    except CommitFailedError as exc:
        raise ConflictError(
            f"another writer changed the table at {location} during this export; "
            f"nothing was committed, run it again ({exc})"
        ) from exc
    except Exception as exc:
        if existing is None and open_table(location, storage_options) is not None:
            raise ConflictError(
                f"another writer created the table at {location} during this export; "
                "nothing was committed, run it again"
            ) from exc
        raise BackendError(f"could not commit the Delta table at {location}: {exc}") from exc
    if existing is None:
        return 0  # created with mode="error": the table's first version, nothing to read back
    return DeltaTable(location, storage_options=storage_options).version()


def _same_metadata(dt: DeltaTable, name: str, description: str) -> bool:
    """Whether ``dt`` already has the metadata this write would give it."""
    meta = dt.metadata()
    config = dict(meta.configuration)
    return (
        meta.name == name
        and meta.description == description
        and all(config.get(k) == v for k, v in CONFIGURATION.items())
        and not meta.partition_columns
        and DeltaSchema.from_arrow(SCHEMA).to_json() == dt.schema().to_json()
    )
