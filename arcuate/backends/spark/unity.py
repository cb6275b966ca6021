"""Unity Catalog shares (Databricks): ``CREATE SHARE`` and ``ALTER SHARE ... ADD TABLE`` in SQL.

Every identifier is backtick-quoted with embedded backticks doubled, so a name holding
backticks, dots, spaces, quotes or semicolons stays one identifier and cannot add SQL.
:func:`unity_sql` is pure, so ``EXPLAIN`` can show exactly what would run.

Errors are never swallowed. The one error treated as success is "this table is already in
the share", recognised by its error class (``RESOURCE_ALREADY_EXISTS``) or Databricks' message
for it, and then checked with ``SHOW ALL IN SHARE``: the same table under the same shared name
is ``exists``; anything else under that name is a conflict.
"""

from __future__ import annotations

import re
from typing import Any, Final

from arcuate.backends.protocols import AddResult
from arcuate.backends.spark.store import quote_identifier, quote_name, split_name
from arcuate.errors import BackendError, ConfigurationError, ConflictError

#: Error classes Databricks raises when the object is already part of the share.
ALREADY_SHARED_CLASSES: Final = frozenset(
    {"RESOURCE_ALREADY_EXISTS", "SHARED_OBJECT_ALREADY_EXISTS"}
)
_ALREADY_SHARED_MESSAGE: Final = re.compile(
    r"\[?RESOURCE_ALREADY_EXISTS\]?|already (exists|been added|shared) in (the )?share", re.I
)


def unity_sql(
    share: str,
    table_parts: tuple[str, ...] | list[str],
    *,
    shared_as: tuple[str, str] | None = None,
) -> list[str]:
    """The statements that add a catalog table to a Unity Catalog share, in order.

    ``table_parts`` is the table's name (``catalog, schema, table``; 1-3 parts);
    ``shared_as`` the ``(schema, table)`` recipients see, when it differs from the default.
    """
    parts = tuple(table_parts)
    if not 1 <= len(parts) <= 3:
        raise ConfigurationError(f"a Unity Catalog table name has 1-3 parts, got {parts!r}")
    alter = f"ALTER SHARE {quote_identifier(share)} ADD TABLE {quote_name(parts)}"
    if shared_as is not None:
        alter += f" AS {quote_name(shared_as)}"
    return [f"CREATE SHARE IF NOT EXISTS {quote_identifier(share)}", alter]


def error_class(exc: BaseException) -> str | None:
    """The Spark/Databricks error class of an exception (``getCondition``/``getErrorClass``)."""
    for getter in ("getCondition", "getErrorClass"):
        fn = getattr(exc, getter, None)
        if callable(fn):
            try:
                value = fn()
            except TypeError:  # a getter of that name that is not pyspark's (it takes arguments)
                continue
            if value:
                return str(value)
    return None


def is_already_shared(exc: BaseException) -> bool:
    """Whether an ``ALTER SHARE ... ADD TABLE`` failure means "already in the share"."""
    cls = error_class(exc)
    if cls is not None:
        return cls in ALREADY_SHARED_CLASSES
    return bool(_ALREADY_SHARED_MESSAGE.search(str(exc)))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class UnityShareCatalog:
    """A :class:`~arcuate.backends.protocols.ShareCatalog` over Databricks Unity Catalog."""

    def __init__(self, spark: Any) -> None:
        if spark is None:
            raise ConfigurationError(
                "the unity share catalog runs CREATE SHARE through Spark SQL and needs a "
                "SparkSession",
                hint="pass spark=<SparkSession>, or use share_catalog='local'",
            )
        self.spark = spark

    def add_table(
        self, share: str, schema: str, table: str, location: str, *, if_not_exists: bool = True
    ) -> AddResult:
        """Add the catalog table ``location`` to ``share`` as ``schema.table``.

        Returns ``added``, or ``exists`` when the same table is already shared under that name.

        Raises:
            ConflictError: the name is taken in the share by another table.
            BackendError: Spark/Unity Catalog refused a statement (its message included).
        """
        parts = split_name(location)
        statements = unity_sql(share, parts, shared_as=(schema, table))
        try:
            self.spark.sql(statements[0]).collect()
        except Exception as exc:
            raise BackendError(
                f"could not create share {share!r}: {_first_line(exc)}", hint=statements[0]
            ) from exc
        try:
            self.spark.sql(statements[1]).collect()
        except Exception as exc:
            if not is_already_shared(exc):
                raise BackendError(
                    f"could not add table {'.'.join(parts)} to share {share!r}: {_first_line(exc)}",
                    hint=statements[1],
                ) from exc
            holder = self._shared_object(share, f"{schema}.{table}")
            if holder is not None and split_name(holder) != parts:
                raise ConflictError(
                    f"share {share!r} already has {schema}.{table}, for table {holder}",
                    hint="pick another shared name, or remove it from the share first",
                ) from exc
            # Like the local catalog: re-sharing the same table under the same name is a no-op
            # (every re-export runs this), whatever IF NOT EXISTS says.
            return "exists"
        return "added"

    def _shared_object(self, share: str, shared_as: str) -> str | None:
        """The table behind ``shared_as`` in the share (``SHOW ALL IN SHARE``), if listed."""
        from pyspark.errors import PySparkException

        try:
            rows = self.spark.sql(f"SHOW ALL IN SHARE {quote_identifier(share)}").collect()
        except PySparkException:
            return None  # listing is only a cross-check; the error class already decided
        for row in rows:
            data = row.asDict() if hasattr(row, "asDict") else dict(row)
            if str(data.get("name", "")) == shared_as and data.get("shared_object"):
                return str(data["shared_object"])
        return None
