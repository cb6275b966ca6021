"""How every ``arcuate`` command ends on an error: one rendered error on standard error.

Shared by :mod:`.cli` and :mod:`.serve_cli` (whose commands also run on their own), so an
error looks the same whichever command raised it: ``error:`` (in bold red on a terminal),
the message with its ARC code, the hint and the notes, then exit status 1.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from arcuate.errors import ArcuateError, render


def fail(exc: ArcuateError) -> NoReturn:
    """Print ``exc`` rendered (:func:`arcuate.errors.render`) to standard error and exit 1."""
    from rich.console import Console  # only on an error: start-up does not pay for it

    err = Console(stderr=True, highlight=False)
    err.print("[bold red]error:[/] ", markup=True, end="")
    err.print(render(exc), markup=False, soft_wrap=True)
    sys.exit(1)
