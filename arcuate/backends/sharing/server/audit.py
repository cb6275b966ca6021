"""The server's access-log writer: records off the request path, through a durable spool, into
the Delta table of :mod:`arcuate.backends.sharing.audit`.

A request only appends its record to an in-memory queue. A writer thread wakes every
:data:`INTERVAL` seconds (sooner when :data:`BATCH` records wait), writes what is queued as one
spool segment (a JSON-lines file, fsync'd, renamed into place), appends the segment to the
Delta table in one commit, and deletes it. The commit carries a Delta application transaction
(``txn``: this writer's id, the segment's number), so a segment is committed exactly once even
when the server stops between the commit and the delete: a writer that starts replays the
segments of writers that are gone (their lock file is free) and skips those the table already
holds. Shutdown (SIGTERM, Ctrl+C, ``ServerHandle.stop``) flushes the queue once the requests in
flight are done, so every answered request is in the table; a SIGKILL loses at most the
records of the last :data:`INTERVAL`.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from arcuate.backends.sharing.server.logline import log_field

log = logging.getLogger("arcuate.server")

#: Seconds between batches (what SHOW ACCESS LOG may lag behind the requests).
INTERVAL: Final = 1.0
#: Queued records that wake the writer before the interval is up.
BATCH: Final = 5000
#: Records kept in memory while the spool cannot be written (a full disk); older ones beyond
#: it are dropped, counted and logged.
MAX_UNSPOOLED: Final = 200_000
#: Commits of one writer between compactions of the table's small files.
COMPACT_EVERY: Final = 500
#: Segments waiting for the table whose records are also kept in memory.
_KEPT_IN_MEMORY: Final = 8


@dataclass
class AuditStats:
    """What the writer did: the tests and the load benchmark read it."""

    queued: int = 0
    committed: int = 0
    replayed: int = 0
    dropped: int = 0
    commit_failures: int = 0


class AuditLog:
    """The access log of one server process; :meth:`record` is all a request does."""

    def __init__(
        self,
        table: Path,
        spool: Path,
        *,
        interval: float = INTERVAL,
        storage_options: dict[str, str] | None = None,
    ) -> None:
        self.table = table
        self.spool = spool
        self.interval = interval
        self.stats = AuditStats()
        self.writer_id = f"w{os.getpid()}-{secrets.token_hex(4)}"
        self._options = storage_options
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._unspooled: list[dict[str, Any]] = []
        #: spooled segments not yet in the table: (number, file, records while few wait)
        self._pending: list[tuple[int, Path, list[dict[str, Any]] | None]] = []
        self._seq = 0
        self._commits = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._lock_file: Any = None
        self._delta: Any = None
        self._failing = False

    # -- the request path ----------------------------------------------------------------------
    def record(self, record: dict[str, Any]) -> None:
        """Queue one request's record (thread-safe, no I/O); starts the writer on first use."""
        if self._thread is None:
            self.start()
        self._queue.append(record)
        self.stats.queued += 1
        if len(self._queue) >= BATCH:
            self._wake.set()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Open (or create) the table, then start the writer thread (once), which first replays
        what stopped servers left spooled.

        The server calls this before it serves: opening and creating the table cost ~0.4 s of
        CPU with the GIL held, which under load stalled every request of the first batch.
        """
        with self._start_lock:
            if self._thread is not None:
                return
            try:
                self._open()
            except Exception as exc:  # the writer retries at its first commit
                log.error("access log: cannot open %s: %s", log_field(self.table), _text(exc))
            self.spool.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.spool / f"{self.writer_id}.lock", "a+")  # noqa: SIM115
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            self._thread = threading.Thread(
                target=self._run, name="arcuate-access-log", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 60.0) -> None:
        """Write every queued record to the table, then stop the writer (idempotent)."""
        thread = self._thread
        if thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            log.error("the access log writer did not finish in %.0f s", timeout)
            return
        if not self._pending and not self._unspooled and self._lock_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.spool / f"{self.writer_id}.lock")
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock: a later server replays what is left

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every record queued so far is in the table (tests, benchmarks)."""
        target = self.stats.queued
        deadline = time.monotonic() + timeout
        while self.stats.committed + self.stats.dropped < target:
            if time.monotonic() > deadline or self._thread is None:
                raise TimeoutError(f"the access log did not catch up in {timeout:.0f} s")
            self._wake.set()
            time.sleep(0.02)

    # -- the writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._replay()
        except Exception as exc:  # never let the log take the server down
            log.error("access log: replaying the spool failed: %s", _text(exc))
        while True:
            stopping = self._stop.is_set()
            if not stopping:
                self._wake.wait(self.interval)
                self._wake.clear()
            self._write()
            if stopping and not self._queue:
                return

    def _write(self) -> None:
        batch = self._unspooled
        while self._queue:
            batch.append(self._queue.popleft())
        self._unspooled = []
        if batch:
            try:
                seq, path = self._spool_batch(batch)
            except OSError as exc:
                self._keep_unspooled(batch, exc)
            else:
                # while the table refuses commits, segments wait on disk, not in memory too
                kept = batch if len(self._pending) < _KEPT_IN_MEMORY else None
                self._pending.append((seq, path, kept))
        self._commit_pending()

    def _keep_unspooled(self, batch: list[dict[str, Any]], exc: OSError) -> None:
        excess = len(batch) - MAX_UNSPOOLED
        if excess > 0:
            self.stats.dropped += excess
            batch = batch[excess:]
        log.error(
            "access log: cannot write the spool %s (%s); %d records wait in memory, %d dropped",
            log_field(self.spool),
            _text(exc),
            len(batch),
            self.stats.dropped,
        )
        self._unspooled = batch

    def _spool_batch(self, batch: list[dict[str, Any]]) -> tuple[int, Path]:
        """Write a batch as the next segment: whole or not at all, and on disk before it counts."""
        self._seq += 1
        final = self.spool / f"{self.writer_id}-{self._seq:012d}.jsonl"
        tmp = final.with_name(f".{final.name}.tmp")
        with open(tmp, "w", encoding="ascii") as fh:
            fh.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in batch)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.spool)
        return self._seq, final

    def _commit_pending(self) -> None:
        while self._pending:
            seq, path, records = self._pending[0]
            try:
                count = self._commit(self.writer_id, seq, records or _read_segment(path))
            except Exception as exc:
                self.stats.commit_failures += 1
                if not self._failing:  # one line per failure streak, not per second
                    where = log_field(self.table)
                    log.error("access log: cannot append to %s: %s", where, _text(exc))
                self._failing = True
                self._delta = None  # reopen: the table may have been repaired or replaced
                return
            self._failing = False
            os.unlink(path)
            self._pending.pop(0)
            self.stats.committed += count

    # -- Delta -----------------------------------------------------------------------------------
    def _commit(self, writer: str, seq: int, records: list[dict[str, Any]]) -> int:
        """Append one segment in one commit tagged (writer, seq); skip it if already there."""
        from deltalake import CommitProperties, Transaction, write_deltalake

        from arcuate.backends.sharing.audit import to_table

        table = self._open()
        done = table.transaction_version(writer)
        if done is not None and done >= seq:
            return len(records)
        write_deltalake(
            table,
            to_table(records),
            mode="append",
            partition_by=["date"],
            storage_options=self._options,
            commit_properties=CommitProperties(app_transactions=[Transaction(writer, seq)]),
        )
        self._commits += 1
        if self._commits % COMPACT_EVERY == 0:
            self._compact(table)
        return len(records)

    def _open(self) -> Any:
        """The table, created empty (with its schema and partition) if it is not there yet."""
        from deltalake import DeltaTable, write_deltalake
        from deltalake.exceptions import TableNotFoundError

        from arcuate.backends.sharing.audit import to_table

        if self._delta is None:
            location = str(self.table)
            try:
                self._delta = DeltaTable(location, storage_options=self._options)
            except TableNotFoundError:
                with contextlib.suppress(Exception):  # another worker may create it first
                    write_deltalake(
                        location,
                        to_table([]),
                        mode="ignore",
                        partition_by=["date"],
                        storage_options=self._options,
                        name="arcuate access log",
                    )
                self._delta = DeltaTable(location, storage_options=self._options)
        else:
            self._delta.update_incremental()
        return self._delta

    @staticmethod
    def _compact(table: Any) -> None:
        """Merge the small files of the batches (one per commit); a failure only waits."""
        try:
            table.optimize.compact()
        except Exception as exc:  # another worker compacting at the same time, mostly
            log.warning("access log: compaction skipped: %s", _text(exc))

    # -- what stopped servers left ---------------------------------------------------------------
    def _replay(self) -> None:
        """Commit the spooled segments of writers that are gone, each exactly once."""
        by_writer: dict[str, list[tuple[int, Path]]] = {}
        for path in self.spool.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                if _lock_free(self.spool / (path.name[1:].rsplit("-", 1)[0] + ".lock")):
                    path.unlink(missing_ok=True)  # a batch cut short: never acknowledged
                continue
            if path.suffix != ".jsonl":
                continue
            writer, _, seq = path.stem.rpartition("-")
            if writer != self.writer_id and seq.isdigit():
                by_writer.setdefault(writer, []).append((int(seq), path))
        for writer, segments in by_writer.items():
            self._replay_writer(writer, sorted(segments))

    def _replay_writer(self, writer: str, segments: list[tuple[int, Path]]) -> None:
        lock_path = self.spool / f"{writer}.lock"
        with open(lock_path, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # its server is still running: it writes its own
            for seq, path in segments:
                self.stats.replayed += self._commit(writer, seq, _read_segment(path))
                path.unlink()
            lock_path.unlink(missing_ok=True)
        log.info("access log: replayed %d segments left by writer %s", len(segments), writer)


def _read_segment(path: Path) -> list[dict[str, Any]]:
    """A spool segment's records (a line that is not one, from a hand edit, is skipped)."""
    records: list[dict[str, Any]] = []
    with open(path, encoding="ascii", errors="replace") as fh:
        for line in fh:
            with contextlib.suppress(ValueError):
                found = json.loads(line)
                if isinstance(found, dict):
                    records.append(found)
    return records


def _lock_free(path: Path) -> bool:
    """Whether no running writer holds the lock file (a missing one is free)."""
    try:
        with open(path, "r+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
    except FileNotFoundError:
        return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _text(exc: BaseException) -> str:
    return log_field(f"{type(exc).__name__}: {exc}", 2048, spaces=True)


# -- what a request becomes ------------------------------------------------------------------------
#: Handler names of the protocol routes, and the action the log calls them.
ACTIONS: Final = {
    "list_shares": "list_shares",
    "get_share": "get_share",
    "list_schemas": "list_schemas",
    "list_tables": "list_tables",
    "list_all_tables": "list_all_tables",
    "table_version": "table_version",
    "table_metadata": "metadata",
    "query_table": "query",
    "table_changes": "changes",
    "get_file": "file",
    "oauth_token": "token",
    "activation": "activation",
}
#: Longest name or address kept in a record (names of shares and tables are at most 255).
_FIELD: Final = 255


def record_of(
    scope: MutableMapping[str, Any],
    *,
    request_id: str,
    started: float,
    status: int,
    bytes_sent: int,
    duration: float,
    table_version: str | None,
) -> dict[str, Any]:
    """One request's record, from what the route and the handler noted in the scope's state.

    Nothing comes from the query string or a header (the client address aside, resolved from
    the socket and trusted proxies), so no token or signature can reach the log.
    """
    state = scope.get("state") or {}
    version = int(table_version) if table_version and table_version.isdigit() else None
    return {
        "time": int(started * 1_000_000),
        "request_id": request_id,
        "recipient": state.get("recipient"),
        "client_address": _cut(state.get("client")),
        "method": _cut(scope.get("method")),
        "action": state.get("action") or "other",
        "share": _cut(state.get("share")),
        "schema": _cut(state.get("schema")),
        "table": _cut(state.get("table")),
        "table_version": version if version is not None and version < 2**63 else None,
        "status": status,
        "error_code": state.get("error_code"),
        "bytes_sent": bytes_sent,
        "duration_ms": round(duration * 1000, 3),
        "date": time.strftime("%Y-%m-%d", time.gmtime(started)),
    }


def _cut(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= _FIELD else text[:_FIELD]
