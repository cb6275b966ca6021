"""The format's in-memory types: a record, a file to export, a file whose chunks are to be cut.

They belong to the table format (``format/records.py`` packs them into rows), and every layer
above it passes them around: exporters build them, table stores write them, sinks read records.
Defined here, below the backends, so the format layer imports nothing from ``backends``;
:mod:`arcuate.backends.protocols` re-exports them for code that imported them from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

#: A record dict shaped like one of the format's structs (EXPERIMENT, RUN_INFO, ...).
Record = dict[str, Any]


@dataclass(frozen=True)
class FileRef:
    """A file to export, opened lazily so that bytes stream instead of sitting in memory.

    ``owner`` is ``artifacts``, ``logged_models/<source model id>`` or ``model``; ``path`` is
    relative to the owner's root, with ``/`` separators.
    """

    owner: str
    path: str
    size: int
    open: Callable[[], IO[bytes]]
    #: The file's path on this machine when it is a local file (another process may read it).
    local_path: str | None = None


@dataclass(frozen=True)
class ChunkedFile:
    """A large file of a record whose chunk rows are still to be cut.

    An export hands the table store this instead of the rows, so that a store may cut and
    write them wherever memory is cheapest (the deltalake store uses a helper process for
    local files); :func:`arcuate.format.records.expand` turns it into the rows' batches.
    ``size`` and ``sha256`` are what the owner row says: the chunks are checked against them.
    """

    key: str
    ref: FileRef
    size: int
    sha256: str
    chunk_bytes: int
    exported_at: datetime | None = None
