"""The planner: AST -> Plan, pure (no I/O, no engine imports).

Valid syntax that cannot mean anything with the configured backends is rejected here, at the
statement's span, before anything runs: a whole script is planned before its first step.
What the backends can do arrives as plain data (:mod:`arcuate.plan.capabilities`), built at
the edge from their plug-in records: this module imports no backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from arcuate.errors import PlanError, Span
from arcuate.format import access as rules
from arcuate.format.names import SHARE_NAME as _SHARE_NAME
from arcuate.format.redaction import Rule
from arcuate.plan import ops
from arcuate.plan.capabilities import Capabilities
from arcuate.syntax import ast
from arcuate.syntax.unparse import unparse, where

#: How a catalog statement is named in errors (the others: the action's words).
_STATEMENTS = {
    "rotate_token": "ALTER RECIPIENT ... ROTATE TOKEN",
    "remove_table": "ALTER SHARE ... REMOVE TABLE",
    "set_ip_access_list": "ALTER RECIPIENT ... SET IP ACCESS LIST",
    "unset_ip_access_list": "ALTER RECIPIENT ... UNSET IP ACCESS LIST",
    "set_rate_limit": "ALTER RECIPIENT ... SET RATE LIMIT",
    "unset_rate_limit": "ALTER RECIPIENT ... UNSET RATE LIMIT",
}


@dataclass(frozen=True)
class Plan:
    """The steps of one statement, in order; ``explain_only`` plans are shown, never run."""

    statement: ast.Statement
    text: str
    steps: tuple[ops.Operator, ...]
    explain_only: bool = False
    span: Span = field(default=ast.NO_SPAN, compare=False)
    source: str = field(default="<string>", compare=False)
    #: What running an explained statement would need that is missing here (EXPLAIN only).
    notes: tuple[str, ...] = ()


class _Planner:
    def __init__(self, caps: Capabilities, text: str, source: str, *, explaining: bool) -> None:
        self.caps = caps
        self.text = text
        self.source = source
        self.explaining = explaining
        self.notes: list[str] = []

    def error(self, span: Span, message: str, code: str, hint: str | None = None) -> PlanError:
        return PlanError(
            message, text=self.text, span=span, source=self.source, code=code, hint=hint
        )

    def needs_spark(self, span: Span, message: str, alternative: str) -> None:
        """No SparkSession here: an error, but only a note when the statement is explained
        (EXPLAIN shows what it would do; running it is what needs the session)."""
        hint = f"{self.caps.spark_hint}, or {alternative}"
        if self.explaining:
            self.notes.append(f"note: running it needs a SparkSession [ARC202]: {hint}")
            return
        raise self.error(span, message, "ARC202", hint=hint)

    def share_name(self, kind: str, value: str, span: Span) -> str:
        if not _SHARE_NAME.match(value):
            raise self.error(
                span,
                f"{kind} name {value!r} cannot be shared: Delta Sharing names have no dot, space,"
                " '/' or control character",
                "ARC201",
            )
        return value

    def table_name(self, table: ast.TableName) -> None:
        """Each part of the name must be one the table store can hold."""
        rule = self.caps.table.table_names
        for part in table.parts:
            if rule is not None and not rule.accepts(part):
                raise self.error(
                    table.span,
                    f"table name part {part!r} cannot name a table of the "
                    f"{self.caps.table_backend} table store: use {rule.allowed}",
                    "ARC203",
                )

    def catalog_can(self, command: ops.CatalogCommand, span: Span) -> ops.CatalogCommand:
        """The share catalog must run this statement (some only add tables to shares)."""
        actions = self.caps.catalog.catalog_actions
        if actions is not None and command.action not in actions:
            words = _STATEMENTS.get(command.action, command.action.replace("_", " ").upper())
            raise self.error(
                span,
                f"the {self.caps.share_catalog} share catalog cannot run {words}",
                "ARC204",
                hint=self.caps.catalog.instead,
            )
        return command

    def flavor(self, flavor: ast.Flavor, span: Span) -> ast.Flavor:
        if flavor == "spark" and not self.caps.has_spark:
            self.needs_spark(
                span, "AS SPARK needs a SparkSession, and none is configured", "use AS PANDAS"
            )
        return flavor

    def steps(self, stmt: ast.Statement) -> tuple[ops.Operator, ...]:
        caps = self.caps
        if isinstance(stmt, ast.CreateShare):
            if caps.catalog.needs_spark and not caps.has_spark:
                self.needs_spark(
                    stmt.span,
                    f"the {caps.share_catalog} share catalog runs CREATE SHARE through Spark SQL;"
                    " no SparkSession",
                    "use share_catalog='local'",
                )
            self.share_name("share", stmt.share, stmt.span)
            self.share_name("schema", stmt.table.schema, stmt.table.span)
            self.share_name("table", stmt.table.table, stmt.table.span)
            self.table_name(stmt.table)
            src = stmt.source
            redact = self.redaction(stmt.redact, src)
            read: ops.Operator
            if isinstance(src, ast.ExperimentSource):
                read = ops.ExportExperiment(
                    src.name,
                    where(src.where) if src.where else None,
                    datasets="datasets" in src.including,
                    scorers="scorers" in src.including,
                    traces="traces" in src.including,
                    trace_filter=where(src.trace_where) if src.trace_where else None,
                    redact=redact,
                )
                content = "experiment"
            elif isinstance(src, ast.PromptSource):
                read = ops.ExportPrompt(src.name, src.versions, src.aliases)
                content = "prompt"
            else:
                read = ops.ExportModel(src.name, src.versions, src.aliases, redact)
                content = "model"
            return (
                read,
                ops.WriteTable(
                    stmt.table.parts,
                    content,  # type: ignore[arg-type]
                    caps.table_backend,
                    stmt.signing_key,
                    f"{stmt.share}.{stmt.table.schema}.{stmt.table.table}",
                    stmt.signing_certificate,
                    stmt.signing_chain,
                    stmt.signing_sigstore,
                ),
                ops.AddToShare(
                    stmt.share,
                    stmt.table.schema,
                    stmt.table.table,
                    caps.share_catalog,
                    stmt.if_not_exists,
                    stmt.table.parts,
                ),
            )
        if isinstance(stmt, ast.CreateExperiment | ast.CreateModel | ast.CreatePrompt):
            flavor = self.flavor(stmt.flavor, stmt.span)
            coord = stmt.coordinate.text
            imp: ops.Operator
            if isinstance(stmt, ast.CreateExperiment):
                imp = ops.ImportExperiment(
                    stmt.name, coord, stmt.overwrite, stmt.refuse_pickle, stmt.verify_key,
                    stmt.verify_ca,
                )  # fmt: skip
            elif isinstance(stmt, ast.CreatePrompt):
                imp = ops.ImportPrompt(
                    stmt.name, coord, stmt.overwrite, stmt.verify_key, stmt.verify_ca
                )
            else:
                imp = ops.ImportModel(
                    stmt.name, coord, stmt.overwrite, stmt.refuse_pickle, stmt.verify_key,
                    stmt.verify_ca,
                )  # fmt: skip
            return (ops.ReadShare(coord, flavor), imp)
        if isinstance(stmt, ast.DescribeShared):
            coord = stmt.coordinate.text
            describe = ops.DescribeShared(coord, stmt.verify_key, stmt.verify_ca)
            return (ops.ReadShare(coord, "pandas"), describe)
        if isinstance(stmt, ast.ShowProviderShares):
            return (ops.ListProviderShares(stmt.profile),)
        return (self.catalog_can(self.catalog_command(stmt), stmt.span),)

    def redaction(self, items: tuple[ast.RedactItem, ...], source: object) -> tuple[Rule, ...]:
        """The REDACT clause as rules the export applies (issue 16, docs/trust.md)."""
        if not items:
            return ()
        if isinstance(source, ast.PromptSource):
            raise self.error(
                items[0].span,
                "REDACT applies to experiments and models; a prompt has no params, artifacts "
                "or dataset inputs",
                "ARC209",
                "remove the REDACT clause (a prompt's tags are shared as they are)",
            )
        if isinstance(source, ast.ExperimentSource) and source.including:
            raise self.error(
                items[0].span,
                "REDACT does not cover what INCLUDING adds (evaluation records, scorers)",
                "ARC211",
                "share them in a statement of their own without REDACT, or leave INCLUDING out",
            )
        hashed = next((item for item in items if item.hash), None)
        if hashed is not None and not self.caps.redaction_key:
            # refused before any statement runs; the key itself never reaches the planner
            message = "REDACT … HASH needs a provider key, and none is configured"
            hint = "set the redaction_key setting or ARCUATE_REDACTION_KEY"
            if not self.explaining:
                raise self.error(hashed.span, message, "ARC208", hint)
            self.notes.append(f"note: running it needs a provider key [ARC208]: {hint}")
        return tuple(
            Rule.make(item.target, item.pattern, "hash" if item.hash else "drop")
            for item in items
        )

    def catalog_command(self, stmt: ast.Statement) -> ops.CatalogCommand:
        cat = self.caps.share_catalog
        if isinstance(stmt, ast.CreateRecipient):
            self.share_name("recipient", stmt.name, stmt.span)
            return ops.CatalogCommand(
                "create_recipient",
                name=stmt.name,
                if_exists=stmt.if_not_exists,
                comment=stmt.comment,
                expires_in_seconds=stmt.expires.seconds if stmt.expires else None,
                profile_path=stmt.profile,
                show_token=stmt.show_token,
                catalog=cat,
                oauth=stmt.oauth is not None,
                access_token_seconds=_seconds(stmt.oauth.access_token_lifetime)
                if stmt.oauth
                else None,
                activation_link=stmt.activation_link is not None,
                link_seconds=_link_seconds(stmt.activation_link),
            )
        if isinstance(stmt, ast.RotateToken):
            return ops.CatalogCommand(
                "rotate_token",
                name=stmt.name,
                expires_in_seconds=stmt.expires.seconds if stmt.expires else None,
                profile_path=stmt.profile,
                show_token=stmt.show_token,
                catalog=cat,
                keep_old_seconds=_seconds(stmt.keep_old),
                activation_link=stmt.activation_link is not None,
                link_seconds=_link_seconds(stmt.activation_link),
            )
        if isinstance(stmt, ast.DropRecipient):
            return ops.CatalogCommand(
                "drop_recipient", name=stmt.name, if_exists=stmt.if_exists, catalog=cat
            )
        if isinstance(stmt, ast.Grant):
            return ops.CatalogCommand("grant", name=stmt.recipient, share=stmt.share, catalog=cat)
        if isinstance(stmt, ast.Revoke):
            return ops.CatalogCommand("revoke", name=stmt.recipient, share=stmt.share, catalog=cat)
        if isinstance(stmt, ast.RemoveTable):
            return ops.CatalogCommand(
                "remove_table",
                share=stmt.share,
                table=(stmt.table.schema, stmt.table.table),
                catalog=cat,
            )
        if isinstance(stmt, ast.DropShare):
            return ops.CatalogCommand(
                "drop_share", share=stmt.name, if_exists=stmt.if_exists, catalog=cat
            )
        if isinstance(stmt, ast.ShowShares):
            return ops.CatalogCommand("show_shares", catalog=cat)
        if isinstance(stmt, ast.ShowRecipients):
            return ops.CatalogCommand("show_recipients", catalog=cat)
        if isinstance(stmt, ast.ShowAllInShare):
            return ops.CatalogCommand("show_all_in_share", share=stmt.share, catalog=cat)
        if isinstance(stmt, ast.DescribeShare):
            return ops.CatalogCommand("describe_share", share=stmt.share, catalog=cat)
        if isinstance(stmt, ast.DescribeRecipient):
            return ops.CatalogCommand("describe_recipient", name=stmt.name, catalog=cat)
        access = self.access_command(stmt)
        if access is not None:
            return access
        raise TypeError(f"no plan for {type(stmt).__name__}")  # pragma: no cover


    # -- access: IP access lists, rate limits, the access log (issue 15) ---------------------
    def access_command(self, stmt: ast.Statement) -> ops.CatalogCommand | None:
        cat = self.caps.share_catalog
        if isinstance(stmt, ast.SetIpAccessList):
            entries = self.access_list(stmt)
            return ops.CatalogCommand(
                "set_ip_access_list", name=stmt.name, ip_access_list=entries, catalog=cat
            )
        if isinstance(stmt, ast.UnsetIpAccessList):
            return ops.CatalogCommand("unset_ip_access_list", name=stmt.name, catalog=cat)
        if isinstance(stmt, ast.SetRateLimit):
            per = rules.RATE_UNITS[stmt.per]
            try:
                rules.rate_limit(stmt.requests, per)
            except ValueError as exc:
                raise self.error(stmt.span, str(exc), "ARC206") from None
            return ops.CatalogCommand(
                "set_rate_limit",
                name=stmt.name,
                rate_requests=stmt.requests,
                rate_per_seconds=per,
                catalog=cat,
            )
        if isinstance(stmt, ast.UnsetRateLimit):
            return ops.CatalogCommand("unset_rate_limit", name=stmt.name, catalog=cat)
        if isinstance(stmt, ast.ShowAccessLog | ast.ShowRecipientUsage):
            return self.log_command(stmt)
        return None

    def access_list(self, stmt: ast.SetIpAccessList) -> tuple[str, ...]:
        """The entries, checked one by one (the error points at the bad one)."""
        for entry in stmt.entries:
            try:
                rules.network(str(entry.value))
            except ValueError as exc:
                raise self.error(entry.span, str(exc), "ARC205") from None
        try:
            return tuple(rules.access_list([str(e.value) for e in stmt.entries]))
        except ValueError as exc:
            raise self.error(stmt.span, str(exc), "ARC205") from None

    def log_command(self, stmt: ast.ShowAccessLog | ast.ShowRecipientUsage) -> ops.CatalogCommand:
        since = None
        if stmt.since is not None:
            try:
                since = rules.moment(str(stmt.since.value)).isoformat()
            except ValueError as exc:
                raise self.error(stmt.since.span, str(exc), "ARC207") from None
        if isinstance(stmt, ast.ShowRecipientUsage):
            action: ops.CatalogAction = "show_recipient_usage"
            limit = None
        else:
            action = "show_access_log"
            try:
                limit = rules.log_rows(stmt.limit)
            except ValueError as exc:
                raise self.error(stmt.span, str(exc), "ARC206") from None
        return ops.CatalogCommand(
            action,
            name=stmt.recipient,
            share=stmt.share,
            since=since,
            limit=limit,
            catalog=self.caps.share_catalog,
        )


def _seconds(length: ast.Expiry | None) -> int | None:
    return length.seconds if length else None


def _link_seconds(link: ast.ActivationLink | None) -> int | None:
    return _seconds(link.valid_for) if link else None


def plan(
    stmt: ast.Statement,
    caps: Capabilities | None = None,
    *,
    text: str = "",
    source: str = "<string>",
    explain: bool = False,
) -> Plan:
    """Compile one statement into a Plan (to be explained only, with ``explain=True`` or an
    ``EXPLAIN`` statement).

    Raises:
        PlanError: the statement cannot run with these capabilities (at its span); when it is
            only explained, a missing SparkSession is a note in the plan instead.
    """
    explaining = explain or isinstance(stmt, ast.Explain)
    planner = _Planner(caps or Capabilities(), text or unparse(stmt), source, explaining=explaining)
    if explaining:
        inner = stmt.statement if isinstance(stmt, ast.Explain) else stmt
        steps = planner.steps(inner)
        return Plan(
            inner,
            unparse(inner),
            steps,
            explain_only=True,
            span=stmt.span,
            source=source,
            notes=tuple(planner.notes),
        )
    return Plan(stmt, unparse(stmt), planner.steps(stmt), span=stmt.span, source=source)


def plan_script(
    script: ast.Script, caps: Capabilities | None = None, *, explain: bool = False
) -> list[Plan]:
    """Plan every statement of a script before any of them runs (or, ``explain``, to show)."""
    return [
        plan(s, caps, text=script.text, source=script.source, explain=explain)
        for s in script.statements
    ]
