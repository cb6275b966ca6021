"""Access statements (issue 15): recipients' IP access lists and rate limits, the access log.

The policies are kept in the share catalog, which a running ``arcuate serve`` re-reads on the
next request, so they apply without a restart. The access log is the server's (a Delta table
next to the catalog); these statements only read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arcuate.backends.protocols import AccessCatalog, RecipientCatalog
from arcuate.engine.context import Context
from arcuate.engine.result import StatementResult
from arcuate.errors import BackendError, ConfigurationError
from arcuate.format.access import DEFAULT_LOG_ROWS, rate_text
from arcuate.plan.ops import CatalogCommand

Handler = Callable[[CatalogCommand, Context, RecipientCatalog, str], StatementResult]


def _catalog(op: CatalogCommand, catalog: RecipientCatalog) -> AccessCatalog:
    if not isinstance(catalog, AccessCatalog):
        raise BackendError(
            f"the {op.catalog} share catalog keeps no access policies or access log",
            hint="use the local catalog (share_catalog='local') with arcuate serve",
        )
    return catalog


def _name(op: CatalogCommand) -> str:
    if not op.name:
        raise ConfigurationError(f"{op.action.replace('_', ' ')} needs a recipient name")
    return op.name


def _set_ip_access_list(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    stored = _catalog(op, catalog).set_ip_access_list(_name(op), list(op.ip_access_list))
    summary = {"recipient": op.name, "ip_access_list": stored}
    return StatementResult(statement, "set ip access list", summary)


def _unset_ip_access_list(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    _catalog(op, catalog).set_ip_access_list(_name(op), None)
    summary = {"recipient": op.name, "ip_access_list": None}
    return StatementResult(statement, "unset ip access list", summary)


def _set_rate_limit(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    if op.rate_requests is None or op.rate_per_seconds is None:
        raise ConfigurationError("set rate limit needs a number of requests and a unit")
    _catalog(op, catalog).set_rate_limit(_name(op), op.rate_requests, op.rate_per_seconds)
    limit = rate_text(op.rate_requests, op.rate_per_seconds)
    return StatementResult(statement, "set rate limit", {"recipient": op.name, "rate_limit": limit})


def _unset_rate_limit(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    _catalog(op, catalog).set_rate_limit(_name(op), None)
    summary = {"recipient": op.name, "rate_limit": None}
    return StatementResult(statement, "unset rate limit", summary)


def _show_access_log(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    limit = op.limit or DEFAULT_LOG_ROWS
    rows = _catalog(op, catalog).access_log(
        recipient=op.name, share=op.share, since=op.since, limit=limit
    )
    summary: dict[str, Any] = {"requests": len(rows)}
    if len(rows) == limit:
        summary["note"] = f"the newest {limit}; LIMIT n shows more, SINCE '<time>' fewer"
    return StatementResult(statement, "show access log", summary, rows=rows)


def _show_recipient_usage(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    rows = _catalog(op, catalog).usage(recipient=op.name, share=op.share, since=op.since)
    summary = {"recipients": len(rows), "requests": sum(r["requests"] for r in rows)}
    return StatementResult(statement, "show recipient usage", summary, rows=rows)


HANDLERS: dict[str, Handler] = {
    "set_ip_access_list": _set_ip_access_list,
    "unset_ip_access_list": _unset_ip_access_list,
    "set_rate_limit": _set_rate_limit,
    "unset_rate_limit": _unset_rate_limit,
    "show_access_log": _show_access_log,
    "show_recipient_usage": _show_recipient_usage,
}
