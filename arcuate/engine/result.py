"""What a statement returns: a small record that prints well and converts to pandas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class StatementResult:
    """The outcome of one statement.

    ``summary`` holds one row of figures (runs, versions, files, bytes, table version...);
    ``rows`` holds detail rows for listing statements (SHOW SHARES) and plans (EXPLAIN).
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
        parts = [f"{self.action}:"]
        parts += [f"{k}={v}" for k, v in self.summary.items()]
        out = " ".join(parts)
        for row in self.rows:
            out += "\n  " + ", ".join(f"{k}={v}" for k, v in row.items())
        return out

    def _repr_html_(self) -> str:
        from html import escape

        head = f"<p><b>{escape(self.action)}</b></p>"
        if self.text is not None:
            return head + f"<pre>{escape(self.text)}</pre>"
        return head + str(self.to_pandas().to_html(index=False))


class Results(list[StatementResult]):
    """The results of a script, in statement order."""

    def to_pandas(self) -> pd.DataFrame:
        """One row per statement (its summary), with the statement text first."""
        import pandas as pd

        return pd.DataFrame(
            [{"statement": r.statement, "action": r.action, **r.summary} for r in self]
        )

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self)

    def _repr_html_(self) -> str:
        return "".join(r._repr_html_() for r in self)
