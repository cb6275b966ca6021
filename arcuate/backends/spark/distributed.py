"""Exports packaged by Spark tasks: the driver lists run ids, tasks read runs and files.

The driver resolves the experiment (a missing one raises before anything is written) and
pages through the run ids matching the filter; it keeps only ids. They are cut into groups
and spread over partitions; each task (a Python UDF, ``mapInArrow``) opens its own
:class:`~arcuate.backends.mlflow.source.MlflowSource` on the tracking server, reads its runs
with their full metric history and files from the MLflow artifact store, and packs rows with
:mod:`arcuate.format.records`. The rows never pass through the driver: the resulting
DataFrame is written by :class:`~arcuate.backends.spark.store.SparkTableStore` in one
commit. A task's chunk rows stay together with their owner (one task packs a whole run).

Tasks get explicit tracking and registry URIs, and ``MLFLOW_TRACKING_URI`` /
``MLFLOW_REGISTRY_URI`` are set in the task process while it works: MLflow resolves a missing
registry URI through Spark, which can exit a process that has pyspark installed. The tracking
server must be reachable from the executors (an ``http(s)`` URI, or ``databricks``); a local
``sqlite:`` file works only when the executors share the driver's filesystem.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import pyarrow as pa

from arcuate.format.schema import SCHEMA

if TYPE_CHECKING:
    from arcuate.engine.context import Context
    from arcuate.plan.ops import ExportExperiment

#: Runs one task call packs together (one ``search_runs`` and one metric-history query).
DEFAULT_RUNS_PER_GROUP: Final = 50

_ENV_LOCK = threading.Lock()
_ENV_USERS = 0
_ENV_SAVED: dict[str, str | None] = {}


@contextlib.contextmanager
def mlflow_env(tracking_uri: str, registry_uri: str) -> Iterator[None]:
    """``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` set while a task works, then restored.

    Tasks may share a process (and threads); the first one in sets the variables, the last
    one out restores them.
    """
    global _ENV_USERS
    with _ENV_LOCK:
        if _ENV_USERS == 0:
            for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
                _ENV_SAVED[var] = os.environ.get(var)
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        os.environ["MLFLOW_REGISTRY_URI"] = registry_uri
        _ENV_USERS += 1
    try:
        yield
    finally:
        with _ENV_LOCK:
            _ENV_USERS -= 1
            if _ENV_USERS == 0:
                for var, value in _ENV_SAVED.items():
                    if value is None:
                        os.environ.pop(var, None)
                    else:
                        os.environ[var] = value


def spark_schema() -> Any:
    """:data:`SCHEMA` as a pyspark StructType (the output type of the packing UDF)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(SCHEMA)


@dataclass
class SparkExport:
    """An export whose rows are a Spark DataFrame computed by tasks.

    ``SparkTableStore.write`` writes :attr:`dataframe` directly and then calls :meth:`tally`
    on the written table, which fills the counters the statement reports. Any other table
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
    _batches: Iterator[pa.RecordBatch] | None = field(default=None, repr=False)

    @property
    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows on the driver (for table stores that are not Spark)."""
        if self._batches is None:
            from arcuate.format.schema import conform as conform_present

            table = conform_present(self.dataframe.toArrow())
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
        """Count rows, runs, files and bytes of the written table (two small Spark queries)."""
        from pyspark.sql import functions as F

        row = written.agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.when(F.col("kind") == "run", 1).otherwise(0)).alias("runs"),
            F.sum(F.when(F.col("kind") == "model_version", 1).otherwise(0)).alias("versions"),
        ).collect()[0]
        self.rows, self.runs, self.versions = (int(row[i] or 0) for i in range(3))
        files = (
            written.select(F.explode("files").alias("f"))
            .agg(F.count(F.lit(1)).alias("n"), F.sum("f.size").alias("bytes"))
            .collect()[0]
        )
        self.files, self.bytes = int(files[0] or 0), int(files[1] or 0)

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
        partitions = max(1, min(len(groups), _parallelism(spark)))
    seeds = (
        spark.createDataFrame(
            pa.table(
                {
                    "slot": pa.array(range(len(groups)), pa.int32()),
                    "run_ids": pa.array(groups, pa.list_(pa.string())),
                }
            )
        )
        if groups
        else spark.createDataFrame([], "slot int, run_ids array<string>")
    )
    task = functools.partial(
        pack_partition,
        ctx.settings.effective_tracking_uri,
        ctx.settings.effective_registry_uri,
        experiment,
        ctx.settings.chunk_bytes,
        datetime.now(UTC).isoformat(),
    )
    frame = seeds.repartition(partitions, "slot").mapInArrow(task, spark_schema())
    out = SparkExport("experiment", frame, run_ids=len(ids), partitions=partitions)
    return out


def _parallelism(spark: Any) -> int:
    try:
        return max(1, int(spark.conf.get("spark.sql.shuffle.partitions", "8")))
    except Exception:
        return 8


def pack_partition(
    tracking_uri: str,
    registry_uri: str,
    experiment: dict[str, Any],
    chunk_bytes: int,
    exported_at: str,
    batches: Iterable[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    """The task: rows of the runs named in ``batches`` (``run_ids`` groups), packed here."""
    from arcuate.backends.mlflow.source import MlflowSource
    from arcuate.backends.protocols import ChunkedFile
    from arcuate.format.records import Row, run_rows, to_batches

    when = datetime.fromisoformat(exported_at)

    def rows() -> Iterator[Row | ChunkedFile]:
        source = MlflowSource(tracking_uri, registry_uri)
        for batch in batches:
            for group in batch.column("run_ids").to_pylist():
                wanted = ", ".join("'" + rid.replace("'", "") + "'" for rid in group)
                found = source.iter_runs(
                    experiment["experiment_id"], filter=f"attributes.run_id IN ({wanted})"
                )
                for run in found:
                    yield from run_rows(
                        experiment,
                        run,
                        source.iter_run_files(run),
                        chunk_bytes=chunk_bytes,
                        exported_at=when,
                    )

    with mlflow_env(tracking_uri, registry_uri):
        for out in to_batches(rows()):
            yield out.cast(SCHEMA) if not out.schema.equals(SCHEMA) else out
