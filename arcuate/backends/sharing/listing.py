"""What a profile can read: ``SHOW SHARES IN PROVIDER '<profile>'``.

Lists the shares, then each share's tables, through arcuate's protocol client, and asks
for each table's file list (one ``query`` request: metadata and files, no data downloaded). The
table's description says whether it is an arcuate table and of which kind; the files' sizes
and statistics give its bytes and rows. Everything the server answers is treated as hostile:
listings are bounded, names are checked before they go into a request path or a coordinate,
and counts must be plain non-negative integers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from arcuate.backends.sharing.catalog import check_share_name
from arcuate.backends.sharing.client import SharingAnswerError, SharingClient
from arcuate.errors import ArcuateError, BackendError, ConfigurationError
from arcuate.format.schema import SUPPORTED_VERSIONS, parse_description

#: Bounds on what a server may list: pages per listing, and tables in all.
MAX_PAGES: Final = 1000
MAX_TABLES: Final = 10_000
_MAX_COUNT: Final = 2**63 - 1


@dataclass
class SharedListing:
    """The profile's endpoint, the shares it can read, and one row per table (a share without
    tables has one row with no schema or table)."""

    endpoint: str
    shares: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


#: ``attempt(what, fn)``: ``fn()`` retried while the server does not answer (the reader's).
Attempt = Callable[[str, Callable[[], Any]], Any]


def list_shared(
    profile_path: str, endpoint: str, client: SharingClient, attempt: Attempt
) -> SharedListing:
    """Every share, schema and table ``profile_path`` can read, with kind, rows and bytes.

    ``client`` speaks to the profile's server; each request goes through
    ``attempt``, so a server that does not answer is retried for the ``retry_seconds`` budget.

    Raises:
        UnreachableError: the server did not answer (or kept failing) until time was up.
        BackendError: the server refuses the token or answers an error, or it lists more than
            :data:`MAX_TABLES` tables or :data:`MAX_PAGES` pages.
        SharingAnswerError: (ARC730) a listing page is malformed.
    """
    listing = SharedListing(endpoint)
    try:
        shares = list(
            _paged(
                profile_path,
                "shares",
                lambda **kw: attempt("listing shares", lambda: client.list_shares(**kw)),
            )
        )
        budget = [MAX_TABLES]
        for share in shares:
            listing.shares.append(share.name)
            listing.rows += _share_rows(client, attempt, profile_path, share, budget)
    except ArcuateError:
        raise
    except Exception as exc:
        raise _listing_error(profile_path, listing.endpoint, exc) from exc
    return listing


def _share_rows(
    client: SharingClient, attempt: Attempt, profile_path: str, share: Any, budget: list[int]
) -> list[dict[str, Any]]:
    """One row per table of ``share`` (one empty row if it has none)."""
    problem = _bad_name("share", share.name)
    if problem:
        return [_row(profile_path, share.name, None, None, problem=problem)]
    tables = list(
        _paged(
            profile_path,
            f"tables of share {share.name!r}",
            lambda **kw: attempt(
                f"listing the tables of share {share.name!r}",
                lambda: client.list_all_tables(share.name, **kw),
            ),
            budget,
        )
    )
    if not tables:
        return [_row(profile_path, share.name, None, None)]
    return [_table_row(client, attempt, profile_path, t) for t in tables]


def _paged(
    profile_path: str,
    what: str,
    call: Callable[..., Any],
    budget: list[int] | None = None,
) -> Iterator[Any]:
    """The items of a paged listing, within :data:`MAX_PAGES` pages and the table budget."""
    token: str | None = None
    for _ in range(MAX_PAGES):
        page = call(page_token=token) if token else call()
        items = list(page.items)
        if budget is not None:
            budget[0] -= len(items)
            if budget[0] < 0:
                raise BackendError(
                    f"the sharing server of {profile_path!r} lists more than {MAX_TABLES} "
                    "tables; arcuate stops there"
                )
        yield from items
        token = page.next_page_token
        if not token:
            return
    raise BackendError(
        f"the sharing server of {profile_path!r} sent more than {MAX_PAGES} pages of {what}; "
        "arcuate stops there"
    )


def _table_row(
    client: SharingClient, attempt: Attempt, profile_path: str, table: Any
) -> dict[str, Any]:
    """A table's kind, format version, rows, bytes and version; a problem instead of a failure."""
    for kind, value in (("share", table.share), ("schema", table.schema), ("table", table.name)):
        problem = _bad_name(kind, value)
        if problem:
            return _row(profile_path, table.share, table.schema, table.name, problem=problem)
    try:
        response = attempt(
            f"listing the files of table {table.share}.{table.schema}.{table.name}",
            lambda: client.query_files(table.share, table.schema, table.name),
        )
    except SharingAnswerError as exc:
        return _row(profile_path, table.share, table.schema, table.name, problem=exc.problem)
    except ArcuateError:
        raise
    except Exception as exc:
        if _status(exc) == 401:
            raise
        return _row(profile_path, table.share, table.schema, table.name, problem=_first_line(exc))
    marker = parse_description(response.metadata.description)
    rows, size = _counts(response.files)
    problem = None
    if marker is None:
        problem = "not an arcuate table (its description carries no arcuate format marker)"
    elif marker[0] not in SUPPORTED_VERSIONS:
        problem = f"arcuate format version {marker[0]}; this arcuate reads " + ", ".join(
            map(str, sorted(SUPPORTED_VERSIONS))
        )
    return _row(
        profile_path,
        table.share,
        table.schema,
        table.name,
        kind=marker[1] if marker else None,
        format_version=marker[0] if marker else None,
        rows=rows,
        bytes=size,
        version=_count(response.version),
        problem=problem,
    )


def _row(
    profile_path: str, share: str, schema: str | None, table: str | None, **values: Any
) -> dict[str, Any]:
    coordinate = f"{profile_path}#{share}.{schema}.{table}" if table is not None else None
    if values.get("problem"):
        coordinate = None  # nothing to import from
    row: dict[str, Any] = {"share": share, "schema": schema, "table": table, "kind": None}
    row.update(format_version=None, rows=None, bytes=None, version=None)
    row.update(values)
    row["coordinate"] = coordinate
    row.setdefault("problem", None)
    return row


def _counts(files: list[Any]) -> tuple[int | None, int | None]:
    """(rows, bytes) of a table's files; rows is None when a file has no usable statistics."""
    rows: int | None = 0
    size: int | None = 0
    for f in files:
        n = _num_records(getattr(f, "stats", None))
        rows = None if rows is None or n is None else rows + n
        s = _count(getattr(f, "size", None))
        size = None if size is None or s is None else size + s
    return rows, size


def _num_records(stats: Any) -> int | None:
    if not isinstance(stats, str):
        return None
    try:
        doc = json.loads(stats)
    except (ValueError, RecursionError):
        return None
    return _count(doc.get("numRecords")) if isinstance(doc, dict) else None


def _count(value: Any) -> int | None:
    """A count the server sent, if it is a plain integer in range."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        return None
    return value


def _bad_name(kind: str, name: Any) -> str | None:
    """Why a listed name cannot be used in a request or a coordinate, or None."""
    if not isinstance(name, str):
        return f"the server listed a {kind} name that is not text"
    try:
        check_share_name(kind, name)
    except ConfigurationError as exc:
        return f"the server listed an {exc.message}"
    return None


def _status(exc: BaseException) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _listing_error(profile_path: str, endpoint: str, exc: Exception) -> BackendError:
    """The client's failure as an error naming the profile, the endpoint and what to check."""
    status = _status(exc)
    if status == 401:
        return BackendError(
            f"the sharing server at {endpoint} rejected the token of profile {profile_path!r}",
            hint="ask the provider for a new profile (the token may have expired or been rotated)",
        )
    if status is None:
        return BackendError(
            f"cannot reach the sharing server at {endpoint} (profile {profile_path!r}): "
            f"{_first_line(exc)}",
            hint="check that the server is running and that the profile's endpoint is the URL "
            "the provider serves at",
        )
    return BackendError(
        f"the sharing server at {endpoint} answered {status} listing what profile "
        f"{profile_path!r} can read: {_first_line(exc)}"
    )
