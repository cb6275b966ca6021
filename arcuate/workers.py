"""What arcuate's helper processes share: how they start, and errors and memory as JSON.

A process that holds MLflow starts at about 250 MiB before it reads a byte, so work whose
memory grows with the data (reading a large shared table, cutting the chunks of a large file)
runs in a helper that imports only Arrow and Delta. A helper and its parent exchange JSON
lines only; nothing is pickled.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any, Final

from arcuate.errors import (
    ArcuateError,
    BackendError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    ShareDataError,
)

_ERRORS: Final[dict[str, type[BackendError] | type[ConfigurationError]]] = {
    cls.__name__: cls for cls in (BackendError, ConfigurationError, ConflictError, NotFoundError)
}


def command(module: str) -> list[str]:
    """The command line that runs ``module`` as a helper with this interpreter."""
    return [sys.executable, "-m", module]


def environment() -> dict[str, str]:
    """This process's environment, with arcuate's own package importable (also from a
    source checkout that is not installed)."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def error_doc(exc: ArcuateError) -> dict[str, Any]:
    """An error as JSON: its kind, message, hint, and for shared data its row and field."""
    return {
        "type": type(exc).__name__,
        "message": exc.message,
        "hint": exc.hint,
        "row": getattr(exc, "row", None),
        "field": getattr(exc, "field", None),
    }


def error_from(doc: dict[str, Any], default: str = "a helper process failed") -> ArcuateError:
    """The error a helper reported, rebuilt as the same arcuate error."""
    name = str(doc.get("type"))
    message = str(doc.get("message") or default)
    if name == "ShareDataError":
        row, field = doc.get("row"), doc.get("field")
        where = [f"row {row}"] if row is not None else []
        if field is not None:
            where.append(f"field {field!r}")
        prefix = f"{', '.join(where)}: " if where else ""
        return ShareDataError(message.removeprefix(prefix), row=row, field=field)
    kind = _ERRORS.get(name, BackendError)
    return kind(message, hint=doc.get("hint"))


def peak_rss() -> int:
    """This process's peak resident bytes (``VmHWM``; 0 where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def ended_without_result(what: str, returncode: int | None, stderr: IO[bytes]) -> BackendError:
    """The error for a helper that exited without its result line: what it was doing, its
    exit code and the last lines it wrote to stderr."""
    stderr.seek(0)
    tail = stderr.read().decode("utf-8", "replace").strip().splitlines()[-5:]
    return BackendError(
        f"{what} in a helper process failed (exit {returncode})"
        + (": " + " | ".join(tail) if tail else "")
    )
