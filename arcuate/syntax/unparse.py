"""Canonical text for AST nodes: ``parse(unparse(node)) == node`` for every statement.

Keywords are upper case, names are bare when they can be and backtick-quoted otherwise,
strings and coordinates are single-quoted, synonyms take their canonical spelling.
"""

from __future__ import annotations

import re
from functools import singledispatch

from arcuate.syntax import ast

KEYWORDS = frozenset(
    """CREATE SHARE SHARES WITH TABLE FROM EXPERIMENT MODEL VERSION ALIAS WHERE AND NOT IN
    LIKE ILIKE IF EXISTS OR REPLACE OVERWRITE AS PANDAS SPARK DESCRIBE EXPLAIN RECIPIENT
    RECIPIENTS ALTER ROTATE TOKEN DROP GRANT REVOKE SELECT ON TO REMOVE SHOW ALL COMMENT
    EXPIRES PROFILE PROVIDER SECOND SECONDS MINUTE MINUTES HOUR HOURS DAY DAYS
    USING OAUTH ACCESS LIFETIME KEEP OLD FOR ACTIVATION LINK VALID SET UNSET IP LIST RATE LIMIT
    REQUEST REQUESTS PER LOG USAGE SINCE REFUSE PICKLE SIGNED VERIFIED BY
    CERTIFICATE KEY CHAIN SIGSTORE CA INCLUDING DATASETS SCORERS TRACES REDACT MATCHING SOURCES
    HASH""".split()  # noqa: SIM905
)
_BARE = re.compile(r"^[^\W\d][\w\-]*$")
_BARE_KEY = re.compile(r"^[^\W\d][\w\-]*(\.[\w\-]+)*$")


def name(value: str) -> str:
    """A name as written canonically: bare, or in backticks."""
    if _BARE.match(value) and value.upper() not in KEYWORDS:
        return value
    return "`" + value.replace("`", "``") + "`"


def string(value: str) -> str:
    """A single-quoted string literal."""
    return "'" + value.replace("'", "''") + "'"


def number(value: float) -> str:
    """A number literal: integral values without a fraction."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def table_name(node: ast.TableName) -> str:
    return ".".join(name(p) for p in node.parts)


def field_key(key: str) -> str:
    if _BARE_KEY.match(key):
        return key
    if "`" not in key:
        return f"`{key}`"
    return f'"{key}"'


def value(node: ast.Value) -> str:
    return string(node.value) if isinstance(node.value, str) else number(node.value)


def condition(node: ast.Condition) -> str:
    """A condition in MLflow's search syntax (also what MLflow receives as the filter)."""
    lhs = f"{node.entity}.{field_key(node.key)}"
    if node.op in ("IN", "NOT IN"):
        return f"{lhs} {node.op} ({', '.join(value(v) for v in node.values)})"
    return f"{lhs} {node.op} {value(node.values[0])}"


def where(conditions: tuple[ast.Condition, ...]) -> str:
    return " AND ".join(condition(c) for c in conditions)


def _expiry(node: ast.Expiry | None) -> str:
    return f" EXPIRES IN {node.amount} {node.unit}" if node else ""


@singledispatch
def unparse(node: object) -> str:
    """The canonical text of a statement or script."""
    raise TypeError(f"cannot unparse {type(node).__name__}")


@unparse.register
def _(node: ast.Script) -> str:
    return ";\n".join(unparse(s) for s in node.statements)


@unparse.register
def _(node: ast.CreateShare) -> str:
    ine = " IF NOT EXISTS" if node.if_not_exists else ""
    head = f"CREATE SHARE{ine} {name(node.share)} WITH TABLE {table_name(node.table)} FROM "
    src = node.source
    if isinstance(src, ast.ExperimentSource):
        tail = f"EXPERIMENT {name(src.name)}"
        if src.where:
            tail += f" WHERE {where(src.where)}"
        if src.including:
            tail += " INCLUDING " + ", ".join(i.upper() for i in src.including)
            if src.trace_where:
                tail += f" WHERE {where(src.trace_where)}"
    else:
        kind = "PROMPT" if isinstance(src, ast.PromptSource) else "MODEL"
        tail = f"{kind} {name(src.name)}"
        if src.versions:
            tail += " VERSION " + ", ".join(str(v) for v in src.versions)
        elif src.aliases:
            tail += " ALIAS " + ", ".join(name(a) for a in src.aliases)
    return head + tail + _redact(node.redact) + _signed(node)


def _signed(node: ast.CreateShare) -> str:
    """`` SIGNED BY …``: a key, a certificate with its key and chain, or SIGSTORE."""
    if node.signing_sigstore:
        return " SIGNED BY SIGSTORE"
    if node.signing_certificate:
        text = f" SIGNED BY CERTIFICATE {string(node.signing_certificate)}"
        text += f" KEY {string(node.signing_key or '')}"
        if node.signing_chain:
            text += " CHAIN " + ", ".join(string(c) for c in node.signing_chain)
        return text
    return f" SIGNED BY {string(node.signing_key)}" if node.signing_key else ""


def _verified(
    node: ast.CreateExperiment | ast.CreateModel | ast.CreatePrompt | ast.DescribeShared,
) -> str:
    """`` VERIFIED BY '<key>'`` or `` VERIFIED BY CA '<CA certificate>'``."""
    if not node.verify_key:
        return ""
    return f" VERIFIED BY {'CA ' if node.verify_ca else ''}{string(node.verify_key)}"


def _redact(items: tuple[ast.RedactItem, ...]) -> str:
    """`` REDACT …`` as written: ARTIFACTS/DATASETS in capitals, params/tags lower case."""
    if not items:
        return ""
    parts = []
    for item in items:
        if item.target == "datasets":
            text = "DATASETS SOURCES"
        else:
            target = "ARTIFACTS" if item.target == "artifacts" else item.target
            text = f"{target} MATCHING {string(item.pattern or '')}"
        parts.append(text + (" HASH" if item.hash else ""))
    return " REDACT " + ", ".join(parts)


def _create_import(
    kind: str, node: ast.CreateExperiment | ast.CreateModel | ast.CreatePrompt
) -> str:
    ow = " OVERWRITE" if node.overwrite else ""
    coordinate = string(node.coordinate.text)
    refuse = not isinstance(node, ast.CreatePrompt) and node.refuse_pickle
    policy = " REFUSE PICKLE" if refuse else ""
    policy += _verified(node)
    return f"CREATE {kind}{ow} {name(node.name)} AS {node.flavor.upper()} {coordinate}{policy}"


@unparse.register
def _(node: ast.CreateExperiment) -> str:
    return _create_import("EXPERIMENT", node)


@unparse.register
def _(node: ast.CreateModel) -> str:
    return _create_import("MODEL", node)


@unparse.register
def _(node: ast.CreatePrompt) -> str:
    return _create_import("PROMPT", node)


@unparse.register
def _(node: ast.DescribeShared) -> str:
    return f"DESCRIBE {string(node.coordinate.text)}{_verified(node)}"


@unparse.register
def _(node: ast.ShowProviderShares) -> str:
    return f"SHOW SHARES IN PROVIDER {string(node.profile)}"


@unparse.register
def _(node: ast.Explain) -> str:
    return f"EXPLAIN {unparse(node.statement)}"


@unparse.register
def _(node: ast.CreateRecipient) -> str:
    out = "CREATE RECIPIENT" + (" IF NOT EXISTS" if node.if_not_exists else "")
    out += f" {name(node.name)}"
    if node.oauth is not None:
        out += " USING OAUTH" + _length(" ACCESS TOKEN LIFETIME", node.oauth.access_token_lifetime)
    if node.comment is not None:
        out += f" COMMENT {string(node.comment)}"
    out += _expiry(node.expires)
    return out + _delivery(node.profile, node.show_token, node.activation_link)


@unparse.register
def _(node: ast.RotateToken) -> str:
    out = f"ALTER RECIPIENT {name(node.name)} ROTATE TOKEN"
    out += _length(" KEEP OLD FOR", node.keep_old) + _expiry(node.expires)
    return out + _delivery(node.profile, node.show_token, node.activation_link)


def _delivery(profile: str | None, show_token: bool, link: ast.ActivationLink | None) -> str:
    out = f" PROFILE {string(profile)}" if profile is not None else ""
    out += " SHOW TOKEN" if show_token else ""
    if link is not None:
        out += " ACTIVATION LINK" + _length(" VALID FOR", link.valid_for)
    return out


def _length(words: str, node: ast.Expiry | None) -> str:
    return f"{words} {node.amount} {node.unit}" if node else ""


@unparse.register
def _(node: ast.DropRecipient) -> str:
    return "DROP RECIPIENT" + (" IF EXISTS" if node.if_exists else "") + f" {name(node.name)}"


@unparse.register
def _(node: ast.Grant) -> str:
    return f"GRANT SELECT ON SHARE {name(node.share)} TO RECIPIENT {name(node.recipient)}"


@unparse.register
def _(node: ast.Revoke) -> str:
    return f"REVOKE SELECT ON SHARE {name(node.share)} FROM RECIPIENT {name(node.recipient)}"


@unparse.register
def _(node: ast.RemoveTable) -> str:
    return f"ALTER SHARE {name(node.share)} REMOVE TABLE {table_name(node.table)}"


@unparse.register
def _(node: ast.DropShare) -> str:
    return "DROP SHARE" + (" IF EXISTS" if node.if_exists else "") + f" {name(node.name)}"


@unparse.register
def _(node: ast.ShowShares) -> str:
    return "SHOW SHARES"


@unparse.register
def _(node: ast.ShowRecipients) -> str:
    return "SHOW RECIPIENTS"


@unparse.register
def _(node: ast.ShowAllInShare) -> str:
    return f"SHOW ALL IN SHARE {name(node.share)}"


@unparse.register
def _(node: ast.DescribeShare) -> str:
    return f"DESCRIBE SHARE {name(node.share)}"


@unparse.register
def _(node: ast.DescribeRecipient) -> str:
    return f"DESCRIBE RECIPIENT {name(node.name)}"


# -- access: IP access lists, rate limits, the access log (issue 15) ------------------------------
@unparse.register
def _(node: ast.SetIpAccessList) -> str:
    entries = ", ".join(string(str(e.value)) for e in node.entries)
    return f"ALTER RECIPIENT {name(node.name)} SET IP ACCESS LIST ({entries})"


@unparse.register
def _(node: ast.UnsetIpAccessList) -> str:
    return f"ALTER RECIPIENT {name(node.name)} UNSET IP ACCESS LIST"


@unparse.register
def _(node: ast.SetRateLimit) -> str:
    return (
        f"ALTER RECIPIENT {name(node.name)} SET RATE LIMIT {node.requests} REQUESTS PER {node.per}"
    )


@unparse.register
def _(node: ast.UnsetRateLimit) -> str:
    return f"ALTER RECIPIENT {name(node.name)} UNSET RATE LIMIT"


def _filters(recipient: str | None, share: str | None, since: ast.Value | None) -> str:
    out = f" FOR RECIPIENT {name(recipient)}" if recipient is not None else ""
    out += f" ON SHARE {name(share)}" if share is not None else ""
    return out + (f" SINCE {string(str(since.value))}" if since is not None else "")


@unparse.register
def _(node: ast.ShowAccessLog) -> str:
    limit = f" LIMIT {node.limit}" if node.limit is not None else ""
    return "SHOW ACCESS LOG" + _filters(node.recipient, node.share, node.since) + limit


@unparse.register
def _(node: ast.ShowRecipientUsage) -> str:
    return "SHOW RECIPIENT USAGE" + _filters(node.recipient, node.share, node.since)
