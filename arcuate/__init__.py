"""arcuate: model exchange through Delta Sharing.

Thin verbs over the pipeline ``parse -> plan -> run``; see :mod:`arcuate.api`.
``%load_ext arcuate`` registers the IPython magics.
"""

from __future__ import annotations

from typing import Any

from arcuate.api import (
    execute,
    explain,
    export_experiments,
    export_models,
    import_experiments,
    import_models,
)
from arcuate.config import Settings, resolve_settings
from arcuate.errors import ArcuateError, ArcuateSyntaxError, PlanError
from arcuate.plan.planner import plan
from arcuate.syntax.parser import parse, parse_script
from arcuate.syntax.unparse import unparse

__version__ = "0.1.0"

__all__ = [
    "ArcuateError",
    "ArcuateSyntaxError",
    "PlanError",
    "Settings",
    "execute",
    "explain",
    "export_experiments",
    "export_models",
    "import_experiments",
    "import_models",
    "parse",
    "parse_script",
    "plan",
    "resolve_settings",
    "unparse",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext arcuate``: register the magics."""
    from arcuate.frontends.magics import register

    register(ipython)
