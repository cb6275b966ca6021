"""The Spark table backend: arcuate tables written with ``DataFrame.write.format("delta")``.

Same table format as the deltalake backend: the schema of :data:`arcuate.format.schema.SCHEMA`
(timezone-aware UTC timestamps), the arcuate marker in the table *description*, and Change
Data Feed enabled where the engine supports it. A table written here imports exactly like one
written by :class:`~arcuate.backends.deltalake.store.DeltaLakeTableStore`.

Where tables go (``warehouse``):

* a directory or URI: the table ``a.b.c`` is the Delta table at ``<warehouse>/a/b/c``;
* ``""``/``None`` or ``catalog:`` (optionally ``catalog:<catalog>`` or
  ``catalog:<catalog>.<schema>``): tables are catalog tables (``saveAsTable``), named by
  their 1-3 parts under that prefix, every part backtick-quoted.

Atomicity: every export becomes **one** commit on the target. On engines whose SQL accepts it
(Delta on Databricks / Spark) that is ``CREATE OR REPLACE TABLE ... COMMENT ... AS SELECT``;
on Sail (no ``COMMENT`` in CTAS) the table is created empty with its description when it is
missing, then written by one overwrite commit.

Memory: batches arriving from the driver are handed to Spark in bounded slices
(``slice_bytes``). One slice is written directly. More slices go to a staging Delta table
first (first slice overwrite, then appends), and the target gets one overwrite commit that
reads the staging table inside the engine; the staging table is removed afterwards. The
driver never holds more than one slice, at the price of writing a large export twice. An
export computed by Spark tasks (:mod:`arcuate.engine.distributed`) arrives as a
DataFrame and is written directly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from arcuate.backends.protocols import ChunkedFile, TableVersion, WriteMode
from arcuate.errors import BackendError, ConfigurationError, ConflictError, NotFoundError
from arcuate.format.records import expand
from arcuate.format.schema import SCHEMA, Content, conform, parse_description, table_description

#: Driver-side slice handed to Spark at once (Spark Connect ships it inside one plan).
DEFAULT_SLICE_BYTES: Final = 32 * 1024 * 1024
CATALOG_PREFIX: Final = "catalog:"
def _spark_errors() -> tuple[type[BaseException], ...]:
    """What a Spark engine raises for a statement it refuses (pyspark is imported late)."""
    from pyspark.errors import PySparkException

    return (PySparkException,)


def _delta_errors() -> tuple[type[BaseException], ...]:
    """What reading a Delta log directly raises when it is not there or not readable."""
    from deltalake.exceptions import DeltaError

    return (DeltaError, OSError)


_CDF: Final = "'delta.enableChangeDataFeed' = 'true'"
#: Engine messages meaning "this statement form is not supported here" (Sail's wording).
_NO_COMMENT_CTAS: Final = ("COMMENT in CREATE TABLE AS SELECT",)
_NO_CDF: Final = ("ChangeDataFeed", "enableChangeDataFeed")


def quote_identifier(part: str) -> str:
    """One identifier part in backticks, embedded backticks doubled (Spark SQL's rule)."""
    if not isinstance(part, str) or part == "":
        raise ConfigurationError(f"an identifier part must be a non-empty string, got {part!r}")
    if "\x00" in part:
        raise ConfigurationError(f"identifier {part!r} contains a NUL character")
    return "`" + part.replace("`", "``") + "`"


def quote_name(parts: Iterable[str]) -> str:
    """A multi-part name, each part quoted: ``a.b`` + ``c`` -> ```a.b`.`c```."""
    return ".".join(quote_identifier(p) for p in parts)


def split_name(name: str) -> tuple[str, ...]:
    """Parse a dotted name whose parts may be backtick-quoted (``a.`b.c`.`d``e```).

    Raises:
        ConfigurationError: unbalanced backticks or an empty part.
    """
    parts: list[str] = []
    i, n = 0, len(name)
    while True:
        if i < n and name[i] == "`":
            j = i + 1
            buf: list[str] = []
            while True:
                if j >= n:
                    raise ConfigurationError(f"unbalanced backtick in name {name!r}")
                if name[j] == "`":
                    if j + 1 < n and name[j + 1] == "`":
                        buf.append("`")
                        j += 2
                        continue
                    break
                buf.append(name[j])
                j += 1
            part, i = "".join(buf), j + 1
        else:
            j = name.find(".", i)
            j = n if j < 0 else j
            part, i = name[i:j].strip(), j
            if "`" in part:
                raise ConfigurationError(f"stray backtick in name {name!r}")
        if part == "":
            raise ConfigurationError(f"empty part in name {name!r}")
        parts.append(part)
        if i >= n:
            return tuple(parts)
        if name[i] != ".":
            raise ConfigurationError(f"expected '.' after a quoted part in name {name!r}")
        i += 1


def sql_string(value: str) -> str:
    """A Spark SQL string literal: single quotes, backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _spark_type(t: pa.DataType) -> str:
    if pa.types.is_int32(t):
        return "INT"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "STRING"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BINARY"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_timestamp(t):
        if t.tz is None:
            raise ConfigurationError(
                "arcuate timestamps are timezone-aware (timestamp_ntz breaks sharing)"
            )
        return "TIMESTAMP"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"ARRAY<{_spark_type(t.value_type)}>"
    if pa.types.is_struct(t):
        inner = ", ".join(
            f"{quote_identifier(t.field(i).name)}: {_spark_type(t.field(i).type)}"
            for i in range(t.num_fields)
        )
        return f"STRUCT<{inner}>"
    raise ConfigurationError(f"no Spark SQL type for Arrow type {t}")


def spark_ddl(schema: pa.Schema = SCHEMA) -> str:
    """The column list of a Spark ``CREATE TABLE`` for an Arrow schema (NOT NULL kept)."""
    cols = []
    for f in schema:
        null = "" if f.nullable else " NOT NULL"
        cols.append(f"{quote_identifier(f.name)} {_spark_type(f.type)}{null}")
    return ", ".join(cols)


@dataclass(frozen=True)
class _Target:
    """Where a table lives: a Delta path, or a catalog table name (quoted for SQL)."""

    path: str | None
    name: tuple[str, ...] | None

    @property
    def sql(self) -> str:
        if self.name is not None:
            return quote_name(self.name)
        assert self.path is not None
        return "delta." + quote_identifier(self.path)

    @property
    def shown(self) -> str:
        if self.name is not None:
            return ".".join(self.name)
        return str(self.path)


def _message(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc)


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


class SparkTableStore:
    """Arcuate tables in Delta through a SparkSession (classic or Spark Connect)."""

    name = "spark"

    def __init__(
        self,
        spark: Any,
        warehouse: str | None = None,
        *,
        slice_bytes: int = DEFAULT_SLICE_BYTES,
    ) -> None:
        if spark is None:
            raise ConfigurationError(
                "the spark table backend needs a SparkSession",
                hint="pass spark=<SparkSession> to arcuate.execute(), or use the deltalake backend",
            )
        self.spark = spark
        self.warehouse = warehouse or ""
        self.slice_bytes = slice_bytes
        self.catalog_prefix: tuple[str, ...] | None = None
        if self.warehouse == "" or self.warehouse.startswith(CATALOG_PREFIX):
            rest = self.warehouse[len(CATALOG_PREFIX) :] if self.warehouse else ""
            self.catalog_prefix = split_name(rest) if rest.strip() else ()
            if len(self.catalog_prefix) > 2:
                raise ConfigurationError(
                    f"warehouse {self.warehouse!r}: a catalog prefix has at most two parts "
                    "(catalog.schema)"
                )
        self._ctas_comment: bool | None = None  # learnt from the engine on first write
        self._cdf: bool | None = None

    # -- names ------------------------------------------------------------------------------
    def _target(self, table: tuple[str, ...]) -> _Target:
        if not 1 <= len(table) <= 3:
            raise ConfigurationError(f"a table name has 1-3 parts, got {'.'.join(table)!r}")
        for part in table:
            quote_identifier(part)
        if self.catalog_prefix is not None:
            full = (*self.catalog_prefix, *table)
            if len(full) > 3:
                raise ConfigurationError(
                    f"table {'.'.join(table)!r} under catalog prefix "
                    f"{'.'.join(self.catalog_prefix)!r} has more than 3 parts"
                )
            return _Target(None, full)
        from arcuate.backends.deltalake.store import DeltaLakeTableStore

        # the same path rules as the deltalake backend, so both write to the same place
        return _Target(DeltaLakeTableStore(self.warehouse).location(table), None)

    def location(self, table: tuple[str, ...]) -> str:
        """The table's path, or its catalog name (parts backtick-quoted only when needed)."""
        target = self._target(table)
        if target.name is not None:
            return ".".join(
                p if p.replace("_", "a").isalnum() and p.isascii() else quote_identifier(p)
                for p in target.name
            )
        assert target.path is not None
        return target.path

    # -- write ------------------------------------------------------------------------------
    def write(
        self,
        table: tuple[str, ...],
        batches: Iterable[pa.RecordBatch | ChunkedFile],
        *,
        content: Content,
        mode: WriteMode = "overwrite",
    ) -> TableVersion:
        """Write one export as one commit on the target table (see the module docstring).

        ``batches`` may also be an object with a ``dataframe`` attribute (a Spark DataFrame of
        :data:`SCHEMA` rows computed by Spark tasks); it is written without passing the driver.
        """
        target = self._target(table)
        if mode == "error" and self._exists(target):
            raise ConflictError(f"table {'.'.join(table)} already exists at {target.shown}")
        frame = getattr(batches, "dataframe", None)
        if frame is not None:
            try:
                self._commit(target, frame, content)
            except (BackendError, ConfigurationError):
                raise
            except Exception as exc:
                raise BackendError(
                    f"Spark could not write table {target.shown}: {_message(exc)}"
                ) from exc
            version = self._version(target)
            tally = getattr(batches, "tally", None)
            if callable(tally):
                tally(self._read(target, version if version >= 0 else None))
            rows = int(getattr(batches, "rows", 0) or 0)
            return TableVersion(
                self.location(table), version, rows, int(getattr(batches, "bytes", 0) or 0)
            )
        counter = _Counter()
        slices = _slices(counter.wrap(expand(batches)), self.slice_bytes)
        try:
            first = next(slices, None)
            second = next(slices, None) if first is not None else None
            if second is None:
                self._commit(target, self._frame(first or []), content)
            else:
                self._staged(target, [first, second], slices, content)  # type: ignore[list-item]
        except Exception as exc:
            if counter.error is not None and exc is not counter.error:
                raise counter.error from None
            if isinstance(exc, (BackendError, ConfigurationError)) or exc is counter.error:
                raise
            raise BackendError(
                f"Spark could not write table {target.shown}: {_message(exc)}"
            ) from exc
        return TableVersion(
            self.location(table), self._version(target), counter.rows, counter.nbytes
        )

    def _frame(self, batches: list[pa.RecordBatch]) -> Any:
        data = pa.Table.from_batches(batches, schema=SCHEMA)
        if data.num_rows == 0:  # Spark cannot infer a schema from no rows
            from pyspark.sql.pandas.types import from_arrow_schema

            return self.spark.createDataFrame([], schema=from_arrow_schema(SCHEMA))
        return self.spark.createDataFrame(data)

    def _staged(
        self,
        target: _Target,
        head: list[list[pa.RecordBatch]],
        rest: Iterator[list[pa.RecordBatch]],
        content: Content,
    ) -> None:
        """Slices into a staging table, then one commit on the target reading it in Spark."""
        token = uuid.uuid4().hex[:16]
        staging: _Target
        if target.name is not None:
            staging = _Target(None, (*target.name[:-1], f"__arcuate_staging_{token}"))
        else:
            assert target.path is not None
            root = self.warehouse.rstrip("/") if self.warehouse else os.path.dirname(target.path)
            if _is_local(root):
                root = str(Path(_local(root)).absolute())
            staging = _Target(f"{root}/_arcuate_staging/{token}", None)
        try:
            mode = "overwrite"
            for piece in (*head, *rest):
                writer = self._frame(piece).write.format("delta").mode(mode)
                if staging.name is not None:
                    writer.saveAsTable(staging.sql)
                else:
                    writer.save(staging.path)
                mode = "append"
            self._commit(target, self._read(staging), content)
        finally:
            self._drop_staging(staging)

    def _drop_staging(self, staging: _Target) -> None:
        try:
            if staging.name is not None:
                self.spark.sql(f"DROP TABLE IF EXISTS {staging.sql}").collect()
            elif staging.path is not None and _is_local(staging.path):
                shutil.rmtree(_local(staging.path), ignore_errors=True)
                parent = Path(_local(staging.path)).parent
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
        except Exception:  # cleanup must not hide the write's own outcome
            pass

    def _commit(self, target: _Target, frame: Any, content: Content) -> None:
        """One commit that makes ``frame`` the table, with the arcuate description."""
        description = table_description(content)
        view = f"arcuate_src_{uuid.uuid4().hex}"
        frame.createOrReplaceTempView(view)
        try:
            if self._ctas_comment is not False:
                try:
                    self._ctas(target, view, description)
                    self._ctas_comment = True
                    return
                except Exception as exc:
                    if not any(m in _message(exc) for m in _NO_COMMENT_CTAS):
                        raise
                    self._ctas_comment = False
            self._create_then_overwrite(target, view, description)
        finally:
            with contextlib.suppress(Exception):
                self.spark.catalog.dropTempView(view)

    def _ctas(self, target: _Target, view: str, description: str) -> None:
        for cdf in (True, False) if self._cdf is not False else (False,):
            props = f" TBLPROPERTIES ({_CDF})" if cdf else ""
            sql = (
                f"CREATE OR REPLACE TABLE {target.sql} USING delta COMMENT "
                f"{sql_string(description)}{props} AS SELECT * FROM {quote_identifier(view)}"
            )
            try:
                self.spark.sql(sql).collect()
                self._cdf = cdf
                return
            except Exception as exc:
                if cdf and any(m in _message(exc) for m in _NO_CDF):
                    self._cdf = False
                    continue
                raise

    def _create_then_overwrite(self, target: _Target, view: str, description: str) -> None:
        """Engines without COMMENT in CTAS: create the table with its description when it is
        missing (an empty first version), then one overwrite commit of the rows."""
        if not self._exists(target):
            self._create_empty(target, description)
        else:
            found = self._description(target)
            if found is not None and parse_description(found) != parse_description(description):
                raise ConflictError(
                    f"table {target.shown} exists with another description ({found[:80]!r}); "
                    "this engine cannot change a table's description",
                    hint="drop the table, or export to another table name",
                )
        frame = self.spark.table(quote_identifier(view))
        writer = frame.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        if target.name is not None:
            writer.saveAsTable(target.sql)
        else:
            writer.save(target.path)

    def _create_empty(self, target: _Target, description: str) -> None:
        ddl = spark_ddl(SCHEMA)
        alias: str | None = None
        if target.name is not None:
            head, where = target.sql, ""
        else:
            assert target.path is not None
            # Sail has no delta.`path` identifiers: a named external table, dropped afterwards
            alias = f"arcuate_new_{uuid.uuid4().hex}"
            head, where = quote_identifier(alias), f" LOCATION {sql_string(target.path)}"
        try:
            for cdf in (True, False) if self._cdf is not False else (False,):
                props = f" TBLPROPERTIES ({_CDF})" if cdf else ""
                sql = (
                    f"CREATE TABLE {head} ({ddl}) USING delta COMMENT {sql_string(description)}"
                    f"{props}{where}"
                )
                try:
                    self.spark.sql(sql).collect()
                    self._cdf = cdf
                    break
                except Exception as exc:
                    if cdf and any(m in _message(exc) for m in _NO_CDF):
                        self._cdf = False
                        if target.path is not None and _is_local(target.path):
                            shutil.rmtree(_local(target.path), ignore_errors=True)
                        continue
                    raise
        finally:
            if alias is not None:
                with contextlib.suppress(Exception):
                    self.spark.sql(f"DROP TABLE IF EXISTS {quote_identifier(alias)}").collect()

    # -- inspection -------------------------------------------------------------------------
    def _exists(self, target: _Target) -> bool:
        if target.name is not None:
            try:
                return bool(self.spark.catalog.tableExists(target.sql))
            except _spark_errors():  # not every engine answers tableExists; the read below decides
                pass
        try:
            self._read(target).schema  # noqa: B018 - resolving the plan is the check
        except _spark_errors():
            return False
        return True

    def _read(self, target: _Target, version: int | None = None) -> Any:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        if target.name is not None:
            return reader.table(target.sql)
        return reader.load(target.path)

    def _table_path(self, target: _Target) -> str | None:
        """A catalog table's storage location (from DESCRIBE TABLE EXTENDED), if shown."""
        if target.path is not None:
            return target.path
        try:
            rows = self.spark.sql(f"DESCRIBE TABLE EXTENDED {target.sql}").collect()
        except _spark_errors():
            return None
        for row in rows:
            if str(row[0]).strip() == "Location":
                return str(row[1]).strip()
        return None

    def _description(self, target: _Target) -> str | None:
        """The Delta description of an existing table, read from its log when reachable."""
        path = self._table_path(target)
        if path is None or not _is_local(path):
            return None
        try:
            from deltalake import DeltaTable

            return DeltaTable(_local(path)).metadata().description  # type: ignore[no-any-return]
        except _delta_errors():
            return None

    def _version(self, target: _Target) -> int:
        """The version just committed (-1 when the engine does not say)."""
        no_history: tuple[type[BaseException], ...] = (*_spark_errors(), LookupError, ValueError)
        try:
            row = self.spark.sql(f"DESCRIBE HISTORY {target.sql} LIMIT 1").collect()
            return int(row[0]["version"])
        except no_history:
            pass
        path = self._table_path(target)
        if path is not None and _is_local(path):
            try:
                from deltalake import DeltaTable

                return int(DeltaTable(_local(path)).version())
            except _delta_errors():
                return -1
        return -1

    def read(self, table: tuple[str, ...], *, version: int | None = None) -> pa.Table:
        """The whole table (optionally at a version) as Arrow in :data:`SCHEMA`."""
        target = self._target(table)
        try:
            data = self._read(target, version).toArrow()
        except Exception as exc:
            raise NotFoundError(
                f"no Delta table at {target.shown}"
                + (f" (version {version})" if version is not None else "")
                + f": {_message(exc).splitlines()[0] if _message(exc) else type(exc).__name__}"
            ) from exc
        return _exact(data)


def _exact(data: pa.Table) -> pa.Table:
    """A table read back through Spark, in :data:`SCHEMA` exactly (field names, UTC zone)."""
    out = conform(data)
    missing = [n for n in SCHEMA.names if n not in out.column_names]
    if missing:
        raise BackendError(f"the table lacks arcuate columns: {', '.join(missing)}")
    return out.cast(SCHEMA)


def _slices(batches: Iterable[pa.RecordBatch], limit: int) -> Iterator[list[pa.RecordBatch]]:
    """Batches grouped into lists of at most ~``limit`` bytes (a big batch is a slice alone)."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        if pending and size + batch.nbytes > limit:
            yield pending
            pending, size = [], 0
        pending.append(batch)
        size += batch.nbytes
    if pending:
        yield pending


class _Counter:
    """Counts rows and bytes as batches stream past; remembers the producer's error."""

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
