"""Remote files downloaded ahead of the one being read, within a run and across runs.

A :class:`Prefetcher` is one export's pool of ``concurrency`` threads. It lists the files of
the next runs while earlier ones are written, and downloads their small files into temporary
directories (``arcuate-download-*``). Downloads started ahead of the run being read are bounded
by a count and by their bytes. A prefetched copy is read by the first open of its ref (later
opens download again). The copy is removed when that file is closed, or, if nobody opens it,
when the ref is dropped or the prefetcher is closed. :meth:`Prefetcher.close` runs on every
path, errors and abandoned generators included: it cancels what has not started, waits for
what has, and removes every copy nobody took.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any, Final

from arcuate.backends.protocols import FileRef

if TYPE_CHECKING:
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

#: Remote files at most this large are downloaded ahead of the one being read (bigger ones
#: are read twice, once to hash and once to cut into chunks, so twice from the server)
AHEAD_BYTES: Final = 8 * 1024 * 1024
#: Runs whose files are listed ahead of the run being written, per thread.
RUNS_PER_THREAD: Final = 2
#: Files downloaded ahead of the run being written, per thread, and their bytes at most.
FILES_PER_THREAD: Final = 4
TOTAL_BYTES: Final = 64 * 1024 * 1024


def _rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class TempDownload(io.FileIO):
    """A downloaded artifact whose temporary directory goes away when it is closed
    (``remove``: how; removed here by default)."""

    def __init__(self, path: str, tmpdir: str, remove: Callable[[str], None] = _rmtree) -> None:
        super().__init__(path, "rb")
        self._tmpdir = tmpdir
        self._remove = remove

    def close(self) -> None:
        try:
            super().close()
        finally:
            tmpdir, self._tmpdir = self._tmpdir, ""
            if tmpdir:
                self._remove(tmpdir)


def download(repo: ArtifactRepository, path: str) -> tuple[str, str]:
    """(local file, its temporary directory) of one artifact; nothing is left on failure."""
    tmpdir = tempfile.mkdtemp(prefix="arcuate-download-")
    try:
        return repo.download_artifacts(path, dst_path=tmpdir), tmpdir  # type: ignore[no-untyped-call]
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise


def downloader(repo: ArtifactRepository, path: str) -> Callable[[], IO[bytes]]:
    """Downloads ``path`` when called, and opens the copy (removed when it is closed)."""

    def open_remote() -> IO[bytes]:
        local, tmpdir = download(repo, path)
        try:
            return io.BufferedReader(TempDownload(local, tmpdir))
        except BaseException:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise

    return open_remote


def _remove(future: Future[tuple[str, str]]) -> None:
    if not future.cancelled() and future.exception() is None:
        shutil.rmtree(future.result()[1], ignore_errors=True)


class _Slot:
    """One prefetched download: taken by the first open, else removed."""

    __slots__ = ("future", "size", "taken")

    def __init__(self, future: Future[tuple[str, str]], size: int) -> None:
        self.future = future
        self.size = size
        self.taken = False


class Prefetcher:
    """One export's downloads ahead: ``threads`` at once, at most ``files`` files and
    ``total`` bytes started ahead of the run being read (:meth:`reserve`)."""

    def __init__(self, threads: int, *, files: int | None = None, total: int = TOTAL_BYTES):
        self.threads = max(1, threads)
        self.pool = ThreadPoolExecutor(self.threads, "arcuate-files")
        # an RLock: a slot's finalizer may run from the garbage collector while it is held
        self._lock = threading.RLock()
        self._files = files if files is not None else FILES_PER_THREAD * self.threads
        self._bytes = total
        self._slots: dict[int, _Slot] = {}
        #: temporary directories whose removal is queued (close removes what is left)
        self._removing: set[str] = set()
        self._closed = False
        #: downloads started through this prefetcher (ahead or within a run)
        self.started = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any] | None:
        """``fn(*args)`` on the pool; None once closed."""
        with self._lock:
            if self._closed:
                return None
            return self.pool.submit(fn, *args)

    def remove(self, tmpdir: str) -> None:
        """Remove a temporary directory on the pool (a directory's removal took 4-6 ms on a
        loaded machine, 2-4 s of a 200-run export's reading thread); here once closed."""
        with self._lock:
            self._removing.add(tmpdir)
        if self.submit(self._removed, tmpdir) is None:
            self._removed(tmpdir)

    def _removed(self, tmpdir: str) -> None:
        _rmtree(tmpdir)
        with self._lock:
            self._removing.discard(tmpdir)

    def reserve(self, repo: ArtifactRepository, refs: list[FileRef]) -> list[FileRef]:
        """``refs`` with the small ones at the front downloading, as far as the budget goes
        (in order: a file is never fetched before an earlier one that did not fit)."""
        out = list(refs)
        for i, ref in enumerate(refs):
            if not 0 <= ref.size <= AHEAD_BYTES:
                continue
            with self._lock:
                if self._closed or self._files < 1 or ref.size > self._bytes:
                    break
                self._files -= 1
                self._bytes -= ref.size
                out[i] = self._prefetch(repo, ref, ref.size)
        return out

    def window(self, repo: ArtifactRepository, refs: list[FileRef]) -> Iterator[FileRef]:
        """``refs`` with the small ones not fetched yet downloaded up to ``threads`` files
        ahead of the one being read."""
        ahead: deque[FileRef] = deque()
        for ref in refs:
            if isinstance(ref.open, _Fetched) or not 0 <= ref.size <= AHEAD_BYTES:
                ahead.append(ref)
            else:
                with self._lock:
                    fetched = ref if self._closed else self._prefetch(repo, ref, 0)
                ahead.append(fetched)
            if len(ahead) >= self.threads:
                yield ahead.popleft()
        while ahead:
            yield ahead.popleft()

    def _prefetch(self, repo: ArtifactRepository, ref: FileRef, budget: int) -> FileRef:
        """``ref`` with its download started (the lock is held); ``budget``: bytes it holds
        of the look-ahead (0: none), given back when it is opened or dropped."""
        slot = _Slot(self.pool.submit(download, repo, ref.path), budget)
        self.started += 1
        self._slots[id(slot)] = slot
        opener = _Fetched(self, slot, ref)
        weakref.finalize(opener, self._drop, slot)
        return FileRef(ref.owner, ref.path, ref.size, opener)

    def _take(self, slot: _Slot) -> bool:
        """Whether ``slot`` was still untaken (now it is)."""
        with self._lock:
            if slot.taken or self._slots.pop(id(slot), None) is None:
                return False
            slot.taken = True
            self._give(slot)
            return True

    def _drop(self, slot: _Slot) -> None:
        """A slot nobody opened: its copy removed once downloaded."""
        if self._take(slot):
            slot.future.add_done_callback(_remove)

    def _give(self, slot: _Slot) -> None:
        if slot.size:
            self._files += 1
            self._bytes += slot.size
            slot.size = 0

    def close(self) -> None:
        """Cancel downloads not started, wait for the others, remove every untaken copy."""
        with self._lock:
            self._closed = True
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
            removing = list(self._removing)
            self._removing.clear()
        for tmpdir in removing:  # queued, and cancelled with the downloads
            _rmtree(tmpdir)
        for slot in slots:
            slot.taken = True
            _remove(slot.future)


class _Fetched:
    """The opener of a prefetched ref: the first open reads the copy, later ones download."""

    __slots__ = ("__weakref__", "_owner", "_ref", "_slot")

    def __init__(self, owner: Prefetcher, slot: _Slot, ref: FileRef) -> None:
        self._owner = owner
        self._slot = slot
        self._ref = ref

    def __call__(self) -> IO[bytes]:
        if not self._owner._take(self._slot):
            return self._ref.open()
        local, tmpdir = self._slot.future.result()
        try:
            return io.BufferedReader(TempDownload(local, tmpdir, self._owner.remove))
        except BaseException:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
