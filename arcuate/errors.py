"""Every exception arcuate raises, rooted at :class:`ArcuateError`.

Statement errors carry where they happened (source name, line, column, span) so that every
front end can render the same compiler-style message: ``<string>:1:14: message``, the source
line, and a caret under the column. Only the CLI and the magics add colour.

This module imports nothing but the standard library: every layer may import it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

#: Query keys that make a URL a credential (signed file URLs, SAS, presigned S3/GCS, OAuth,
#: database drivers): a query holding any of them is dropped whole.
_SECRET_KEYS: Final = frozenset(
    {
        "sig",
        "signature",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "bearertoken",
        "auth",
        "authorization",
        "api_key",
        "apikey",
        "key",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "sas",
        "sastoken",
        "code",
        "credential",
        "credentials",
        "session_token",
        "security_token",
    }
)
_SECRET_PREFIXES: Final = ("x-amz-", "x-goog-", "x-ms-")
#: A query string inside free text: up to whitespace, a quote or a closing bracket.
_QUERY: Final = re.compile(r"\?([^\s'\"<>()\[\]{}?]+)")
_USERINFO: Final = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@'\"<>]+@")
_BEARER: Final = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*")
_SECRET_FIELD: Final = re.compile(
    r"(?i)([\"'](?:bearer_?token|access_?token|token|password|client_secret|secret)[\"']"
    r"\s*:\s*[\"'])[^\"']*"
)


def is_secret_key(key: str) -> bool:
    """Whether a URL query or fragment key carries a credential (case and spaces ignored)."""
    k = key.strip().lower()
    return k in _SECRET_KEYS or k.startswith(_SECRET_PREFIXES)


def _secret_query(match: re.Match[str]) -> str:
    for pair in re.split("[&;]", match.group(1)):
        if is_secret_key(unquote(pair.partition("=")[0])):
            return "?<redacted>"
    return match.group(0)


def redact_secrets(text: str) -> str:
    """``text`` without the credentials a library may put in an error message.

    A query string that carries a signature or token (a signed file URL above all: it is a
    bearer capability until it expires) is replaced whole, as are ``user:password@`` in URLs,
    ``Bearer <token>`` and JSON-style ``"token": "..."`` values. Other text is unchanged.
    """
    if not text:
        return text
    out = _QUERY.sub(_secret_query, text)
    out = _USERINFO.sub(r"\1", out)
    out = _BEARER.sub(r"\1 <redacted>", out)
    return _SECRET_FIELD.sub(r"\1<redacted>", out)


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node or an error sits in its source: 1-based line/column, 0-based offsets."""

    line: int
    col: int
    end_line: int
    end_col: int
    start: int
    end: int

    @classmethod
    def point(cls, text: str, offset: int) -> Span:
        """The span of one character at ``offset`` of ``text``."""
        offset = max(0, min(offset, len(text)))
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return cls(line, col, line, col + 1, offset, offset + 1)


class ArcuateError(Exception):
    """Root of every error arcuate raises on purpose.

    Messages and hints pass through :func:`redact_secrets`: they often quote a library's own
    error, which may hold a signed URL or a token, and they end up in notebooks and logs.
    ``results`` holds the results of the statements that ran before this one failed (a
    script's earlier statements stay applied); empty when nothing ran.
    """

    code = "ARC000"
    results: Sequence[Any] = ()

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        message = redact_secrets(message)
        hint = redact_secrets(hint) if hint else hint
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: the message is the whole story."""
        return f"{type(self).__name__}: {render(self)}".splitlines()

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class StatementError(ArcuateError):
    """An error that points into a statement's text."""

    def __init__(
        self,
        message: str,
        *,
        text: str,
        span: Span,
        source: str = "<string>",
        code: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, code=code, hint=hint)
        self.text = text
        self.span = span
        self.source = source

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def col(self) -> int:
        return self.span.col

    @property
    def details(self) -> list[dict[str, Any]]:
        """Machine-readable form, one dict per error (sqlglot's ``errors`` shape)."""
        return [
            {
                "code": self.code,
                "description": self.message,
                "source": self.source,
                "line": self.line,
                "col": self.col,
                "hint": self.hint,
            }
        ]

    def __str__(self) -> str:
        lines = self.text.splitlines() or [""]
        idx = min(self.span.line, len(lines)) - 1
        src_line = lines[idx]
        width = max(1, min(self.span.end_col, len(src_line) + 1) - self.span.col)
        if self.span.end_line != self.span.line:
            width = max(1, len(src_line) - self.span.col + 1)
        caret = " " * (self.span.col - 1) + "^" * width
        out = (
            f"{self.source}:{self.span.line}:{self.span.col}: {self.message} [{self.code}]\n"
            f"  {src_line}\n  {caret}"
        )
        if self.hint:
            out += f"\n  hint: {self.hint}"
        return out


class ArcuateSyntaxError(StatementError):
    """The text is not a statement of the dialect."""

    code = "ARC100"


class PlanError(StatementError):
    """A valid statement that cannot mean anything with the configured backends."""

    code = "ARC200"


class ConfigurationError(ArcuateError, ValueError):
    """A setting has a value arcuate cannot use."""

    code = "ARC300"


class BackendError(ArcuateError):
    """A backend (MLflow, Delta, a share) failed while running a step; always chained."""

    code = "ARC400"


class NotFoundError(BackendError):
    """The experiment, model, table or share a statement names does not exist."""

    code = "ARC404"


class ConflictError(BackendError):
    """The target exists and the statement did not say it may be replaced."""

    code = "ARC409"


class BackendUnavailableError(ArcuateError):
    """A backend was asked for but cannot be loaded (missing extra, broken plugin)."""

    code = "ARC500"


class ShareDataError(ArcuateError):
    """Shared content is malformed or hostile: bad path, size, checksum, name or format."""

    code = "ARC600"

    def __init__(
        self,
        message: str,
        *,
        row: int | None = None,
        field: str | None = None,
        code: str | None = None,
    ) -> None:
        where = []
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message, code=code)
        self.row = row
        self.field = field


class StepError(BackendError):
    """A plan step failed; names the step and what was left untouched."""

    code = "ARC410"


class UnreachableError(BackendError):
    """A server (sharing server, MLflow tracking or registry server) could not be reached,
    after retrying for the configured time; names the endpoint, what failed, what to check."""

    code = "ARC420"


class InputError(ArcuateError):
    """A file the user named (a script, a profile) cannot be read or is malformed."""

    code = "ARC700"


def render(exc: ArcuateError) -> str:
    """The whole text a front end shows: the message with its code, the hint, the notes.

    Statement errors already carry their code (compiler style); any other error gets it at the
    end of its first line.
    """
    if isinstance(exc, StatementError):
        text = str(exc)
    else:
        first, newline, rest = exc.message.partition("\n")
        text = f"{first} [{exc.code}]{newline}{rest}"
        if exc.hint:
            text += f"\n  hint: {exc.hint}"
    for note in getattr(exc, "__notes__", []):
        text += f"\n  {note}"
    return text
