"""Progress bars, shared by export and import; nothing when progress is off.

On a terminal the bar is rich's, on stderr. In a Jupyter kernel (where stderr is no terminal)
it is one cell output updated in place through IPython's display ids, so it needs no
ipywidgets and the saved notebook keeps the last state. While a bar shows, MLflow's INFO lines
and its own artifact bars are held back so that they cannot break into it; its warnings and
errors still print (on a terminal, above the bar).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def in_notebook() -> bool:
    """True inside a Jupyter kernel: a bar can be drawn there, though stderr is no terminal."""
    ipython = sys.modules.get("IPython")  # never import IPython just to ask
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and any(
        c.__name__ == "ZMQInteractiveShell" for c in type(shell).__mro__
    )


def show_progress(setting: bool | None) -> bool:
    """The ``progress`` setting if given, else on for a terminal and in a notebook."""
    if setting is not None:
        return setting
    return sys.stderr.isatty() or in_notebook()


def new_bar(*, detail: bool = False) -> Any:
    """A rich Progress: spinner, label, bar, count, [detail,] elapsed time.

    On stderr, or, in a notebook, in the cell's output. Rich is imported only when a bar is
    actually shown.
    """
    from arcuate.engine import bars

    if in_notebook():
        return bars.NotebookProgress(*bars.columns(detail))
    return bars.TerminalProgress(*bars.columns(detail))


class Progress:
    """The progress bars of one statement (export or import), or nothing when progress is off.

    Tasks are added while it runs (:meth:`task`); :meth:`running` may add the first one
    before the bar is drawn, so that the first frame already shows it.
    """

    def __init__(self, enabled: bool, *, detail: bool = False) -> None:
        self.enabled = enabled
        #: a detail column after the count (``detail=`` of :meth:`task` and :meth:`advance`)
        self.detail = detail
        self._bar: Any = None

    @contextmanager
    def running(self, first: str | None = None, total: int | None = None) -> Iterator[Any]:
        """Show the bar inside the block; yields the first task (``first``: its label), or
        None when there is none or progress is off."""
        if not self.enabled:
            yield None
            return
        self._bar = new_bar(detail=self.detail)
        task = None if first is None else self.task(first, total)
        self._bar.start()
        try:
            yield task
        finally:
            self._bar.stop()
            self._bar = None

    def task(self, label: str, total: int | None) -> Any:
        """A new task line (``total`` None: a count without a bar); None when nothing shows."""
        if self._bar is None:
            return None
        fields = {"detail": ""} if self.detail else {}
        return self._bar.add_task(label, total=total, **fields)

    def advance(self, task: Any, completed: int | None = None, **fields: Any) -> None:
        """One more done (or ``completed`` in all), with new ``fields`` (``detail``)."""
        if self._bar is None or task is None:
            return
        if completed is None and not fields:
            self._bar.advance(task)
        elif completed is None:
            self._bar.update(task, advance=1, **fields)
        else:
            self._bar.update(task, completed=completed, **fields)

    def complete(self, task: Any) -> None:
        """A finished count becomes a full bar."""
        if self._bar is None or task is None:
            return
        done = next(t.completed for t in self._bar.tasks if t.id == task)
        self._bar.update(task, total=done, completed=done)
