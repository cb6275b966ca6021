"""MLflow's own output while arcuate draws a progress bar: held back, then restored.

MLflow logs INFO lines while it opens a store (alembic creating or migrating a sqlite
database) and draws its own artifact-upload bars; both would break into arcuate's bar.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

#: Loggers that talk while a store is opened or written (MLflow, and alembic migrating it).
_CHATTY = ("mlflow", "alembic")
_BARS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls ``then`` right after the package ``name`` is first imported (MLflow configures
    its loggers on import, which would undo the quieting)."""

    def __init__(self, name: str, then: Callable[[], None]) -> None:
        self.name = name
        self.then = then

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        run = getattr(loader, "exec_module", None)
        if run is None:
            return spec
        then = self.then

        def exec_module(module: Any) -> None:
            run(module)
            then()

        loader.exec_module = exec_module  # type: ignore[method-assign,union-attr]
        return spec


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hold back MLflow's INFO lines and artifact bars (warnings still show); restore after.

    MLflow is not imported for this (a statement against a tracking server may never load
    it); if it is first imported inside, its loggers are quieted again right after.
    """
    loggers = [logging.getLogger(name) for name in _CHATTY]
    levels = [logger.level for logger in loggers]
    bars = os.environ.get(_BARS)
    os.environ[_BARS] = "false"

    def hush() -> None:
        for logger in loggers:
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))

    def imported() -> None:  # restore what MLflow's import configured, not what was before
        levels[:] = [logger.level for logger in loggers]
        hush()

    hush()
    hook = None if "mlflow" in sys.modules else _AfterImport("mlflow", imported)
    if hook is not None:
        sys.meta_path.insert(0, hook)
    try:
        yield
    finally:
        if hook is not None and hook in sys.meta_path:
            sys.meta_path.remove(hook)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if bars is None:
            os.environ.pop(_BARS, None)
        else:
            os.environ[_BARS] = bars
