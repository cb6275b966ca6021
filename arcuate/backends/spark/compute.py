"""The Spark calls of exports packaged and imports spread by Spark tasks.

The orchestration (what each task does, what the driver checks) is the engine's
(:mod:`arcuate.engine.distributed`); it reaches Spark only through these functions, which
take and return DataFrames (typed ``Any``: pyspark is optional) and Arrow tables. A task is
a function over a partition's Arrow record batches (``mapInArrow``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa

#: A task: the record batches of one partition in, record batches out.
Task = Callable[[Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def spark_type(schema: pa.Schema) -> Any:
    """An Arrow schema as a pyspark StructType."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def partition_id() -> int:
    """The partition the current task works on (-1 outside a task)."""
    from pyspark import TaskContext
    from pyspark.errors import PySparkException

    try:
        ctx = TaskContext.get()
        return int(ctx.partitionId()) if ctx is not None else -1
    except PySparkException:  # a session that keeps no task context here
        return -1


def session(frame: Any) -> Any:
    """The SparkSession of a DataFrame."""
    return frame.sparkSession


def columns(frame: Any) -> list[str]:
    """The column names of a DataFrame."""
    return list(frame.columns)


def parallelism(spark: Any) -> int:
    """The partitions work is spread over by default (``spark.sql.shuffle.partitions``)."""
    from pyspark.errors import PySparkException

    try:
        return max(1, int(spark.conf.get("spark.sql.shuffle.partitions", "8")))
    except (PySparkException, ValueError):  # a session that hides it, or a value not a number
        return 8


def frame_of(spark: Any, table: pa.Table) -> Any:
    """A DataFrame of an Arrow table (an empty table's schema as given)."""
    if table.num_rows:
        return spark.createDataFrame(table)
    return spark.createDataFrame([], spark_type(table.schema))


def spread(frame: Any, partitions: int, column: str) -> Any:
    """The rows of ``frame`` in ``partitions`` partitions, rows with one ``column`` value in
    the same one."""
    return frame.repartition(partitions, column)


def regroup(frame: Any, key: str, moved: dict[str, str], column: str, partitions: int) -> Any:
    """``frame`` spread by a new ``column``: ``moved[row's key]``, else the row's ``key``."""
    from pyspark.sql import functions as F

    mapping = frame.sparkSession.createDataFrame(
        pa.table({key: list(moved), column: list(moved.values())})
    )
    grouped = frame.join(mapping, on=key, how="left").withColumn(
        column, F.coalesce(F.col(column), F.col(key))
    )
    return grouped.repartition(partitions, column)


def map_partitions(frame: Any, task: Task, schema: pa.Schema) -> Any:
    """``task`` over every partition of ``frame`` (lazy): a DataFrame of ``schema``."""
    return frame.mapInArrow(task, spark_type(schema))


def collect(frame: Any) -> pa.Table:
    """A DataFrame's rows on the driver, as Arrow."""
    return frame.toArrow()


def tally(written: Any) -> tuple[int, int, int, int, int]:
    """Rows, runs, versions, files and bytes of a written arcuate table (two small queries)."""
    from pyspark.sql import functions as F

    row = written.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.when(F.col("kind") == "run", 1).otherwise(0)).alias("runs"),
        F.sum(F.when(F.col("kind") == "model_version", 1).otherwise(0)).alias("versions"),
    ).collect()[0]
    files = (
        written.select(F.explode("files").alias("f"))
        .agg(F.count(F.lit(1)).alias("n"), F.sum("f.size").alias("bytes"))
        .collect()[0]
    )
    rows, runs, versions = (int(row[i] or 0) for i in range(3))
    return rows, runs, versions, int(files[0] or 0), int(files[1] or 0)
