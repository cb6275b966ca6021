"""Packing records and their files into rows and record batches of the table format.

A record (a run or a model version) becomes one row holding its metadata and the list of its
files. A file sits inline (``data`` = its bytes, ``chunks`` = 0) when it is at most
``chunk_bytes`` long and the record's inline budget still has room; otherwise ``data`` is null,
``chunks`` = n, and n rows of kind ``chunk`` hold its bytes, each ``chunk_bytes`` long (the
last one shorter; they follow the owner row here, but a table store may write them to files of
their own: rows of a Delta table have no order). Readers must go by ``data``/``chunks``, not
by size: small files spill into chunk rows once a record's inline bytes reach the budget,
which keeps every row, and so every Arrow binary array, bounded.

Memory: at most one chunk of a large file is held at a time. A chunked file is read twice:
once to compute its size and SHA-256 (the owner row, which comes first, carries them), then
to cut the chunks; the second read is checked against the first.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Final, overload

import pyarrow as pa

from arcuate.errors import ArcuateError, BackendError
from arcuate.format import limits
from arcuate.format.files import ChunkedFile, FileRef, Record
from arcuate.format.schema import (
    CHUNK,
    EVAL_RECORD,
    FORMAT_VERSION,
    MODEL_VERSION,
    PROMPT_VERSION,
    RUN,
    SCHEMA,
    SCORER,
    TRACE,
)

Row = dict[str, Any]

#: A record's inline file bytes stop growing here; further files go to chunk rows.
DEFAULT_INLINE_BUDGET: Final = 64 * 1024 * 1024
#: A record batch is flushed once it holds this many bytes of file data (approximately) ...
DEFAULT_BATCH_BYTES: Final = 16 * 1024 * 1024
#: ... or this many rows ...
DEFAULT_BATCH_ROWS: Final = 1000
#: ... or this many bytes once it holds a chunk row (a full-size chunk goes alone, not copied).
DEFAULT_CHUNK_BATCH_BYTES: Final = 8 * 1024 * 1024
_READ: Final = 1024 * 1024


@dataclass
class PackStats:
    """What has been packed so far (files and their bytes), updated as rows are produced."""

    files: int = 0
    bytes: int = 0


def _read(f: IO[bytes], n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at end of file (raw streams may return short reads)."""
    parts: list[bytes] = []
    want = n
    while want > 0:
        block = f.read(want)
        if not block:
            break
        parts.append(block)
        want -= len(block)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _hash_rest(f: IO[bytes], digest: Any) -> int:
    """Feed the rest of ``f`` to ``digest`` in small reads; the number of bytes read."""
    size = 0
    while block := f.read(_READ):
        digest.update(block)
        size += len(block)
    return size


def _where(ref: FileRef) -> str:
    return f"{ref.owner}/{ref.path}"


def _check_chunk_count(key: str, ref: FileRef, size: int, chunk_bytes: int) -> None:
    """Refuse a file recipients would refuse: over MAX_FILE_BYTES, or in more than
    MAX_CHUNKS_PER_FILE chunk rows (arcuate.format.limits)."""
    count = math.ceil(size / chunk_bytes)
    if size > limits.MAX_FILE_BYTES:
        raise BackendError(
            f"file {_where(ref)} of record {key} holds {size} bytes; recipients read at most "
            f"{limits.MAX_FILE_BYTES} per file"
        )
    if count > limits.MAX_CHUNKS_PER_FILE:
        raise BackendError(
            f"file {_where(ref)} of record {key} needs {count} chunks of {chunk_bytes} bytes; "
            f"recipients read at most {limits.MAX_CHUNKS_PER_FILE} per file: raise chunk_bytes"
        )


def pack_files(
    key: str,
    refs: Iterable[FileRef],
    *,
    chunk_bytes: int,
    inline_budget: int = DEFAULT_INLINE_BUDGET,
    exported_at: datetime | None = None,
    stats: PackStats | None = None,
) -> tuple[list[dict[str, Any]], list[ChunkedFile]]:
    """The FILE entries of a record, and its chunked files (whose rows follow it).

    Every file is opened once here (small ones are read whole, large ones hashed in 1 MiB
    reads, so no chunk-sized buffer is held); :func:`chunk_rows` re-opens the large ones.
    """
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    entries: list[dict[str, Any]] = []
    deferred: list[ChunkedFile] = []
    inline_used = 0
    for ref in refs:
        try:
            head: bytes | None = None
            size = -1
            if ref.size > chunk_bytes:  # listed as large: hash it in small reads, hold no chunk
                with ref.open() as f:
                    digest = hashlib.sha256()
                    size = _hash_rest(f, digest)
            if size <= chunk_bytes:  # small (or shrank since it was listed): read it whole
                with ref.open() as f:
                    head = _read(f, chunk_bytes + 1)
                    if len(head) > chunk_bytes:
                        digest = hashlib.sha256(head)
                        size = len(head)
                        head = None
                        size += _hash_rest(f, digest)
            if head is not None and (not head or inline_used + len(head) <= inline_budget):
                inline_used += len(head)
                entries.append(
                    {
                        "owner": ref.owner,
                        "path": ref.path,
                        "size": len(head),
                        "sha256": hashlib.sha256(head).hexdigest(),
                        "data": head,
                        "chunks": 0,
                    }
                )
                size = len(head)
            else:
                if head is not None:  # small, but the record's inline budget is spent
                    digest = hashlib.sha256(head)
                    size = len(head)
                    head = None
                sha = digest.hexdigest()
                _check_chunk_count(key, ref, size, chunk_bytes)
                deferred.append(ChunkedFile(key, ref, size, sha, chunk_bytes, exported_at))
                entries.append(
                    {
                        "owner": ref.owner,
                        "path": ref.path,
                        "size": size,
                        "sha256": sha,
                        "data": None,
                        "chunks": math.ceil(size / chunk_bytes),
                    }
                )
        except ArcuateError:
            raise
        except Exception as exc:
            raise BackendError(f"could not read file {_where(ref)} of record {key}: {exc}") from exc
        if stats is not None:
            stats.files += 1
            stats.bytes += size
    return entries, deferred


def chunk_rows(job: ChunkedFile) -> Iterator[Row]:
    """The chunk rows of one chunked file, read again and checked against its owner row."""
    ref, key, chunk_bytes = job.ref, job.key, job.chunk_bytes
    digest = hashlib.sha256()
    offset = 0
    index = 0
    try:
        with ref.open() as f:
            while True:
                data = _read(f, chunk_bytes)
                if not data:
                    break
                digest.update(data)
                n = len(data)
                row = {
                    "format_version": FORMAT_VERSION,
                    "kind": CHUNK,
                    "key": key,
                    "exported_at": job.exported_at,
                    "experiment": None,
                    "run": None,
                    "model_version": None,
                    "files": None,
                    "chunk": {
                        "owner": ref.owner,
                        "path": ref.path,
                        "index": index,
                        "offset": offset,
                        "data": data,
                    },
                }
                del data  # the consumer holds the only reference while it packs
                yield row
                del row
                offset += n
                index += 1
    except ArcuateError:
        raise
    except Exception as exc:
        raise BackendError(f"could not read file {_where(ref)} of record {key}: {exc}") from exc
    if offset != job.size or digest.hexdigest() != job.sha256:
        raise BackendError(
            f"file {_where(ref)} of record {key} changed while it was exported "
            f"({job.size} bytes, then {offset}); export again when it is stable"
        )


def _followers(chunked: list[ChunkedFile], defer: bool) -> Iterator[Row | ChunkedFile]:
    """What follows a record's row: its chunked files as they are, or their chunk rows."""
    for job in chunked:
        if defer:
            yield job
        else:
            yield from chunk_rows(job)


def run_rows(
    experiment: Record,
    run: Record,
    files: Iterable[FileRef],
    *,
    chunk_bytes: int,
    exported_at: datetime | None = None,
    inline_budget: int = DEFAULT_INLINE_BUDGET,
    stats: PackStats | None = None,
    defer: bool = False,
) -> Iterator[Row | ChunkedFile]:
    """The row of one run (key = source run id), then the chunk rows of its large files
    (with ``defer``, each large file as one :class:`ChunkedFile` instead)."""
    key = str(run["run_id"])
    entries, chunked = pack_files(
        key,
        files,
        chunk_bytes=chunk_bytes,
        inline_budget=inline_budget,
        exported_at=exported_at,
        stats=stats,
    )
    yield {
        "format_version": FORMAT_VERSION,
        "kind": RUN,
        "key": key,
        "exported_at": exported_at,
        "experiment": experiment,
        "run": run,
        "model_version": None,
        "files": entries,
        "chunk": None,
    }
    yield from _followers(chunked, defer)


def version_rows(
    version: Record,
    source: tuple[Record, Record] | None,
    files: Iterable[FileRef],
    *,
    chunk_bytes: int,
    exported_at: datetime | None = None,
    inline_budget: int = DEFAULT_INLINE_BUDGET,
    stats: PackStats | None = None,
    defer: bool = False,
) -> Iterator[Row | ChunkedFile]:
    """The row of one model version (key = str(version)), then its chunk rows (with
    ``defer``, each large file as one :class:`ChunkedFile`).

    ``source`` is the (experiment, run) of the version's source run when it still exists: its
    metadata rides along in the ``experiment``/``run`` columns, without its artifacts.
    """
    key = str(version["version"])
    entries, chunked = pack_files(
        key,
        files,
        chunk_bytes=chunk_bytes,
        inline_budget=inline_budget,
        exported_at=exported_at,
        stats=stats,
    )
    experiment, run = source if source is not None else (None, None)
    yield {
        "format_version": FORMAT_VERSION,
        "kind": MODEL_VERSION,
        "key": key,
        "exported_at": exported_at,
        "experiment": experiment,
        "run": run,
        "model_version": version,
        "files": entries,
        "chunk": None,
    }
    yield from _followers(chunked, defer)


def prompt_row(version: Record, exported_at: datetime | None = None) -> Row:
    """The row of one prompt version (key = str(version)); a prompt has no files."""
    return {
        "format_version": FORMAT_VERSION,
        "kind": PROMPT_VERSION,
        "key": str(version["version"]),
        "exported_at": exported_at,
        "prompt_version": version,
        "files": [],
    }


def scorer_row(scorer: Record, exported_at: datetime | None = None) -> Row:
    """The row of one registered scorer version (key ``"<name>/<version>"``)."""
    return {
        "format_version": FORMAT_VERSION,
        "kind": SCORER,
        "key": f"{scorer['name']}/{scorer['version']}",
        "exported_at": exported_at,
        "scorer": scorer,
        "files": [],
    }


def eval_record_row(record: Record, exported_at: datetime | None = None) -> Row:
    """The row of one evaluation-dataset record (key ``"<dataset id>/<record id>"``)."""
    return {
        "format_version": FORMAT_VERSION,
        "kind": EVAL_RECORD,
        "key": f"{record['dataset_id']}/{record['record_id']}",
        "exported_at": exported_at,
        "eval_record": record,
        "files": [],
    }


def trace_row(trace: Record, exported_at: datetime | None = None) -> Row:
    """The row of one MLflow trace (key: its trace id)."""
    return {
        "format_version": FORMAT_VERSION,
        "kind": TRACE,
        "key": trace["trace_id"],
        "exported_at": exported_at,
        "trace": trace,
        "files": [],
    }


class ColumnarList(Sequence[dict[str, Any]]):
    """A list of struct values (such as a run's metric points) held as one Arrow StructArray.

    A source that reads many values at once builds them column-wise and hands them over like
    this; :func:`to_batches` splices the array into the batch as it is instead of converting
    one dict per value. Reading it like a list gives the same dicts ``to_pylist`` would.
    """

    __slots__ = ("array",)

    def __init__(self, array: pa.StructArray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> ColumnarList: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | ColumnarList:
        if isinstance(index, slice):
            picked = list(range(len(self.array))[index])
            return ColumnarList(self.array.take(pa.array(picked, pa.int64())))
        if index < 0:
            index += len(self.array)
        if not 0 <= index < len(self.array):
            raise IndexError(index)
        value: dict[str, Any] = self.array[index].as_py()
        return value

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.array.to_pylist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ColumnarList | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ColumnarList({self.array.to_pylist()!r})"


def row_bytes(row: Row) -> int:
    """A cheap estimate of a row's Arrow size: its file bytes plus its metric points."""
    n = 256
    chunk = row.get("chunk")
    if chunk is not None:
        n += len(chunk["data"])
    for entry in row.get("files") or ():
        n += 128 + (len(entry["data"]) if entry["data"] is not None else 0)
    run = row.get("run")
    if run is not None:
        n += 64 * len(run.get("metrics") or ())
        n += sum(len(p["value"] or "") + len(p["key"]) for p in run.get("params") or ())
    return n


_RUN_TYPE: Final = SCHEMA.field("run").type
_METRICS_TYPE: Final = _RUN_TYPE.field("metrics").type
_CHUNK_TYPE: Final = SCHEMA.field("chunk").type


def _struct_with(column: pa.StructArray, name: str, child: pa.Array) -> pa.StructArray:
    """``column`` with its child ``name`` replaced, parent nulls kept."""
    kind = column.type
    children = [child if f.name == name else column.field(i) for i, f in enumerate(kind)]
    mask = column.is_null() if column.null_count else None
    return pa.StructArray.from_arrays(children, fields=list(kind), mask=mask)


def _replace_column(batch: pa.RecordBatch, name: str, column: pa.Array) -> pa.RecordBatch:
    arrays = [column if f.name == name else batch.column(i) for i, f in enumerate(SCHEMA)]
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def _build(rows: list[Row]) -> pa.RecordBatch:
    """One record batch of ``rows``; columnar metric lists and single chunks are not copied
    through Python objects."""
    if len(rows) == 1 and rows[0].get("chunk") is not None:
        return _chunk_batch(rows[0])
    metrics: list[pa.Array | None] = []
    plain: list[Row] = []
    columnar = False
    for row in rows:
        run = row.get("run")
        points = run.get("metrics") if run is not None else None
        if isinstance(points, ColumnarList):
            columnar = True
            plain.append({**row, "run": {**run, "metrics": []}})  # type: ignore[dict-item]
            metrics.append(points.array)
        else:
            plain.append(row)
            metrics.append(None)
    batch = pa.RecordBatch.from_pylist(plain, schema=SCHEMA)
    if not columnar:
        return batch
    runs = batch.column("run")
    current = runs.field("metrics")
    pieces: list[pa.Array] = []
    offsets = [0]
    for i, array in enumerate(metrics):
        if array is None:  # a row packed the ordinary way (or no run at all)
            array = current[i].values if current[i].is_valid else None
        if array is not None and len(array):
            pieces.append(array)
            offsets.append(offsets[-1] + len(array))
        else:
            offsets.append(offsets[-1])
    values = pa.concat_arrays(pieces) if pieces else pa.array([], type=_METRICS_TYPE.value_type)
    lists = pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()),
        values,
        type=_METRICS_TYPE,
        mask=current.is_null() if current.null_count else None,
    )
    return _replace_column(batch, "run", _struct_with(runs, "metrics", lists))


def _chunk_batch(row: Row) -> pa.RecordBatch:
    """A batch of one chunk row whose data buffer is the chunk's bytes object itself."""
    chunk = row["chunk"]
    data = chunk["data"]
    batch = pa.RecordBatch.from_pylist([{**row, "chunk": {**chunk, "data": b""}}], schema=SCHEMA)
    offsets = pa.array([0, len(data)], pa.int32()).buffers()[1]
    array = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(data)])
    return _replace_column(batch, "chunk", _struct_with(batch.column("chunk"), "data", array))


def to_batches(
    rows: Iterable[Row | ChunkedFile],
    *,
    max_rows: int = DEFAULT_BATCH_ROWS,
    max_bytes: int = DEFAULT_BATCH_BYTES,
    max_chunk_bytes: int = DEFAULT_CHUNK_BATCH_BYTES,
) -> Iterator[pa.RecordBatch]:
    """Record batches of :data:`SCHEMA`, each flushed at ``max_rows`` rows or ~``max_bytes``
    (~``max_chunk_bytes`` once it holds a chunk row, so a batch of large chunks holds one).
    A :class:`ChunkedFile` among the rows becomes its chunk rows here.
    """
    return expand(
        to_stream(rows, max_rows=max_rows, max_bytes=max_bytes, max_chunk_bytes=max_chunk_bytes)
    )


def expand(items: Iterable[pa.RecordBatch | ChunkedFile]) -> Iterator[pa.RecordBatch]:
    """The batches of a stream, each :class:`ChunkedFile` replaced by its chunk rows' batches
    (cut in this process)."""
    for item in items:
        if isinstance(item, ChunkedFile):
            yield from (b for b in to_stream(chunk_rows(item)) if isinstance(b, pa.RecordBatch))
        else:
            yield item
        del item


def to_stream(
    rows: Iterable[Row | ChunkedFile],
    *,
    max_rows: int = DEFAULT_BATCH_ROWS,
    max_bytes: int = DEFAULT_BATCH_BYTES,
    max_chunk_bytes: int = DEFAULT_CHUNK_BATCH_BYTES,
) -> Iterator[pa.RecordBatch | ChunkedFile]:
    """:func:`to_batches`, with each :class:`ChunkedFile` passed on as it is (for a table
    store to cut where it likes).

    The rows of a batch are released as soon as it is built. A chunk of ``max_chunk_bytes`` or
    more is a batch of its own whose data buffer is the chunk's bytes object (no copy), and
    after each batch holding chunks Arrow's pool returns the memory the consumer freed, so an
    export of a large file holds about one chunk plus the writer's encoding buffers.
    """
    pending: list[Row] = []
    size = 0
    limit = max_bytes
    chunky = False  # the pending batch holds a chunk row
    for row in rows:
        if isinstance(row, ChunkedFile):
            yield row  # rows of a table need no order: the pending batch waits
            continue
        weight = row_bytes(row)
        if row.get("chunk") is not None:
            if pending and size + weight >= min(limit, max_chunk_bytes):
                # a full chunk goes alone (packed without a copy): flush what came before
                batch = _build(pending)
                pending = []
                size = 0
                limit = max_bytes
                yield batch
                del batch
                if chunky:
                    pa.default_memory_pool().release_unused()
            limit = min(limit, max_chunk_bytes)
            chunky = True
        pending.append(row)
        size += weight
        del row
        if len(pending) >= max_rows or size >= limit:
            batch = _build(pending)
            pending = []
            size = 0
            limit = max_bytes
            yield batch
            del batch
            if chunky:  # hand the consumer's freed encoding buffers back before the next chunk
                pa.default_memory_pool().release_unused()
                chunky = False
    if pending:
        batch = _build(pending)
        pending = []
        yield batch
