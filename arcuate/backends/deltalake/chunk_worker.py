"""The chunk rows of large local files, cut and written by a helper process.

The table may be in a local directory or in object storage (the helper then writes through
deltalake's own file system, with the store's storage options in its environment, never on its
command line).

Why: the exporting process holds MLflow, about 250-270 MiB before it reads a byte, and
Parquet's encoder needs tens of MiB for each 8 MiB chunk it writes (the value, its encoded
page, the compressed page, the writer's reused buffers). Here a helper that imports only
Arrow and deltalake reads each large file itself and writes its chunk rows into data files
of the table being written (named ``<prefix>-*.parquet``); the store commits them together
with its own files in one transaction. The MLflow process never holds a chunk.

The helper also makes that commit (the store's own files are handed over at the end), so
Delta's transaction code, which costs tens of MiB of its own, is not loaded in the MLflow
process either.

The helper runs as ``python -m arcuate.backends.deltalake.chunk_worker <table location> <prefix>``
and speaks JSON lines: one :class:`~arcuate.backends.protocols.ChunkedFile` per line on stdin,
then one ``commit`` line (the store's files, the table's content and name, the version the
store saw); one result line on stdout: the new table version, the rows and bytes it wrote and
its peak RSS, or the first error. A helper that fails deletes what it wrote;
:meth:`ChunkWorker.abort` also deletes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

from deltalake.transaction import AddAction

from arcuate import workers
from arcuate.backends.deltalake.writers import join_writer
from arcuate.errors import ArcuateError, BackendError
from arcuate.format.files import ChunkedFile, FileRef
from arcuate.format.schema import Content

#: A chunked local file at least this long is cut by the helper (smaller ones in-process).
WORKER_BYTES: Final = 32 * 1024 * 1024
_RESULT: Final = "arcuate-chunks-result "
#: How the helper gets the storage options of a table in object storage.
_OPTIONS_ENV: Final = "ARCUATE_CHUNK_WORKER_STORAGE_OPTIONS"


@dataclass(frozen=True)
class Committed:
    """What a finished helper did: the version it committed, its rows and bytes, its peak."""

    version: int
    rows: int
    nbytes: int
    peak_rss: int


def wanted(job: ChunkedFile) -> bool:
    """Whether ``job`` is worth a helper: a local file of at least :data:`WORKER_BYTES`."""
    return job.ref.local_path is not None and job.size >= WORKER_BYTES


def job_doc(job: ChunkedFile) -> dict[str, Any]:
    """A chunked local file as one JSON request line's content."""
    return {
        "key": job.key,
        "owner": job.ref.owner,
        "path": job.ref.path,
        "local_path": job.ref.local_path,
        "size": job.size,
        "sha256": job.sha256,
        "chunk_bytes": job.chunk_bytes,
        "exported_at": job.exported_at.isoformat() if job.exported_at else None,
    }


def job_from(doc: dict[str, Any]) -> ChunkedFile:
    """The chunked file a request line names (read from its local path)."""
    local = str(doc["local_path"])

    def open_local() -> IO[bytes]:
        return open(local, "rb")

    at = doc.get("exported_at")
    return ChunkedFile(
        key=str(doc["key"]),
        ref=FileRef(str(doc["owner"]), str(doc["path"]), int(doc["size"]), open_local, local),
        size=int(doc["size"]),
        sha256=str(doc["sha256"]),
        chunk_bytes=int(doc["chunk_bytes"]),
        exported_at=datetime.fromisoformat(at) if at else None,
    )


class ChunkWorker:
    """The helper process of one table write, started on the first large file."""

    def __init__(
        self,
        location: str,
        storage_options: dict[str, str] | None = None,
        writer: str | None = None,
        lock: Path | None = None,
    ) -> None:
        self.location = location
        self.storage_options = storage_options
        # named for the table's writer (``writers``); the helper shares its lock
        self.prefix = f"part-chunks-{writer or uuid.uuid4().hex[:12]}"
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish()/abort()
        extra = [str(lock)] if lock is not None else []
        env = workers.environment()
        env[_OPTIONS_ENV] = json.dumps(storage_options or {})
        self._proc = subprocess.Popen(
            [*workers.command(__name__), location, self.prefix, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            env=env,
            text=True,
        )
        self._broken = False

    def send(self, job: ChunkedFile) -> None:
        """Queue one file (the helper works while this process goes on)."""
        if self._broken:
            return
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(job_doc(job)) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._broken = True  # it stopped: finish() reports why

    def finish(
        self, adds: list[AddAction], content: Content, name: str, existing: int | None
    ) -> Committed:
        """Wait for the helper to write everything queued, then have it commit those files and
        ``adds`` in one transaction over table version ``existing`` (None: a new table).

        Raises:
            ArcuateError: the error the helper reported (a file that changed: BackendError;
                another writer: ConflictError).
            BackendError: the helper ended without a result.
        """
        assert self._proc.stdin is not None and self._proc.stdout is not None
        request = {
            "commit": {
                "adds": [_add_doc(a) for a in adds],
                "content": content,
                "name": name,
                "existing": existing,
            }
        }
        with contextlib.suppress(BrokenPipeError, OSError):
            self._proc.stdin.write(json.dumps(request) + "\n")
        with contextlib.suppress(BrokenPipeError, OSError):
            self._proc.stdin.close()
        result: dict[str, Any] | None = None
        for line in self._proc.stdout:
            if line.startswith(_RESULT):
                result = json.loads(line[len(_RESULT) :])
        self._proc.wait()
        if result is None:
            raise workers.ended_without_result(
                "writing the chunks of large files", self._proc.returncode, self._errors
            )
        self._errors.close()
        if not result.get("ok"):
            raise workers.error_from(result.get("error") or {}, "the chunk writer failed")
        return Committed(
            int(result["version"]), int(result["rows"]), int(result["bytes"]), int(result["peak"])
        )

    def abort(self) -> None:
        """Stop the helper and delete every file it wrote (none of them was committed)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._errors):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()
        if "://" not in self.location:
            for path in Path(self.location).glob(f"{self.prefix}-*"):
                path.unlink(missing_ok=True)
            return
        import pyarrow.fs as pafs

        fs = _table_fs(self.location, self.storage_options)
        for info in fs.get_file_info(pafs.FileSelector("", allow_not_found=True)):
            if info.base_name.startswith(f"{self.prefix}-"):
                with contextlib.suppress(Exception):
                    fs.delete_file(info.path)


def _table_fs(location: str, storage_options: dict[str, str] | None) -> Any:
    """deltalake's file system of a table in object storage (paths relative to its root)."""
    import pyarrow.fs as pafs
    from deltalake.fs import DeltaStorageHandler

    return pafs.PyFileSystem(DeltaStorageHandler(location, storage_options or None))


def _add_doc(add: AddAction) -> dict[str, Any]:
    return {
        "path": add.path,
        "size": add.size,
        "modification_time": add.modification_time,
        "stats": add.stats,
    }


def _add_from(doc: dict[str, Any]) -> AddAction:
    return AddAction(
        path=str(doc["path"]),
        size=int(doc["size"]),
        partition_values={},
        modification_time=int(doc["modification_time"]),
        data_change=True,
        stats=str(doc["stats"]),
    )


def write_and_commit(location: str, prefix: str, lines: IO[str]) -> dict[str, Any]:
    """Cut and write the chunk rows of every requested file, then commit them with the
    store's files; the result line's content."""
    from deltalake import DeltaTable

    from arcuate.backends.deltalake.parquet import ParquetFiles, commit
    from arcuate.format.records import chunk_rows, to_batches

    options = json.loads(os.environ.get(_OPTIONS_ENV) or "{}") or None
    if "://" in location:
        files = ParquetFiles("", _table_fs(location, options), prefix=prefix)
    else:
        files = ParquetFiles(location, None, prefix=prefix)
    rows = nbytes = 0
    request: dict[str, Any] | None = None
    try:
        for line in lines:
            if not line.strip():
                continue
            doc = json.loads(line)
            if "commit" in doc:
                request = doc["commit"]
                break
            for batch in to_batches(chunk_rows(job_from(doc))):
                rows += batch.num_rows
                nbytes += batch.nbytes
                files.write(batch)
                del batch
        if request is None:
            raise BackendError("the chunk writer was stopped before the commit")
        adds = [_add_from(a) for a in request["adds"]] + files.finish()
        before = request.get("existing")
        existing = (
            DeltaTable(location, version=int(before), storage_options=options)
            if before is not None
            else None
        )
        content, name = request["content"], str(request["name"])
        version = commit(location, existing, adds, content, name, options)
    except BaseException:
        files.abort()
        raise
    return {
        "ok": True,
        "version": version,
        "rows": rows,
        "bytes": nbytes,
        "peak": workers.peak_rss(),
    }


def main() -> int:
    location, prefix = sys.argv[1], sys.argv[2]
    try:
        if len(sys.argv) > 3:
            # hold the writer's lock too (until this process ends): it may be this helper
            # that commits, after its parent was killed
            try:
                join_writer(sys.argv[3])
            except OSError as exc:
                raise BackendError("the export that started this helper has ended") from exc
        out = write_and_commit(location, prefix, sys.stdin)
    except ArcuateError as exc:
        out = {"ok": False, "error": workers.error_doc(exc)}
    sys.stdout.write(_RESULT + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
