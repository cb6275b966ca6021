"""Import operators: shared runs or model versions into MLflow, validated first, re-runnable.

An import is a stream over record batches, in two passes:

1. **Validate and spool.** Every row is validated (:mod:`arcuate.format.validate`) and written
   to a temporary directory: record metadata as JSON, inline files and chunk rows as files on
   disk. Chunked files are reassembled and checked once all rows are read. Memory holds one
   batch and a small index, never the table. A bad row raises before anything is written.
2. **Write.** Records are matched to what the target already holds by provenance (the
   ``arcuate.source_run_id`` / ``arcuate.source_version`` tags) and their content hash:
   unchanged ones are skipped, changed ones updated in place (or rebuilt when MLflow cannot
   change them in place), new ones added. The content hash is written last, so an interrupted
   import leaves records marked incomplete, and running it again finishes them without
   duplicates. Old runs/versions (replaced ones; with ``overwrite``, everything not shared) are
   deleted only after all new ones are in place. This pass holds the target's import lease
   (``ModelSink.lock``): two imports of one target never write at the same time.

The MLflow side is reached through ``ctx.model_sink`` (:class:`ModelSink`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import time
from collections import defaultdict
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from arcuate.backends.protocols import Record
from arcuate.engine.result import StatementResult
from arcuate.errors import ShareDataError
from arcuate.format import validate as v
from arcuate.format.columns import batch_metrics, chunk_data, without_metrics
from arcuate.format.schema import (
    MODEL_VERSION,
    OWNER_LOGGED_MODEL_PREFIX,
    OWNER_MODEL,
    RUN,
    Content,
)

if TYPE_CHECKING:
    from arcuate.engine.context import Context


class ModelSink(Protocol):
    """What an import needs from an MLflow store (implemented by ``MlflowSink``).

    Records are the normalised dicts of :mod:`arcuate.format.validate`; files are dicts with
    ``owner``, ``path``, ``size``, ``sha256`` and ``local`` (a local path to the bytes).
    """

    def prepare_experiment(
        self,
        name: str,
        tags: dict[str, str],
        *,
        exact: bool = ...,
        update_tags: bool = ...,
        restore: bool = ...,
    ) -> str: ...
    def list_runs(self, experiment_id: str) -> list[Record]: ...
    def list_logged_models(self, experiment_id: str) -> list[Record]: ...
    def find_run(self, source_run_id: str) -> Record | None: ...
    def run_artifact_uri(self, run_id: str) -> str: ...
    def create_run(
        self, experiment_id: str, run: Record, *, source_run_id: str, source: str
    ) -> str: ...
    def rebuild_reason(
        self, run_id: str, run: Record, *, exact: bool, artifact_paths: list[str]
    ) -> str | None: ...
    def create_logged_model(self, experiment_id: str, run_id: str | None, model: Record) -> str: ...
    def fill_run(
        self,
        run_id: str,
        run: Record,
        files: list[Record],
        *,
        run_ids: dict[str, str],
        model_ids: dict[str, str],
        fresh: bool,
        exact: bool,
    ) -> Record: ...
    def finish_run(self, run_id: str, *, content_hash: str, deleted: bool = ...) -> None: ...
    def bulk_runs(self, experiment_id: str) -> bool: ...
    def new_run_id(self) -> str: ...
    def new_model_id(self) -> str: ...
    def write_new_runs(
        self,
        experiment_id: str,
        runs: list[Record],
        *,
        run_ids: dict[str, str],
        model_ids: dict[str, str],
        source: str,
        exact: bool,
    ) -> Record: ...
    def write_concurrency(self) -> int: ...
    def remove_orphan_files(self, experiment_id: str) -> int: ...
    def reconcile_run(
        self, state: Record, run: Record, *, run_ids: dict[str, str], exact: bool
    ) -> bool: ...
    def delete_runs(self, experiment_id: str, run_ids: list[str]) -> None: ...
    def delete_logged_models(self, model_ids: list[str]) -> None: ...
    def upload_run_files(self, run_id: str, files: list[Record], prefix: str) -> Record: ...
    def ensure_logged_model(
        self,
        experiment_id: str,
        run_id: str | None,
        model: Record,
        files: list[Record],
        *,
        exact: bool = ...,
    ) -> tuple[str, Record]: ...
    def prepare_registered_model(
        self, name: str, *, description: str | None, tags: dict[str, str], exact: bool
    ) -> Record: ...
    def create_version(
        self,
        name: str,
        *,
        want: int | None,
        source: str,
        run_id: str | None,
        model_id: str | None,
        tags: dict[str, str],
        description: str | None,
        run_link: str | None,
    ) -> int: ...
    def update_version(
        self,
        name: str,
        version: int,
        *,
        current: Record,
        description: str | None,
        tags: dict[str, str],
        stage: str,
        exact: bool,
    ) -> bool: ...
    def finish_version(self, name: str, version: int, *, content_hash: str) -> None: ...
    def link_logged_model(self, model_id: str, name: str, version: int) -> None: ...
    def set_aliases(self, name: str, aliases: dict[str, int], *, remove: list[str]) -> None: ...
    def delete_versions(self, name: str, versions: list[int]) -> None: ...
    def lock(
        self, kind: str, name: str, *, restore: bool = ...
    ) -> contextlib.AbstractContextManager[Any]: ...


if TYPE_CHECKING:
    from arcuate.backends.mlflow.sink import MlflowSink

    def _sink_conforms(sink: MlflowSink) -> ModelSink:
        """mypy checks here that the MLflow sink implements the Protocol."""
        return sink


# Provenance tag keys on versions (the sink owns the run-side ones).
_SOURCE_MODEL = "arcuate.source_model"
_SOURCE_VERSION = "arcuate.source_version"
_SOURCE = "arcuate.source"
_SOURCE_URI = "arcuate.source_uri"
_CONTENT_HASH = "arcuate.content_hash"
_PLACEHOLDER = "arcuate.placeholder"
_MODEL_VERSIONS_TAG = "mlflow.modelVersions"
_SOURCE_MODEL_VERSIONS = "arcuate.source_model_versions"
_MAX_MLMODEL_BYTES = 1 << 20


#: Arrow bytes turned into Python values at a time while validating (bounds the Python copy).
_SLICE_BYTES = 4 * 1024 * 1024


def _slice_rows(batch: pa.RecordBatch | pa.Table) -> int:
    """Rows per slice so that a slice holds about :data:`_SLICE_BYTES` of Arrow data."""
    if batch.num_rows == 0:
        return 1
    rows = int(batch.num_rows)
    per_row = max(1, int(batch.nbytes) // rows)
    return max(1, min(rows, _SLICE_BYTES // per_row))


# -- spool ---------------------------------------------------------------------------------------
@dataclass
class Entry:
    """What stays in memory of a spooled record: where it is and what it weighs."""

    row: int
    kind: str
    key: str
    content_hash: str
    files: list[dict[str, Any]]
    metric_points: int
    lifecycle_stage: str = "active"
    parent: str | None = None
    version: int | None = None
    #: source ids of the logged models the run owns, and of those it points at (metric
    #: links, model inputs): what decides whether it can be written in bulk
    models: list[str] = field(default_factory=list)
    model_refs: list[str] = field(default_factory=list)


def _hash_record(record: v.SharedRecord) -> str:
    """Content hash of what a record would write (times that cannot be set are left out)."""
    body: dict[str, Any] = {"kind": record.kind, "key": record.key}
    if record.run is not None:
        body["run"] = record.run
    if record.model_version is not None:
        mv = dict(record.model_version)
        for skip in (
            "name",
            "model_description",
            "model_tags",
            "aliases",
            "creation_time",
            "last_updated_time",
        ):
            mv.pop(skip, None)
        body["model_version"] = mv
    body["files"] = sorted(
        ((f.owner, f.path, f.size, f.sha256) for f in record.files), key=lambda t: (t[0], t[1])
    )
    text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Spool:
    """Validated records and file bytes on local disk, read back one record at a time."""

    def __init__(self, root: Path, content: Content, *, create: bool = True) -> None:
        self.root = root
        self.content = content
        self.entries: list[Entry] = []
        self.experiment: dict[str, Any] | None = None
        self.rows = 0
        self.bytes = 0
        #: peak resident bytes of the helper process that read the table, if one did
        self.helper_peak_rss = 0
        self._by_key: dict[str, int] = {}
        self._chunks: dict[tuple[str, str, str], list[v.ChunkMeta]] = defaultdict(list)
        self._chunk_dirs: dict[tuple[str, str, str], Path] = {}
        self._model_ids: dict[str, int] = {}
        self._aliases: dict[str, int] = {}
        if create:
            (root / "records").mkdir(parents=True)
            (root / "blobs").mkdir()
            (root / "chunks").mkdir()

    @classmethod
    @contextlib.contextmanager
    def open(cls, content: Content) -> Iterator[Spool]:
        """A spool in a fresh temporary directory, removed afterwards (and, should this process
        be killed, by the next import: :mod:`arcuate.engine.spools`)."""
        from arcuate.engine.spools import new_spool_dir

        root = new_spool_dir()
        try:
            yield cls(root, content)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # -- pass 1 --------------------------------------------------------------------------------
    def ingest(
        self, batches: Iterable[pa.RecordBatch], tick: Any = None, *, worker: bool = True
    ) -> None:
        """Validate every row of every batch and spool it; then check and join chunked files.

        A large shared table that nobody has started reading (the batches of
        :meth:`DeltaSharingReader.batches`, at least
        :data:`~arcuate.engine.ingest_worker.WORKER_BYTES`) is read by a helper process into
        this spool (:mod:`arcuate.engine.ingest_worker`), unless ``worker`` is False.

        Raises:
            ShareDataError: the first bad row, named by its 0-based position in the stream.
        """
        if worker and self._ingest_in_worker(batches, tick):
            return
        for batch in batches:
            if not isinstance(batch, (pa.RecordBatch, pa.Table)):
                raise ShareDataError(
                    f"expected Arrow record batches, got {type(batch).__name__}", row=self.rows
                )
            v.check_columns(batch.schema.names, self.rows)
            for start in range(0, batch.num_rows, step := _slice_rows(batch)):
                part = batch.slice(start, step)
                first = self.rows + start
                for offset, row in enumerate(self._rows(part, first)):
                    self._add(v.parse_row(row, first + offset, self.content))
            self.rows += batch.num_rows
            if tick is not None:
                tick(self.rows)
        self._finish()

    def _ingest_in_worker(self, batches: Iterable[pa.RecordBatch], tick: Any) -> bool:
        """Pass 1 in a helper process, for a large listed table; False when not used."""
        from arcuate.backends.sharing.reader import SharedBatches
        from arcuate.engine.ingest_worker import WORKER_BYTES, run_worker

        if not isinstance(batches, SharedBatches) or batches.started or self.entries:
            return False
        if batches.total_bytes < WORKER_BYTES:
            return False
        request = {"root": str(self.root), "content": self.content, "table": batches.to_json()}
        try:
            state = run_worker(request, tick)
        except OSError:
            return False  # no interpreter to start: read it here
        self._restore(state)
        return True

    def state(self) -> dict[str, Any]:
        """The index of an ingested spool, as JSON (what a helper process hands back)."""
        return {
            "entries": [dataclasses.asdict(e) for e in self.entries],
            "experiment": self.experiment,
            "rows": self.rows,
            "bytes": self.bytes,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.entries = [Entry(**e) for e in state["entries"]]
        self.experiment = state["experiment"]
        self.rows = int(state["rows"])
        self.bytes = int(state["bytes"])
        self._by_key = {e.key: i for i, e in enumerate(self.entries)}
        self.helper_peak_rss = int(state.get("peak_rss") or 0)

    def _rows(self, batch: pa.RecordBatch | pa.Table, first: int) -> list[dict[str, Any]]:
        """The rows of a (small) batch as Python values; metric histories checked column-wise
        when they pass (:mod:`arcuate.format.columns`), else left for row-by-row checks."""
        if not isinstance(batch, pa.RecordBatch):
            return self._pylist(batch, first)
        checked = views = None
        with contextlib.suppress(pa.ArrowException, ValueError, OverflowError):
            checked = batch_metrics(batch)
            if checked is not None:
                batch = without_metrics(batch)
        with contextlib.suppress(pa.ArrowException, ValueError, OverflowError):
            split = chunk_data(batch)
            if split is not None:
                batch, views = split
        rows = self._pylist(batch, first)
        for j, row in enumerate(rows):
            if checked is not None and checked[j] is not None and isinstance(row.get("run"), dict):
                row["run"]["metrics"] = checked[j]
            if views is not None and isinstance(row.get("chunk"), dict):
                row["chunk"]["data"] = views[j]
        return rows

    def _pylist(self, batch: pa.RecordBatch | pa.Table, first: int) -> list[dict[str, Any]]:
        try:
            return batch.to_pylist()  # type: ignore[no-any-return]
        except (pa.ArrowException, ValueError, OverflowError) as exc:
            # find the row that Arrow cannot turn into Python values (e.g. a year 10000 date)
            for j in range(batch.num_rows):
                try:
                    batch.slice(j, 1).to_pylist()
                except (pa.ArrowException, ValueError, OverflowError) as inner:
                    raise ShareDataError(
                        f"the row cannot be read: {inner}", row=first + j
                    ) from inner
            raise ShareDataError(f"the batch cannot be read: {exc}", row=first) from exc

    def _add(self, item: v.SharedRecord | v.SharedChunk) -> None:
        if isinstance(item, v.SharedChunk):
            self._add_chunk(item)
            return
        record = item
        if record.key in self._by_key:
            first = self.entries[self._by_key[record.key]].row
            raise ShareDataError(
                f"key {record.key!r} appears twice (first in row {first})",
                row=record.row,
                field="key",
            )
        if record.run is not None and record.kind == RUN:
            for j, lm in enumerate(record.run["logged_models"]):
                other = self._model_ids.get(lm["model_id"])
                if other is not None:
                    raise ShareDataError(
                        f"logged model {lm['model_id']!r} also belongs to row {other}",
                        row=record.row,
                        field=f"run.logged_models[{j}].model_id",
                    )
                self._model_ids[lm["model_id"]] = record.row
        if record.model_version is not None:
            for alias in record.model_version["aliases"]:
                other = self._aliases.get(alias)
                if other is not None:
                    raise ShareDataError(
                        f"alias {alias!r} is also on the version in row {other}",
                        row=record.row,
                        field="model_version.aliases",
                    )
                self._aliases[alias] = record.row
        if self.experiment is None and record.experiment is not None:
            self.experiment = record.experiment
        index = len(self.entries)
        files: list[dict[str, Any]] = []
        for n, f in enumerate(record.files):
            meta = f.meta()
            # one flat directory: a directory per record costs a mkdir and an rmdir each
            meta["local"] = str(self.root / "blobs" / f"{index}-{n}")
            if f.data is not None:
                with open(meta["local"], "xb") as fh:
                    fh.write(f.data)
            files.append(meta)
            self.bytes += f.size
        doc = {
            "row": record.row,
            "kind": record.kind,
            "key": record.key,
            "experiment": record.experiment,
            "run": record.run,
            "model_version": record.model_version,
        }
        (self.root / "records" / f"{index}.json").write_text(
            json.dumps(doc, allow_nan=True), encoding="utf-8"
        )
        run = record.run or {}
        self.entries.append(
            Entry(
                row=record.row,
                kind=record.kind,
                key=record.key,
                content_hash=_hash_record(record),
                files=files,
                metric_points=len(run.get("metrics") or ()),
                lifecycle_stage=run.get("lifecycle_stage") or "active",
                parent=run.get("parent_run_id"),
                version=(record.model_version or {}).get("version"),
                models=[lm["model_id"] for lm in run.get("logged_models") or ()],
                model_refs=sorted(
                    {m["model_id"] for m in run.get("metrics") or () if m["model_id"]}
                    | set(run.get("model_inputs") or ())
                ),
            )
        )
        self._by_key[record.key] = index

    def _add_chunk(self, chunk: v.SharedChunk) -> None:
        ident = (chunk.key, chunk.owner, chunk.path)
        folder = self._chunk_dirs.get(ident)
        if folder is None:
            folder = self.root / "chunks" / str(len(self._chunk_dirs))
            folder.mkdir()
            self._chunk_dirs[ident] = folder
        target = folder / str(chunk.index)
        if target.exists():
            raise ShareDataError(
                f"chunk {chunk.index} of {chunk.owner}/{chunk.path} appears twice",
                row=chunk.row,
                field="chunk.index",
            )
        target.write_bytes(chunk.data)
        self._chunks[ident].append(
            v.ChunkMeta(chunk.row, chunk.index, chunk.offset, len(chunk.data))
        )

    def _finish(self) -> None:
        """Join chunked files (checking order, offsets, sizes, SHA-256); reject stray chunks."""
        used: set[tuple[str, str, str]] = set()
        for entry in self.entries:
            record = self._shared_record(entry)
            for meta, f in zip(entry.files, record.files, strict=True):
                if f.chunks == 0:
                    continue
                ident = (entry.key, f.owner, f.path)
                ordered = v.check_chunks(record, f, self._chunks.get(ident, []))
                used.add(ident)
                folder = self._chunk_dirs[ident]
                digest = hashlib.sha256()
                with open(meta["local"], "xb") as out:
                    for c in ordered:
                        part = folder / str(c.index)
                        data = part.read_bytes()
                        digest.update(data)
                        out.write(data)
                        part.unlink()
                v.check_digest(record, f, digest.hexdigest())
        for ident, chunks in self._chunks.items():
            if ident not in used:
                first = min(chunks, key=lambda c: c.row)
                key, owner, path = ident
                if key not in self._by_key:
                    msg = f"chunk of {owner}/{path} belongs to key {key!r}, which has no record"
                else:
                    msg = f"chunk of {owner}/{path} matches no chunked file of record {key!r}"
                raise ShareDataError(msg, row=first.row, field="chunk")

    @staticmethod
    def _shared_record(entry: Entry) -> v.SharedRecord:
        files = [
            v.SharedFile(f["owner"], f["path"], f["size"], f["sha256"], None, f["chunks"])
            for f in entry.files
        ]
        return v.SharedRecord(entry.row, entry.kind, entry.key, None, None, None, files)

    # -- pass 2 --------------------------------------------------------------------------------
    def load(self, index: int) -> dict[str, Any]:
        """The record document of entry ``index``."""
        text = (self.root / "records" / f"{index}.json").read_text(encoding="utf-8")
        return json.loads(text)  # type: ignore[no-any-return]

    def files(self, index: int) -> list[dict[str, Any]]:
        """The files of entry ``index`` with their local paths."""
        return self.entries[index].files


# -- progress ----------------------------------------------------------------------------------
class _Progress:
    """Rich progress bars on stderr while importing, or nothing when progress is off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None

    @contextlib.contextmanager
    def running(self) -> Iterator[_Progress]:
        if not self.enabled:
            yield self
            return
        from arcuate.engine.progress import new_bar

        self._bar = new_bar()
        self._bar.start()
        try:
            yield self
        finally:
            self._bar.stop()
            self._bar = None

    def task(self, label: str, total: int | None) -> Any:
        if self._bar is None:
            return None
        return self._bar.add_task(label, total=total)

    def advance(self, task: Any, completed: int | None = None) -> None:
        if self._bar is None or task is None:
            return
        if completed is None:
            self._bar.advance(task)
        else:
            self._bar.update(task, completed=completed)


# -- experiments ------------------------------------------------------------------------------
@dataclass
class _Report:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    files: int = 0
    bytes: int = 0
    metric_points: int = 0
    unlinked: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)


def _describe_target(kind: str, name: str, overwrite: bool, source: str) -> str:
    over = " OVERWRITE" if overwrite else ""
    src = f" AS PANDAS '{source}'" if source else ""
    return f"CREATE {kind}{over} {name}{src}"


def import_experiment(
    batches: Iterable[pa.RecordBatch],
    experiment: str,
    ctx: Context,
    *,
    overwrite: bool = False,
    source: str = "",
) -> StatementResult:
    """Import shared runs into ``experiment``: validated first, re-runnable, exact on OVERWRITE.

    Args:
        batches: record batches of an experiment table (any order of rows).
        experiment: the target experiment name (created if missing).
        ctx: the engine context; its ``model_sink`` is written to.
        overwrite: make the experiment hold exactly the shared runs (old ones deleted last).
        source: the share coordinate, recorded in each run's ``arcuate.source`` tag.

    Returns:
        A result whose summary counts added/updated/unchanged/removed runs, files, bytes,
        metric points and seconds; its rows map each source run to the run here.

    Raises:
        ShareDataError: a row is malformed or hostile (nothing has been written).
        ConflictError: the experiment exists but is deleted (without OVERWRITE).
        BackendError: MLflow failed midway; running the statement again finishes the import.
    """
    started = time.monotonic()
    name = v.check_experiment_name(experiment)
    progress = _Progress(ctx.progress)
    with Spool.open("experiment") as spool, progress.running():
        reading = progress.task("validating shared rows", None)
        spool.ingest(batches, lambda n: progress.advance(reading, n))
        # one import per target at a time: a second one waits, then finds the runs in place
        with ctx.model_sink.lock("experiment", name, restore=overwrite) as lease:
            imp = _ExperimentImport(ctx.model_sink, spool, name, overwrite, source, progress)
            report = imp.run()
        spool_bytes = spool.bytes
        helper = spool.helper_peak_rss
    summary: dict[str, Any] = {
        "experiment": name,
        "runs": len(report.rows),
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "files": report.files,
        "bytes": report.bytes,
        "metric_points": report.metric_points,
        "shared_bytes": spool_bytes,
        "seconds": round(time.monotonic() - started, 3),
    }
    if report.unlinked:
        summary["unlinked"] = report.unlinked
    if lease.waited >= 1:
        summary["waited"] = round(lease.waited, 1)
    if helper:
        summary["helper_peak_rss"] = helper
    return StatementResult(
        statement=_describe_target("EXPERIMENT", name, overwrite, source),
        action="import_experiment",
        summary=summary,
        rows=report.rows,
    )


#: A bulk transaction holds at most this many runs, or this many metric points.
BULK_RUNS = 100
BULK_POINTS = 25_000


class _Import:
    """What an experiment or model import works with: the sink, the validated spool, a report."""

    def __init__(
        self, sink: Any, spool: Spool, name: str, overwrite: bool, source: str, progress: _Progress
    ) -> None:
        self.sink: ModelSink = sink
        self.spool = spool
        self.name = name
        self.exact = overwrite
        self.source = source
        self.progress = progress
        self.report = _Report()


class _ExperimentImport(_Import):
    def run(self) -> _Report:
        sink, spool = self.sink, self.spool
        tags = (spool.experiment or {}).get("tags") or {}
        eid = sink.prepare_experiment(self.name, tags, exact=self.exact, restore=self.exact)
        sink.remove_orphan_files(eid)  # of an import of it that was killed midway
        states = sink.list_runs(eid)
        by_source: dict[str, list[Record]] = defaultdict(list)
        for s in states:
            if s["source_run_id"]:
                by_source[s["source_run_id"]].append(s)
        run_ids: dict[str, str] = {}
        # previously imported runs that this share no longer lists still resolve parents
        for src, found in by_source.items():
            live = [s for s in found if s["lifecycle_stage"] == "active"] or found
            run_ids[src] = live[0]["run_id"]
        doomed: list[str] = []
        replaced: set[str] = set()  # older copies of shared runs (not counted as removed)
        plan: list[tuple[int, str, str, bool]] = []  # (entry index, run id, action, fresh)
        # new runs the bulk path writes whole (ids chosen here, nothing written yet)
        bulk = sink.bulk_runs(eid)
        in_bulk: set[int] = set()

        # phase 1: match every record to a run here, create the missing ones
        for index, entry in enumerate(spool.entries):
            # live runs first: a run deleted here is only the fallback
            candidates = sorted(
                by_source.get(entry.key, []), key=lambda c: c["lifecycle_stage"] != "active"
            )
            complete = [c for c in candidates if c["content_hash"] == entry.content_hash]
            incomplete = [c for c in candidates if not c["content_hash"]]
            older = [c for c in candidates if c["content_hash"] and c not in complete]
            if complete:
                chosen, action = complete[0], "unchanged"
            elif incomplete:
                chosen, action = incomplete[0], ("updated" if older else "added")
            elif older:
                chosen, action = older[0], "updated"
            else:
                chosen, action = None, "added"
            doomed += [c["run_id"] for c in candidates if c is not chosen]
            replaced.update(c["run_id"] for c in candidates if c is not chosen)
            if (
                self.exact
                and chosen is not None
                and chosen["lifecycle_stage"] == "deleted"
                and entry.lifecycle_stage == "active"
            ):
                # deleted here, live in the share: OVERWRITE restores it (without, it stays
                # deleted: that was someone's decision here)
                action = "updated"
            fresh = False
            if chosen is not None and (action != "unchanged" or self.exact):
                # with OVERWRITE even an unchanged run is checked for what was added here
                record = spool.load(index)
                reason = sink.rebuild_reason(
                    chosen["run_id"],
                    record["run"],
                    exact=self.exact,
                    artifact_paths=[f["path"] for f in entry.files if f["owner"] == "artifacts"],
                )
                if reason is not None:
                    doomed.append(chosen["run_id"])
                    replaced.add(chosen["run_id"])
                    chosen, action = None, "updated"
            if chosen is None:
                fresh = True
                if bulk:
                    run_id = sink.new_run_id()
                    in_bulk.add(index)
                else:
                    run_id = self._create(eid, index)
            else:
                run_id = chosen["run_id"]
            run_ids[entry.key] = run_id
            plan.append((index, run_id, action, fresh))

        # a bulk run's metrics and inputs may point only at logged models that exist before
        # its transaction: its own, or those of runs written through the API; a run pointing
        # at the models of another bulk run goes through the API (after the bulk runs)
        owners = {m: i for i in in_bulk for m in spool.entries[i].models}
        for position, (index, _run_id, action, fresh) in enumerate(plan):
            if index in in_bulk and any(
                owners.get(ref, index) != index for ref in spool.entries[index].model_refs
            ):
                in_bulk.discard(index)
                run_id = self._create(eid, index)
                run_ids[spool.entries[index].key] = run_id
                plan[position] = (index, run_id, action, fresh)
        keep = {run_id for _index, run_id, _action, _fresh in plan}

        # logged models: one per shared model per run, found by provenance or created
        model_ids: dict[str, str] = {}
        stray_models: list[str] = []
        by_model: dict[tuple[str, str], list[str]] = defaultdict(list)
        for found_lm in sink.list_logged_models(eid):
            if found_lm["source_model_id"]:
                key = (found_lm["source_model_id"], found_lm["run_id"])
                by_model[key].append(found_lm["model_id"])
        shared_models: set[tuple[str, str]] = set()
        for index, run_id, _action, _fresh in plan:
            if index in in_bulk:  # created in the run's own transaction
                for src in spool.entries[index].models:
                    shared_models.add((src, run_id))
                    model_ids[src] = sink.new_model_id()
                continue
            if not spool.entries[index].models:
                continue
            for lm in spool.load(index)["run"]["logged_models"]:
                shared_models.add((lm["model_id"], run_id))
                same = by_model.get((lm["model_id"], run_id), [])
                if same:
                    model_ids[lm["model_id"]] = same[0]
                    stray_models += same[1:]
                else:
                    model_ids[lm["model_id"]] = sink.create_logged_model(eid, run_id, lm)

        # phase 2: write what each run lacks, mark it complete (new runs in bulk first)
        writing = self.progress.task(f"importing runs into {self.name}", len(plan))
        done: dict[int, dict[str, Any]] = {}
        if in_bulk:
            self._write_bulk(eid, plan, in_bulk, run_ids, model_ids, done, writing)
        rest = [p for p in plan if p[0] not in in_bulk]
        state_of = {s["run_id"]: s for s in states}

        def one(item: tuple[int, str, str, bool]) -> dict[str, Any]:
            index, run_id, action, fresh = item
            return self._write_one(
                index, run_id, action, fresh, state_of.get(run_id), run_ids, model_ids
            )

        workers = max(1, min(sink.write_concurrency(), len(rest)))
        if workers == 1:
            for item in rest:
                done[item[0]] = one(item)
                self.progress.advance(writing)
        else:
            # closed on every way out (Ctrl+C in this loop too): the writers are stopped and
            # waited for before the spool whose files they upload is removed
            with contextlib.closing(_bounded_map(one, rest, workers)) as rows:
                for item, row in zip(rest, rows, strict=True):
                    done[item[0]] = row
                    self.progress.advance(writing)
        for index, _run_id, _action, _fresh in plan:
            row = done[index]
            setattr(self.report, row["action"], getattr(self.report, row["action"]) + 1)
            self.report.rows.append(row)

        # last: remove what was replaced (and, with OVERWRITE, everything not shared)
        if self.exact:
            doomed += [
                s["run_id"]
                for s in states
                if s["run_id"] not in keep and s["lifecycle_stage"] == "active"
            ]
            stray_models += [
                mid
                for (src, rid), mids in by_model.items()
                if rid in keep and (src, rid) not in shared_models
                for mid in mids
            ]
        doomed = sorted(set(doomed) - keep)
        active = {s["run_id"] for s in states if s["lifecycle_stage"] == "active"}
        sink.delete_logged_models(sorted(set(stray_models)))
        sink.delete_runs(eid, doomed)
        self.report.removed = len([r for r in doomed if r in active and r not in replaced])
        return self.report

    def _create(self, eid: str, index: int) -> str:
        record = self.spool.load(index)
        key = self.spool.entries[index].key
        return self.sink.create_run(eid, record["run"], source_run_id=key, source=self.source)

    def _count(self, stats: Record) -> None:
        self.report.files += stats["files"]
        self.report.bytes += stats["bytes"]
        self.report.metric_points += stats["metric_points"]
        self.report.unlinked += stats["unlinked"]

    def _write_bulk(
        self,
        eid: str,
        plan: list[tuple[int, str, str, bool]],
        in_bulk: set[int],
        run_ids: dict[str, str],
        model_ids: dict[str, str],
        done: dict[int, dict[str, Any]],
        writing: Any,
    ) -> None:
        """New runs in transactions of at most BULK_RUNS runs or BULK_POINTS metric points;
        a run's record is read from the spool only while its batch is written."""
        batch: list[dict[str, Any]] = []
        points = 0

        def flush() -> None:
            nonlocal batch, points
            if not batch:
                return
            stats = self.sink.write_new_runs(
                eid,
                batch,
                run_ids=run_ids,
                model_ids=model_ids,
                source=self.source,
                exact=self.exact,
            )
            self._count(stats)
            for _ in batch:
                self.progress.advance(writing)
            batch, points = [], 0

        for index, run_id, action, _fresh in plan:
            if index not in in_bulk:
                continue
            entry = self.spool.entries[index]
            if batch and (len(batch) >= BULK_RUNS or points + entry.metric_points > BULK_POINTS):
                flush()
            run = self.spool.load(index)["run"]
            batch.append(
                {
                    "run_id": run_id,
                    "source_run_id": entry.key,
                    "run": run,
                    "files": entry.files,
                    "content_hash": entry.content_hash,
                    "deleted": entry.lifecycle_stage == "deleted",
                }
            )
            points += entry.metric_points
            done[index] = {
                "source_run_id": entry.key,
                "run_id": run_id,
                "run_name": run.get("run_name"),
                "action": action,
            }
        flush()

    def _write_one(
        self,
        index: int,
        run_id: str,
        action: str,
        fresh: bool,
        state: Record | None,
        run_ids: dict[str, str],
        model_ids: dict[str, str],
    ) -> dict[str, Any]:
        """One run through the public API: filled and finished, or (unchanged) reconciled."""
        sink = self.sink
        entry = self.spool.entries[index]
        record = self.spool.load(index)
        if action == "unchanged":
            assert state is not None
            if sink.reconcile_run(state, record["run"], run_ids=run_ids, exact=self.exact):
                action = "updated"
        else:
            stats = sink.fill_run(
                run_id,
                record["run"],
                entry.files,
                run_ids=run_ids,
                model_ids=model_ids,
                fresh=fresh,
                exact=self.exact,
            )
            self._count(stats)
            sink.finish_run(
                run_id,
                content_hash=entry.content_hash,
                deleted=entry.lifecycle_stage == "deleted",
            )
        return {
            "source_run_id": entry.key,
            "run_id": run_id,
            "run_name": record["run"].get("run_name"),
            "action": action,
        }


def _bounded_map(
    fn: Any, items: list[tuple[int, str, str, bool]], workers: int
) -> Generator[dict[str, Any], None, None]:
    """``fn`` over ``items`` on ``workers`` threads, at most 2 x workers in flight, results in
    order; the first failure cancels what has not started and is raised.

    Closing the generator cancels what has not started and waits for what has: a consumer
    that may stop early must close it (``contextlib.closing``), or the threads go on until
    the generator is collected, after the files they read may be gone."""
    from concurrent.futures import Future, ThreadPoolExecutor

    pending: list[Future[dict[str, Any]]] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="arcuate-import") as pool:
        try:
            it = iter(items)
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for f in pending:
                f.cancel()


# -- models -------------------------------------------------------------------------------------
def import_model(
    batches: Iterable[pa.RecordBatch],
    model: str,
    ctx: Context,
    *,
    overwrite: bool = False,
    source: str = "",
) -> StatementResult:
    """Import shared model versions into registered model ``model``.

    Versions keep their numbers when the numbering allows it (placeholders recreate gaps);
    otherwise the mapping is reported (``version_map``) and kept in each version's
    ``arcuate.source_version`` tag. Each version's files become a logged model (or run
    artifacts, for ``runs:/`` sources) of its imported source run.

    Raises:
        ShareDataError: a row is malformed or hostile (nothing has been written).
        BackendError: MLflow failed midway; running the statement again finishes the import.
    """
    started = time.monotonic()
    name = v.check_model_name(model)
    progress = _Progress(ctx.progress)
    with Spool.open("model") as spool, progress.running():
        reading = progress.task("validating shared rows", None)
        spool.ingest(batches, lambda n: progress.advance(reading, n))
        with ctx.model_sink.lock("model", name) as lease:
            imp = _ModelImport(ctx.model_sink, spool, name, overwrite, source, progress)
            report = imp.run()
        helper = spool.helper_peak_rss
    summary: dict[str, Any] = {
        "model": name,
        "versions": len(report.rows),
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "files": report.files,
        "bytes": report.bytes,
        "seconds": round(time.monotonic() - started, 3),
    }
    if lease.waited >= 1:
        summary["waited"] = round(lease.waited, 1)
    if helper:
        summary["helper_peak_rss"] = helper
    moved = {
        r["source_version"]: r["version"]
        for r in report.rows
        if r["source_version"] != r["version"]
    }
    if moved:
        summary["version_map"] = moved
    return StatementResult(
        statement=_describe_target("MODEL", name, overwrite, source),
        action="import_model",
        summary=summary,
        rows=report.rows,
    )


def _version_files_hash(entry: Entry) -> str:
    h = hashlib.sha256()
    for f in sorted(entry.files, key=lambda f: f["path"]):
        h.update(f"{f['path']}\x00{f['size']}\x00{f['sha256']}\n".encode())
    return h.hexdigest()


class _ModelImport(_Import):
    def __init__(
        self, sink: Any, spool: Spool, name: str, overwrite: bool, source: str, progress: _Progress
    ) -> None:
        super().__init__(sink, spool, name, overwrite, source, progress)
        self._experiments: dict[str, str] = {}

    def run(self) -> _Report:
        sink, spool = self.sink, self.spool
        order = sorted(range(len(spool.entries)), key=lambda i: spool.entries[i].version or 0)
        top = spool.load(order[-1])["model_version"] if order else None
        state = sink.prepare_registered_model(
            self.name,
            description=top["model_description"] if top else None,
            tags=top["model_tags"] if top else {},
            exact=self.exact,
        )
        current = state["versions"]
        placeholders = [c["version"] for c in current if c["tags"].get(_PLACEHOLDER)]
        if placeholders:
            sink.delete_versions(self.name, placeholders)
        current = [c for c in current if not c["tags"].get(_PLACEHOLDER)]
        by_source: dict[tuple[str, int], list[Record]] = defaultdict(list)
        for c in current:
            try:
                key = (c["tags"].get(_SOURCE_MODEL, ""), int(c["tags"].get(_SOURCE_VERSION, "")))
            except ValueError:
                continue
            by_source[key].append(c)
        mapping: dict[int, int] = {}
        keep: set[int] = set()
        doomed: list[int] = []
        replaced: set[int] = set()
        writing = self.progress.task(f"importing versions into {self.name}", len(order))
        for index in order:
            entry = spool.entries[index]
            record = spool.load(index)
            mv = record["model_version"]
            number = int(mv["version"])
            candidates = by_source.get((mv["name"], number), [])
            complete = [c for c in candidates if c["tags"].get(_CONTENT_HASH) == entry.content_hash]
            files_hash = _version_files_hash(entry)
            reusable = [
                c
                for c in candidates
                if c not in complete and c["tags"].get("arcuate.files_hash") == files_hash
            ]
            if complete:
                chosen, action = complete[0], "unchanged"
            elif reusable:
                chosen = reusable[0]
                action = "updated" if chosen["tags"].get(_CONTENT_HASH) else "added"
            else:
                chosen, action = None, ("updated" if candidates else "added")
            doomed += [c["version"] for c in candidates if c is not chosen]
            replaced.update(c["version"] for c in candidates if c is not chosen)
            tags = self._version_tags(mv, files_hash)
            if chosen is None:
                target = self._create(entry, record, tags)
            else:
                target = chosen["version"]
                if action != "unchanged":
                    self.sink.update_version(
                        self.name,
                        target,
                        current=chosen,
                        description=mv["description"],
                        tags=tags,
                        stage=mv["stage"],
                        exact=self.exact,
                    )
                    self.sink.finish_version(self.name, target, content_hash=entry.content_hash)
            mapping[number] = target
            keep.add(target)
            setattr(self.report, action, getattr(self.report, action) + 1)
            self.report.rows.append({"source_version": number, "version": target, "action": action})
            self.progress.advance(writing)

        # aliases: the shared ones on their mapped versions; drop those no longer shared
        wanted: dict[str, int] = {}
        for index, entry in enumerate(spool.entries):
            for alias in spool.load(index)["model_version"]["aliases"]:
                wanted[alias] = mapping[int(entry.version or 0)]
        imported = {c["version"] for c in current if c["tags"].get(_SOURCE_VERSION)} | keep
        remove = [
            a
            for a, ver in state["aliases"].items()
            if a not in wanted and (self.exact or ver in imported)
        ]
        changes = {a: ver for a, ver in wanted.items() if state["aliases"].get(a) != ver}
        if changes or remove:
            sink.set_aliases(self.name, changes, remove=remove)

        if self.exact:
            doomed += [c["version"] for c in current if c["version"] not in keep]
        doomed = sorted(set(doomed) - keep)
        sink.delete_versions(self.name, doomed)
        self.report.removed = len([d for d in doomed if d not in replaced])
        return self.report

    def _version_tags(self, mv: dict[str, Any], files_hash: str) -> dict[str, str]:
        tags = {k: val for k, val in mv["tags"].items() if not k.startswith("arcuate.")}
        for k, val in mv["tags"].items():
            if k.startswith("arcuate.") and k not in (
                _SOURCE_MODEL,
                _SOURCE_VERSION,
                _SOURCE,
                _SOURCE_URI,
                _CONTENT_HASH,
                _PLACEHOLDER,
                "arcuate.files_hash",
            ):
                tags[k] = val
        tags[_SOURCE_MODEL] = mv["name"]
        tags[_SOURCE_VERSION] = str(mv["version"])
        tags["arcuate.files_hash"] = files_hash
        if self.source:
            tags[_SOURCE] = self.source
        if mv.get("source"):
            tags[_SOURCE_URI] = mv["source"]
        return tags

    # -- creating one version ----------------------------------------------------------------
    def _experiment_for(self, experiment: dict[str, Any] | None) -> str:
        """Where a source run (or a run-less version's files) is recreated."""
        name = (experiment or {}).get("name") or "Default"
        if name not in self._experiments:
            tags = (experiment or {}).get("tags") or {}
            self._experiments[name] = self.sink.prepare_experiment(name, tags, update_tags=False)
        return self._experiments[name]

    def _source_run(self, record: dict[str, Any], entry: Entry) -> Record | None:
        """The imported source run of a version: found by provenance, else imported now."""
        run = record.get("run")
        mv = record["model_version"]
        src_run_id = (run or {}).get("run_id") or mv.get("run_id")
        if not src_run_id:
            return None
        found = self.sink.find_run(src_run_id)
        if found is not None:
            return found  # type: ignore[no-any-return]
        if run is None:
            return None
        eid = self._experiment_for(record.get("experiment"))
        # the run's own files are not in a model table: only the version's model rides along
        slim = dict(run)
        slim["logged_models"] = [
            m for m in run["logged_models"] if m["model_id"] == mv.get("model_id")
        ]
        run_id = self.sink.create_run(eid, slim, source_run_id=src_run_id, source=self.source)
        model_ids: dict[str, str] = {}
        files: list[dict[str, Any]] = []
        for lm in slim["logged_models"]:
            model_ids[lm["model_id"]] = self.sink.create_logged_model(eid, run_id, lm)
            owner = OWNER_LOGGED_MODEL_PREFIX + lm["model_id"]
            files += [dict(f, owner=owner) for f in entry.files if f["owner"] == OWNER_MODEL]
        stats = self.sink.fill_run(
            run_id, slim, files, run_ids={}, model_ids=model_ids, fresh=True, exact=False
        )
        self.report.files += stats["files"]
        self.report.bytes += stats["bytes"]
        body = json.dumps({"model-table-run": slim}, sort_keys=True, default=str)
        self.sink.finish_run(run_id, content_hash=hashlib.sha256(body.encode()).hexdigest())
        return {
            "run_id": run_id,
            "experiment_id": eid,
            "artifact_uri": self.sink.run_artifact_uri(run_id),
            "content_hash": None,
        }

    def _create(self, entry: Entry, record: dict[str, Any], tags: dict[str, str]) -> int:
        mv = record["model_version"]
        sink = self.sink
        run = self._source_run(record, entry)
        source, model_id, link = self._place_files(entry, record, run)
        number: int = sink.create_version(
            self.name,
            want=int(mv["version"]),
            source=source,
            run_id=run["run_id"] if run else None,
            model_id=model_id,
            tags=tags,
            description=mv["description"],
            run_link=mv.get("run_link"),
        )
        if mv["stage"] != "None":
            sink.update_version(
                self.name,
                number,
                current={"description": mv["description"], "tags": tags, "stage": "None"},
                description=mv["description"],
                tags=tags,
                stage=mv["stage"],
                exact=False,
            )
        if link is not None:
            sink.link_logged_model(link, self.name, number)
        sink.finish_version(self.name, number, content_hash=entry.content_hash)
        return number

    def _place_files(
        self, entry: Entry, record: dict[str, Any], run: Record | None
    ) -> tuple[str, str | None, str | None]:
        """Put a version's files where MLflow can serve them; (source, model_id, model to link).

        * a logged model (``models:/m-...``, or ``runs:/<run>/<name>`` naming one): that logged
          model of the imported run, files byte for byte;
        * ``runs:/<run>/<path>`` otherwise, or a path inside the source run's artifacts: the
          imported run's artifacts at the same path;
        * anything else (a path or bucket the recipient cannot reach): a logged model.
        """
        mv = record["model_version"]
        src = mv.get("source") or ""
        src_run = (record.get("run") or {}).get("run_id") or mv.get("run_id")
        logged = {m["model_id"]: m for m in (record.get("run") or {}).get("logged_models") or ()}
        runs_prefix = f"runs:/{src_run}/"
        runs_path = (
            src[len(runs_prefix) :].strip("/") if src_run and src.startswith(runs_prefix) else None
        )
        src_mid = mv.get("model_id")
        if src_mid is None and runs_path and run is not None:
            src_mid = next((m["model_id"] for m in logged.values() if m["name"] == runs_path), None)
        files = list(entry.files)
        run_id = run["run_id"] if run else None
        if src_mid is not None:
            lm = logged.get(src_mid) or _bare_model(src_mid)
            eid = run["experiment_id"] if run else self._experiment_for(record.get("experiment"))
            mid, stats = self.sink.ensure_logged_model(eid, run_id, lm, files)
            self._count(stats)
            tags = lm.get("tags") or {}
            link = mid if (_MODEL_VERSIONS_TAG in tags or _SOURCE_MODEL_VERSIONS in tags) else None
            if mv.get("model_id") or run is None:
                return f"models:/{mid}", mid, link
            return f"runs:/{run_id}/{runs_path}", None, link
        if run is not None and runs_path:
            self._count(self.sink.upload_run_files(run["run_id"], files, runs_path))
            return f"runs:/{run_id}/{runs_path}", None, None
        marker = f"/{src_run}/artifacts/" if src_run else None
        if run is not None and marker and marker in src:
            rel = src.split(marker, 1)[1].strip("/")
            if rel and all(p not in ("", ".", "..") for p in rel.split("/")):
                self._count(self.sink.upload_run_files(run["run_id"], files, rel))
                return f"{run['artifact_uri'].rstrip('/')}/{rel}", None, None
        # a location the recipient cannot reach: the files become a logged model
        eid = run["experiment_id"] if run else self._experiment_for(record.get("experiment"))
        lm = _bare_model(f"v{mv['version']}-{entry.content_hash[:16]}")
        mid, stats = self.sink.ensure_logged_model(eid, run_id, lm, files)
        self._count(stats)
        return f"models:/{mid}", mid, None

    def _lookup_model(self, eid: str, run_id: str | None, src_mid: str) -> str | None:
        for lm in self.sink.list_logged_models(eid):
            if lm["source_model_id"] == src_mid and lm["run_id"] == run_id:
                return str(lm["model_id"])
        return None

    def _count(self, stats: Record) -> None:
        self.report.files += int(stats.get("files", 0))
        self.report.bytes += int(stats.get("bytes", 0))


def _bare_model(model_id: str) -> dict[str, Any]:
    """A logged-model record for files that came without one."""
    return {
        "model_id": model_id,
        "name": "model",
        "model_type": None,
        "status": "READY",
        "status_message": None,
        "creation_time": None,
        "step": None,
        "tags": {},
        "params": {},
    }


# -- describe -----------------------------------------------------------------------------------
def _mlmodel_info(text: str) -> tuple[list[str], dict[str, str]]:
    """Flavors and their versions from an MLmodel file, read as data (YAML, safe loader)."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return [], {}
    if not isinstance(doc, dict) or not isinstance(doc.get("flavors"), dict):
        return [], {}
    flavors = [str(k) for k in doc["flavors"]]
    versions: dict[str, str] = {}
    for name, conf in doc["flavors"].items():
        if isinstance(conf, dict):
            for key, val in conf.items():
                if str(key).endswith("_version") and isinstance(val, (str, int, float)):
                    versions[f"{name}.{key}"] = str(val)
    return flavors, versions


def _requirements(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(line)
    return out


def describe_shared(batches: Iterable[pa.RecordBatch], source: str) -> StatementResult:
    """What a shared table holds, without writing anything to MLflow.

    Reads every row once: kind, runs or versions, metric points, files and bytes, and for each
    model its flavors and Python requirements, read from ``MLmodel`` / ``requirements.txt`` as
    text (nothing is loaded or executed). Validation problems are reported, not raised.
    """
    started = time.monotonic()
    problem: str | None = None
    content: Content | None = None
    rows: list[dict[str, Any]] = []
    counts = {"rows": 0, "records": 0, "chunks": 0, "metric_points": 0, "files": 0, "bytes": 0}
    flavors: set[str] = set()
    requirements: set[str] = set()
    for batch in batches:
        try:
            v.check_columns(batch.schema.names, counts["rows"])
            pylist = batch.to_pylist()
        except (ShareDataError, pa.ArrowException, ValueError, OverflowError) as exc:
            problem = problem or str(exc)
            counts["rows"] += batch.num_rows
            continue
        for j, raw in enumerate(pylist):
            i = counts["rows"] + j
            kind = raw.get("kind")
            if content is None and kind in (RUN, MODEL_VERSION):
                content = "experiment" if kind == RUN else "model"
            try:
                item = v.parse_row(raw, i, content or "experiment")
            except ShareDataError as exc:
                problem = problem or str(exc)
                continue
            if isinstance(item, v.SharedChunk):
                counts["chunks"] += 1
                continue
            counts["records"] += 1
            counts["files"] += len(item.files)
            counts["bytes"] += sum(f.size for f in item.files)
            points = len((item.run or {}).get("metrics") or ())
            counts["metric_points"] += points
            found_flavors: list[str] = []
            found_versions: dict[str, str] = {}
            reqs: list[str] = []
            for f in item.files:
                if f.data is None or f.size > _MAX_MLMODEL_BYTES:
                    continue
                base = f.path.rsplit("/", 1)[-1]
                if base == "MLmodel":
                    fl, vers = _mlmodel_info(f.data.decode("utf-8", "replace"))
                    found_flavors += [x for x in fl if x not in found_flavors]
                    found_versions.update(vers)
                elif base == "requirements.txt":
                    reqs += [
                        r for r in _requirements(f.data.decode("utf-8", "replace")) if r not in reqs
                    ]
            flavors.update(found_flavors)
            requirements.update(reqs)
            detail: dict[str, Any] = {"kind": item.kind, "key": item.key}
            if item.kind == RUN and item.run is not None:
                detail.update(
                    name=item.run["run_name"],
                    status=item.run["status"],
                    params=len(item.run["params"]),
                    metric_points=points,
                    logged_models=len(item.run["logged_models"]),
                )
            elif item.model_version is not None:
                mv = item.model_version
                detail.update(
                    name=mv["name"],
                    version=mv["version"],
                    stage=mv["stage"],
                    aliases=",".join(mv["aliases"]),
                    source=mv["source"],
                )
            detail.update(
                files=len(item.files),
                bytes=sum(f.size for f in item.files),
                flavors=",".join(found_flavors),
                requirements="; ".join(reqs),
            )
            rows.append(detail)
        counts["rows"] += batch.num_rows
    summary: dict[str, Any] = {
        "source": source,
        "kind": content or "empty",
        ("runs" if content != "model" else "versions"): counts["records"],
        "metric_points": counts["metric_points"],
        "files": counts["files"],
        "bytes": counts["bytes"],
        "chunk_rows": counts["chunks"],
        "flavors": ", ".join(sorted(flavors)),
        "requirements": "; ".join(sorted(requirements)),
        "valid": problem is None,
        "seconds": round(time.monotonic() - started, 3),
    }
    if problem is not None:
        summary["problem"] = problem
    return StatementResult(
        statement=f"DESCRIBE '{source}'", action="describe_shared", summary=summary, rows=rows
    )
