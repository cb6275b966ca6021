"""Import operators: shared runs or model versions into MLflow, validated first, re-runnable.

An import is a stream over record batches, in two passes:

1. **Validate and spool.** Every row is validated (:mod:`arcuate.format.validate`) and written
   to a temporary directory: record metadata as JSON, inline files and chunk rows as files on
   disk. Chunked files are reassembled and checked once all rows are read. Memory holds one
   batch and a small index, never the table. A bad row raises before anything is written.
2. **Write.** Records are matched to what the target already holds by provenance (the
   ``arcuate.source_run_id`` / ``arcuate.source_version`` tags, within the same provider,
   share and table: ``arcuate.origin``, :mod:`arcuate.engine.provenance`) and their content
   hash: unchanged ones are checked (missing or altered files written again) and skipped,
   changed ones updated in place (or rebuilt when MLflow cannot change them in place), new
   ones added. Only a run's owner (``arcuate.owner``) writes to it. The content hash is written
   last, so an interrupted import leaves records marked incomplete, and running it again
   finishes them without duplicates. Old runs/versions (replaced ones; with ``overwrite``,
   everything not shared) are deleted only after all new ones are in place, except runs a
   model version uses. This pass holds the target's import
   lease (``ModelSink.lock``): two imports of one target never write at the same time.

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
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from arcuate.backends.protocols import Record
from arcuate.engine import provenance as prov
from arcuate.engine.result import StatementResult
from arcuate.errors import ConflictError, ShareDataError
from arcuate.format import validate as v
from arcuate.format.columns import (
    batch_metrics,
    check_list_bounds,
    chunk_data,
    without_metrics,
)
from arcuate.format.schema import (
    MODEL_VERSION,
    OWNER_LOGGED_MODEL_PREFIX,
    OWNER_MODEL,
    RUN,
    Content,
)
from arcuate.syntax.unparse import name as sql_name
from arcuate.syntax.unparse import string as sql_string

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
        owner: str | None = ...,
    ) -> str: ...
    def experiment_state(self, name: str) -> Record | None: ...
    def list_runs(self, experiment_id: str) -> list[Record]: ...
    def list_logged_models(self, experiment_id: str) -> list[Record]: ...
    def find_runs(self, source_run_id: str) -> list[Record]: ...
    def run_state(self, run_id: str) -> Record | None: ...
    def run_artifact_uri(self, run_id: str) -> str: ...
    def create_run(
        self,
        experiment_id: str,
        run: Record,
        *,
        source_run_id: str,
        source: str,
        provenance: dict[str, str] | None = ...,
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
    def finish_run(
        self,
        run_id: str,
        *,
        content_hash: str,
        deleted: bool = ...,
        provenance: dict[str, str] | None = ...,
    ) -> None: ...
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
        provenance: dict[str, str] | None = ...,
    ) -> Record: ...
    def write_concurrency(self) -> int: ...
    def remove_orphan_files(self, experiment_id: str) -> int: ...
    def reconcile_run(
        self, state: Record, run: Record, *, run_ids: dict[str, str], exact: bool
    ) -> bool: ...
    def delete_runs(self, experiment_id: str, run_ids: list[str]) -> None: ...
    def delete_logged_models(self, model_ids: list[str]) -> None: ...
    def versions_using(
        self, run_ids: Sequence[str], model_ids: Sequence[str] = ...
    ) -> dict[str, list[str]]: ...
    def upload_run_files(
        self,
        run_id: str,
        files: list[Record],
        prefix: str,
        *,
        prune: bool = ...,
        deep: bool | None = ...,
    ) -> Record: ...
    def same_files(self, uri: str, files: list[Record], prefix: str = ...) -> bool: ...
    def repair_run_files(
        self, artifact_uri: str, files: list[Record], models: dict[str, str]
    ) -> Record: ...
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
#: arcuate's own version tags: the same keys arriving from a share are replaced
_VERSION_MANAGED = frozenset(
    {
        _SOURCE_MODEL,
        _SOURCE_VERSION,
        _SOURCE,
        _SOURCE_URI,
        _CONTENT_HASH,
        _PLACEHOLDER,
        "arcuate.files_hash",
        prov.ORIGIN,
        prov.OWNER,
    }
)


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
        self._check_marker(batches)
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

    def _check_marker(self, batches: Iterable[pa.RecordBatch]) -> None:
        """A shared table is read only as what its marker says it holds (its rows are then
        checked to be of that kind): a model table cannot become an experiment."""
        marked = getattr(batches, "content", None)
        if marked is None or marked == self.content:
            return
        article = "an experiment" if marked == "experiment" else "a model"
        verb = "CREATE EXPERIMENT" if marked == "experiment" else "CREATE MODEL"
        wanted = "an experiment" if self.content == "experiment" else "a model"
        raise ShareDataError(
            f"the shared table is marked as {article} table in its description, not "
            f"{wanted} table; import it with {verb}",
            field="kind",
        )

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
        when they pass (:mod:`arcuate.format.columns`), else left for row-by-row checks.
        Every list's length is checked first, on Arrow's lengths."""
        check_list_bounds(batch, first)
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
        """Join chunked files (checking order, offsets, sizes, SHA-256); reject stray chunks.
        The version numbers of a model table must leave few gaps (each is a placeholder)."""
        if self.content == "model":
            v.check_version_numbers((e.row, int(e.version or 0)) for e in self.entries)
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
    #: runs OVERWRITE did not delete because a model version uses them
    kept: int = 0
    #: versions whose files another import owns and the share changed (left as they are)
    stale: int = 0
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
    origin: str | None = None,
) -> StatementResult:
    """Import shared runs into ``experiment``: validated first, re-runnable, exact on OVERWRITE.

    Args:
        batches: record batches of an experiment table (any order of rows).
        experiment: the target experiment name (created if missing).
        ctx: the engine context; its ``model_sink`` is written to.
        overwrite: make the experiment hold exactly the shared runs (old ones deleted last;
            runs a model version uses are kept).
        source: the share coordinate, recorded in each run's ``arcuate.source`` tag.
        origin: the ``arcuate.origin`` tag when the caller resolved it already (a Spark task
            cannot read the driver's profile file); by default read from ``source``.

    Returns:
        A result whose summary counts added/updated/unchanged/removed/kept runs, files, bytes,
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
        found = prov.origin_of(source) if origin is None else prov.Origin(source, origin)
        # one import per target at a time: a second one waits, then finds the runs in place
        with ctx.model_sink.lock("experiment", name, restore=overwrite) as lease:
            imp = _ExperimentImport(
                ctx.model_sink, spool, name, overwrite, source, progress, found
            )
            report = imp.run()
        spool_bytes = spool.bytes
        helper = spool.helper_peak_rss
    summary: dict[str, Any] = {
        "experiment": name,
        "runs": len([r for r in report.rows if r["action"] != "kept"]),
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "kept": report.kept,
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
        self,
        sink: Any,
        spool: Spool,
        name: str,
        overwrite: bool,
        source: str,
        progress: _Progress,
        origin: prov.Origin | None = None,
    ) -> None:
        self.sink: ModelSink = sink
        self.spool = spool
        self.name = name
        self.exact = overwrite
        self.source = source
        self.progress = progress
        self.report = _Report()
        self.origin = origin if origin is not None else prov.origin_of(source)


class _ExperimentImport(_Import):
    #: artifact locations of the experiment's logged models (model id -> location)
    _locations: dict[str, str]

    def run(self) -> _Report:
        sink, spool = self.sink, self.spool
        self._locations = {}
        tags = (spool.experiment or {}).get("tags") or {}
        eid = sink.prepare_experiment(self.name, tags, exact=self.exact, restore=self.exact)
        sink.remove_orphan_files(eid)  # of an import of it that was killed midway
        states = sink.list_runs(eid)
        by_source: dict[str, list[Record]] = defaultdict(list)
        for s in states:
            # only runs this table imported are matched: never another share's or a model
            # import's run that happens to carry the same source run id
            if s["source_run_id"] and self._owns(s["tags"]):
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
                self._locations[found_lm["model_id"]] = found_lm["artifact_location"]
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

        # last: remove what was replaced (and, with OVERWRITE, everything not shared), except
        # what a model version uses
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
        doomed, stray_models, kept = keep_used(sink, doomed, sorted(set(stray_models)), states)
        active = {s["run_id"] for s in states if s["lifecycle_stage"] == "active"}
        sink.delete_logged_models(stray_models)
        sink.delete_runs(eid, doomed)
        self.report.removed = len([r for r in doomed if r in active and r not in replaced])
        self.report.kept = len(kept)
        self.report.rows += kept
        return self.report

    def _owns(self, tags: dict[str, str]) -> bool:
        """Whether a run here was imported from this table by an experiment import."""
        owner = tags.get(prov.OWNER, prov.EXPERIMENT_OWNER)
        return owner == prov.EXPERIMENT_OWNER and self.origin.matches(tags)

    @property
    def _provenance(self) -> dict[str, str]:
        return self.origin.tags(prov.EXPERIMENT_OWNER)

    def _create(self, eid: str, index: int) -> str:
        record = self.spool.load(index)
        key = self.spool.entries[index].key
        return self.sink.create_run(
            eid, record["run"], source_run_id=key, source=self.source, provenance=self._provenance
        )

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
                provenance=self._provenance,
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
            if state["lifecycle_stage"] == "active" and self._repair(state, entry, model_ids):
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
                provenance=self._provenance,
            )
        return {
            "source_run_id": entry.key,
            "run_id": run_id,
            "run_name": record["run"].get("run_name"),
            "action": action,
        }


    def _repair(self, state: Record, entry: Entry, model_ids: dict[str, str]) -> bool:
        """Write again the files of an unchanged run that are missing here or altered (the
        content hash says what was shared, not what the store still holds); whether any was."""
        models = {
            OWNER_LOGGED_MODEL_PREFIX + src: self._locations[model_ids[src]]
            for src in entry.models
            if model_ids.get(src) in self._locations
        }
        stats = self.sink.repair_run_files(state["artifact_uri"], entry.files, models)
        self.report.files += int(stats["files"])
        self.report.bytes += int(stats["bytes"])
        return bool(stats["files"])


def keep_used(
    sink: ModelSink, doomed: list[str], stray_models: list[str], states: list[Record]
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Runs and logged models an import is about to delete, less those a model version (of
    any registered model) uses: (runs to delete, models to delete, detail rows of kept runs).

    Deleting them would leave the version pointing at a deleted run or at no files.
    """
    if not doomed and not stray_models:
        return doomed, stray_models, []
    used = sink.versions_using(doomed, stray_models)
    state_of = {s["run_id"]: s for s in states}
    kept: list[dict[str, Any]] = []
    for run_id in doomed:
        state = state_of.get(run_id)
        if run_id not in used or state is None or state["lifecycle_stage"] != "active":
            continue
        versions = used[run_id]
        which = "model version" if len(versions) == 1 else "model versions"
        verb = "uses" if len(versions) == 1 else "use"
        kept.append(
            {
                "source_run_id": state["source_run_id"],
                "run_id": run_id,
                "run_name": state["tags"].get("mlflow.runName"),
                "action": "kept",
                "reason": f"{which} {', '.join(versions)} {verb} it",
            }
        )
    spared = {row["run_id"] for row in kept}
    return (
        [r for r in doomed if r not in spared],
        [m for m in stray_models if m not in used],
        kept,
    )


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
    if report.stale:
        summary["stale"] = report.stale
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


@dataclass
class _RunHere:
    """A run here that a version links to: the model import's own copy (``owned``: it may
    write to it), or a run an experiment import owns (read only)."""

    run_id: str
    experiment_id: str
    artifact_uri: str
    owned: bool
    experiment_name: str = ""
    source: str = ""


@dataclass
class _Location:
    """Where in a run a version's files belong, worked out from the shared record.

    ``kind``: ``logged_model`` (a logged model of the run), ``run_path`` (the run's artifacts
    under ``path``) or ``bare`` (a location the recipient cannot reach: a logged model of the
    model import's own). ``style``: how the version's source reads (``models:/<id>``,
    ``runs:/<run>/<path>``, or the run's artifact URI and the path).
    """

    kind: str
    model: dict[str, Any] | None
    path: str
    style: str


@dataclass
class _Placed:
    """A version's files in place: its source here, its logged model, the model to link."""

    source: str
    model_id: str | None
    link: str | None
    written: int = 0


#: a version whose run here is gone (deleted): it cannot be kept
_GONE = _RunHere("", "", "", owned=False)


class _ModelImport(_Import):
    """Versions of one registered model, and the runs and files they need.

    A version links to its imported source run: a run an experiment import brought from the
    same provider and share holding the very same files (read, never written), else the model
    import's own copy in experiment ``models/<name>`` (see docs/recipient.md).
    """

    def __init__(
        self,
        sink: Any,
        spool: Spool,
        name: str,
        overwrite: bool,
        source: str,
        progress: _Progress,
        origin: prov.Origin | None = None,
    ) -> None:
        super().__init__(sink, spool, name, overwrite, source, progress, origin)
        self.owner = prov.model_owner(name)
        self.experiment = prov.model_experiment(name)
        self._eid: str | None = None
        self._own: dict[str, list[Record]] | None = None
        self._foreign: dict[str, list[_RunHere]] = {}
        self._models: dict[str, list[Record]] = {}

    def run(self) -> _Report:
        sink, spool = self.sink, self.spool
        self._check_experiment()
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
            if not self.origin.matches(c["tags"]):
                continue  # another table's version: never matched, only OVERWRITE removes it
            try:
                key = (c["tags"].get(_SOURCE_MODEL, ""), int(c["tags"].get(_SOURCE_VERSION, "")))
            except ValueError:
                continue
            by_source[key].append(c)
        mapping: dict[int, int] = {}
        keep: set[int] = set()
        doomed: list[int] = []
        writing = self.progress.task(f"importing versions into {self.name}", len(order))
        for index in order:
            entry = spool.entries[index]
            record = spool.load(index)
            number = int(record["model_version"]["version"])
            candidates = by_source.get((record["model_version"]["name"], number), [])
            target, action, reason, dropped = self._version(entry, record, candidates)
            doomed += dropped
            mapping[number] = target
            keep.add(target)
            setattr(self.report, action, getattr(self.report, action) + 1)
            row: dict[str, Any] = {"source_version": number, "version": target, "action": action}
            if reason:
                row["reason"] = reason
            self.report.rows.append(row)
            self.progress.advance(writing)
        replaced = set(doomed)

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

    def _check_experiment(self) -> None:
        """Refuse, before anything is written, an experiment ``models/<name>`` that arcuate
        did not create for this model (the runs it recreates would be mixed into it), or
        that was deleted (only OVERWRITE restores it)."""
        state = self.sink.experiment_state(self.experiment)
        if state is None:
            return
        if state["tags"].get(prov.OWNER) != self.owner:
            raise ConflictError(
                f"experiment {self.experiment!r} exists and was not created by arcuate for "
                f"model {self.name!r}; a model import keeps the runs it recreates there",
                hint="rename that experiment, or import the model under another name",
            )
        if state["lifecycle_stage"] == "deleted" and not self.exact:
            raise ConflictError(
                f"experiment {self.experiment!r}, where the runs of model {self.name!r} are "
                "kept, is deleted (MLflow keeps its name)",
                hint=f"CREATE MODEL OVERWRITE {sql_name(self.name)} ... restores it, or restore "
                f"it with `mlflow experiments restore --experiment-id {state['experiment_id']}`",
            )

    # -- one version ----------------------------------------------------------------------
    def _version(
        self, entry: Entry, record: dict[str, Any], candidates: list[Record]
    ) -> tuple[int, str, str | None, list[int]]:
        """Import one shared version: (version here, action, reason, versions it replaces).

        A version here with the same source (the provider's model or run path) keeps its
        number: its files are updated where they are, when this import owns them.
        """
        mv = record["model_version"]
        files_hash = _version_files_hash(entry)
        tags = self._version_tags(mv, files_hash)
        complete = [c for c in candidates if c["tags"].get(_CONTENT_HASH) == entry.content_hash]
        same = [
            c
            for c in candidates
            if c not in complete and (c["tags"].get(_SOURCE_URI) or "") == (mv.get("source") or "")
        ]
        chosen: Record | None = next(iter(complete or same), None)
        dropped = [c["version"] for c in candidates if c is not chosen]
        if chosen is not None:
            kept = self._keep(chosen, entry, record, tags, complete=chosen in complete)
            if kept is not None:
                return chosen["version"], kept[0], kept[1], dropped
            dropped.append(chosen["version"])
        target = self._create(entry, record, tags)
        return target, ("updated" if candidates else "added"), None, dropped

    def _keep(
        self,
        chosen: Record,
        entry: Entry,
        record: dict[str, Any],
        tags: dict[str, str],
        *,
        complete: bool,
    ) -> tuple[str, str | None] | None:
        """Bring an existing version up to date in place: (action, reason), or None when it
        cannot be kept (its run is gone, or its files must move)."""
        run = self._version_run(chosen)
        if run is _GONE:
            return None
        if complete and run is not None and not run.owned:
            return "unchanged", None  # the run's owner keeps those files right
        placed = self._place(entry, record, run, check=complete)
        if placed is None and run is not None and not self.exact:
            return "stale", self._stale_reason(run)
        if placed is None or placed.source != chosen["source"]:
            return None
        if complete and not placed.written:
            return "unchanged", None
        mv = record["model_version"]
        number = int(chosen["version"])
        self.sink.update_version(
            self.name,
            number,
            current=chosen,
            description=mv["description"],
            tags=tags,
            stage=mv["stage"],
            exact=self.exact,
        )
        if placed.link is not None:
            self.sink.link_logged_model(placed.link, self.name, number)
        self.sink.finish_version(self.name, number, content_hash=entry.content_hash)
        return ("updated" if chosen["tags"].get(_CONTENT_HASH) else "added"), None

    def _stale_reason(self, run: _RunHere) -> str:
        again = f"CREATE EXPERIMENT {sql_name(run.experiment_name)}"
        if run.source:
            again += f" AS {sql_string(run.source)}"
        return (
            f"its files are in run {run.run_id} of experiment {run.experiment_name!r}, which "
            f"an experiment import owns, and the share changed them: run {again} again, then "
            "this statement (or CREATE MODEL OVERWRITE, which gives the version its own copy "
            "under a new number)"
        )

    def _create(self, entry: Entry, record: dict[str, Any], tags: dict[str, str]) -> int:
        mv = record["model_version"]
        sink = self.sink
        run, placed = self._source_run(entry, record)
        if placed is None:
            placed = self._place(entry, record, run)
        assert placed is not None  # a run of its own (or none) always takes the files
        number: int = sink.create_version(
            self.name,
            want=int(mv["version"]),
            source=placed.source,
            run_id=run.run_id if run else None,
            model_id=placed.model_id,
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
        if placed.link is not None:
            sink.link_logged_model(placed.link, self.name, number)
        sink.finish_version(self.name, number, content_hash=entry.content_hash)
        return number

    def _version_tags(self, mv: dict[str, Any], files_hash: str) -> dict[str, str]:
        # arcuate's own tags from the share (a re-shared import) are replaced by this hop's
        tags = {k: val for k, val in mv["tags"].items() if not k.startswith("arcuate.")}
        for k, val in mv["tags"].items():
            if k.startswith("arcuate.") and k not in _VERSION_MANAGED:
                tags[k] = val
        tags[_SOURCE_MODEL] = mv["name"]
        tags[_SOURCE_VERSION] = str(mv["version"])
        tags["arcuate.files_hash"] = files_hash
        if self.source:
            tags[_SOURCE] = self.source
        if self.origin.tag:
            tags[prov.ORIGIN] = self.origin.tag
        if mv.get("source"):
            tags[_SOURCE_URI] = mv["source"]
        return tags

    # -- the run a version links to ---------------------------------------------------------
    def _version_run(self, chosen: Record) -> _RunHere | None:
        """The run an existing version links to (None: it has none; ``_GONE``: deleted)."""
        if not chosen.get("run_id"):
            return None
        state = self.sink.run_state(chosen["run_id"])
        if state is None or state["lifecycle_stage"] != "active":
            return _GONE
        return _RunHere(
            state["run_id"],
            str(state["experiment_id"]),
            state["artifact_uri"],
            owned=self._owns(state["tags"]),
            experiment_name=state.get("experiment_name") or "",
            source=state["tags"].get(_SOURCE, ""),
        )

    def _owns(self, tags: dict[str, str]) -> bool:
        return tags.get(prov.OWNER) == self.owner and self.origin.matches(tags)

    def _source_run(
        self, entry: Entry, record: dict[str, Any]
    ) -> tuple[_RunHere | None, _Placed | None]:
        """The run a new version links to, and its files when they are in place already.

        A run an experiment import brought from the same provider and share is linked when
        it holds exactly the version's files (they are not written); otherwise the model
        import's own copy of the run is used, created if need be.
        """
        run = record.get("run")
        src = (run or {}).get("run_id") or record["model_version"].get("run_id")
        if not src:
            return None, None
        for candidate in self._foreign_runs(src):
            placed = self._place(entry, record, candidate)
            if placed is not None:
                return candidate, placed
        return self._own_run(src, record, entry), None

    def _foreign_runs(self, src: str) -> list[_RunHere]:
        """Complete runs of ``src`` that an experiment import brought from this very provider
        and share (none when the provider is unknown)."""
        if not self.origin.family:
            return []
        if src not in self._foreign:
            found = [
                r
                for r in self.sink.find_runs(src)
                if r["content_hash"]
                and r["lifecycle_stage"] == "active"
                and r["tags"].get(prov.OWNER) == prov.EXPERIMENT_OWNER
                and self.origin.same_share(r["tags"])
            ]
            # the oldest experiment first (ids are numbers in SQL stores), then by run id
            found.sort(key=lambda r: (len(r["experiment_id"]), r["experiment_id"], r["run_id"]))
            self._foreign[src] = [
                _RunHere(r["run_id"], str(r["experiment_id"]), r["artifact_uri"], owned=False)
                for r in found
            ]
        return self._foreign[src]

    def _experiment(self) -> str:
        """The id of ``models/<name>``, created (tagged as this model's) when first needed."""
        if self._eid is None:
            self._eid = self.sink.prepare_experiment(
                self.experiment, {}, update_tags=False, restore=self.exact, owner=self.owner
            )
        return self._eid

    def _own_runs(self) -> dict[str, list[Record]]:
        """This import's copies of source runs, by source run id (complete ones first)."""
        if self._own is None:
            self._own = defaultdict(list)
            if self.sink.experiment_state(self.experiment) is not None:
                eid = self._experiment()
                for s in self.sink.list_runs(eid):
                    if s["lifecycle_stage"] == "active" and self._owns(s["tags"]):
                        self._own[s["source_run_id"]].append(dict(s, experiment_id=eid))
                for states in self._own.values():
                    states.sort(key=lambda s: not s["content_hash"])
        return self._own

    def _own_run(self, src: str, record: dict[str, Any], entry: Entry) -> _RunHere | None:
        """The model import's own copy of source run ``src``: its metadata and the version's
        logged model (the run's other artifacts are not in a model table)."""
        run = record.get("run")
        found = self._own_runs().get(src, [])
        if run is None:  # the table has no record of the run: only an earlier copy can serve
            return self._here(found[0]) if found else None
        digest = _run_digest(run)
        if found and found[0]["content_hash"] == digest:
            return self._here(found[0])
        eid = self._experiment()
        mv = record["model_version"]
        slim = dict(run)
        slim["logged_models"] = [
            m for m in run["logged_models"] if m["model_id"] == mv.get("model_id")
        ]
        fresh = not found
        if fresh:
            run_id = self.sink.create_run(
                eid,
                slim,
                source_run_id=src,
                source=self.source,
                provenance=self.origin.tags(self.owner),
            )
        else:
            run_id = found[0]["run_id"]
        model_ids: dict[str, str] = {}
        files: list[dict[str, Any]] = []
        for lm in slim["logged_models"]:
            existing = None if fresh else self._lookup_model(eid, run_id, lm["model_id"])
            model_ids[lm["model_id"]] = existing or self.sink.create_logged_model(eid, run_id, lm)
            owner = OWNER_LOGGED_MODEL_PREFIX + lm["model_id"]
            files += [dict(f, owner=owner) for f in entry.files if f["owner"] == OWNER_MODEL]
        stats = self.sink.fill_run(
            run_id, slim, files, run_ids={}, model_ids=model_ids, fresh=fresh, exact=False
        )
        self._count(stats)
        self.sink.finish_run(run_id, content_hash=digest, provenance=self.origin.tags(self.owner))
        state = {
            "run_id": run_id,
            "experiment_id": eid,
            "artifact_uri": self.sink.run_artifact_uri(run_id),
            "content_hash": digest,
        }
        self._own_runs()[src] = [state]
        return self._here(state)

    @staticmethod
    def _here(state: Record) -> _RunHere:
        return _RunHere(
            state["run_id"], str(state["experiment_id"]), state["artifact_uri"], owned=True
        )

    # -- a version's files ------------------------------------------------------------------
    def _place(
        self, entry: Entry, record: dict[str, Any], run: _RunHere | None, *, check: bool = False
    ) -> _Placed | None:
        """Put a version's files where MLflow can serve them (see docs/recipient.md, "Where
        things go"). In a run another import owns nothing is written: the files must be
        there already (else None). ``check``: the version is complete, so the files are only
        checked (their bytes read where they are local) and repaired if need be."""
        loc = self._locate(record, run)
        deep = None if check else True
        if run is None or run.owned:
            return self._write(loc, entry, run, deep=deep)
        if loc.kind == "bare":  # files the run never held: a logged model of this import's
            return self._write(loc, entry, None, deep=deep)
        return self._find_in(loc, entry, run)

    def _locate(self, record: dict[str, Any], run: _RunHere | None) -> _Location:
        mv = record["model_version"]
        src = mv.get("source") or ""
        src_run = (record.get("run") or {}).get("run_id") or mv.get("run_id")
        logged = {m["model_id"]: m for m in (record.get("run") or {}).get("logged_models") or ()}
        runs_prefix = f"runs:/{src_run}/"
        runs_path = (
            src[len(runs_prefix) :].strip("/") if src_run and src.startswith(runs_prefix) else ""
        )
        src_mid = mv.get("model_id")
        if src_mid is None and runs_path and run is not None:
            src_mid = next((m["model_id"] for m in logged.values() if m["name"] == runs_path), None)
        if src_mid is not None:
            style = "models" if (mv.get("model_id") or run is None) else "runs"
            model = logged.get(src_mid) or _bare_model(src_mid)
            return _Location("logged_model", model, runs_path, style)
        if run is not None and runs_path:
            return _Location("run_path", None, runs_path, "runs")
        marker = f"/{src_run}/artifacts/" if src_run else None
        if run is not None and marker and marker in src:
            rel = src.split(marker, 1)[1].strip("/")
            if rel and all(p not in ("", ".", "..") for p in rel.split("/")):
                return _Location("run_path", None, rel, "artifact_uri")
        # a location the recipient cannot reach: the files become a logged model, whose id
        # stays the same when the files change (so the version keeps its number)
        key = f"{self.origin.tag}\x00{mv['name']}\x00{mv['version']}"
        bare = f"v{mv['version']}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        return _Location("bare", _bare_model(bare), "", "models")

    def _source_of(self, loc: _Location, run: _RunHere | None, model_id: str | None) -> str:
        if loc.style == "models":
            return f"models:/{model_id}"
        assert run is not None
        if loc.style == "runs":
            return f"runs:/{run.run_id}/{loc.path}"
        return f"{run.artifact_uri.rstrip('/')}/{loc.path}"

    def _write(
        self, loc: _Location, entry: Entry, run: _RunHere | None, *, deep: bool | None
    ) -> _Placed:
        """The files written into a location this import owns (extra files there removed)."""
        run_id = run.run_id if run else None
        if loc.model is not None:
            eid = run.experiment_id if run else self._experiment()
            mid, stats = self.sink.ensure_logged_model(eid, run_id, loc.model, entry.files)
            self._count(stats)
            tags = loc.model.get("tags") or {}
            link = mid if (_MODEL_VERSIONS_TAG in tags or _SOURCE_MODEL_VERSIONS in tags) else None
            model_id = mid if loc.style == "models" else None
            return _Placed(self._source_of(loc, run, mid), model_id, link, int(stats["files"]))
        assert run_id is not None
        stats = self.sink.upload_run_files(run_id, entry.files, loc.path, prune=True, deep=deep)
        self._count(stats)
        return _Placed(self._source_of(loc, run, None), None, None, int(stats["files"]))

    def _find_in(self, loc: _Location, entry: Entry, run: _RunHere) -> _Placed | None:
        """The version's files in a run another import owns, if it holds exactly them."""
        if loc.model is None:
            if self.sink.same_files(run.artifact_uri, entry.files, loc.path):
                return _Placed(self._source_of(loc, run, None), None, None)
            return None
        if run.experiment_id not in self._models:
            self._models[run.experiment_id] = self.sink.list_logged_models(run.experiment_id)
        for lm in self._models[run.experiment_id]:
            if lm["source_model_id"] != loc.model["model_id"] or lm["run_id"] != run.run_id:
                continue
            if self.sink.same_files(lm["artifact_location"], entry.files):
                tags = loc.model.get("tags") or {}
                link = (
                    lm["model_id"]
                    if (_MODEL_VERSIONS_TAG in tags or _SOURCE_MODEL_VERSIONS in tags)
                    else None
                )
                model_id = lm["model_id"] if loc.style == "models" else None
                return _Placed(self._source_of(loc, run, lm["model_id"]), model_id, link)
        return None

    def _lookup_model(self, eid: str, run_id: str | None, src_mid: str) -> str | None:
        for lm in self.sink.list_logged_models(eid):
            if lm["source_model_id"] == src_mid and lm["run_id"] == run_id:
                return str(lm["model_id"])
        return None

    def _count(self, stats: Record) -> None:
        self.report.files += int(stats.get("files", 0))
        self.report.bytes += int(stats.get("bytes", 0))


def _run_digest(run: dict[str, Any]) -> str:
    """What a model import's own copy of a run holds (its metadata; logged models aside)."""
    body = {k: val for k, val in run.items() if k != "logged_models"}
    text = json.dumps({"model-table-run": body}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


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
    except (yaml.YAMLError, RecursionError):  # the loader recurses: deep nesting ends it
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
            check_list_bounds(batch, counts["rows"])
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
