"""AS SPARK on the recipient side: a shared table loaded as a Spark DataFrame.

Where the Delta Sharing Spark connector is installed (Databricks, or a cluster started with
``io.delta:delta-sharing-spark``), the table is read by the cluster itself
(``spark.read.format("deltaSharing")``, what ``delta_sharing.load_as_spark`` does). Elsewhere
(Sail, a plain Spark Connect server) it is read with arcuate's own Delta Sharing client on
the driver (:class:`~arcuate.backends.sharing.reader.DeltaSharingReader`) and handed to Spark
(``spark.createDataFrame`` of Arrow slices).

Either way the table is first checked to be an arcuate table of a supported format version,
through the table metadata the sharing server returns. :meth:`SparkShareReader.batches` yields
Arrow record batches for the single-process importer; :func:`arcuate.engine.distributed.
import_experiment_spark` imports from :meth:`SparkShareReader.dataframe` across partitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import pyarrow as pa

from arcuate.backends.retry import RetryPolicy
from arcuate.backends.sharing.reader import DeltaSharingReader
from arcuate.errors import ConfigurationError
from arcuate.format.schema import SCHEMA, conform

#: Arrow bytes per ``createDataFrame`` call when the driver hands rows to Spark.
DEFAULT_SLICE_BYTES: Final = 32 * 1024 * 1024
#: Phrases of "no such data source" errors (Spark: DATA_SOURCE_NOT_FOUND "Failed to find the
#: data source: deltaSharing"; Sail: "No data source found for: deltaSharing").
_NO_SOURCE: Final = ("data_source_not_found", "failed to find", "no data source", "no table format")


def _connector_missing(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "deltasharing" in text and any(p in text for p in _NO_SOURCE)


class SharedFrame:
    """A shared table loaded as a DataFrame that also iterates as Arrow record batches.

    The runner can hand it to the single-process importer (it is an iterator of batches) or
    give :attr:`dataframe` to :func:`arcuate.engine.distributed.import_experiment_spark`.
    """

    def __init__(self, dataframe: Any, coordinate: str) -> None:
        self.dataframe = dataframe
        self.coordinate = coordinate
        self._batches: Iterator[pa.RecordBatch] | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self._batches is None:
            table = conform(self.dataframe.toArrow())
            self._batches = iter(table.to_batches(max_chunksize=256))
        return next(self._batches)


class SparkShareReader:
    """A :class:`~arcuate.backends.protocols.ShareReader` producing Spark DataFrames."""

    name = "spark"

    def __init__(
        self,
        spark: Any,
        *,
        slice_bytes: int = DEFAULT_SLICE_BYTES,
        retry: RetryPolicy | None = None,
    ) -> None:
        if spark is None:
            raise ConfigurationError(
                "AS SPARK needs a SparkSession, and none is configured",
                hint="pass spark=<SparkSession> to arcuate.execute(), or use AS PANDAS",
            )
        self.spark = spark
        self.slice_bytes = slice_bytes
        self.client = DeltaSharingReader(retry=retry)
        #: how the last table was loaded: "connector" or "python-client"
        self.loaded_by: str | None = None

    def dataframe(self, coordinate: str) -> Any:
        """The shared table as a Spark DataFrame, after checking it is an arcuate table."""
        self.client.check(coordinate)
        frame = self._connector(coordinate)
        if frame is not None:
            self.loaded_by = "connector"
            return frame
        self.loaded_by = "python-client"
        return self._from_client(coordinate)

    def _connector(self, coordinate: str) -> Any | None:
        """The table read by the cluster's Delta Sharing connector, or None when it is absent."""
        try:
            frame = self.spark.read.format("deltaSharing").load(coordinate)
            frame.schema  # noqa: B018 - resolving the plan is what fails without the connector
        except Exception as exc:
            if _connector_missing(exc):
                return None
            raise
        return frame

    def _from_client(self, coordinate: str) -> Any:
        """Rows read by the Python client on the driver, handed to Spark in bounded slices."""
        from pyspark.sql.pandas.types import from_arrow_schema

        frames = []
        pending: list[pa.RecordBatch] = []
        size = 0
        for batch in self.client.batches(coordinate):
            pending.append(batch)
            size += batch.nbytes
            if size >= self.slice_bytes:
                frames.append(self._frame(pending))
                pending, size = [], 0
        if pending or not frames:
            if not pending:
                return self.spark.createDataFrame([], schema=from_arrow_schema(SCHEMA))
            frames.append(self._frame(pending))
        out = frames[0]
        for more in frames[1:]:
            out = out.unionByName(more)
        return out

    def _frame(self, batches: list[pa.RecordBatch]) -> Any:
        return self.spark.createDataFrame(pa.Table.from_batches(batches))

    def open(self, coordinate: str) -> SharedFrame:
        """The shared table as a :class:`SharedFrame` (checked now, rows read when iterated)."""
        return SharedFrame(self.dataframe(coordinate), coordinate)

    def batches(self, coordinate: str) -> Iterator[pa.RecordBatch]:
        """Record batches of the shared table, read through Spark."""
        return self.open(coordinate)
