"""The embedded table backend: delta-rs writing Delta tables under a warehouse root.

A table name of 1-3 parts maps to ``<warehouse>/<part>/.../<part>``. Writes stream record
batches into one commit, so a failed export leaves the previous table version intact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from arcuate.backends.protocols import TableVersion, WriteMode
from arcuate.errors import ConfigurationError, ConflictError, NotFoundError
from arcuate.format.schema import SCHEMA, Content, table_description

_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,254}$")


def _is_uri(root: str) -> bool:
    return "://" in root


class DeltaLakeTableStore:
    """Delta tables in a local directory or a cloud URI (storage options passed through)."""

    name = "deltalake"

    def __init__(self, warehouse: str, storage_options: dict[str, str] | None = None) -> None:
        self.warehouse = warehouse
        self.storage_options = dict(storage_options or {})

    def location(self, table: tuple[str, ...]) -> str:
        """``<warehouse>/<parts...>``; parts are checked so a name cannot escape the root."""
        for part in table:
            if not _PART.match(part):
                raise ConfigurationError(
                    f"table name part {part!r} cannot be a path in the warehouse: use letters, "
                    "digits, '_' and '-'"
                )
        if _is_uri(self.warehouse):
            return self.warehouse.rstrip("/") + "/" + "/".join(table)
        return str(Path(self.warehouse).absolute().joinpath(*table))

    def _options(self) -> dict[str, str] | None:
        return self.storage_options or None

    def write(
        self,
        table: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        *,
        content: Content,
        mode: WriteMode = "overwrite",
    ) -> TableVersion:
        """Stream ``batches`` into one Delta commit (overwrite keeps history for time travel)."""
        location = self.location(table)
        if mode == "error" and self._exists(location):
            raise ConflictError(f"table {'.'.join(table)} already exists at {location}")
        counter = _Counter()
        reader = pa.RecordBatchReader.from_batches(SCHEMA, counter.wrap(batches))
        if not _is_uri(location):
            Path(location).mkdir(parents=True, exist_ok=True)
        try:
            self._write(location, reader, content, table[-1])
        except Exception as exc:
            # delta-rs wraps an error raised by the batch producer; surface the producer's own.
            if counter.error is not None:
                raise counter.error from None
            raise exc
        dt = DeltaTable(location, storage_options=self._options())
        return TableVersion(location, dt.version(), counter.rows, counter.nbytes)

    def _write(
        self, location: str, reader: pa.RecordBatchReader, content: Content, name: str
    ) -> None:
        write_deltalake(
            location,
            reader,
            mode="overwrite",
            schema_mode="overwrite",
            name=name,
            description=table_description(content),
            configuration={"delta.enableChangeDataFeed": "true"},
            storage_options=self._options(),
            writer_properties=WriterProperties(compression="ZSTD", max_row_group_size=64),
            commit_properties=CommitProperties(
                custom_metadata={"arcuate.content": content, "arcuate.format": "1"}
            ),
        )

    def _exists(self, location: str) -> bool:
        try:
            DeltaTable(location, storage_options=self._options())
        except TableNotFoundError:
            return False
        return True

    def read(self, table: tuple[str, ...], *, version: int | None = None) -> pa.Table:
        """The whole table, optionally at a version."""
        location = self.location(table)
        try:
            dt = DeltaTable(location, version=version, storage_options=self._options())
        except TableNotFoundError as exc:
            raise NotFoundError(f"no Delta table at {location}") from exc
        return dt.to_pyarrow_table()


class _Counter:
    """Counts rows and bytes as batches stream past."""

    def __init__(self) -> None:
        self.rows = 0
        self.nbytes = 0
        self.error: BaseException | None = None

    def wrap(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        try:
            for batch in batches:
                self.rows += batch.num_rows
                self.nbytes += batch.nbytes
                yield batch
        except BaseException as exc:
            self.error = exc
            raise
