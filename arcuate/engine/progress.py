"""Progress bars, shared by export and import; nothing when progress is off.

On a terminal the bar is rich's, on stderr. In a Jupyter kernel (where stderr is no terminal)
it is one cell output updated in place through IPython's display ids, so it needs no
ipywidgets and the saved notebook keeps the last state. While a bar shows, MLflow's INFO lines
and its own artifact bars are held back so that they cannot break into it; its warnings and
errors still print (on a terminal, above the bar).
"""

from __future__ import annotations

import sys
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
