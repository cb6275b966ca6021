"""The access log: one record per request the sharing server answered, refusals included, in a
Delta table next to the share catalog, where a provider queries it with any Delta reader.

This module holds what the log is (its columns, where it lives) and the two reads behind
``SHOW ACCESS LOG`` and ``SHOW RECIPIENT USAGE``. The server's writer, which batches records
off the request path through a durable spool, is :mod:`.server.audit`.

A record never holds a token, a URL signature or a query string: the columns below are all
there is, and each is filled from the route, the catalog and the response, never from a
header or a query parameter (the client address aside, which a trusted proxy may forward).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

#: The table's directory, next to the catalog file (a dot no table name can hold, so it never
#: meets a shared table of the warehouse).
LOG_DIR: Final = "arcuate.access_log"
#: Where the server keeps batches it has not yet committed to the table.
SPOOL_SUFFIX: Final = ".spool"

SCHEMA: Final = pa.schema(
    [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("recipient", pa.string()),
        pa.field("client_address", pa.string()),
        pa.field("method", pa.string()),
        pa.field("action", pa.string(), nullable=False),
        pa.field("share", pa.string()),
        pa.field("schema", pa.string()),
        pa.field("table", pa.string()),
        pa.field("table_version", pa.int64()),
        pa.field("status", pa.int32(), nullable=False),
        pa.field("error_code", pa.string()),
        pa.field("bytes_sent", pa.int64(), nullable=False),
        pa.field("duration_ms", pa.float64(), nullable=False),
        pa.field("date", pa.string(), nullable=False),  # the partition: UTC day of ``time``
    ]
)
#: Columns a ``SHOW ACCESS LOG`` row shows (the partition column is implied by ``time``).
SHOWN: Final = tuple(name for name in SCHEMA.names if name != "date")


def log_location(catalog_path: str | os.PathLike[str]) -> Path:
    """The access log's Delta table for a catalog file: ``<catalog dir>/arcuate.access_log``."""
    return Path(catalog_path).absolute().parent / LOG_DIR


def spool_location(catalog_path: str | os.PathLike[str]) -> Path:
    """The server's spool of batches not yet in the table."""
    return log_location(catalog_path).with_name(LOG_DIR + SPOOL_SUFFIX)


def to_table(records: list[dict[str, Any]]) -> pa.Table:
    """Spooled records (``time`` in microseconds since the epoch) as the table's rows."""
    return pa.Table.from_pylist(records, schema=SCHEMA)


def _dataset(location: Path) -> Any:
    """The table as a pyarrow dataset, or None before the server wrote its first record."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(str(location)).to_pyarrow_dataset()
    except TableNotFoundError:
        return None


def _filter(recipient: str | None, share: str | None, since: str | None) -> Any:
    """The dataset filter: names match without case (as the protocol's do); ``since`` also
    prunes whole days (partitions)."""
    import pyarrow.compute as pc

    expr = pc.scalar(True)
    if recipient is not None:
        expr = expr & (pc.utf8_lower(pc.field("recipient")) == recipient.lower())
    if share is not None:
        expr = expr & (pc.utf8_lower(pc.field("share")) == share.lower())
    if since is not None:
        moment = datetime.datetime.fromisoformat(since).astimezone(datetime.UTC)
        expr = expr & (pc.field("date") >= moment.strftime("%Y-%m-%d"))
        expr = expr & (pc.field("time") >= pa.scalar(moment, pa.timestamp("us", tz="UTC")))
    return expr


def read_log(
    location: Path,
    *,
    recipient: str | None = None,
    share: str | None = None,
    since: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """The newest ``limit`` records matching the filters, newest first (``since``: an ISO-8601
    timestamp with its offset, as the planner gives it)."""
    dataset = _dataset(location)
    if dataset is None:
        return []
    table = dataset.to_table(columns=list(SHOWN), filter=_filter(recipient, share, since))
    if table.num_rows > limit:
        import pyarrow.compute as pc

        # the threshold of the newest ``limit`` rows, without sorting them all
        newest = pc.select_k_unstable(table, limit, [("time", "descending")])
        table = table.take(newest)
    table = table.sort_by([("time", "descending"), ("request_id", "ascending")])
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        row["time"] = _iso(row["time"])
    return rows


def usage(
    location: Path,
    recipients: list[str],
    *,
    recipient: str | None = None,
    share: str | None = None,
    since: str | None = None,
) -> list[dict[str, Any]]:
    """Per recipient: requests, refused requests (status 400 and up), bytes sent, first and last
    access. Every recipient of ``recipients`` has a row (zeros when it made no request), and
    so does every recipient the log names (a dropped one too); requests without a recipient
    (refused before one was known) are not counted."""
    totals: dict[str, dict[str, Any]] = {}
    for name in recipients:
        if recipient is None or name.lower() == recipient.lower():
            totals[name.lower()] = _usage_row(name)
    dataset = _dataset(location)
    if dataset is not None:
        columns = ["recipient", "status", "bytes_sent", "time"]
        table = dataset.to_table(columns=columns, filter=_filter(recipient, share, since))
        table = table.filter(table["recipient"].is_valid())
        grouped = table.group_by("recipient").aggregate(
            [("status", "count"), ("bytes_sent", "sum"), ("time", "min"), ("time", "max")]
        )
        refused = table.filter(_at_least(table["status"], 400)).group_by("recipient")
        refusals = dict(_pairs(refused.aggregate([("status", "count")])))
        for row in grouped.to_pylist():
            name = row["recipient"]
            entry = totals.setdefault(name.lower(), _usage_row(name))
            entry["requests"] += row["status_count"]
            entry["refused"] += refusals.get(name, 0)
            entry["bytes_sent"] += row["bytes_sent_sum"] or 0
            entry["first_access"] = _earliest(entry["first_access"], _iso(row["time_min"]))
            entry["last_access"] = _latest(entry["last_access"], _iso(row["time_max"]))
    return [totals[key] for key in sorted(totals)]


def _usage_row(name: str) -> dict[str, Any]:
    return {
        "recipient": name,
        "requests": 0,
        "refused": 0,
        "bytes_sent": 0,
        "first_access": None,
        "last_access": None,
    }


def _at_least(column: Any, value: int) -> Any:
    import pyarrow.compute as pc

    return pc.greater_equal(column, value)


def _pairs(table: pa.Table) -> list[tuple[str, int]]:
    return list(zip(table["recipient"].to_pylist(), table["status_count"].to_pylist(), strict=True))


def _earliest(a: str | None, b: str | None) -> str | None:
    return min(x for x in (a, b) if x is not None) if a or b else None


def _latest(a: str | None, b: str | None) -> str | None:
    return max(x for x in (a, b) if x is not None) if a or b else None


def _iso(moment: datetime.datetime | None) -> str | None:
    """UTC with microseconds and ``Z``, so that text order is time order."""
    if moment is None:
        return None
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
