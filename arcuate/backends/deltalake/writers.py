"""Who is writing a local table, and the data files that writers which are gone left behind.

A write puts its Parquet files into the table directory first and commits them to the Delta
log at the end. A writer killed in between (SIGKILL, OOM, power loss) leaves files that no
table version names and nobody deletes. The next write of the table removes them, and must
never remove files that another writer, still running, is about to commit. So:

* each writer takes an id (``w`` and 12 hex digits) and names every data file it writes
  ``part-<id>-...`` (its chunk helper: ``part-chunks-<id>-...``);
* before writing any, it creates ``_arcuate_writers/<id>.lock`` and holds a shared
  ``flock`` on it for as long as it runs; the chunk helper holds one too (it may be the one
  that commits). The kernel drops the locks of a process that ends, however it ends. The
  lock file is removed once the write has committed or aborted;
* the next writer lists the files named with other ids, and takes a writer for gone when
  its lock file is missing (it finished) or can be locked exclusively (nobody holds it).
  Only then does it read the Delta log, so a commit made before the writer was gone is seen,
  and it deletes those of the gone writers' files that the log does not name (in any version
  or checkpoint it still holds), and their lock files.

Files with other names (written by another tool, or by arcuate before it named them) are
never touched. Where ``flock`` does not exist nothing is reclaimed. Object stores have no
such locks: there, orphaned files are left to Delta's VACUUM.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Where the writers of a local table keep their lock files (Delta skips ``_`` names).
WRITERS_DIR: Final = "_arcuate_writers"
_OURS: Final = re.compile(r"^part-(?:chunks-)?(w[0-9a-f]{12})-.*\.parquet$")
_LOCK: Final = re.compile(r"^(w[0-9a-f]{12})\.lock$")


class WriterLock:
    """This writer's id and its shared lock on ``_arcuate_writers/<id>.lock`` (see above)."""

    def __init__(self, table_dir: Path) -> None:
        self.table_dir = table_dir
        self.id = "w" + uuid.uuid4().hex[:12]
        self.path: Path | None = None
        self._fd: int | None = None
        if fcntl is None:
            return
        folder = table_dir / WRITERS_DIR
        while True:
            folder.mkdir(exist_ok=True)
            path = folder / f"{self.id}.lock"
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            except FileNotFoundError:
                continue  # the folder was removed meanwhile (an aborted first write)
            fcntl.flock(fd, fcntl.LOCK_SH)
            if _is_file(path, fd):
                self.path, self._fd = path, fd
                return
            # between the two calls another writer found the new file unlocked, took it for
            # a gone writer's and removed it: start again with another id
            os.close(fd)
            self.id = "w" + uuid.uuid4().hex[:12]

    def release(self) -> None:
        """The write committed or aborted: remove the lock file, then drop the lock."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self.path = self._fd = None


def _is_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def join_writer(lock_path: str) -> int:
    """A shared lock on a running writer's lock file, for its chunk helper; the descriptor.

    Raises:
        OSError: the writer is gone (its lock file was removed, or nobody holds it).
    """
    if fcntl is None:
        return -1
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        if not _is_file(Path(lock_path), fd):
            raise FileNotFoundError(lock_path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def reclaim(table_dir: Path, *, keep: str) -> list[str]:
    """Delete the data files of ``table_dir`` that gone writers left uncommitted (see the
    module's docstring; writer ``keep`` is this one); the names deleted."""
    if fcntl is None:
        return []
    folder = table_dir / WRITERS_DIR
    files: dict[str, list[Path]] = defaultdict(list)
    try:
        for entry in os.scandir(table_dir):
            match = _OURS.match(entry.name)
            if match and match[1] != keep and entry.is_file(follow_symlinks=False):
                files[match[1]].append(Path(entry.path))
        locks = {m[1] for e in _scan(folder) if (m := _LOCK.match(e.name)) and m[1] != keep}
    except OSError:
        return []
    gone: dict[str, int | None] = {}  # writer -> its lock file, locked exclusively by us
    try:
        for writer in sorted(set(files) | locks):
            ended, held = _gone(folder / f"{writer}.lock")
            if ended:
                gone[writer] = held
        if not gone:
            return []
        try:
            named = logged_files(table_dir)  # read after the writers were found gone
        except (OSError, ValueError, KeyError, TypeError):
            return []  # a log this cannot read: delete nothing
        deleted = []
        for writer, fd in gone.items():
            for path in files.get(writer, []):
                if path.name not in named:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    deleted.append(path.name)
            if fd is not None:
                with contextlib.suppress(OSError):
                    (folder / f"{writer}.lock").unlink()
        return deleted
    finally:
        for fd in gone.values():
            if fd is not None:
                os.close(fd)


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except FileNotFoundError:
        return []


def _gone(lock: Path) -> tuple[bool, int | None]:
    """Whether the writer of ``lock`` is gone; if so, the lock file's descriptor, locked
    exclusively (None when there is no lock file: the writer finished)."""
    assert fcntl is not None
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return True, None
    except OSError:
        return False, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False, None
    return True, fd


def logged_files(table_dir: Path) -> set[str]:
    """Base names of every file the Delta log names, added or removed, in each commit and
    checkpoint it holds (files of older versions stay readable by time travel)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    log = table_dir / "_delta_log"
    names: set[str] = set()
    parquets = [p for p in log.glob("*.parquet") if ".checkpoint" in p.name]
    parquets += list((log / "_sidecars").glob("*.parquet"))
    for path in sorted(log.glob("*.json")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    action: dict[str, Any] = json.loads(line)
                    for kind in ("add", "remove"):
                        if isinstance(action.get(kind), dict):
                            names.add(_base(action[kind]["path"]))
    for path in parquets:
        schema = pq.read_schema(path)
        columns = [c for c in ("add", "remove") if c in schema.names]
        table = pq.read_table(path, columns=columns)
        for column in columns:
            paths = pc.struct_field(table.column(column), "path")
            names.update(_base(p) for p in paths.to_pylist() if p)
    return names


def _base(path: str) -> str:
    return unquote(path).rstrip("/").rsplit("/", 1)[-1]
