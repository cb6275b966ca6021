"""Progress bars on stderr (rich), shared by export and import; nothing when progress is off."""

from __future__ import annotations

from typing import Any


def new_bar(*, detail: bool = False) -> Any:
    """A rich Progress on stderr: spinner, label, bar, count, [detail,] elapsed time.

    Rich is imported only when a bar is actually shown.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[ProgressColumn] = [
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if detail:
        columns.append(TextColumn("{task.fields[detail]}"))
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=Console(stderr=True), transient=False)
