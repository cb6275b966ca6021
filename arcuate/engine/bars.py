"""The two kinds of progress bar :func:`arcuate.engine.progress.new_bar` hands out.

Both are rich Progress objects, so export and import drive them alike; both hold MLflow's
INFO lines back while they show (:func:`arcuate.backends.mlflow.logs.quiet`). Imported
only when a bar is shown: this module imports rich, and the notebook bar IPython.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from typing import Any

from rich.console import Console
from rich.jupyter import JUPYTER_HTML_FORMAT
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from arcuate.backends.mlflow.logs import quiet as quiet_mlflow

#: A notebook bar is redrawn at most this often (each redraw is a message to the front end).
REDRAW_SECONDS = 0.25


def columns(detail: bool) -> list[ProgressColumn]:
    """Spinner, label, bar, count, [detail,] elapsed time."""
    out: list[ProgressColumn] = [
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if detail:
        out.append(TextColumn("{task.fields[detail]}"))
    out.append(TimeElapsedColumn())
    return out


class TerminalProgress(Progress):
    """Rich's own live bar on stderr."""

    def __init__(self, *cols: ProgressColumn) -> None:
        super().__init__(*cols, console=Console(stderr=True), transient=False)
        self._quiet = contextlib.ExitStack()

    def start(self) -> None:
        self._quiet.enter_context(quiet_mlflow())
        super().start()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._quiet.close()


class NotebookProgress(Progress):
    """One notebook output, updated in place through an IPython display id.

    Rich tracks the tasks with its live display off (no ipywidgets needed); each redraw renders
    the task table as text and HTML.
    """

    def __init__(self, *cols: ProgressColumn) -> None:
        super().__init__(*cols, disable=True)
        self._handle: Any = None
        self._drawn = 0.0
        self._draw_lock = threading.Lock()
        self._quiet = contextlib.ExitStack()

    def start(self) -> None:
        from IPython.display import display

        self._quiet.enter_context(quiet_mlflow())
        self._handle = display(self._bundle(), raw=True, display_id=True)  # type: ignore[no-untyped-call]
        self._drawn = time.monotonic()

    def stop(self) -> None:
        try:
            self._draw(force=True)
        finally:
            self._quiet.close()

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task = super().add_task(description, *args, **kwargs)
        self._draw()
        return task

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._draw()

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._draw()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._handle is None or (not force and now - self._drawn < REDRAW_SECONDS):
            return
        with self._draw_lock:
            self._drawn = now
            self._handle.update(self._bundle(), raw=True)

    def _bundle(self) -> dict[str, str]:
        console = Console(file=io.StringIO(), record=True, width=100, force_jupyter=False,
                          force_terminal=True, color_system="truecolor")  # fmt: skip
        console.print(self.make_tasks_table(self.tasks))
        text = console.export_text(clear=False).rstrip()
        html = console.export_html(code_format=JUPYTER_HTML_FORMAT, inline_styles=True)
        return {"text/plain": text, "text/html": html}
