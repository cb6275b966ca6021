"""Where pass 1 of an import runs: here, or in a helper process for a large shared table.

A large shared table that nobody has started reading (the batches of
:meth:`~arcuate.backends.sharing.reader.DeltaSharingReader.batches`, whose listed files add up
to at least :data:`~arcuate.engine.imports.worker.WORKER_BYTES`) is read by a helper process
into the spool (:mod:`arcuate.engine.imports.worker`); anything else is read here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyarrow as pa

from arcuate.engine.imports.spool import Spool


def ingest(
    spool: Spool,
    batches: Iterable[pa.RecordBatch],
    tick: Callable[[int], None] | None = None,
) -> None:
    """Validate every row and spool it (:meth:`Spool.ingest`), in a helper process when the
    table is large and listed, else in this one.

    Raises:
        ShareDataError: the first bad row, named by its 0-based position in the stream.
    """
    spool.check_marker(batches)
    if not _in_worker(spool, batches, tick):
        spool.ingest(batches, tick)


def _in_worker(
    spool: Spool, batches: Iterable[pa.RecordBatch], tick: Callable[[int], None] | None
) -> bool:
    """Pass 1 in a helper process, for a large listed table; False when not used."""
    # the worker module is run as a program of its own: imported only when it is used
    import arcuate.engine.imports.worker as worker
    from arcuate.backends.sharing.reader import SharedBatches

    if not isinstance(batches, SharedBatches) or batches.started or spool.entries:
        return False
    if batches.total_bytes < worker.WORKER_BYTES:
        return False
    request = {"root": str(spool.root), "content": spool.content, "table": batches.to_json(),
               "digests": spool.digests is not None}  # fmt: skip
    try:
        state = worker.run_worker(request, tick)
    except OSError:
        return False  # no interpreter to start: read it here
    spool.restore(state)
    return True
