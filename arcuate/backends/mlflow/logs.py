"""MLflow's own output while arcuate draws a progress bar: held back, then restored.

MLflow logs INFO lines while it opens a store (alembic creating or migrating a sqlite
database) and draws its own artifact-upload bars; both would break into arcuate's bar.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

#: Loggers that talk while a store is opened or written (MLflow, and alembic migrating it).
_CHATTY = ("mlflow", "alembic")
_BARS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hold back MLflow's INFO lines and artifact bars (warnings still show); restore after."""
    # MLflow configures its loggers when first imported, which would undo the quieting; every
    # bar is for MLflow work, so the import only comes a little earlier.
    import mlflow  # noqa: F401

    loggers = [logging.getLogger(name) for name in _CHATTY]
    levels = [logger.level for logger in loggers]
    bars = os.environ.get(_BARS)
    os.environ[_BARS] = "false"
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if bars is None:
            os.environ.pop(_BARS, None)
        else:
            os.environ[_BARS] = bars
