"""Reading shared Delta tables for the server: snapshots, commits and their timestamps.

Snapshots come from delta-rs (:class:`deltalake.DeltaTable` and its add actions); change
data comes straight from the ``_delta_log`` JSON commits, whose ``cdc``/``add``/``remove``
actions are what the protocol sends. Both are cached by (table, version, commit file stamp):
a Delta version never changes, and a table re-created in place gets new stamps.

A table's root is a :class:`TableRoot`: a directory (:class:`LocalRoot`) or a prefix in
object storage (:class:`~.objectstore.ObjectRoot`); only the log is ever read through it.
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol, TypeVar
from urllib.parse import unquote, urlparse

import pyarrow as pa

from arcuate.backends.sharing.server.logline import log_field
from arcuate.backends.sharing.server.wire import SharingError, invalid, not_found, unsupported

log = logging.getLogger("arcuate.server")

_COMMIT: Final = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT: Final = re.compile(r"^(\d{20})\.checkpoint(\.\d+\.\d+)?\.parquet$")
_CDF_KEY: Final = "delta.enableChangeDataFeed"
#: Actions whose value the server reads, and so must be JSON objects in a commit.
_OBJECT_ACTIONS: Final = ("add", "remove", "cdc", "metaData", "protocol", "commitInfo")

V = TypeVar("V")


class _Lru:
    """A small thread-safe LRU map."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, build: Callable[[], V]) -> V:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]  # type: ignore[no-any-return]
        value = build()
        with self._lock:
            self._data[key] = value
            while len(self._data) > self._size:
                self._data.popitem(last=False)
        return value


@dataclass(frozen=True)
class DataFile:
    """One active data file of a snapshot, as the log records it."""

    path: str  # as in the log: URI-encoded, relative to the table root
    size: int
    modification_time: int
    partition_values: dict[str, str | None]
    num_records: int | None

    @property
    def stats(self) -> str | None:
        if self.num_records is None:
            return None
        return json.dumps({"numRecords": self.num_records}, separators=(",", ":"))


@dataclass(frozen=True)
class Snapshot:
    """A table at one version: its protocol and metaData actions and its active files."""

    version: int
    protocol: dict[str, Any]
    metadata: dict[str, Any]
    files: list[DataFile] = field(default_factory=list)

    @property
    def min_reader_version(self) -> int:
        return int(self.protocol.get("minReaderVersion", 1))

    @property
    def reader_features(self) -> frozenset[str]:
        return frozenset(str(f).lower() for f in self.protocol.get("readerFeatures") or [])

    @property
    def cdf_enabled(self) -> bool:
        return cdf_enabled(self.metadata)

    @property
    def column_mapping(self) -> bool:
        mode = (self.metadata.get("configuration") or {}).get("delta.columnMapping.mode", "none")
        return str(mode).lower() != "none"


def cdf_enabled(metadata: dict[str, Any]) -> bool:
    return str((metadata.get("configuration") or {}).get(_CDF_KEY, "false")).lower() == "true"


@dataclass(frozen=True)
class Commit:
    """One ``_delta_log`` JSON commit: its version, timestamp (ms) and actions."""

    version: int
    timestamp: int
    actions: list[dict[str, Any]]


class TableRoot(Protocol):
    """Where a table lives, as far as the server reads it: its log, never its data."""

    @property
    def uri(self) -> str:
        """The table's location as deltalake opens it; also the key of the caches."""
        ...

    @property
    def storage_options(self) -> dict[str, str] | None: ...

    def log_names(self) -> Iterator[str]:
        """Names of the files directly in ``_delta_log`` (OSError: it cannot be listed)."""
        ...

    def log_stamp(self, name: str) -> Any:
        """What changes when a log file is rewritten; None when it is not there."""
        ...

    def open_log(self, name: str) -> tuple[BinaryIO, int]:
        """A log file's bytes and its modification time (ms); FileNotFoundError if gone."""
        ...

    def relative(self, log_path: str) -> str:
        """A log ``path`` as a plain path below the root (SharingError if outside it)."""
        ...

    def scrub(self, text: str) -> str:
        """``text`` without credentials, for the log."""
        ...


@dataclass
class LocalRoot:
    """A table in a local directory."""

    path: Path
    storage_options: dict[str, str] | None = None

    @property
    def uri(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def log_names(self) -> Iterator[str]:
        try:
            with os.scandir(self.path / "_delta_log") as it:
                names = [e.name for e in it]
        except (FileNotFoundError, NotADirectoryError):
            names = []
        return iter(names)

    def log_stamp(self, name: str) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path / "_delta_log" / name)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def open_log(self, name: str) -> tuple[BinaryIO, int]:
        path = self.path / "_delta_log" / name
        fh = open(path, "rb")  # noqa: SIM115 - the caller closes it
        return fh, int(os.fstat(fh.fileno()).st_mtime * 1000)

    def relative(self, log_path: str) -> str:
        return relative_file(self.path, log_path)

    def scrub(self, text: str) -> str:
        return text


def unreadable(root: TableRoot, version: int, cause: object) -> SharingError:
    """The answer for a table whose log cannot be read at ``version``: the provider's fault.

    RESOURCE_DOES_NOT_EXIST with 404, the protocol's pair for it: the data of that version
    is not available. Not a 5xx, which the client would retry for minutes against a table
    that will not heal by itself. The cause names server paths: it is logged, not sent.
    """
    log.warning(
        "cannot read table %s at version %d: %s",
        log_field(root),
        version,
        log_field(root.scrub(str(cause)), limit=2048, spaces=True),
    )
    return not_found(
        f"version {version} of this table cannot be read on the server; "
        "ask the provider to repair the table"
    )


def local_root(location: str) -> Path:
    """The directory of a table on local disk, or UNSUPPORTED_OPERATION for a location this
    server cannot read (object stores other than those :mod:`.objectstore` serves)."""
    if location.startswith("file://"):
        return Path(unquote(urlparse(location).path))
    if "://" in location:
        raise unsupported(
            "this table is stored where this server cannot read it (it serves local "
            "directories and s3, gs and az object storage); ask the provider to move it"
        )
    return Path(location)


def safe_relative(path: str) -> bool:
    """A plain relative path: no '..', no absolute, no backslash, no NUL or control chars."""
    if not path or path.startswith("/") or "\\" in path:
        return False
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def relative_file(root: Path, log_path: str) -> str:
    """The on-disk path of a log ``path`` relative to ``root`` (unquoted once, as Delta says)."""
    if "://" in log_path:
        parsed = urlparse(log_path)
        if parsed.scheme != "file":
            raise unsupported("a data file of this table lives outside the table directory")
        absolute = Path(unquote(parsed.path))
        try:
            return absolute.relative_to(root).as_posix()
        except ValueError:
            raise unsupported(
                "a data file of this table lives outside the table directory"
            ) from None
    return unquote(log_path)


class DeltaTables:
    """Cached access to Delta tables by root (a directory or an object-store prefix)."""

    def __init__(self, cache_size: int = 256) -> None:
        self._snapshots = _Lru(cache_size)
        self._commits = _Lru(cache_size * 16)

    # -- the log directory ---------------------------------------------------------------------
    @staticmethod
    def _log_versions(root: TableRoot) -> tuple[list[int], list[int]]:
        """(commit versions, checkpoint versions) present in ``_delta_log``."""
        commits: list[int] = []
        checkpoints: list[int] = []
        try:
            names = list(root.log_names())
        except OSError as exc:  # an object store that cannot be listed
            raise unreadable(root, -1, exc) from None
        for name in names:
            m = _COMMIT.match(name)
            if m:
                commits.append(int(m.group(1)))
                continue
            m = _CHECKPOINT.match(name)
            if m:
                checkpoints.append(int(m.group(1)))
        return commits, checkpoints

    def latest_version(self, root: TableRoot) -> int:
        commits, checkpoints = self._log_versions(root)
        if not commits and not checkpoints:
            raise not_found("the data of this table is not available on the server")
        return max(commits + checkpoints)

    def earliest_version(self, root: TableRoot) -> int:
        """The first version whose commit (and so its changes and timestamp) is still there."""
        commits, checkpoints = self._log_versions(root)
        if not commits:
            return max(checkpoints, default=0)
        present = set(commits)
        v = max(commits)
        while v - 1 in present:
            v -= 1
        return v

    @staticmethod
    def _stamp(root: TableRoot, version: int) -> Any:
        try:
            return root.log_stamp(f"{version:020d}.json")
        except OSError as exc:
            raise unreadable(root, version, exc) from None

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot(self, root: TableRoot, version: int) -> Snapshot:
        key = (root.uri, version, self._stamp(root, version))
        return self._snapshots.get(key, lambda: _load_snapshot(root, version))

    # -- commits -----------------------------------------------------------------------------
    def commit(self, root: TableRoot, version: int) -> Commit:
        stamp = self._stamp(root, version)
        if stamp is None:
            raise invalid(f"version {version} of this table is no longer in its history")
        return self._commits.get((root.uri, version, stamp), lambda: _load_commit(root, version))

    def version_at_or_before(self, root: TableRoot, ms: int) -> int | None:
        """The latest version committed at or before ``ms`` (None if all are later)."""
        latest, first = self.latest_version(root), self.earliest_version(root)
        for v in range(latest, first - 1, -1):
            if self.commit(root, v).timestamp <= ms:
                return v
        return None

    def version_at_or_after(self, root: TableRoot, ms: int) -> int | None:
        """The earliest version committed at or after ``ms`` (None if all are earlier)."""
        latest, first = self.latest_version(root), self.earliest_version(root)
        found = None
        for v in range(latest, first - 1, -1):
            if self.commit(root, v).timestamp >= ms:
                found = v
            else:
                break
        return found


def _load_commit(root: TableRoot, version: int) -> Commit:
    actions: list[dict[str, Any]] = []
    try:
        raw, mtime = root.open_log(f"{version:020d}.json")
        with io.TextIOWrapper(raw, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    actions.append(_action(json.loads(line), number))
    except FileNotFoundError:
        raise invalid(f"version {version} of this table is no longer in its history") from None
    except (ValueError, OSError, RecursionError) as exc:  # not UTF-8, not JSON, not actions
        raise unreadable(root, version, exc) from None
    timestamp = mtime
    for action in actions:
        info = action.get("commitInfo")
        if isinstance(info, dict):
            ts = info.get("inCommitTimestamp", info.get("timestamp"))
            if isinstance(ts, int):
                timestamp = ts
    return Commit(version, timestamp, actions)


def _action(doc: Any, line: int) -> dict[str, Any]:
    """One commit line, checked to have the shape the server reads (ValueError if not)."""
    if not isinstance(doc, dict):
        raise ValueError(f"line {line} is not a JSON object")
    for key in _OBJECT_ACTIONS:
        if key in doc and not isinstance(doc[key], dict):
            raise ValueError(f"line {line}: {key} is not an object")
    for key in ("add", "remove", "cdc"):
        if key in doc and not isinstance(doc[key].get("path"), str):
            raise ValueError(f"line {line}: {key}.path is not a string")
    return doc


def _load_snapshot(root: TableRoot, version: int) -> Snapshot:
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    try:
        dt = DeltaTable(root.uri, version=version, storage_options=root.storage_options)
        proto = dt.protocol()
        meta = dt.metadata()
        schema_string = dt.schema().to_json()
        adds = pa.table(dt.get_add_actions(flatten=False))
    except TableNotFoundError:
        raise not_found("the data of this table is not available on the server") from None
    except (DeltaError, OSError, pa.ArrowException) as exc:
        raise unreadable(root, version, exc) from exc
    try:
        return _snapshot(version, proto, meta, schema_string, adds)
    except (ValueError, TypeError, KeyError) as exc:  # a log delta-rs read but we cannot use
        raise unreadable(root, version, exc) from exc


def _snapshot(version: int, proto: Any, meta: Any, schema_string: str, adds: pa.Table) -> Snapshot:
    protocol: dict[str, Any] = {
        "minReaderVersion": proto.min_reader_version,
        "minWriterVersion": proto.min_writer_version,
    }
    if proto.reader_features:
        protocol["readerFeatures"] = list(proto.reader_features)
    if proto.writer_features:
        protocol["writerFeatures"] = list(proto.writer_features)
    metadata: dict[str, Any] = {
        "id": meta.id,
        "name": meta.name,
        "description": meta.description,
        "format": {"provider": "parquet", "options": {}},
        "schemaString": schema_string,
        "partitionColumns": list(meta.partition_columns),
        "configuration": dict(meta.configuration),
        "createdTime": meta.created_time,
    }
    metadata = {k: v for k, v in metadata.items() if v is not None}
    types = {f["name"]: f["type"] for f in json.loads(schema_string)["fields"]}
    files = _files(adds, types)
    return Snapshot(version, protocol, metadata, files)


def _files(adds: pa.Table, types: dict[str, Any]) -> list[DataFile]:
    names = set(adds.column_names)
    paths = adds.column("path").to_pylist()
    sizes = adds.column("size_bytes").to_pylist()
    mtimes = adds.column("modification_time").to_pylist()
    records = (
        adds.column("num_records").to_pylist() if "num_records" in names else [None] * len(paths)
    )
    parts = adds.column("partition").to_pylist() if "partition" in names else [None] * len(paths)
    out = []
    for path, size, mtime, n, pv in zip(paths, sizes, mtimes, records, parts, strict=True):
        values = {k: _partition_text(v, types.get(k)) for k, v in (pv or {}).items()}
        out.append(DataFile(str(path), int(size), int(mtime or 0), values, n))
    return out


def _partition_text(value: Any, delta_type: Any) -> str | None:
    """A typed partition value back in the Delta log's string form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return str(value.strftime("%Y-%m-%d %H:%M:%S.%f"))
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
