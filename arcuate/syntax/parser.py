"""The parser façade: the only module that imports lark.

One LALR parser is built from ``grammar/arcuate.lark`` and reused. Lark's exceptions never
escape: they become :class:`ArcuateSyntaxError` with the source name, line, column, a caret
and a message in the dialect's own words.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark import __version__ as lark_version
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    VisitError,
)
from lark.grammar import Rule
from lark.lexer import TerminalDef
from lark.tree import Meta

from arcuate.errors import ArcuateError, ArcuateSyntaxError, Span, StatementError
from arcuate.syntax import ast, tables

# -- grammar loading ---------------------------------------------------------------------------


def grammar_text() -> str:
    """The grammar: from the installed package (wheel), else from the source checkout."""
    try:
        packaged = resources.files("arcuate").joinpath("grammar/arcuate.lark")
        if packaged.is_file():
            return packaged.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - odd installs
        pass
    checkout = Path(__file__).resolve().parents[2] / "grammar" / "arcuate.lark"
    return checkout.read_text(encoding="utf-8")


_OPTIONS: dict[str, Any] = {
    "parser": "lalr",
    "propagate_positions": True,
    "maybe_placeholders": False,
}


@cache
def _lark() -> Lark:
    """The parser: its LALR tables from the user's cache when the grammar is unchanged
    (:mod:`.tables`), else built from the grammar and saved for the next process."""
    text = grammar_text()
    digest = tables.key(text, lark_version, _OPTIONS)
    saved = tables.load(digest)
    if saved is not None:
        try:
            # the loader lark's own standalone parsers use; plain data in, no code
            loaded: Lark = Lark._load_from_dict(  # type: ignore[no-untyped-call]
                saved["data"], saved["memo"]
            )
            return loaded
        except Exception:  # a lark that lays its tables out otherwise: build them again
            pass
    parser = Lark(text, **_OPTIONS)
    with contextlib.suppress(Exception):
        data, memo = parser.memo_serialize([TerminalDef, Rule])
        tables.save(digest, data, memo)
    return parser


# -- helpers -----------------------------------------------------------------------------------


def _is_rule(item: object) -> bool:
    return isinstance(item, ast.RedactItem)


def _clause(children: list[Any], rule: str) -> Any:
    """The value of a ``SIGNED BY …`` / ``VERIFIED BY …`` clause among ``children``."""
    for c in children:
        if isinstance(c, tuple) and c[0] == rule:
            return c[1]
    return None



def _span_of(meta: Meta | Token) -> Span:
    return Span(
        meta.line or 1,
        meta.column or 1,
        meta.end_line or meta.line or 1,
        meta.end_column or (meta.column or 1) + 1,
        meta.start_pos or 0,
        meta.end_pos or 0,
    )


def unquote(token: Token | str) -> str:
    """A name or string token's value: quotes removed, doubled quotes undone."""
    text = str(token)
    if len(text) >= 2 and text[0] in "'\"`" and text[-1] == text[0]:
        q = text[0]
        return text[1:-1].replace(q + q, q)
    return text


_ENTITIES: dict[str, ast.Entity] = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
    "dataset": "datasets",
    "datasets": "datasets",
}
_ATTRIBUTES = {
    "run_id": "string",
    "run_name": "string",
    "status": "string",
    "user_id": "string",
    "artifact_uri": "string",
    "lifecycle_stage": "string",
    "start_time": "number",
    "end_time": "number",
    "created": "number",
    "creation_time": "number",
    "last_update_time": "number",
}
_DATASET_KEYS = ("name", "digest", "context")
#: The fields of a trace filter (``INCLUDING TRACES WHERE``), MLflow's trace search syntax:
#: ``trace.<key>`` (or ``attributes.<key>``), ``tags.<key>``, ``metadata.<key>``.
_TRACE_ENTITIES: dict[str, ast.Entity] = {
    "trace": "trace",
    "attribute": "trace",
    "attributes": "trace",
    "attr": "trace",
    "tag": "tags",
    "tags": "tags",
    "metadata": "metadata",
}
_TRACE_ATTRIBUTES = {
    "request_id": "string",
    "client_request_id": "string",
    "name": "string",
    "run_id": "string",
    "status": "string",
    "timestamp_ms": "number",
    "execution_time_ms": "number",
    "end_time_ms": "number",
}
#: the string trace attributes MLflow compares with IN
_TRACE_IN = frozenset({"request_id", "client_request_id", "name", "run_id", "status"})


@dataclass(frozen=True)
class _Item:
    """One item after INCLUDING, before the list is checked."""

    kind: str
    span: Span


@dataclass(frozen=True)
class _Including:
    """The checked INCLUDING list."""

    items: tuple[str, ...]
    trace_where: tuple[ast.Condition, ...] = ()


@dataclass(frozen=True)
class _TraceItem(_Item):
    """``TRACES [WHERE ...]`` after INCLUDING."""

    where: tuple[ast.Condition, ...] = ()


class _SemanticError(ArcuateError):
    """Raised inside the transformer; the façade turns it into a positioned syntax error."""

    def __init__(self, message: str, span: Span, code: str, hint: str | None = None) -> None:
        super().__init__(message, code=code, hint=hint)
        self.span = span


def _check_pattern(target: str, pattern: str, token: Token) -> None:
    """A MATCHING regex that does not compile is an error pointing at the bad character."""
    if target == "artifacts":
        return  # a glob always compiles
    try:
        re.compile(pattern)
    except re.error as exc:
        # +1 for the opening quote; exact when the pattern holds no doubled quotes
        offset = (token.start_pos or 0) + 1 + (exc.pos or 0)
        span = Span(
            token.line or 1,
            (token.column or 1) + 1 + (exc.pos or 0),
            token.line or 1,
            (token.column or 1) + 2 + (exc.pos or 0),
            offset,
            offset + 1,
        )
        raise _SemanticError(
            f"REDACT pattern does not compile: {exc.msg} at position {exc.pos}",
            span,
            "ARC101",
        ) from None


@v_args(meta=True)
class _ToAst(Transformer[Token, Any]):
    """Builds AST nodes; checks what the grammar alone cannot (coordinates, filters)."""

    # names and literals
    def table_name(self, meta: Meta, parts: list[Token]) -> ast.TableName:
        return ast.TableName(tuple(unquote(p) for p in parts), _span_of(meta))

    def coordinate(self, meta: Meta, children: list[Token]) -> ast.Coordinate:
        token = children[0]
        text = unquote(token)
        span = _span_of(meta)
        profile, sep, fragment = text.rpartition("#")
        parts = fragment.split(".")
        if not sep or not profile or len(parts) != 3 or not all(parts):
            raise _SemanticError(
                f"{text!r} is not a share coordinate: expected "
                "'<profile file>#<share>.<schema>.<table>'",
                span,
                "ARC120",
                hint="for example 'provider.share#ml.default.churn_runs'",
            )
        return ast.Coordinate(profile, parts[0], parts[1], parts[2], span)

    def flavor(self, meta: Meta, children: list[Token]) -> str:
        return str(children[0]).lower()

    # filters
    def _field(self, token: Token) -> tuple[ast.Entity, str]:
        entity_text, _, key = str(token).partition(".")
        key = unquote(key)
        span = _span_of(token)
        if entity_text.lower() not in _ENTITIES:
            raise _SemanticError(
                f"{entity_text}.{key} filters traces (INCLUDING TRACES WHERE ...), not runs",
                span,
                "ARC131",
            )
        entity = _ENTITIES[entity_text.lower()]
        if entity == "attributes" and key not in _ATTRIBUTES:
            raise _SemanticError(
                f"unknown run attribute {key!r} in filter; known: {', '.join(sorted(_ATTRIBUTES))}",
                span,
                "ARC131",
            )
        if entity == "datasets" and key not in _DATASET_KEYS:
            raise _SemanticError(
                f"unknown dataset field {key!r} in filter; known: {', '.join(_DATASET_KEYS)}",
                span,
                "ARC131",
            )
        if not key:
            raise _SemanticError("empty key in filter field", span, "ARC131")
        return entity, key

    def _value(self, token: Token) -> ast.Value:
        span = _span_of(token)
        if token.type == "STRING":
            if str(token).startswith("`"):
                raise _SemanticError(
                    "filter values are quoted with '...', not backticks", span, "ARC132"
                )
            return ast.Value(unquote(token), span)
        return ast.Value(float(token), span)

    def _check(
        self, entity: ast.Entity, key: str, op: str, values: list[ast.Value], span: Span
    ) -> None:
        numeric = entity == "metrics" or (
            entity == "attributes" and _ATTRIBUTES.get(key) == "number"
        )
        for v in values:
            if numeric and isinstance(v.value, str):
                raise _SemanticError(
                    f"{entity}.{key} compares with a number, not a string", v.span, "ARC133"
                )
            if not numeric and not isinstance(v.value, str):
                raise _SemanticError(
                    f"{entity}.{key} compares with a quoted string, e.g. '{_fmt(v.value)}'",
                    v.span,
                    "ARC133",
                )
        if numeric and op in ("LIKE", "ILIKE"):
            raise _SemanticError(
                f"{op} compares strings; {entity}.{key} is a number", span, "ARC133"
            )
        if entity == "metrics" and op in ("IN", "NOT IN"):
            raise _SemanticError(
                "IN works on params, tags and attributes, not metrics", span, "ARC133"
            )

    def compare(self, meta: Meta, children: list[Token]) -> ast.Condition:
        field, op, value = children
        entity, key = self._field(field)
        op_text = "!=" if str(op) == "<>" else str(op)
        values = [self._value(value)]
        span = _span_of(meta)
        self._check(entity, key, op_text, values, span)
        return ast.Condition(entity, key, op_text, tuple(values), span)  # type: ignore[arg-type]

    def _pattern(self, meta: Meta, children: list[Token], op: str) -> ast.Condition:
        field, _kw, value = children
        entity, key = self._field(field)
        values = [self._value(value)]
        span = _span_of(meta)
        self._check(entity, key, op, values, span)
        return ast.Condition(entity, key, op, tuple(values), span)  # type: ignore[arg-type]

    def like(self, meta: Meta, children: list[Token]) -> ast.Condition:
        return self._pattern(meta, children, "LIKE")

    def ilike(self, meta: Meta, children: list[Token]) -> ast.Condition:
        return self._pattern(meta, children, "ILIKE")

    def within(self, meta: Meta, children: list[Token]) -> ast.Condition:
        field = children[0]
        negated = any(isinstance(c, Token) and c.type == "NOT" for c in children)
        raw = [c for c in children[1:] if isinstance(c, Token) and c.type in ("STRING", "NUMBER")]
        entity, key = self._field(field)
        op = "NOT IN" if negated else "IN"
        values = [self._value(v) for v in raw]
        span = _span_of(meta)
        self._check(entity, key, op, values, span)
        return ast.Condition(entity, key, op, tuple(values), span)  # type: ignore[arg-type]

    def where(self, meta: Meta, children: list[Any]) -> tuple[ast.Condition, ...]:
        return tuple(c for c in children if isinstance(c, ast.Condition))

    # -- a trace filter: INCLUDING TRACES WHERE <conditions in MLflow's trace search syntax>
    def _trace_field(self, token: Token) -> tuple[ast.Entity, str]:
        entity_text, _, key = str(token).partition(".")
        key = unquote(key)
        span = _span_of(token)
        entity = _TRACE_ENTITIES.get(entity_text.lower())
        if entity is None or not key:
            raise _SemanticError(
                f"{entity_text}.{key} is not a trace field; a trace filter names trace.<field>,"
                " tags.<key> or metadata.<key>",
                span,
                "ARC131",
            )
        if entity == "trace" and key not in _TRACE_ATTRIBUTES:
            raise _SemanticError(
                f"unknown trace field {key!r} in filter; known: "
                f"{', '.join(sorted(_TRACE_ATTRIBUTES))}",
                span,
                "ARC131",
            )
        return entity, key

    def _trace_condition(self, meta: Meta, field: Token, op: str, raw: list[Token]) -> Any:
        entity, key = self._trace_field(field)
        values = [self._value(t) for t in raw]
        numeric = entity == "trace" and _TRACE_ATTRIBUTES[key] == "number"
        shown = f"{entity}.{key}"
        for v in values:
            if numeric != isinstance(v.value, float):
                kind = "a number" if numeric else "a quoted string"
                raise _SemanticError(f"{shown} compares with {kind}", v.span, "ARC133")
        allowed = {"=", "!=", "LIKE", "ILIKE"}
        if numeric:
            allowed = {"=", "!=", "<", "<=", ">", ">="}
        elif entity == "trace" and key in _TRACE_IN:
            allowed |= {"IN", "NOT IN"}
        if op not in allowed:
            raise _SemanticError(
                f"{shown} takes {', '.join(sorted(allowed))} in a trace filter, not {op}",
                _span_of(meta),
                "ARC133",
            )
        return ast.Condition(entity, key, op, tuple(values), _span_of(meta))  # type: ignore[arg-type]

    def trace_compare(self, meta: Meta, children: list[Token]) -> ast.Condition:
        field, op, value = children
        op_text = "!=" if str(op) == "<>" else str(op)
        return self._trace_condition(meta, field, op_text, [value])  # type: ignore[no-any-return]

    def trace_like(self, meta: Meta, children: list[Token]) -> ast.Condition:
        return self._trace_condition(meta, children[0], "LIKE", [children[2]])  # type: ignore[no-any-return]

    def trace_ilike(self, meta: Meta, children: list[Token]) -> ast.Condition:
        return self._trace_condition(meta, children[0], "ILIKE", [children[2]])  # type: ignore[no-any-return]

    def trace_within(self, meta: Meta, children: list[Token]) -> ast.Condition:
        negated = any(isinstance(c, Token) and c.type == "NOT" for c in children)
        raw = [c for c in children[1:] if isinstance(c, Token) and c.type in ("STRING", "NUMBER")]
        op = "NOT IN" if negated else "IN"
        return self._trace_condition(meta, children[0], op, raw)  # type: ignore[no-any-return]

    def trace_where(self, meta: Meta, children: list[Any]) -> tuple[ast.Condition, ...]:
        return tuple(c for c in children if isinstance(c, ast.Condition))

    def include_traces(self, meta: Meta, children: list[Any]) -> _Item:
        where = next((c for c in children if isinstance(c, tuple)), ())
        return _TraceItem("traces", _span_of(meta), where)

    # sources
    def experiment_source(self, meta: Meta, children: list[Any]) -> ast.ExperimentSource:
        name = unquote(children[1])
        where: tuple[ast.Condition, ...] = ()
        including = _Including(())
        for child in children[2:]:
            if isinstance(child, _Including):
                including = child
            else:
                where = child
        return ast.ExperimentSource(
            name, where, _span_of(meta), including.items, including.trace_where
        )

    def including(self, meta: Meta, children: list[Any]) -> _Including:
        items = [c for c in children if isinstance(c, _Item)]
        seen: set[str] = set()
        for item in items:
            if item.kind in seen:
                raise _SemanticError(
                    f"{item.kind.upper()} is listed twice after INCLUDING", item.span, "ARC138"
                )
            seen.add(item.kind)
        order = ("datasets", "scorers", "traces")
        where = next((i.where for i in items if isinstance(i, _TraceItem)), ())
        return _Including(
            tuple(sorted(seen, key=lambda k: order.index(k) if k in order else 99)), where
        )

    # -- INCLUDING items: evaluation datasets and registered scorers
    def include_datasets(self, meta: Meta, children: list[Any]) -> _Item:
        return _Item("datasets", _span_of(meta))

    def include_scorers(self, meta: Meta, children: list[Any]) -> _Item:
        return _Item("scorers", _span_of(meta))

    def version_selector(self, meta: Meta, children: list[Token]) -> tuple[str, tuple[Any, ...]]:
        nums = [c for c in children if c.type == "INT"]
        versions = tuple(int(n) for n in nums)
        for n, v in zip(nums, versions, strict=True):
            if v < 1:
                raise _SemanticError("model versions start at 1", _span_of(n), "ARC134")
        return ("versions", versions)

    def alias_selector(self, meta: Meta, children: list[Token]) -> tuple[str, tuple[Any, ...]]:
        return ("aliases", tuple(unquote(c) for c in children[1:]))

    def model_source(self, meta: Meta, children: list[Any]) -> ast.ModelSource:
        name = unquote(children[1])
        versions: tuple[int, ...] = ()
        aliases: tuple[str, ...] = ()
        if len(children) > 2:
            kind, values = children[2]
            if kind == "versions":
                versions = values
            else:
                aliases = values
        return ast.ModelSource(name, versions, aliases, _span_of(meta))

    def prompt_source(self, meta: Meta, children: list[Any]) -> ast.PromptSource:
        model = self.model_source(meta, children)
        return ast.PromptSource(model.name, model.versions, model.aliases, model.span)

    # signed tables (issue 16)
    def signed_by(self, meta: Meta, children: list[Token]) -> tuple[str, dict[str, Any]]:
        return ("signed_by", {"signing_key": unquote(children[2])})

    def signed_by_certificate(
        self, meta: Meta, children: list[Token]
    ) -> tuple[str, dict[str, Any]]:
        # SIGNED BY CERTIFICATE 'leaf' KEY 'key' [CHAIN 'a', 'b', ...]
        strings = [unquote(c) for c in children if c.type == "STRING"]
        return (
            "signed_by",
            {
                "signing_certificate": strings[0],
                "signing_key": strings[1],
                "signing_chain": tuple(strings[2:]),
            },
        )

    def signed_by_sigstore(self, meta: Meta, children: list[Token]) -> tuple[str, dict[str, Any]]:
        return ("signed_by", {"signing_sigstore": True})

    def verified_by(self, meta: Meta, children: list[Token]) -> tuple[str, dict[str, Any]]:
        return ("verified_by", {"verify_key": unquote(children[2])})

    def verified_by_ca(self, meta: Meta, children: list[Token]) -> tuple[str, dict[str, Any]]:
        return ("verified_by", {"verify_key": unquote(children[3]), "verify_ca": True})

    # statements
    def create_share(self, meta: Meta, children: list[Any]) -> ast.CreateShare:
        if_not_exists = any(isinstance(c, Tree) and c.data == "if_not_exists" for c in children)
        rest = [c for c in children if not isinstance(c, Tree)]
        # CREATE SHARE name WITH TABLE table FROM source
        share = unquote(rest[2])
        table = next(c for c in rest if isinstance(c, ast.TableName))
        sources = (ast.ExperimentSource, ast.ModelSource, ast.PromptSource)
        source = next(c for c in rest if isinstance(c, sources))
        redact = next(  # the REDACT rules (SIGNED BY is a tuple too: a pair of strings)
            (c for c in children if c and isinstance(c, tuple) and _is_rule(c[0])),
            (),
        )
        signing = _clause(children, "signed_by") or {}
        return ast.CreateShare(
            share, table, source, if_not_exists, _span_of(meta), redact=redact, **signing
        )

    def redact(self, meta: Meta, children: list[Any]) -> tuple[ast.RedactItem, ...]:
        return tuple(c for c in children if isinstance(c, ast.RedactItem))

    def redact_matching(self, meta: Meta, children: list[Any]) -> ast.RedactItem:
        target = str(children[0]).lower()
        if target not in ("params", "tags", "artifacts"):
            raise _SemanticError(
                f"REDACT {children[0]} MATCHING: expected params, tags or ARTIFACTS",
                _span_of(children[0]),
                "ARC101",
            )
        pattern = unquote(children[2])
        hashed = any(isinstance(c, Tree) and c.data == "redact_hash" for c in children)
        if target == "artifacts" and hashed:
            raise _SemanticError(
                "REDACT ARTIFACTS cannot HASH: a matching file is left out",
                _span_of(meta),
                "ARC101",
            )
        _check_pattern(target, pattern, children[2])
        return ast.RedactItem(target, pattern, hashed, _span_of(meta))  # type: ignore[arg-type]

    def redact_sources(self, meta: Meta, children: list[Any]) -> ast.RedactItem:
        if str(children[0]).lower() != "datasets":
            raise _SemanticError(
                f"REDACT {children[0]} SOURCES: expected DATASETS SOURCES",
                _span_of(children[0]),
                "ARC101",
            )
        hashed = any(isinstance(c, Tree) and c.data == "redact_hash" for c in children)
        return ast.RedactItem("datasets", None, hashed, _span_of(meta))

    def _import(self, meta: Meta, children: list[Any]) -> dict[str, Any]:
        overwrite = any(
            isinstance(c, Tree) and c.data in ("or_replace", "overwrite") for c in children
        )
        flavor = next(
            (c for c in children if isinstance(c, str) and c in ("pandas", "spark")), None
        )
        tokens = [c for c in children if isinstance(c, Token) and c.type in ("NAME", "STRING")]
        coordinate = next(c for c in children if isinstance(c, ast.Coordinate))
        refuse = any(isinstance(c, Tree) and c.data == "refuse_pickle" for c in children)
        return {
            "name": unquote(tokens[0]),
            "coordinate": coordinate,
            "flavor": flavor or "pandas",
            "overwrite": overwrite,
            "refuse_pickle": refuse,
            "span": _span_of(meta),
            **(_clause(children, "verified_by") or {}),
        }

    def create_experiment(self, meta: Meta, children: list[Any]) -> ast.CreateExperiment:
        return ast.CreateExperiment(**self._import(meta, children))

    def create_model(self, meta: Meta, children: list[Any]) -> ast.CreateModel:
        return ast.CreateModel(**self._import(meta, children))

    def create_prompt(self, meta: Meta, children: list[Any]) -> ast.CreatePrompt:
        fields = self._import(meta, children)
        del fields["refuse_pickle"]  # prompts hold no files: the grammar has no policy for them
        return ast.CreatePrompt(**fields)

    def describe_shared(self, meta: Meta, children: list[Any]) -> ast.DescribeShared:
        return ast.DescribeShared(
            children[1], _span_of(meta), **(_clause(children, "verified_by") or {})
        )

    def show_provider_shares(self, meta: Meta, children: list[Any]) -> ast.ShowProviderShares:
        return ast.ShowProviderShares(unquote(children[-1]), _span_of(meta))

    def explain(self, meta: Meta, children: list[Any]) -> ast.Explain:
        inner = children[1]
        if isinstance(inner, ast.Explain):
            raise _SemanticError("EXPLAIN EXPLAIN explains nothing more", _span_of(meta), "ARC135")
        return ast.Explain(inner, _span_of(meta))

    # sharing statements
    def comment(self, meta: Meta, children: list[Token]) -> tuple[str, str]:
        return ("comment", unquote(children[1]))

    def expiry(self, meta: Meta, children: list[Token]) -> tuple[str, ast.Expiry]:
        return ("expires", _duration("a token lifetime", children[2], children[3], meta))

    def profile(self, meta: Meta, children: list[Token]) -> tuple[str, str]:
        return ("profile", unquote(children[1]))

    def show_token(self, meta: Meta, children: list[Token]) -> tuple[str, bool]:
        return ("show_token", True)

    @staticmethod
    def _options(children: list[Any]) -> dict[str, Any]:
        return {c[0]: c[1] for c in children if isinstance(c, tuple)}

    @staticmethod
    def _names(children: list[Any]) -> list[str]:
        return [
            unquote(c) for c in children if isinstance(c, Token) and c.type in ("NAME", "STRING")
        ]

    @staticmethod
    def _flag(children: list[Any], rule: str) -> bool:
        return any(isinstance(c, Tree) and c.data == rule for c in children)

    def create_recipient(self, meta: Meta, children: list[Any]) -> ast.CreateRecipient:
        options = _delivered(self._options(children))
        return ast.CreateRecipient(
            self._names(children)[0],
            if_not_exists=self._flag(children, "if_not_exists"),
            span=_span_of(meta),
            **options,
        )

    def alter_recipient(self, meta: Meta, children: list[Any]) -> ast.RotateToken:
        options = _delivered(self._options(children))
        return ast.RotateToken(self._names(children)[0], span=_span_of(meta), **options)

    # credentials: OAuth recipients, grace windows, activation links
    def using_oauth(self, meta: Meta, children: list[Token]) -> tuple[str, ast.OAuth]:
        lifetime = None
        if len(children) > 2:  # ACCESS TOKEN LIFETIME <n> <unit>
            lifetime = _duration("an access token lifetime", children[5], children[6], meta)
        return ("oauth", ast.OAuth(lifetime, _span_of(meta)))

    def keep_old(self, meta: Meta, children: list[Token]) -> tuple[str, ast.Expiry]:
        return ("keep_old", _duration("a grace window", children[3], children[4], meta))

    def activation_link(self, meta: Meta, children: list[Token]) -> tuple[str, ast.ActivationLink]:
        valid = None
        if len(children) > 2:  # VALID FOR <n> <unit>
            valid = _duration("an activation link's validity", children[4], children[5], meta)
        return ("activation_link", ast.ActivationLink(valid, _span_of(meta)))

    def drop_recipient(self, meta: Meta, children: list[Any]) -> ast.DropRecipient:
        return ast.DropRecipient(
            self._names(children)[0], self._flag(children, "if_exists"), _span_of(meta)
        )

    def grant(self, meta: Meta, children: list[Any]) -> ast.Grant:
        share, recipient = self._names(children)
        return ast.Grant(share, recipient, _span_of(meta))

    def revoke(self, meta: Meta, children: list[Any]) -> ast.Revoke:
        share, recipient = self._names(children)
        return ast.Revoke(share, recipient, _span_of(meta))

    def alter_share(self, meta: Meta, children: list[Any]) -> ast.RemoveTable:
        table = next(c for c in children if isinstance(c, ast.TableName))
        return ast.RemoveTable(self._names(children)[0], table, _span_of(meta))

    def drop_share(self, meta: Meta, children: list[Any]) -> ast.DropShare:
        return ast.DropShare(
            self._names(children)[0], self._flag(children, "if_exists"), _span_of(meta)
        )

    def show_shares(self, meta: Meta, children: list[Any]) -> ast.ShowShares:
        return ast.ShowShares(_span_of(meta))

    def show_recipients(self, meta: Meta, children: list[Any]) -> ast.ShowRecipients:
        return ast.ShowRecipients(_span_of(meta))

    def show_all_in_share(self, meta: Meta, children: list[Any]) -> ast.ShowAllInShare:
        return ast.ShowAllInShare(self._names(children)[0], _span_of(meta))

    def describe_share(self, meta: Meta, children: list[Any]) -> ast.DescribeShare:
        return ast.DescribeShare(self._names(children)[0], _span_of(meta))

    def describe_recipient(self, meta: Meta, children: list[Any]) -> ast.DescribeRecipient:
        return ast.DescribeRecipient(self._names(children)[0], _span_of(meta))

    # access: IP access lists, rate limits, the access log (issue 15)
    def set_ip_access_list(self, meta: Meta, children: list[Any]) -> ast.SetIpAccessList:
        entries = tuple(
            ast.Value(unquote(c), _span_of(c))
            for c in children[3:]
            if isinstance(c, Token) and c.type == "STRING"
        )
        return ast.SetIpAccessList(unquote(children[2]), entries, _span_of(meta))

    def unset_ip_access_list(self, meta: Meta, children: list[Any]) -> ast.UnsetIpAccessList:
        return ast.UnsetIpAccessList(unquote(children[2]), _span_of(meta))

    def set_rate_limit(self, meta: Meta, children: list[Any]) -> ast.SetRateLimit:
        requests = next(c for c in children[3:] if isinstance(c, Token) and c.type == "INT")
        unit = str(children[-1]).upper().removesuffix("S")
        return ast.SetRateLimit(
            unquote(children[2]),
            int(requests),
            unit,  # type: ignore[arg-type]
            _span_of(meta),
        )

    def unset_rate_limit(self, meta: Meta, children: list[Any]) -> ast.UnsetRateLimit:
        return ast.UnsetRateLimit(unquote(children[2]), _span_of(meta))

    def for_recipient(self, meta: Meta, children: list[Token]) -> tuple[str, str]:
        return ("recipient", unquote(children[2]))

    def on_share(self, meta: Meta, children: list[Token]) -> tuple[str, str]:
        return ("share", unquote(children[2]))

    def since(self, meta: Meta, children: list[Token]) -> tuple[str, ast.Value]:
        return ("since", ast.Value(unquote(children[1]), _span_of(children[1])))

    def limit(self, meta: Meta, children: list[Token]) -> tuple[str, int]:
        return ("limit", int(children[1]))

    def show_access_log(self, meta: Meta, children: list[Any]) -> ast.ShowAccessLog:
        return ast.ShowAccessLog(span=_span_of(meta), **self._options(children))

    def show_recipient_usage(self, meta: Meta, children: list[Any]) -> ast.ShowRecipientUsage:
        return ast.ShowRecipientUsage(span=_span_of(meta), **self._options(children))

    def start(self, meta: Meta, children: list[Any]) -> list[Any]:
        return [c for c in children if not isinstance(c, Token)]


def _duration(what: str, amount_token: Token, unit_token: Token, meta: Meta) -> ast.Expiry:
    """``<n> <unit>`` as an Expiry; 0 is refused (ARC136), naming what it is the length of."""
    amount = int(amount_token)
    unit = str(unit_token).upper()
    unit = unit if unit.endswith("S") else unit + "S"
    if amount < 1:
        raise _SemanticError(f"{what} must be at least 1", _span_of(amount_token), "ARC136")
    return ast.Expiry(amount, unit, _span_of(meta))  # type: ignore[arg-type]


def _delivered(options: dict[str, Any]) -> dict[str, Any]:
    """A recipient statement's options, checked: an activation link replaces the profile
    file, so it does not go with PROFILE or SHOW TOKEN (ARC137)."""
    link = options.get("activation_link")
    if link is not None and ("profile" in options or options.get("show_token")):
        raise _SemanticError(
            "ACTIVATION LINK writes no profile file: the recipient downloads the profile from "
            "the link, so PROFILE and SHOW TOKEN do not go with it",
            link.span,
            "ARC137",
            hint="leave out PROFILE and SHOW TOKEN, or leave out ACTIVATION LINK",
        )
    return options


def _fmt(value: float | str) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- syntax error messages ---------------------------------------------------------------------

_N = "(NAME|STRING)"
_AFTER_AS = (
    "expected PANDAS, SPARK or a share coordinate '<profile>#<share>.<schema>.<table>' after AS"
)
#: Messages for the access statements (issue 15): ALTER RECIPIENT ... SET/UNSET ...
_ACCESS_RULES: list[tuple[str, str]] = [
    (
        rf"^ALTER RECIPIENT {_N}$",
        "expected ROTATE TOKEN, SET or UNSET after the recipient name",
    ),
    (
        rf"^ALTER RECIPIENT {_N} SET$",
        "expected IP ACCESS LIST ('<address or CIDR range>', ...) or RATE LIMIT <n> REQUESTS "
        "PER <unit> after SET",
    ),
    (rf"^ALTER RECIPIENT {_N} UNSET$", "expected IP ACCESS LIST or RATE LIMIT after UNSET"),
    (r" (SET|UNSET) IP( ACCESS)?$", "expected IP ACCESS LIST"),
    (
        r" SET IP ACCESS LIST( LPAR| LPAR .*COMMA)?$",
        "expected a parenthesised list of quoted addresses or CIDR ranges, such as "
        "('10.0.0.0/8', '2001:db8::/32')",
    ),
    (r" SET IP ACCESS LIST LPAR .*STRING$", "expected ',' or ')' in the IP access list"),
    (r" (SET|UNSET) RATE$", "expected LIMIT after RATE"),
    (r" SET RATE LIMIT$", "expected a number of requests after RATE LIMIT, such as 100"),
    (
        r" SET RATE LIMIT INT( REQUESTS( PER)?)?$",
        "expected REQUESTS PER SECOND, MINUTE, HOUR or DAY after the number",
    ),
]
#: Messages for SHOW ACCESS LOG and SHOW RECIPIENT USAGE (issue 15).
_FILTERS = rf"( for_recipient| FOR RECIPIENT {_N}| on_share| ON SHARE {_N}| since| SINCE STRING)*"
_LOG_RULES: list[tuple[str, str]] = [
    (r"^SHOW ACCESS$", "expected LOG after SHOW ACCESS"),
    (r"^SHOW RECIPIENT$", "expected USAGE after SHOW RECIPIENT (or SHOW RECIPIENTS)"),
    (r"^SHOW (ACCESS LOG|RECIPIENT USAGE).* FOR$", "expected RECIPIENT <recipient> after FOR"),
    (r"^SHOW (ACCESS LOG|RECIPIENT USAGE).* (FOR RECIPIENT|ON SHARE)$", "expected a name"),
    (r"^SHOW (ACCESS LOG|RECIPIENT USAGE).* ON$", "expected SHARE <share> after ON"),
    (
        r"^SHOW (ACCESS LOG|RECIPIENT USAGE).* SINCE$",
        "expected a quoted ISO-8601 time after SINCE, such as '2026-01-31T00:00:00Z'",
    ),
    (r"^SHOW ACCESS LOG.* LIMIT$", "expected a number of rows after LIMIT"),
    (r"^SHOW ACCESS LOG.* (LIMIT INT|limit)$", "expected the end of the statement after LIMIT <n>"),
    (
        rf"^SHOW ACCESS LOG{_FILTERS}$",
        "expected FOR RECIPIENT <recipient>, ON SHARE <share>, SINCE '<time>' or LIMIT <n> "
        "(in this order), or the end of the statement",
    ),
    (
        rf"^SHOW RECIPIENT USAGE{_FILTERS}$",
        "expected FOR RECIPIENT <recipient>, ON SHARE <share> or SINCE '<time>' "
        "(in this order), or the end of the statement",
    ),
]
#: What was expected, in the dialect's words, keyed by the end of the current statement so far
#: (the parser's value stack as terminal and rule names, EXPLAIN prefixes dropped). LALR merges
#: the states after a name, so the stack says more than the parser state does.
_RULES: list[tuple[str, str]] = [
    (r"^$", "expected a statement: CREATE, EXPLAIN, DESCRIBE, ALTER, DROP, GRANT, REVOKE or SHOW"),
    (r"^CREATE$", "expected SHARE, EXPERIMENT, MODEL or RECIPIENT after CREATE"),
    (r"^CREATE OR$", "expected REPLACE after CREATE OR"),
    (r"^CREATE or_replace$", "expected EXPERIMENT or MODEL after CREATE OR REPLACE"),
    (r"^CREATE SHARE( IF| IF NOT)$", "expected IF NOT EXISTS"),
    (r"^CREATE SHARE( if_not_exists)?$", "expected a share name after CREATE SHARE"),
    (rf"^CREATE SHARE( if_not_exists)? {_N}$", "expected WITH TABLE after the share name"),
    (r" WITH$", "expected TABLE after WITH"),
    (r" WITH TABLE$", "expected a table name (1 to 3 dot-separated parts) after WITH TABLE"),
    (rf" TABLE {_N} DOT {_N} DOT {_N}$", "a table name has at most 3 parts: catalog.schema.table"),
    (r" DOT$", "expected a name after '.'"),
    (
        rf"^CREATE SHARE .* TABLE ({_N}( DOT {_N})*|table_name)$",
        "expected FROM EXPERIMENT or FROM MODEL after the table name",
    ),
    (r" FROM$", "expected EXPERIMENT or MODEL after FROM"),
    (r"^CREATE SHARE .* EXPERIMENT$", "expected an experiment name after EXPERIMENT"),
    (r"^CREATE SHARE .* MODEL$", "expected a model name after MODEL"),
    (r"^CREATE SHARE .* PROMPT$", "expected a prompt name after PROMPT"),
    (
        rf"^CREATE SHARE .* PROMPT {_N}$",
        "expected VERSION <n>[, <n>...], ALIAS <alias>[, ...] or the end of the statement",
    ),
    (
        rf"^CREATE SHARE .* EXPERIMENT {_N}$",
        "expected WHERE <condition>, INCLUDING <what> or the end of the statement",
    ),
    # -- INCLUDING: evaluation datasets, registered scorers and traces
    (r" INCLUDING$", "expected DATASETS, SCORERS or TRACES after INCLUDING"),
    (r" INCLUDING .*COMMA$", "expected DATASETS, SCORERS or TRACES after ','"),
    (
        r" INCLUDING .*(DATASETS|SCORERS)$",
        "expected ',' and DATASETS, SCORERS or TRACES, or the end of the statement",
    ),
    (
        r" INCLUDING .*TRACES$",
        "expected WHERE <trace condition>, ',' and DATASETS or SCORERS, or the end of the"
        " statement",
    ),
    (
        r" TRACES WHERE( .* AND)?$",
        "expected a trace condition such as trace.status = 'OK', trace.timestamp_ms > 0,"
        " tags.<key> = '...' or metadata.<key> = '...'",
    ),
    (
        r" TRACES WHERE .*(STRING|NUMBER|RPAR|compare|like|ilike|within)$",
        "expected AND between trace conditions (OR is not supported by MLflow's search"
        " syntax), ',' and DATASETS or SCORERS, or the end of the statement",
    ),
    (
        rf"^CREATE SHARE .* MODEL {_N}$",
        "expected VERSION <n>[, <n>...], ALIAS <alias>[, ...] or the end of the statement",
    ),
    (
        r" (WHERE|AND)$",
        "expected a condition such as metrics.accuracy > 0.9, params.<key> = '...'"
        ", tags.<key> = '...' or attributes.status = '...'",
    ),
    (r" FIELD$", "expected a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE, IN) after the field"),
    (r" FIELD NOT$", "expected IN after NOT"),
    (r" FIELD COMPARATOR$", "expected a number or a quoted string to compare with"),
    (r" FIELD I?LIKE$", "expected a quoted pattern such as '%abc%'"),
    (r" FIELD (NOT )?IN$", "expected a parenthesised list after IN, such as IN ('a', 'b')"),
    (r" FIELD (NOT )?IN LPAR$", "expected a value in the IN list"),
    (r" FIELD (NOT )?IN LPAR .*(COMMA)$", "expected a value after ','"),
    (r" FIELD (NOT )?IN LPAR .*(STRING|NUMBER)$", "expected ',' or ')' in the IN list"),
    (
        r" WHERE .*(STRING|NUMBER|RPAR|compare|like|ilike|within)$",
        "expected AND between conditions (OR is not supported by MLflow's search syntax),"
        " INCLUDING <what> or the end of the statement",
    ),
    (r" VERSION$", "expected a version number (a whole number) after VERSION"),
    (r" VERSION .*COMMA$", "expected another version number after ','"),
    (r" VERSION .*INT$", "expected ',' and another version number, or the end of the statement"),
    (r" ALIAS$", "expected an alias name after ALIAS"),
    (r" ALIAS .*COMMA$", "expected another alias after ','"),
    (
        r"^CREATE( or_replace)? EXPERIMENT( overwrite)?$",
        "expected an experiment name after CREATE EXPERIMENT",
    ),
    (r"^CREATE( or_replace)? MODEL( overwrite)?$", "expected a model name after CREATE MODEL"),
    (r"^CREATE( or_replace)? PROMPT( overwrite)?$", "expected a prompt name after CREATE PROMPT"),
    (
        rf"^CREATE( or_replace)? PROMPT( overwrite)? {_N}$",
        "expected AS [PANDAS|SPARK] '<profile>#<share>.<schema>.<table>' after the name",
    ),
    (r"^CREATE( or_replace)? PROMPT.* AS$", _AFTER_AS),
    (
        rf"^CREATE( or_replace)? (EXPERIMENT|MODEL)( overwrite)? {_N}$",
        "expected AS [PANDAS|SPARK] '<profile>#<share>.<schema>.<table>' after the name",
    ),
    (r"^CREATE( or_replace)? (EXPERIMENT|MODEL).* AS$", _AFTER_AS),
    (
        r"( AS (flavor|PANDAS|SPARK)|^DESCRIBE)$",
        "expected a share coordinate '<profile>#<share>.<schema>.<table>'",
    ),
    (r" REFUSE$", "expected PICKLE after REFUSE"),
    (r" (SIGNED|VERIFIED)$", "expected BY '<key file>'"),
    (
        r" SIGNED BY$",
        "expected the provider's private key file, quoted, after SIGNED BY (or CERTIFICATE"
        " '<certificate>' KEY '<key>', or SIGSTORE)",
    ),
    (r" SIGNED BY CERTIFICATE$", "expected the signing certificate file, quoted"),
    (r" SIGNED BY CERTIFICATE STRING$", "expected KEY '<private key file>' after the certificate"),
    (r" SIGNED BY CERTIFICATE STRING KEY$", "expected the private key file, quoted, after KEY"),
    (r" CHAIN$", "expected the intermediate certificate file(s), quoted, after CHAIN"),
    (
        r" VERIFIED BY$",
        "expected the provider's public key or certificate file, quoted (or CA '<CA certificate>')",
    ),
    (r" VERIFIED BY CA$", "expected the CA certificate file, quoted, after VERIFIED BY CA"),
    (r"^CREATE RECIPIENT( if_not_exists)?$", "expected a recipient name after CREATE RECIPIENT"),
    (r" COMMENT$", "expected a quoted comment after COMMENT"),
    (r" PROFILE$", "expected a quoted file path after PROFILE"),
    (r"^(CREATE|ALTER) RECIPIENT .* SHOW$", "expected TOKEN after SHOW"),
    (r" EXPIRES$", "expected IN <n> <unit> after EXPIRES"),
    (r" EXPIRES IN$", "expected a number of SECONDS, MINUTES, HOURS or DAYS after EXPIRES IN"),
    (r" EXPIRES IN INT$", "expected a unit (SECONDS, MINUTES, HOURS or DAYS)"),
    (r" USING$", "expected OAUTH after USING"),
    (r" OAUTH ACCESS$", "expected TOKEN LIFETIME <n> <unit> after ACCESS"),
    (r" OAUTH ACCESS TOKEN$", "expected LIFETIME <n> <unit> after ACCESS TOKEN"),
    (r" (LIFETIME|OLD FOR|VALID FOR)$", "expected a number of SECONDS, MINUTES, HOURS or DAYS"),
    (r" (LIFETIME|OLD FOR|VALID FOR) INT$", "expected a unit (SECONDS, MINUTES, HOURS or DAYS)"),
    (r" KEEP( OLD)?$", "expected KEEP OLD FOR <n> <unit>"),
    (r" ACTIVATION$", "expected LINK after ACTIVATION"),
    (r" VALID$", "expected FOR <n> <unit> after VALID"),
    (r"^ALTER$", "expected RECIPIENT or SHARE after ALTER"),
    (r"^ALTER RECIPIENT$", "expected a recipient name"),
    (rf"^ALTER RECIPIENT {_N} ROTATE$", "expected ROTATE TOKEN after the recipient name"),
    *_ACCESS_RULES,
    (r"^ALTER SHARE$", "expected a share name"),
    (rf"^ALTER SHARE {_N}( REMOVE)?$", "expected REMOVE TABLE <table> after the share name"),
    (r"^ALTER SHARE .*REMOVE TABLE$", "expected a table name after REMOVE TABLE"),
    (r"^DROP$", "expected RECIPIENT or SHARE after DROP"),
    (r"^DROP (RECIPIENT|SHARE)( if_exists)?$", "expected a name to drop"),
    (r"^GRANT", "expected GRANT SELECT ON SHARE <share> TO RECIPIENT <recipient>"),
    (r"^REVOKE", "expected REVOKE SELECT ON SHARE <share> FROM RECIPIENT <recipient>"),
    (
        r"^SHOW SHARES IN PROVIDER$",
        "expected a quoted profile file path after PROVIDER, such as 'acme.share'",
    ),
    (
        rf"^SHOW SHARES IN PROVIDER {_N}$",
        "expected the end of the statement; quote a profile file path that has a '.' or '/':"
        " SHOW SHARES IN PROVIDER 'acme.share'",
    ),
    (r"^SHOW SHARES IN$", "expected PROVIDER '<profile file>' after SHOW SHARES IN"),
    *_LOG_RULES,
    (
        r"^SHOW( ALL( IN)?)?$",
        "expected SHARES, RECIPIENTS, ALL IN SHARE <share>, ACCESS LOG or RECIPIENT USAGE "
        "after SHOW",
    ),
    (r"^SHOW ALL IN SHARE$", "expected a share name"),
    (r"^DESCRIBE (SHARE|RECIPIENT)$", "expected a name to describe"),
    (r"^EXPLAIN$", "expected a statement to explain after EXPLAIN"),
    (
        r"^CREATE RECIPIENT ",
        "expected the end of the statement, or CREATE RECIPIENT's options in this order: "
        "USING OAUTH, COMMENT, EXPIRES IN, PROFILE, SHOW TOKEN, ACTIVATION LINK",
    ),
    (
        r"^ALTER RECIPIENT .* ROTATE TOKEN",
        "expected the end of the statement, or ROTATE TOKEN's options in this order: "
        "KEEP OLD FOR, EXPIRES IN, PROFILE, SHOW TOKEN, ACTIVATION LINK",
    ),
]
_STATEMENT_RULES = {
    "create_share",
    "create_experiment",
    "create_model",
    "create_prompt",
    "explain",
    "describe_shared",
    "show_provider_shares",
    "create_recipient",
    "alter_recipient",
    "drop_recipient",
    "grant",
    "revoke",
    "alter_share",
    "drop_share",
    "show_shares",
    "show_recipients",
    "show_all_in_share",
    "describe_share",
    "describe_recipient",
    "set_ip_access_list",
    "unset_ip_access_list",
    "set_rate_limit",
    "unset_rate_limit",
    "show_access_log",
    "show_recipient_usage",
}


def _stack_words(exc: UnexpectedInput) -> str | None:
    """The current statement so far, as terminal and rule names, from the parser's stack."""
    parser = getattr(exc, "interactive_parser", None)
    if parser is None:
        return None
    words: list[str] = []
    for item in parser.parser_state.value_stack:
        word = str(item.data) if isinstance(item, Tree) else getattr(item, "type", "")
        if word in _STATEMENT_RULES or word == "_SEMI" or word.startswith("__"):
            words = []
            continue
        words.append(word)
    if words and all(w == "EXPLAIN" for w in words):
        return "EXPLAIN"
    while words and words[0] == "EXPLAIN":
        words.pop(0)
    return " ".join(words)


def _match_label(exc: UnexpectedInput, text: str) -> str | None:
    words = _stack_words(exc)
    if words is None:
        return None
    for pattern, message in _RULES:
        if re.search(pattern, words):
            return message
    if words.split(" ")[0] in ("CREATE", "SHOW", "DESCRIBE", "DROP", "ALTER"):
        return "expected ';' between statements"
    return None


_TOKEN_WORDS = {
    "$END": "the end of the input",
    "STRING": "a quoted string",
    "NAME": "a name",
    "INT": "a number",
    "NUMBER": "a number",
    "COORD": "a coordinate",
    "FIELD": "a filter field",
    "COMPARATOR": "a comparison",
    "_SEMI": "';'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "DOT": "'.'",
}


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "the end of the input"
    return repr(str(token))


def _expected_words(expected: set[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(e, e) for e in expected if not e.startswith("__")})
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _end_span(text: str) -> Span:
    stripped = _strip_trailing_comments(text)
    return Span.point(text, len(stripped))


def _strip_trailing_comments(text: str) -> str:
    prev = None
    while prev != text:
        prev = text
        text = re.sub(r"(--[^\n]*|/\*.*?\*/|\s+)$", "", text, flags=re.S)
    return text


def _raw_parse(text: str) -> Tree[Token]:
    return _lark().parse(text)


def _error_offset(exc: UnexpectedInput) -> int | None:
    """Where the unexpected input starts, or None at the end of the input."""
    if isinstance(exc, UnexpectedCharacters):
        return exc.pos_in_stream or 0
    token: Token | None = getattr(exc, "token", None)
    if token is None or token.type == "$END" or token.start_pos is None:
        return None
    return token.start_pos


def _run_span(text: str, start: int, length: int) -> Span:
    """The span of ``length`` characters from ``start``, on one line."""
    head = Span.point(text, start)
    return Span(head.line, head.col, head.line, head.col + length, start, start + length)


def _coordinate_error(exc: UnexpectedInput, text: str, source: str) -> ArcuateSyntaxError | None:
    """A bare coordinate without '#', or a misspelled flavor, where a coordinate belongs.

    The grammar reads ``AS acme.share`` as the coordinate ``acme`` followed by stray text, and
    ``AS PANDA 'x#a.b.c'`` as the coordinate ``PANDA`` followed by a second statement, so the
    generic message would ask for a ';'. Say what is wrong instead.
    """
    words = _stack_words(exc)
    pos = _error_offset(exc)
    if words is None or pos is None or not re.search(r"( AS( flavor)?|^DESCRIBE)( NAME)?$", words):
        return None
    last = exc.interactive_parser.parser_state.value_stack[-1]  # type: ignore[attr-defined]
    name = last if isinstance(last, Token) and last.type == "NAME" else None
    if name is None:  # right after AS: a path-like start ('./', '~/') that is not a name
        if text[pos].isalpha() or text[pos] in "';`\"":
            return None
        return _bare_coordinate(text, pos, source)
    if name.end_pos == pos:  # the name runs on: 'acme.share', 'profiles/acme.share'
        return _bare_coordinate(text, name.start_pos or 0, source)
    token: Token | None = getattr(exc, "token", None)
    if words.endswith(" AS NAME") and token is not None and token.type in _COORDINATE_LIKE:
        return _misspelled_flavor(name, text, source)
    return None


_COORDINATE_LIKE = frozenset({"STRING", "COORD", "NAME"})


def _bare_coordinate(text: str, start: int, source: str) -> ArcuateSyntaxError | None:
    bare = re.match(r"[^\s;'\"`]+", text[start:])
    if bare is None or not re.match(r"[\s;]|$", text[start + bare.end() :]):
        return None
    value = bare.group()
    return ArcuateSyntaxError(
        f"{value!r} is not a share coordinate: expected '<profile file>#<share>.<schema>.<table>'",
        text=text,
        span=_run_span(text, start, len(value)),
        source=source,
        code="ARC120",
        hint=f"write it as '{value}#<share>.<schema>.<table>' (quotes optional)",
    )


def _misspelled_flavor(name: Token, text: str, source: str) -> ArcuateSyntaxError:
    near = difflib.get_close_matches(str(name).upper(), ("PANDAS", "SPARK"), n=1, cutoff=0.6)
    return ArcuateSyntaxError(
        f"{_AFTER_AS}, got {str(name)!r}",
        text=text,
        span=_span_of(name),
        source=source,
        code="ARC101",
        hint=f"did you mean AS {near[0]}?"
        if near
        else "the flavor is PANDAS or SPARK (or leave it out), then the coordinate",
    )


def _syntax_error(exc: UnexpectedInput, text: str, source: str) -> ArcuateSyntaxError:
    misplaced = _coordinate_error(exc, text, source)
    if misplaced is not None:
        return misplaced
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        span = Span.point(text, pos)
        ch = text[pos] if pos < len(text) else ""
        if ch in "'\"`":
            return ArcuateSyntaxError(
                f"unterminated quoted string: no closing {ch}",
                text=text,
                span=span,
                source=source,
                code="ARC102",
            )
        label = _match_label(exc, text)
        got = f"got {ch!r}"
        message = (
            f"{label}, {got}"
            if label
            else f"unexpected {ch!r}; expected {_expected_words(exc.allowed)}"
        )
        return ArcuateSyntaxError(message, text=text, span=span, source=source, code="ARC101")
    token: Token | None = getattr(exc, "token", None)
    at_end = isinstance(exc, UnexpectedEOF) or (token is not None and token.type == "$END")
    if at_end or token is None:
        span = _end_span(text)
        got = "the end of the input"
    else:
        span = _span_of(token)
        got = _describe_token(token)
    label = _match_label(exc, text)
    if label:
        message = f"{label}, got {got}"
    else:
        expected = getattr(exc, "expected", None) or getattr(exc, "accepts", None) or set()
        message = f"expected {_expected_words(set(expected))}, got {got}"
    return ArcuateSyntaxError(message, text=text, span=span, source=source, code="ARC101")


# -- public API ---------------------------------------------------------------------------------


def parse_script(text: str, source: str = "<string>") -> ast.Script:
    """Parse one or more statements separated by ``;``.

    Raises:
        ArcuateSyntaxError: with the position of the first error and what was expected.
    """
    try:
        tree = _raw_parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, source) from None
    try:
        statements = _ToAst().transform(tree)
    except VisitError as exc:
        inner = exc.orig_exc
        if isinstance(inner, _SemanticError):
            raise ArcuateSyntaxError(
                inner.message,
                text=text,
                span=inner.span,
                source=source,
                code=inner.code,
                hint=inner.hint,
            ) from None
        if isinstance(inner, StatementError):
            raise inner from None
        raise
    return ast.Script(tuple(statements), text=text, source=source)


def parse(text: str, source: str = "<string>") -> ast.Statement:
    """Parse exactly one statement.

    Raises:
        ArcuateSyntaxError: not a statement, or more than one.
    """
    script = parse_script(text, source)
    if len(script.statements) != 1:
        span = script.statements[1].span if len(script.statements) > 1 else _end_span(text)
        what = "more than one statement" if script.statements else "no statement"
        raise ArcuateSyntaxError(
            f"expected exactly one statement, found {what}",
            text=text,
            span=span,
            source=source,
            code="ARC103",
        )
    return script.statements[0]
