"""Pass 1 of an import (validate and spool) in a helper process, for large shared tables.

The importing process holds MLflow, SQLAlchemy and pandas: about 250 MiB before it reads a
single row. Reading a shared table needs none of them, and reading large chunk rows costs tens
of MiB of Arrow buffers on its own. For a table whose files add up to at least
:data:`WORKER_BYTES`, :func:`arcuate.engine.imports.ingest.ingest` therefore runs this module
as ``python -m arcuate.engine.imports.worker``: it downloads and reads the files listed by the
sharing server (the signed URLs of the listing; no credentials), validates every row and
spools it into the importer's spool directory, exactly as the importer would itself. The two
processes exchange JSON only: the request on stdin; progress lines and the spool's index (or
the first error, with its row and field) on stdout. Nothing is pickled. The import's summary
then reports the helper's peak resident bytes as ``helper_peak_rss``. This module imports the
spool (:mod:`arcuate.engine.imports.spool`) and the reader of the listed files only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from arcuate import workers
from arcuate.engine.imports.spool import Spool
from arcuate.errors import ArcuateError

#: Tables whose Parquet files add up to at least this many bytes are read by a helper process.
WORKER_BYTES: Final = 64 * 1024 * 1024
_RESULT: Final = "arcuate-ingest-result "
_PROGRESS: Final = "arcuate-ingest-rows "


def run_worker(
    request: dict[str, Any], tick: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Run the worker on ``request`` and return the spool's index it reports.

    Raises:
        ArcuateError: the error the worker reported (a bad row: ShareDataError).
        BackendError: the worker ended without a result.
        OSError: the worker could not be started at all.
    """
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            workers.command(__name__),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=workers.environment(),
            text=True,
        )
        result: dict[str, Any] | None = None
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(request))
            proc.stdin.close()
            for line in proc.stdout:
                if line.startswith(_PROGRESS) and tick is not None:
                    tick(int(line[len(_PROGRESS) :]))
                elif line.startswith(_RESULT):
                    result = json.loads(line[len(_RESULT) :])
            proc.wait()
        finally:
            if proc.poll() is None:  # interrupted while it works: it is ours to stop
                proc.kill()
                proc.wait()
        if result is None:
            raise workers.ended_without_result("reading the shared table", proc.returncode, errors)
    if not result.get("ok"):
        raise workers.error_from(result.get("error") or {}, "the ingest worker failed")
    state: dict[str, Any] = result["state"]
    return state


def ingest(request: dict[str, Any]) -> dict[str, Any]:
    """Validate and spool the listed files into ``request['root']``; the spool's index."""
    from arcuate.backends.sharing.reader import SharedBatches

    spool = Spool(Path(request["root"]), request["content"], create=False)
    if request.get("digests"):
        spool.digest_records()  # the import verifies a signature
    batches = SharedBatches.from_json(request["table"])

    def tick(rows: int) -> None:
        sys.stdout.write(f"{_PROGRESS}{rows}\n")
        sys.stdout.flush()

    try:
        spool.ingest(batches, tick)
    finally:
        batches.close()
    state = spool.state()
    state["peak_rss"] = workers.peak_rss()
    return state


def main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        out: dict[str, Any] = {"ok": True, "state": ingest(request)}
    except ArcuateError as exc:
        out = {"ok": False, "error": workers.error_doc(exc)}
    sys.stdout.write(_RESULT + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
