"""Exports packaged and imports spread by Spark tasks (``AS SPARK`` and the Spark table store).

The work of each task is the single-process code: a task packs runs with
:mod:`arcuate.format.records`, or validates and imports runs with
:mod:`arcuate.engine.imports`, so the rules are the same as without Spark. Spark itself is
reached only through :mod:`arcuate.backends.spark.compute`.

**Exports.** The driver resolves the experiment (a missing one raises before anything is
written) and pages through the run ids matching the filter; it keeps only ids. They are cut
into groups and spread over partitions; each task opens its own
:class:`~arcuate.backends.mlflow.source.MlflowSource` on the tracking server, reads its runs
with their full metric history and files, and packs rows. The rows never pass through the
driver: the resulting DataFrame is written by the Spark table store in one commit. A task's
chunk rows stay together with their owner (one task packs a whole run).

**Imports**, of shared runs:

1. *Validate everything first* (one Spark job): rows are partitioned by ``key``, so a
   record's chunk rows sit with it; each task validates and spools its rows exactly like the
   pandas path and returns only small facts (key, parent, logged-model ids, experiment tags)
   or the first error. The driver checks what spans partitions (a logged model claimed by two
   runs). A bad row raises :class:`~arcuate.errors.ShareDataError` before anything is written.
2. *Prepare the experiment* on the driver, under its import lease (held to the end), so tasks
   never race to create it.
3. *Import* (one Spark job): rows are partitioned by the *root* of their parent chain, so a
   parent and its children are imported by the same task and the parent id is remapped as in
   the pandas path. Each task imports its partition against the tracking server with a sink
   that may only delete copies of *its own* runs; it returns the report rows and counters.
4. *Finish* on the driver: with OVERWRITE, runs the share no longer lists are deleted last,
   except those a model version uses (kept and reported); the report adds up the tasks'
   counters (same keys as AS PANDAS).

Registered-model imports are sequential by nature (version numbers, aliases):
:func:`import_model_spark` collects the rows and runs the pandas importer on the driver.

Tasks get explicit tracking and registry URIs, with ``MLFLOW_TRACKING_URI`` /
``MLFLOW_REGISTRY_URI`` set while they work (:func:`arcuate.backends.mlflow.connect.
mlflow_env`). The tracking server must be reachable from the executors (an ``http(s)`` URI,
or ``databricks``); a local ``sqlite:`` file works only when the executors share the driver's
filesystem. Every import task lists the experiment's runs once (the importer's matching).
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import pyarrow as pa

from arcuate import workers
from arcuate.backends.mlflow.connect import mlflow_env
from arcuate.backends.protocols import ModelSink, Record
from arcuate.backends.spark import compute
from arcuate.engine.imports import Spool, import_model, import_runs, keep_used
from arcuate.engine.imports.importer import ImportReport, experiment_result, statement
from arcuate.engine.provenance import origin_of
from arcuate.engine.result import StatementResult
from arcuate.errors import ArcuateError, BackendError, ShareDataError
from arcuate.format import validate as v
from arcuate.format.schema import SCHEMA, Content
from arcuate.format.schema import conform as conform_present

if TYPE_CHECKING:
    from arcuate.engine.context import Context
    from arcuate.plan.ops import ExportExperiment

#: Runs one export task call packs together (one ``search_runs`` and one history query).
DEFAULT_RUNS_PER_GROUP: Final = 50
_ROOT: Final = "__arcuate_root"
_SUMMARY: Final = "__summary__"
_AGAIN: Final = "running the statement again finishes the import"

#: What a validation task returns: a row per record (or one error row).
CHECK_SCHEMA: Final = pa.schema(
    [
        ("partition", pa.int64()),
        ("key", pa.string()),
        ("parent", pa.string()),
        ("logged_models", pa.list_(pa.string())),
        ("experiment", pa.string()),
        ("error", pa.string()),
        ("error_type", pa.string()),
    ]
)
#: What an import task returns: a row per run, a summary row (or one error row).
RESULT_SCHEMA: Final = pa.schema(
    [
        ("source_run_id", pa.string()),
        ("run_id", pa.string()),
        ("run_name", pa.string()),
        ("action", pa.string()),
        ("files", pa.int64()),
        ("bytes", pa.int64()),
        ("metric_points", pa.int64()),
        ("shared_bytes", pa.int64()),
        ("unlinked", pa.int64()),
        ("error", pa.string()),
        ("error_type", pa.string()),
    ]
)
_SEEDS: Final = pa.schema([("slot", pa.int32()), ("run_ids", pa.list_(pa.string()))])


# -- exports ------------------------------------------------------------------------------------
@dataclass
class SparkExport:
    """An export whose rows are a Spark DataFrame computed by tasks.

    The Spark table store writes :attr:`dataframe` directly and then calls :meth:`tally` on
    the written table, which fills the counters the statement reports. Any other table
    store can consume :attr:`batches` (the rows collected to the driver).
    """

    content: Literal["experiment", "model"]
    dataframe: Any
    run_ids: int = 0
    runs: int = 0
    versions: int = 0
    files: int = 0
    bytes: int = 0
    rows: int = 0
    partitions: int = 0
    #: what the driver's export also counts; a task-packed export carries none of them
    #: (INCLUDING and REDACT pack on the driver: engine/runner.py)
    scorers: int = 0
    eval_records: int = 0
    traces: int = 0
    skipped: list[str] = field(default_factory=list)
    skipped_traces: list[str] = field(default_factory=list)
    redaction: None = None
    _batches: Iterator[pa.RecordBatch] | None = field(default=None, repr=False)

    @property
    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows on the driver (for table stores that are not Spark)."""
        if self._batches is None:
            table = conform_present(compute.collect(self.dataframe))
            self._tally_arrow(table)
            self._batches = iter(table.to_batches(max_chunksize=256))
        return self._batches

    def _tally_arrow(self, table: pa.Table) -> None:
        self.rows = table.num_rows
        kinds = table.column("kind").to_pylist()
        self.runs = kinds.count("run")
        self.versions = kinds.count("model_version")
        sizes = [f["size"] for files in table.column("files").to_pylist() for f in files or ()]
        self.files, self.bytes = len(sizes), sum(sizes)

    def tally(self, written: Any) -> None:
        """Count rows, runs, files and bytes of the written table."""
        self.rows, self.runs, self.versions, self.files, self.bytes = compute.tally(written)

    def summary(self) -> dict[str, int]:
        """The counters, for a statement result."""
        out = {"files": self.files, "bytes": self.bytes}
        if self.content == "experiment":
            return {"runs": self.runs, **out}
        return {"versions": self.versions, **out}


def list_run_ids(source: Any, experiment_id: str, filter: str | None) -> list[str]:
    """Ids of the active runs matching ``filter``, oldest first (only ids stay in memory)."""
    return [
        run.info.run_id for page in source.search_run_pages(experiment_id, filter) for run in page
    ]


def export_experiment_spark(
    op: ExportExperiment,
    ctx: Context,
    *,
    runs_per_group: int = DEFAULT_RUNS_PER_GROUP,
    partitions: int | None = None,
) -> SparkExport:
    """The export of ``op.experiment`` as a DataFrame packed by Spark tasks (lazy until written).

    Raises:
        NotFoundError: the experiment does not exist (before anything is written).
        BackendError: MLflow rejected the filter (before anything is written).
    """
    spark = ctx.settings.spark
    source = ctx.model_source
    experiment = source.get_experiment(op.experiment)
    ids = list_run_ids(source, experiment["experiment_id"], op.filter)
    groups = [ids[i : i + runs_per_group] for i in range(0, len(ids), runs_per_group)]
    if partitions is None:
        partitions = max(1, min(len(groups), compute.parallelism(spark)))
    seeds = pa.table(
        {"slot": pa.array(range(len(groups)), pa.int32()), "run_ids": groups}, schema=_SEEDS
    )
    task = functools.partial(
        pack_partition,
        ctx.settings.effective_tracking_uri,
        ctx.settings.effective_registry_uri,
        experiment,
        ctx.settings.chunk_bytes,
        datetime.now(UTC).isoformat(),
    )
    spread = compute.spread(compute.frame_of(spark, seeds), partitions, "slot")
    frame = compute.map_partitions(spread, task, SCHEMA)
    return SparkExport("experiment", frame, run_ids=len(ids), partitions=partitions)


def pack_partition(
    tracking_uri: str,
    registry_uri: str,
    experiment: dict[str, Any],
    chunk_bytes: int,
    exported_at: str,
    batches: Iterable[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    """The export task: rows of the runs named in ``batches`` (``run_ids`` groups)."""
    from arcuate.backends.mlflow.source import MlflowSource
    from arcuate.backends.protocols import ChunkedFile
    from arcuate.format.records import Row, run_rows, to_batches

    when = datetime.fromisoformat(exported_at)

    def runs(source: MlflowSource) -> Iterator[Record]:
        for batch in batches:
            for group in batch.column("run_ids").to_pylist():
                wanted = ", ".join("'" + rid.replace("'", "") + "'" for rid in group)
                yield from source.iter_runs(
                    experiment["experiment_id"], filter=f"attributes.run_id IN ({wanted})"
                )

    def rows() -> Iterator[Row | ChunkedFile]:
        source = MlflowSource(tracking_uri, registry_uri)
        # the files of the next runs (of every group) are read while one run is written
        with contextlib.closing(source.iter_runs_files(runs(source))) as pairs:
            for run, files in pairs:
                yield from run_rows(
                    experiment, run, files, chunk_bytes=chunk_bytes, exported_at=when
                )

    with mlflow_env(tracking_uri, registry_uri):
        for out in to_batches(rows()):
            yield out.cast(SCHEMA) if not out.schema.equals(SCHEMA) else out


# -- imports: the tasks --------------------------------------------------------------------------
def _format_batches(batches: Iterable[pa.RecordBatch], seen: set[str]) -> Iterator[pa.RecordBatch]:
    """A partition's batches in the format's columns and types; remembers the keys it saw."""
    for batch in batches:
        table = conform_present(pa.Table.from_batches([batch]))
        if "key" in table.column_names:
            seen.update(k for k in table.column("key").to_pylist() if isinstance(k, str))
        yield from table.to_batches()


def _error_row(schema: pa.Schema, exc: ArcuateError, **values: Any) -> pa.RecordBatch:
    """A task's failure as its only row: the error as :mod:`arcuate.workers` writes it."""
    row: dict[str, Any] = dict.fromkeys(schema.names)
    row.update(values)
    row["error"] = json.dumps(workers.error_doc(exc))
    row["error_type"] = type(exc).__name__
    return pa.RecordBatch.from_pylist([row], schema=schema)


def _raise_task_error(row: dict[str, Any], what: str) -> None:
    """The error a task reported, rebuilt as the same arcuate error, saying where it was."""
    doc = json.loads(row["error"])
    doc["message"] = f"{doc['message']} ({what}, Spark partition {row.get('partition', '?')})"
    error = workers.error_from(doc)
    if type(error) is BackendError and not error.hint:
        error.hint = _AGAIN
    raise error


def check_partition(
    content: Content, batches: Iterable[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """The task of pass 1: validate and spool a partition; the facts the driver needs."""
    part = compute.partition_id()
    seen: set[str] = set()
    try:
        with Spool.open(content) as spool:
            spool.ingest(_format_batches(batches, seen))
            if not spool.genai.empty or not spool.traces.empty:
                # a dataset spread over partitions would be created once per partition, and
                # its inputs checked for repeats only within each: refused, not half-done
                raise ShareDataError(
                    "the table holds scorers, evaluation datasets or traces: import it AS PANDAS "
                    "(AS SPARK spreads runs over tasks; these are imported whole)",
                    field="kind",
                )
            experiment = json.dumps(spool.experiment, sort_keys=True, default=str)
            rows = []
            for index, entry in enumerate(spool.entries):
                record = spool.load(index)
                models = [
                    m["model_id"] for m in (record.get("run") or {}).get("logged_models") or ()
                ]
                rows.append(
                    {
                        "partition": part,
                        "key": entry.key,
                        "parent": entry.parent,
                        "logged_models": models,
                        "experiment": experiment if index == 0 else None,
                        "error": None,
                        "error_type": None,
                    }
                )
    except ArcuateError as exc:
        yield _error_row(CHECK_SCHEMA, exc, partition=part)
        return
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=CHECK_SCHEMA)


class PartitionSink:
    """The recipient's sink as one partition's import sees it.

    The experiment is prepared, and its lease held, by the driver; deletions are limited to
    copies of the runs this partition imports (the driver removes runs the share no longer
    lists, at the end). Everything else is the sink's own.
    """

    def __init__(self, sink: ModelSink, experiment_id: str, keys: set[str]) -> None:
        self._sink = sink
        self._experiment_id = experiment_id
        self._keys = keys
        self._sources: dict[str, str | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)

    def prepare_experiment(self, name: str, tags: dict[str, str], **_: Any) -> str:
        return self._experiment_id

    def list_runs(self, experiment_id: str) -> list[Record]:
        states = self._sink.list_runs(experiment_id)
        self._sources.update({s["run_id"]: s["source_run_id"] for s in states})
        return states

    def delete_runs(self, experiment_id: str, run_ids: list[str]) -> None:
        mine = [r for r in run_ids if self._sources.get(r) in self._keys]
        self._sink.delete_runs(experiment_id, mine)

    def lock(self, kind: str, name: str, **_: Any) -> contextlib.AbstractContextManager[Any]:
        """The driver holds the experiment's import lease for every task."""
        return contextlib.nullcontext(_HELD_BY_DRIVER)

    def remove_orphan_files(self, experiment_id: str) -> int:
        """The driver removed them before the tasks started: here it would take the files
        of another task's batch between its uploads and its commit."""
        return 0


class _HeldByDriver:
    """The lease a partition's import sees (the driver's): it never waits."""

    waited = 0.0


_HELD_BY_DRIVER = _HeldByDriver()


def import_partition(
    tracking_uri: str,
    registry_uri: str,
    import_path: str,
    experiment: str,
    experiment_id: str,
    overwrite: bool,
    source: str,
    origin: str,
    batches: Iterable[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    """The task of pass 2: import one partition's runs with the pandas importer.

    ``origin`` is the provenance the driver read from the coordinate's profile (a task may
    run where that file is not); ``import_path`` is the driver's setting (a task reads no
    environment for it).
    """
    from arcuate.backends.mlflow.sink import MlflowSink

    it = iter(batches)
    first = next((b for b in it if b.num_rows), None)
    if first is None:
        return
    keys: set[str] = set()
    stream = _format_batches(_chain(first, it), keys)
    with mlflow_env(tracking_uri, registry_uri):
        sink: Any = PartitionSink(
            MlflowSink(tracking_uri, registry_uri, import_path=import_path), experiment_id, keys
        )
        try:
            result = import_runs(
                sink, stream, experiment, progress=False, overwrite=overwrite, source=source,
                origin=origin,
            )  # fmt: skip
        except ArcuateError as exc:
            yield _error_row(RESULT_SCHEMA, exc)
            return
    yield pa.RecordBatch.from_pylist(_result_rows(result), schema=RESULT_SCHEMA)


def _result_rows(result: StatementResult) -> list[dict[str, Any]]:
    """A task's report rows, and its counters as a last summary row."""
    s = result.summary
    # runs kept for model versions are the driver's to report (it deletes what is not shared)
    rows = [dict.fromkeys(RESULT_SCHEMA.names) | r for r in result.rows if r["action"] != "kept"]
    counters = {k: s.get(k, 0) for k in ("files", "bytes", "metric_points", "shared_bytes")}
    summary = {"action": _SUMMARY, "unlinked": s.get("unlinked", 0), **counters}
    return [*rows, dict.fromkeys(RESULT_SCHEMA.names) | summary]


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


# -- imports: the driver -------------------------------------------------------------------------
def _roots(parents: dict[str, str | None]) -> dict[str, str]:
    """The root of each key's parent chain, following only parents that are shared too."""
    roots: dict[str, str] = {}
    for key in parents:
        chain = [key]
        seen = {key}
        node = key
        while True:
            parent = parents.get(node)
            if parent is None or parent not in parents or parent in seen:
                break
            if parent in roots:
                node = roots[parent]
                break
            chain.append(parent)
            seen.add(parent)
            node = parent
        for k in chain:
            roots[k] = roots.get(node, node)
    return roots


def _checked(keyed: Any) -> tuple[dict[str, str | None], dict[str, Any] | None]:
    """Step 1: every row validated by the tasks; each run's parent, and the experiment.

    Raises:
        ShareDataError: a row is bad, or a key or logged model appears in two partitions.
    """
    checked = compute.map_partitions(
        keyed, functools.partial(check_partition, "experiment"), CHECK_SCHEMA
    )
    facts = compute.collect(checked).to_pylist()
    for row in facts:
        if row["error"] is not None:
            _raise_task_error(row, "validating shared rows")
    owners: dict[str, str] = {}
    parents: dict[str, str | None] = {}
    experiment: dict[str, Any] | None = None
    for row in sorted(facts, key=lambda r: r["key"]):
        if row["key"] in parents:
            raise ShareDataError(f"key {row['key']!r} appears twice", field="key")
        parents[row["key"]] = row["parent"]
        for mid in row["logged_models"] or ():
            if mid in owners:
                raise ShareDataError(
                    f"logged model {mid!r} belongs to runs {owners[mid]!r} and {row['key']!r}",
                    field="run.logged_models",
                )
            owners[mid] = row["key"]
        if experiment is None and row["experiment"]:
            experiment = json.loads(row["experiment"])
    return parents, experiment


def import_experiment_spark(
    frame: Any,
    experiment: str,
    ctx: Context,
    *,
    overwrite: bool = False,
    source: str = "",
    partitions: int | None = None,
) -> StatementResult:
    """Import the shared runs in ``frame`` (a Spark DataFrame of the format) into ``experiment``.

    Same validation, idempotency, OVERWRITE semantics and report as
    :func:`arcuate.engine.imports.import_experiment`, with the work spread over Spark tasks
    (see the module docstring). The summary adds ``partitions``.

    Raises:
        ShareDataError: a row is malformed or hostile (nothing has been written).
        ConflictError: the experiment exists but is deleted (without OVERWRITE).
        BackendError: a task failed midway; running the statement again finishes the import.
    """
    started = time.monotonic()
    name = v.check_experiment_name(experiment)
    n = partitions or compute.parallelism(compute.session(frame))
    if any(c not in compute.columns(frame) for c in SCHEMA.names):
        v.check_columns(compute.columns(frame), 0)
    keyed = compute.spread(frame, n, "key")
    parents, experiment_doc = _checked(keyed)
    sink: ModelSink = ctx.model_sink
    with sink.lock("experiment", name, restore=overwrite):
        tags = (experiment_doc or {}).get("tags") or {}
        eid = sink.prepare_experiment(name, tags, exact=overwrite, restore=overwrite)
        sink.remove_orphan_files(eid)
        grouped = _by_root(frame, keyed, parents, n)
        task = functools.partial(
            import_partition,
            ctx.settings.effective_tracking_uri,
            ctx.settings.effective_registry_uri,
            ctx.settings.import_path,
            name,
            eid,
            overwrite,
            source,
            origin_of(source).tag,
        )
        results = compute.collect(compute.map_partitions(grouped, task, RESULT_SCHEMA))
        report, shared_bytes = _finish(sink, eid, results.to_pylist(), overwrite)
    return experiment_result(
        report,
        name,
        started=started,
        shared_bytes=shared_bytes,
        statement=statement("EXPERIMENT", name, overwrite, source, flavor="SPARK"),
        notes={"partitions": n},
    )


def _by_root(frame: Any, keyed: Any, parents: dict[str, str | None], n: int) -> Any:
    """Step 3's partitions: a parent chain per task (rows by key where no run has a parent)."""
    roots = _roots(parents)
    moved = {k: r for k, r in roots.items() if r != k}
    if not moved:
        return keyed
    return compute.regroup(frame, "key", moved, _ROOT, n)


def _finish(
    sink: ModelSink, eid: str, results: list[dict[str, Any]], overwrite: bool
) -> tuple[ImportReport, int]:
    """Step 4: with OVERWRITE, what the share no longer lists deleted (except runs a model
    version uses); the tasks' reports added up, and the shared bytes they read."""
    for row in results:
        if row["error"] is not None:
            _raise_task_error(row, "importing runs")
    report = ImportReport()
    rows = [r for r in results if r["action"] != _SUMMARY]
    shared_bytes = 0
    for r in results:
        if r["action"] == _SUMMARY:
            report.files += int(r["files"] or 0)
            report.bytes += int(r["bytes"] or 0)
            report.metric_points += int(r["metric_points"] or 0)
            report.unlinked += int(r["unlinked"] or 0)
            shared_bytes += int(r["shared_bytes"] or 0)
        else:
            report.count(r["action"])
    kept: list[dict[str, Any]] = []
    if overwrite:
        shared = {r["run_id"] for r in rows}
        states = sink.list_runs(eid)
        doomed = [
            s["run_id"]
            for s in states
            if s["lifecycle_stage"] == "active" and s["run_id"] not in shared
        ]
        # runs a model version uses stay (and are reported), as in the pandas importer
        doomed, _models, kept = keep_used(sink, doomed, [], states)
        sink.delete_runs(eid, doomed)
        report.removed = len(doomed)
    report.kept = len(kept)
    report.rows = [
        {k: r[k] for k in ("source_run_id", "run_id", "run_name", "action")}
        for r in sorted(rows, key=lambda r: r["source_run_id"] or "")
    ] + kept
    return report, shared_bytes


def collect_batches(frame: Any) -> Iterator[pa.RecordBatch]:
    """A (small) shared table's DataFrame, collected to the driver as the format's batches."""
    return iter(conform_present(compute.collect(frame)).to_batches(max_chunksize=256))


def import_model_spark(
    frame: Any,
    model: str,
    ctx: Context,
    *,
    overwrite: bool = False,
    source: str = "",
    refuse_pickle: bool = False,
) -> StatementResult:
    """Import shared model versions from a DataFrame: collected, then the pandas importer.

    A model's versions are few and ordered (numbers, gaps, aliases), so they are imported on
    the driver; their files were packed into the table already.
    """
    table = conform_present(compute.collect(frame))
    return import_model(
        iter(table.to_batches(max_chunksize=256)), model, ctx, overwrite=overwrite,
        source=source, refuse_pickle=refuse_pickle,
    )  # fmt: skip
