"""The serialization policy of an import (``REFUSE PICKLE``, the ``refuse_pickle`` setting).

Runs after every row is validated and spooled, before anything is written: each file's format
is detected from its bytes (:mod:`arcuate.format.serialization`, which parses and never
unpickles). A pickle-family file is refused, and so is a file the detector cannot decide
(truncated, corrupt or past a reading bound), since it could hide one.
"""

from __future__ import annotations

from arcuate.backends import spooled
from arcuate.engine.imports.spool import Entry, Spool
from arcuate.errors import ShareDataError
from arcuate.format.serialization import classify

#: The error code of a refusal (docs/errors.md).
CODE = "ARC610"


def _what(entry: Entry) -> str:
    if entry.version is not None:
        return f"version {entry.version}"
    return f"run {entry.key}"


def refuse_pickles(spool: Spool) -> None:
    """Refuse the table if any spooled file unpickles when loaded, or may.

    Raises:
        ShareDataError: (ARC610) names the record, the file, its format and the evidence.
    """
    for entry in spool.entries:
        for n, meta in enumerate(entry.files):
            with spooled.open_bytes(meta) as stream:
                found = classify(meta["path"], stream)
            if not (found.pickle_family or found.format == "unknown"):
                continue
            why = (
                f"a {found.format} file: loading it unpickles"
                if found.pickle_family
                else "a file whose format cannot be told, so it may hide a pickle"
            )
            raise ShareDataError(
                f"{_what(entry)} holds {meta['owner']}/{meta['path']}, {why} ({found.evidence});"
                " this import refuses pickle-family files (REFUSE PICKLE, refuse_pickle) and"
                " wrote nothing",
                row=entry.row,
                field=f"files[{n}]",
                code=CODE,
            )
