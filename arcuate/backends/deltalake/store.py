"""The embedded table backend: Delta tables under a warehouse root, written with bounded memory.

A table name of 1-3 parts maps to ``<warehouse>/<part>/.../<part>``.

Why the write does not call ``write_deltalake``: delta-rs buffers what it is given before it
writes, so an export held about four times its data in memory (a 400 MB artifact peaked at
2 GB RSS). Here the batches stream into Parquet files with pyarrow (small row groups, a new
file every :data:`.parquet.FILE_BYTES`), and only once the producer is exhausted are the files
committed to the Delta log in **one** transaction through deltalake's transaction API
(:mod:`.parquet`, shared with the chunk helper). Until that commit the new files are invisible
to every reader, so a failure midway (the producer's own exception is re-raised) leaves the
previous table version intact; the orphaned files are deleted. Those of a writer that was
killed are deleted by the next write of the table
(:mod:`arcuate.backends.deltalake.writers`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from arcuate.backends.deltalake.chunk_worker import ChunkWorker, wanted
from arcuate.backends.deltalake.parquet import ParquetFiles, commit, open_table
from arcuate.backends.deltalake.writers import WRITERS_DIR, WriterLock, reclaim
from arcuate.backends.protocols import TableVersion, WriteMode
from arcuate.errors import ConfigurationError, ConflictError, NotFoundError
from arcuate.format.files import ChunkedFile
from arcuate.format.records import expand
from arcuate.format.schema import Content

_PART_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,254}$")


def _is_uri(root: str) -> bool:
    return "://" in root


def _local_path(location: str) -> Path | None:
    """The directory of a local table (a path or a ``file://`` URI); None for object stores."""
    if not _is_uri(location):
        return Path(location)
    if location.startswith("file://"):
        return Path(unquote(urlparse(location).path))
    return None


class DeltaLakeTableStore:
    """Delta tables in a local directory or a cloud URI (storage options passed through)."""

    name = "deltalake"

    def __init__(self, warehouse: str, storage_options: dict[str, str] | None = None) -> None:
        self.warehouse = warehouse
        self.storage_options = dict(storage_options or {})

    def location(self, table: tuple[str, ...]) -> str:
        """``<warehouse>/<parts...>``; parts are checked so a name cannot escape the root."""
        for part in table:
            if not _PART_RE.match(part):
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
        batches: Iterable[pa.RecordBatch | ChunkedFile],
        *,
        content: Content,
        mode: WriteMode = "overwrite",
    ) -> TableVersion:
        """Stream ``batches`` into one Delta commit (overwrite keeps history for time travel).

        Raises:
            ConflictError: ``mode="error"`` and the table exists, or another writer committed
                to the table while this one was writing.
            Exception: whatever the batch producer raised, unchanged (nothing is committed).
        """
        location = self.location(table)
        existing = self._open(location)
        if mode == "error" and existing is not None:
            raise ConflictError(f"table {'.'.join(table)} already exists at {location}")
        created_dir = False
        writer: WriterLock | None = None
        local = _local_path(location)
        if local is None:  # an object store: write through deltalake's own filesystem
            from deltalake.fs import DeltaStorageHandler

            fs = pafs.PyFileSystem(DeltaStorageHandler(location, self._options()))
            files = ParquetFiles("", fs)
        else:
            created_dir = not local.exists()
            local.mkdir(parents=True, exist_ok=True)
            # files named for this writer; those of killed writers go (never a live one's)
            writer = WriterLock(local)
            reclaim(local, keep=writer.id)
            files = ParquetFiles(str(local), None, prefix=f"part-{writer.id}")
        counter = _Counter()
        worker: ChunkWorker | None = None
        try:
            for item in batches:
                if not isinstance(item, ChunkedFile):
                    counter.add(item)
                    files.write(item)
                elif wanted(item):
                    where = str(local) if local is not None else location
                    worker = worker or ChunkWorker(
                        where,
                        self._options(),
                        writer.id if writer is not None else None,
                        writer.path if writer is not None else None,
                    )
                    worker.send(item)
                else:
                    for batch in expand([item]):
                        counter.add(batch)
                        files.write(batch)
                        del batch
                del item  # not alive while the producer builds the next one
            adds = files.finish()
            if worker is None:
                version = commit(location, existing, adds, content, table[-1], self._options())
            else:  # it commits: Delta's transaction code then never loads in this process
                before = existing.version() if existing is not None else None
                done = worker.finish(adds, content, table[-1], before)
                counter.rows += done.rows
                counter.nbytes += done.nbytes
                version = done.version
        except BaseException:
            if worker is not None:
                worker.abort()
            files.abort()
            if writer is not None:
                writer.release()
            if created_dir and local is not None:
                _remove_empty(local)
            raise
        if writer is not None:
            writer.release()
        return TableVersion(
            location,
            version,
            counter.rows,
            counter.nbytes,
            done.peak_rss if worker is not None else 0,
        )

    def _open(self, location: str) -> DeltaTable | None:
        return open_table(location, self._options())

    def read(self, table: tuple[str, ...], *, version: int | None = None) -> pa.Table:
        """The whole table, optionally at a version."""
        location = self.location(table)
        try:
            dt = DeltaTable(location, version=version, storage_options=self._options())
        except TableNotFoundError as exc:
            raise NotFoundError(f"no Delta table at {location}") from exc
        return dt.to_pyarrow_table()


def _remove_empty(path: Path) -> None:
    """Remove ``path`` (and a ``_delta_log`` or writers' directory left empty in it) when
    nothing else is there."""
    with contextlib.suppress(OSError):
        for inner in ("_delta_log", WRITERS_DIR):
            folder = path / inner
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        path.rmdir()


class _Counter:
    """Counts rows and bytes of the batches written."""

    def __init__(self) -> None:
        self.rows = 0
        self.nbytes = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        self.nbytes += batch.nbytes
