"""What a statement returns: a small record that prints well and converts to pandas.

Text (``str``, ``repr``: what a terminal and a notebook's text form show) and HTML (a
notebook's rich form) carry the same things: the summary line, then the detail rows as a
table, cut after :data:`SHOWN_ROWS` rows (``to_pandas()`` has them all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Detail rows shown in text and HTML; the rest are counted, and ``to_pandas()`` has them all.
SHOWN_ROWS = 50


@dataclass(repr=False)
class StatementResult:
    """The outcome of one statement.

    ``summary`` holds one row of figures (runs, versions, files, bytes, table version...);
    ``rows`` holds detail rows for listing statements (SHOW SHARES), imports (one row per run
    or version) and plans (EXPLAIN).
    """

    statement: str
    action: str
    summary: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    text: str | None = None

    def to_pandas(self) -> pd.DataFrame:
        """Detail rows if there are any, else the one-row summary."""
        import pandas as pd

        return pd.DataFrame(self.rows if self.rows else [self.summary])

    def __str__(self) -> str:
        if self.text is not None:
            return self.text
        pairs = (f"{k}={_cell(v)}" for k, v in self.summary.items())
        out = " ".join([f"{self.action}:", *pairs])
        if self.rows:
            out += "\n" + _text_table(self.rows)
        return out

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = f"<p><b>{escape(self.action)}</b> <code>{escape(self.statement)}</code></p>"
        if self.text is not None:
            return head + f"<pre>{escape(self.text)}</pre>"
        out = head + (_html_table([self.summary]) if self.summary else "")
        if self.rows:
            out += _html_table(self.rows)
        return out


class Results(list[StatementResult]):
    """The results of a script, in statement order."""

    def to_pandas(self) -> pd.DataFrame:
        """One row per statement (its summary), with the statement text first."""
        import pandas as pd

        return pd.DataFrame(
            [{"statement": r.statement, "action": r.action, **r.summary} for r in self]
        )

    def __str__(self) -> str:
        return "\n\n".join(str(r) for r in self) if self else "(no statements)"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return "".join(r._repr_html_() for r in self)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of the rows, in order of first appearance."""
    return list(dict.fromkeys(k for row in rows for k in row))


def _cell(value: Any) -> str:
    """A value as one line of plain text: shared values may hold newlines or terminal
    escapes, which would forge lines or drive the terminal; they are shown escaped."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _more(rows: list[dict[str, Any]]) -> str:
    hidden = len(rows) - SHOWN_ROWS
    return f"… {hidden} more rows: .to_pandas() has them all" if hidden > 0 else ""


def _text_table(rows: list[dict[str, Any]]) -> str:
    """Rows as aligned columns under a header, indented under the summary line."""
    columns = _columns(rows)
    cells = [columns] + [[_cell(r.get(c)) for c in columns] for r in rows[:SHOWN_ROWS]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  " + "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
             for line in cells]  # fmt: skip
    more = _more(rows)
    return "\n".join([*lines, "  " + more] if more else lines)


def _html_table(rows: list[dict[str, Any]]) -> str:
    columns = _columns(rows)
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows[:SHOWN_ROWS]
    )
    more = _more(rows)
    foot = f"<p><i>{escape(more)}</i></p>" if more else ""
    return (
        f'<table class="dataframe"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>{foot}"
    )
