"""Catalog statements: recipients, tokens, grants and share housekeeping.

``CREATE RECIPIENT`` and ``ALTER RECIPIENT ... ROTATE TOKEN`` are the only places a bearer
token (or an OAuth recipient's client secret) exists in clear: it goes into the recipient's
profile file (mode 0600: the ``PROFILE`` path, else ``profiles/<recipient>.share`` next to the
catalog) and is stored only as a salted hash. Results, reprs and logs show the file's path,
never the token; ``SHOW TOKEN`` prints the profile once, and only to a terminal (a notebook, a
pipe or a log would keep it). With ``ACTIVATION LINK`` no token exists yet: the result holds a
one-time link, and the server makes the token when the recipient uses it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any

from arcuate.backends.protocols import RecipientCatalog
from arcuate.engine.access import HANDLERS as ACCESS_HANDLERS
from arcuate.engine.context import Context
from arcuate.engine.result import StatementResult
from arcuate.errors import BackendError, ConfigurationError, NotFoundError
from arcuate.plan.ops import CatalogCommand


def run_catalog_command(op: CatalogCommand, ctx: Context, statement: str) -> StatementResult:
    """Run one catalog statement against the configured share catalog.

    The planner has already refused statements the catalog cannot run (its capabilities);
    this check covers a catalog given to the Context directly.
    """
    catalog = ctx.share_catalog
    if not isinstance(catalog, RecipientCatalog):
        raise BackendError(
            f"the {op.catalog} share catalog cannot {op.action.replace('_', ' ')}: it keeps no "
            "recipients, grants or share changes",
            hint="use the local catalog (share_catalog='local') with arcuate serve",
        )
    return _HANDLERS[op.action](op, ctx, catalog, statement)


def _name(op: CatalogCommand) -> str:
    if not op.name:
        raise ConfigurationError(f"{op.action.replace('_', ' ')} needs a recipient name")
    return op.name


def _share(op: CatalogCommand) -> str:
    share = op.share or (op.name if op.action == "drop_share" else None)
    if not share:
        raise ConfigurationError(f"{op.action.replace('_', ' ')} needs a share name")
    return share


def _profile_path(op: CatalogCommand, ctx: Context) -> Path:
    """The ``PROFILE`` path, else ``profiles/<recipient>.share`` next to the catalog file."""
    if op.profile_path:
        return Path(op.profile_path).absolute()
    return Path(ctx.settings.catalog_path).absolute().parent / "profiles" / f"{op.name}.share"


def _prepare(op: CatalogCommand, ctx: Context) -> tuple[Path, IO[str] | None]:
    """Where the profile goes, and the terminal for SHOW TOKEN; checked before any change."""
    path = _profile_path(op, ctx)
    if path.is_dir():
        raise ConfigurationError(f"cannot write the profile {path}: it is a directory")
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), path.parent)
    if not os.access(folder, os.W_OK):
        raise ConfigurationError(
            f"cannot write the profile {path}: {folder} is not writable; nothing was changed",
            hint="give another path with PROFILE '<file>'",
        )
    if not op.show_token:
        return path, None
    if not sys.stdout.isatty():
        raise ConfigurationError(
            "SHOW TOKEN shows the token on a terminal only, and this output is not one "
            "(a notebook, a pipe or a log would keep it); nothing was changed",
            code="ARC310",
            hint=f"leave out SHOW TOKEN; the profile file {path} (mode 0600) will hold the token",
        )
    return path, sys.stdout


def _deliver(
    token: str, record: dict[str, Any], ctx: Context, prepared: tuple[Path, IO[str] | None]
) -> str:
    """Write the profile (0600), print it with SHOW TOKEN; return the file's path.

    A bearer token goes into a v1 profile; an OAuth recipient's client id and secret into a
    v2 ``oauth_client_credentials`` profile naming the server's token endpoint.
    """
    from arcuate.backends.sharing.profiles import oauth_profile_text, profile_text, write_private

    target, terminal = prepared
    endpoint = ctx.settings.endpoint
    if record.get("client_id"):
        text = oauth_profile_text(endpoint, str(record["client_id"]), token)
    else:
        text = profile_text(endpoint, token, record.get("token_expires_at"))
    path = write_private(target, text)
    if terminal is not None:
        name = record["name"]
        terminal.write(f"Profile of recipient {name} (shown once; also in {path}):\n{text}")
        terminal.flush()
    return str(path)


def _note(record: dict[str, Any]) -> str:
    what = "OAuth client secret" if record.get("client_id") else "bearer token"
    return f"the profile file (mode 0600) holds the {what}: send it to {record['name']} privately"


# -- activation links (issue 15) -----------------------------------------------------------------
def _link_seconds(op: CatalogCommand) -> int | None:
    """How long a requested activation link stays valid; None: no link (write a file)."""
    from arcuate.backends.sharing.credentials import DEFAULT_ACTIVATION_SECONDS

    if not op.activation_link:
        return None
    return op.link_seconds or DEFAULT_ACTIVATION_SECONDS


def _linked(code: str, record: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The summary fields of a new activation link: the one-time URL and until when."""
    from arcuate.backends.sharing.profiles import activation_url

    name = record["name"]
    return {
        "activation_link": activation_url(ctx.settings.endpoint, code),
        "activation_link_expires_at": record.get("activation_link_expires_at"),
        "note": f"send this one-time link to {name} privately: it gives the profile once, and "
        f"the credential is made then; if {name} finds it used, rotate with a new link",
    }


def _create_recipient(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    prepared = None if op.activation_link else _prepare(op, ctx)
    record, token = catalog.create_recipient(
        _name(op),
        if_not_exists=op.if_exists,
        comment=op.comment,
        expires_in_seconds=op.expires_in_seconds,
        endpoint=ctx.settings.endpoint,
        oauth=op.oauth,
        access_token_seconds=op.access_token_seconds,
        activation_seconds=_link_seconds(op),
    )
    summary: dict[str, Any] = {"recipient": record["name"], "created": token is not None}
    if token is None:
        summary["note"] = "recipient already exists; its token is unchanged and not shown again"
        return StatementResult(statement, "create recipient", summary)
    summary["authentication_type"] = record["authentication_type"]
    if prepared is None:
        summary.update(_linked(token, record, ctx))
        return StatementResult(statement, "create recipient", summary)
    try:
        path = _deliver(token, record, ctx, prepared)
    except BaseException:
        catalog.drop_recipient(record["name"], if_exists=True)  # nobody could use that token
        raise
    summary.update(
        token_expires_at=record["token_expires_at"], profile_path=path, note=_note(record)
    )
    return StatementResult(statement, "create recipient", summary)


def _rotate_token(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    name = _name(op)
    prepared = None if op.activation_link else _prepare(op, ctx)
    token = catalog.rotate_token(
        name,
        expires_in_seconds=op.expires_in_seconds,
        endpoint=ctx.settings.endpoint,
        keep_old_seconds=op.keep_old_seconds,
        activation_seconds=_link_seconds(op),
    )
    record = catalog.recipient(name)
    if record is None:  # dropped by someone else since: nobody can use that token
        raise NotFoundError(f"recipient {name!r} was dropped while its token was rotated")
    summary = {"recipient": record["name"], "old_token_works_until": _old_until(record)}
    if prepared is None:
        summary.update(_linked(token, record, ctx))
        return StatementResult(statement, "rotate token", summary)
    summary.update(
        token_expires_at=record["token_expires_at"],
        profile_path=_deliver(token, record, ctx, prepared),
        note=_note(record),
    )
    return StatementResult(statement, "rotate token", summary)


def _old_until(record: dict[str, Any]) -> str | None:
    """Until when the replaced credential keeps working (None: it stopped at once)."""
    return record.get("rotated_token_expires_at")


def _drop_recipient(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    dropped = catalog.drop_recipient(_name(op), if_exists=op.if_exists)
    return StatementResult(statement, "drop recipient", {"recipient": op.name, "dropped": dropped})


def _grant(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    changed = catalog.grant(_share(op), _name(op))
    summary = {"share": op.share, "recipient": op.name, "granted": changed}
    return StatementResult(statement, "grant", summary)


def _revoke(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    changed = catalog.revoke(_share(op), _name(op))
    summary = {"share": op.share, "recipient": op.name, "revoked": changed}
    return StatementResult(statement, "revoke", summary)


def _remove_table(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    if len(op.table) < 2:
        raise ConfigurationError("remove table needs schema.table")
    schema, table = op.table[-2], op.table[-1]
    catalog.remove_table(_share(op), schema, table)
    summary = {"share": op.share, "removed": f"{schema}.{table}"}
    return StatementResult(statement, "remove table", summary)


def _drop_share(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    share = _share(op)
    dropped = catalog.drop_share(share, if_exists=op.if_exists)
    return StatementResult(statement, "drop share", {"share": share, "dropped": dropped})


def _share_row(share: dict[str, Any], recipients: list[str]) -> dict[str, Any]:
    schemas = share.get("schemas") or []
    return {
        "name": share["name"],
        "schemas": len(schemas),
        "tables": sum(len(sc.get("tables") or []) for sc in schemas),
        "recipients": recipients,
    }


def _granted(catalog: RecipientCatalog) -> dict[str, list[str]]:
    """share name (lower case) -> recipients that may read it."""
    out: dict[str, list[str]] = {}
    for r in catalog.recipients():
        for share in r["shares"]:
            out.setdefault(share.lower(), []).append(r["name"])
    return out


def _show_shares(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    granted = _granted(catalog)
    rows = [_share_row(s, granted.get(str(s["name"]).lower(), [])) for s in catalog.shares()]
    return StatementResult(statement, "show shares", {"shares": len(rows)}, rows=rows)


def _show_recipients(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    rows = catalog.recipients()
    return StatementResult(statement, "show recipients", {"recipients": len(rows)}, rows=rows)


def _find_share(catalog: RecipientCatalog, name: str) -> dict[str, Any]:
    share = next((s for s in catalog.shares() if str(s["name"]).lower() == name.lower()), None)
    if share is None:
        raise NotFoundError(f"share {name!r} does not exist", hint="SHOW SHARES lists the shares")
    return dict(share)


def _show_all_in_share(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    share = _find_share(catalog, _share(op))
    rows = [
        {
            "name": f"{sc['name']}.{t['name']}",
            "type": "TABLE",
            "location": t.get("location"),
            "id": t.get("id"),
            "history_shared": bool(t.get("historyShared", False)),
            "start_version": int(t.get("startVersion", 0) or 0),
        }
        for sc in share.get("schemas") or []
        for t in sc.get("tables") or []
    ]
    summary = {"share": share["name"], "tables": len(rows)}
    return StatementResult(statement, "show all in share", summary, rows=rows)


def _describe_share(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    share = _find_share(catalog, _share(op))
    row = _share_row(share, _granted(catalog).get(str(share["name"]).lower(), []))
    return StatementResult(statement, "describe share", dict(row), rows=[row])


def _describe_recipient(
    op: CatalogCommand, ctx: Context, catalog: RecipientCatalog, statement: str
) -> StatementResult:
    record = catalog.recipient(_name(op))
    if record is None:
        raise NotFoundError(
            f"recipient {op.name!r} does not exist", hint="SHOW RECIPIENTS lists the recipients"
        )
    # one row per credential, current and past (kind, id, state, times; never a hash)
    rows = list(record.pop("credentials", []))
    return StatementResult(statement, "describe recipient", dict(record), rows=rows)


_HANDLERS = {
    "create_recipient": _create_recipient,
    "rotate_token": _rotate_token,
    "drop_recipient": _drop_recipient,
    "grant": _grant,
    "revoke": _revoke,
    "remove_table": _remove_table,
    "drop_share": _drop_share,
    "show_shares": _show_shares,
    "show_recipients": _show_recipients,
    "show_all_in_share": _show_all_in_share,
    "describe_share": _describe_share,
    "describe_recipient": _describe_recipient,
    **ACCESS_HANDLERS,  # IP access lists, rate limits, the access log (issue 15)
}
