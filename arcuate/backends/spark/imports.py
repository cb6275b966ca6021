"""AS SPARK imports: shared runs imported by Spark tasks, partition by partition.

The single-process importer (:mod:`arcuate.engine.imports`) does the work inside each task,
so validation, idempotency (provenance tags and content hashes) and the per-run rules are
the same code as AS PANDAS. What spreading it needs is arranged around it:

1. **Validate everything first** (one Spark job): rows are partitioned by ``key``, so a
   record's chunk rows sit with it; each task validates and spools its rows exactly like the
   pandas path and returns only small facts (key, parent, logged-model ids, experiment tags)
   or the first error. The driver checks what spans partitions (a logged model claimed by two
   runs). A bad row raises :class:`~arcuate.errors.ShareDataError` before anything is written.
2. **Prepare the experiment** on the driver (created, or restored and its tags made exact with
   OVERWRITE), so tasks never race to create it.
3. **Import** (one Spark job): rows are partitioned by the *root* of their parent chain, so a
   parent and its children are imported by the same task and the parent id is remapped as in
   the pandas path. Each task runs ``import_experiment`` over its partition against the
   tracking server, with a sink that may only delete copies of *its own* runs; it returns the
   report rows and counters.
4. **Finish** on the driver: with OVERWRITE, runs the share no longer lists are deleted last,
   except those a model version uses (kept and reported); the report adds up the tasks'
   counters (same keys as AS PANDAS).

Tasks talk to the recipient's tracking server with explicit URIs and with
``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` set while they work (see
:func:`arcuate.backends.spark.distributed.mlflow_env`). The tracking server must be reachable
from the executors. Every task lists the experiment's runs once (the importer's matching), so
a task costs one listing of the target experiment on top of its own runs.

Registered-model imports are sequential by nature (version numbers, aliases):
:func:`import_model_spark` collects the rows and runs the pandas importer on the driver.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from arcuate.engine.result import StatementResult
from arcuate.errors import ArcuateError, BackendError, ConflictError, ShareDataError
from arcuate.format import validate as v
from arcuate.format.schema import SCHEMA, Content

if TYPE_CHECKING:
    from arcuate.engine.context import Context

_ROOT: Final = "__arcuate_root"

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
_SUMMARY: Final = "__summary__"


def _spark_type(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _partition_id() -> int:
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        return int(ctx.partitionId()) if ctx is not None else -1
    except Exception:
        return -1


def _format_batches(batches: Iterable[pa.RecordBatch], seen: set[str]) -> Iterator[pa.RecordBatch]:
    """A partition's batches in the format's columns and types; remembers the keys it saw."""
    from arcuate.format.schema import conform as conform_present

    for batch in batches:
        table = conform_present(pa.Table.from_batches([batch]))
        if "key" in table.column_names:
            seen.update(k for k in table.column("key").to_pylist() if isinstance(k, str))
        yield from table.to_batches()


def _error_row(schema: pa.Schema, exc: BaseException, **values: Any) -> pa.RecordBatch:
    row: dict[str, Any] = dict.fromkeys(schema.names)
    row.update(values)
    row["error"] = str(exc)
    row["error_type"] = type(exc).__name__
    return pa.RecordBatch.from_pylist([row], schema=schema)


# -- pass 1: validation (task side) --------------------------------------------------------------
def check_partition(
    content: Content, batches: Iterable[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """The task of pass 1: validate and spool a partition; the facts the driver needs."""
    from arcuate.engine.imports import Spool

    part = _partition_id()
    seen: set[str] = set()
    try:
        with Spool.open(content) as spool:
            spool.ingest(_format_batches(batches, seen))
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


# -- pass 2: import (task side) ------------------------------------------------------------------
class PartitionSink:
    """The recipient's sink as one partition's import sees it.

    The experiment is prepared by the driver; deletions are limited to copies of the runs this
    partition imports (the driver removes runs the share no longer lists, at the end).
    """

    def __init__(self, sink: Any, experiment_id: str, keys: set[str]) -> None:
        self._sink = sink
        self._experiment_id = experiment_id
        self._keys = keys
        self._sources: dict[str, str | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)

    def prepare_experiment(self, name: str, tags: dict[str, str], **_: Any) -> str:
        return self._experiment_id

    def list_runs(self, experiment_id: str) -> list[dict[str, Any]]:
        states: list[dict[str, Any]] = self._sink.list_runs(experiment_id)
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
    experiment: str,
    experiment_id: str,
    overwrite: bool,
    source: str,
    origin: str,
    batches: Iterable[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    """The task of pass 2: import one partition's runs with the pandas importer.

    ``origin`` is the provenance the driver read from the coordinate's profile (a task may
    run where that file is not).
    """
    from arcuate.backends.mlflow.sink import MlflowSink
    from arcuate.backends.spark.distributed import mlflow_env
    from arcuate.config import Settings
    from arcuate.engine.context import Context
    from arcuate.engine.imports import import_experiment

    it = iter(batches)
    first = next((b for b in it if b.num_rows), None)
    if first is None:
        return
    keys: set[str] = set()
    stream = _format_batches(_chain(first, it), keys)
    with mlflow_env(tracking_uri, registry_uri):
        ctx = Context(
            Settings(tracking_uri=tracking_uri, registry_uri=registry_uri, progress=False)
        )
        ctx.__dict__["model_sink"] = PartitionSink(
            MlflowSink(tracking_uri, registry_uri), experiment_id, keys
        )
        try:
            result = import_experiment(
                stream, experiment, ctx, overwrite=overwrite, source=source, origin=origin
            )
        except ArcuateError as exc:
            yield _error_row(RESULT_SCHEMA, exc)
            return
    s = result.summary
    # runs kept for model versions are the driver's to report (it deletes what is not shared)
    rows = [dict.fromkeys(RESULT_SCHEMA.names) | r for r in result.rows if r["action"] != "kept"]
    rows.append(
        dict.fromkeys(RESULT_SCHEMA.names)
        | {
            "action": _SUMMARY,
            "files": s["files"],
            "bytes": s["bytes"],
            "metric_points": s["metric_points"],
            "shared_bytes": s["shared_bytes"],
            "unlinked": s.get("unlinked", 0),
        }
    )
    yield pa.RecordBatch.from_pylist(rows, schema=RESULT_SCHEMA)


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


# -- driver --------------------------------------------------------------------------------------
def _raise_task_error(row: dict[str, Any], what: str) -> None:
    message = f"{row['error']} ({what}, Spark partition {row.get('partition', '?')})"
    kind = row.get("error_type")
    if kind == "ShareDataError":
        raise ShareDataError(message)
    if kind == "ConflictError":
        raise ConflictError(message)
    raise BackendError(message, hint="running the statement again finishes the import")


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


def _default_partitions(spark: Any) -> int:
    try:
        return max(1, int(spark.conf.get("spark.sql.shuffle.partitions", "8")))
    except Exception:
        return 8


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
    spark = frame.sparkSession
    n = partitions or _default_partitions(spark)
    missing = [c for c in SCHEMA.names if c not in frame.columns]
    if missing:
        v.check_columns(frame.columns, 0)
    keyed = frame.repartition(n, "key")

    # 1. validate every row (nothing written yet)
    checked = keyed.mapInArrow(
        functools.partial(check_partition, "experiment"), _spark_type(CHECK_SCHEMA)
    ).toArrow()
    facts = checked.to_pylist()
    for row in facts:
        if row["error"] is not None:
            _raise_task_error(row, "validating shared rows")
    owners: dict[str, str] = {}
    parents: dict[str, str | None] = {}
    experiment_doc: dict[str, Any] | None = None
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
        if experiment_doc is None and row["experiment"]:
            experiment_doc = json.loads(row["experiment"])

    # 2. the experiment, prepared once, under its import lease (held until the end)
    sink = ctx.model_sink
    with sink.lock("experiment", name, restore=overwrite):
        tags = (experiment_doc or {}).get("tags") or {}
        eid = sink.prepare_experiment(name, tags, exact=overwrite, restore=overwrite)
        sink.remove_orphan_files(eid)
        return _import_tasks(frame, keyed, ctx, name, eid, parents, n, overwrite, source, started)


def _import_tasks(
    frame: Any,
    keyed: Any,
    ctx: Context,
    name: str,
    eid: str,
    parents: dict[str, str | None],
    n: int,
    overwrite: bool,
    source: str,
    started: float,
) -> StatementResult:
    """Steps 3 and 4 of :func:`import_experiment_spark`, with the lease held."""
    from pyspark.sql import functions as F

    from arcuate.engine.imports import keep_used
    from arcuate.engine.provenance import origin_of

    spark = frame.sparkSession
    sink = ctx.model_sink

    # 3. import, a parent chain per task
    roots = _roots(parents)
    moved = {k: r for k, r in roots.items() if r != k}
    if moved:
        mapping = spark.createDataFrame(pa.table({"key": list(moved), _ROOT: list(moved.values())}))
        grouped = frame.join(mapping, on="key", how="left").withColumn(
            _ROOT, F.coalesce(F.col(_ROOT), F.col("key"))
        )
        grouped = grouped.repartition(n, _ROOT)
    else:
        grouped = keyed
    settings = ctx.settings
    task = functools.partial(
        import_partition,
        settings.effective_tracking_uri,
        settings.effective_registry_uri,
        name,
        eid,
        overwrite,
        source,
        origin_of(source).tag,
    )
    results = grouped.mapInArrow(task, _spark_type(RESULT_SCHEMA)).toArrow().to_pylist()
    for row in results:
        if row["error"] is not None:
            _raise_task_error(row, "importing runs")

    # 4. finish: remove what the share no longer lists (OVERWRITE), add up the report
    rows = [r for r in results if r["action"] != _SUMMARY]
    shared = {r["run_id"] for r in rows}
    removed = 0
    kept: list[dict[str, Any]] = []
    if overwrite:
        states = sink.list_runs(eid)
        doomed = [
            s["run_id"]
            for s in states
            if s["lifecycle_stage"] == "active" and s["run_id"] not in shared
        ]
        # runs a model version uses stay (and are reported), as in the pandas importer
        doomed, _models, kept = keep_used(sink, doomed, [], states)
        sink.delete_runs(eid, doomed)
        removed = len(doomed)
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r["action"]] += 1
    totals: dict[str, int] = defaultdict(int)
    for r in results:
        if r["action"] == _SUMMARY:
            for k in ("files", "bytes", "metric_points", "shared_bytes", "unlinked"):
                totals[k] += int(r[k] or 0)
    summary: dict[str, Any] = {
        "experiment": name,
        "runs": len(rows),
        "added": counts["added"],
        "updated": counts["updated"],
        "unchanged": counts["unchanged"],
        "removed": removed,
        "kept": len(kept),
        "files": totals["files"],
        "bytes": totals["bytes"],
        "metric_points": totals["metric_points"],
        "shared_bytes": totals["shared_bytes"],
        "seconds": round(time.monotonic() - started, 3),
    }
    if totals["unlinked"]:
        summary["unlinked"] = totals["unlinked"]
    summary["partitions"] = n
    over = " OVERWRITE" if overwrite else ""
    src = f" AS SPARK '{source}'" if source else ""
    report = [
        {k: r[k] for k in ("source_run_id", "run_id", "run_name", "action")}
        for r in sorted(rows, key=lambda r: r["source_run_id"] or "")
    ] + kept
    return StatementResult(
        statement=f"CREATE EXPERIMENT{over} {name}{src}",
        action="import_experiment",
        summary=summary,
        rows=report,
    )


def import_model_spark(
    frame: Any, model: str, ctx: Context, *, overwrite: bool = False, source: str = ""
) -> StatementResult:
    """Import shared model versions from a DataFrame: collected, then the pandas importer.

    A model's versions are few and ordered (numbers, gaps, aliases), so they are imported on
    the driver; their files were packed into the table already.
    """
    from arcuate.engine.imports import import_model
    from arcuate.format.schema import conform as conform_present

    table = conform_present(frame.toArrow())
    return import_model(
        iter(table.to_batches(max_chunksize=256)), model, ctx, overwrite=overwrite, source=source
    )
