"""Reading a shared table over the Delta Sharing protocol, as Arrow record batches.

A coordinate is ``<profile file>#<share>.<schema>.<table>``, what the official ``delta_sharing``
client takes. :meth:`DeltaSharingReader.batches` asks the server, through arcuate's own protocol
client (:mod:`arcuate.backends.sharing.client`, which imports neither ``delta_sharing`` nor
pandas), for the table's metadata and file list in one request (one snapshot: the format check
and the files agree), then downloads the Parquet files one at a time, streamed to a temporary file
(the next one prefetched while the current one is read), and reads each with
``pyarrow.parquet.ParquetFile.iter_batches`` in batches bounded by rows *and* bytes. Memory
therefore holds about one batch, whatever the size of the table; nothing goes through pandas.

Batches carry the format's columns, cast to :data:`~arcuate.format.schema.SCHEMA`'s types
where they fit; a value that does not fit is passed on as it is, for validation to name its
row and field. :func:`frame_to_batches` turns a pandas frame (``delta_sharing.load_as_pandas``,
the Python API) into the same stream, converting exactly: NaN metric values stay NaN, bytes
stay bytes; :meth:`DeltaSharingReader.frame` is the one method that uses the official client.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from arcuate.backends.retry import (
    SETTING_HINT,
    GaveUp,
    RetryPolicy,
    describe_failure,
    http_status,
    is_transient,
    origin,
    retry_call,
)
from arcuate.backends.sharing.client import (
    Profile,
    ProfileProblem,
    SharingClient,
)
from arcuate.errors import (
    ArcuateError,
    BackendError,
    InputError,
    NotFoundError,
    ShareDataError,
    UnreachableError,
)
from arcuate.format.schema import SCHEMA, SUPPORTED_VERSIONS, Content, conform, parse_description

if TYPE_CHECKING:
    import pandas as pd

    from arcuate.backends.sharing.listing import SharedListing

DEFAULT_BATCH_ROWS: Final = 256
#: Arrow bytes per record batch read from a shared file (rows are cut to stay near this).
DEFAULT_BATCH_BYTES: Final = 8 * 1024 * 1024
_PIECE: Final = 1 << 20
_DOWNLOAD_TRIES: Final = 3
_TIMEOUT: Final = (30, 300)
#: A profile is a few hundred bytes of JSON; anything this large is not one.
_PROFILE_MAX_BYTES: Final = 1 << 20
_PROFILE_HINT: Final = (
    'a profile is the JSON file the provider sent: {"shareCredentialsVersion": 1,'
    ' "endpoint": "https://...", "bearerToken": "..."}; ask them for a new one if it was'
    " edited"
)
_SHARING_HINT: Final = (
    "check that the provider's sharing server is running (arcuate serve) and that the"
    f" profile's endpoint is its URL; {SETTING_HINT}"
)


def _split(coordinate: str) -> tuple[str, str]:
    """(profile path, share.schema.table), checked the way the client will parse it."""
    profile, sep, name = coordinate.rpartition("#")
    parts = name.split(".")
    if not sep or not profile or len(parts) != 3 or not all(parts):
        raise NotFoundError(
            f"{coordinate!r} is not a shared table coordinate",
            hint="write it as '<profile file>#<share>.<schema>.<table>'",
        )
    return profile, name


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in ("NaTType", "NAType")


def frame_to_batches(
    frame: pd.DataFrame, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Record batches of the format's schema from a frame of shared rows.

    Nested values (dicts, numpy arrays of dicts, bytes) convert as they are, NaN inside them is
    kept; a missing top-level value (NaN, NaT, None) becomes null. Columns the format does not
    have are dropped; columns it needs but the frame lacks are left out, for the importer to
    report.

    Raises:
        ShareDataError: a value does not fit its column's type (names row and column).
    """
    fields = [f for f in SCHEMA if f.name in frame.columns]
    schema = pa.schema(fields)
    for start in range(0, len(frame), batch_rows):
        part = frame.iloc[start : start + batch_rows]
        arrays = []
        for f in fields:
            values = [None if _missing(x) else x for x in part[f.name].tolist()]
            arrays.append(_array(values, f, start))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _array(values: list[Any], f: pa.Field, start: int) -> pa.Array:
    try:
        return pa.array(values, type=f.type, from_pandas=False)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        for j, value in enumerate(values):
            try:
                pa.array([value], type=f.type, from_pandas=False)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as inner:
                raise ShareDataError(
                    f"value does not fit the format's {f.type} column: {inner}",
                    row=start + j,
                    field=f.name,
                ) from inner
        raise ShareDataError(f"column cannot be converted: {exc}", row=start, field=f.name) from exc


def read_profile(path: str) -> Profile:
    """The profile file at ``path`` (local, or any fsspec URL), checked.

    Raises:
        NotFoundError: there is no file at ``path``.
        InputError: (ARC710) it is not valid JSON, or not a profile: the message names the
            profile, and the line and column or the field; never a value from it.
    """
    try:
        data = _profile_bytes(path)
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"the profile {path} does not exist",
            hint="a coordinate starts with the path of the profile file the provider sent:"
            " '<profile file>#<share>.<schema>.<table>'",
        ) from exc
    except OSError as exc:
        raise InputError(f"cannot read the profile {path}: {exc}", code="ARC710") from exc
    if len(data) > _PROFILE_MAX_BYTES:
        raise InputError(f"the profile {path} is larger than 1 MiB", code="ARC710")
    doc = _profile_json(path, data)
    for field in ("shareCredentialsVersion", "endpoint"):
        if not doc.get(field):
            raise InputError(f"the profile {path} has no {field!r}", code="ARC710")
    try:
        return Profile.from_json(doc)
    except KeyError as exc:
        raise InputError(
            f"the profile {path} has no {exc.args[0]!r}", code="ARC710", hint=_PROFILE_HINT
        ) from None
    except ProfileProblem as exc:
        raise InputError(
            f"the profile {path} is not a Delta Sharing profile arcuate can use: {exc}",
            code="ARC710",
            hint=_PROFILE_HINT,
        ) from None


def _profile_bytes(path: str) -> bytes:
    """At most one byte more than a profile may hold, from a local file or an fsspec URL."""
    if "://" not in path:
        with open(path, "rb") as fh:
            return fh.read(_PROFILE_MAX_BYTES + 1)
    import fsspec

    with fsspec.open(path, "rb") as fh:
        return fh.read(_PROFILE_MAX_BYTES + 1)  # type: ignore[no-any-return]


def _profile_json(path: str, data: bytes) -> dict[str, Any]:
    """The profile's JSON object; errors say where, never what (the text holds a token)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(
            f"the profile {path} is not UTF-8 text", code="ARC710", hint=_PROFILE_HINT
        ) from None
    except json.JSONDecodeError as exc:
        why = exc.msg[:1].lower() + exc.msg[1:]
        raise InputError(
            f"the profile {path} is not valid JSON: line {exc.lineno}, column {exc.colno}: {why}",
            code="ARC710",
            hint=_PROFILE_HINT,
        ) from None
    if not isinstance(doc, dict):
        raise InputError(
            f"the profile {path} is not a JSON object", code="ARC710", hint=_PROFILE_HINT
        )
    return doc


class DeltaSharingReader:
    """A :class:`~arcuate.backends.protocols.ShareReader` over the Delta Sharing protocol.

    Requests to the sharing server that fail for want of an answer (no connection, a timeout,
    HTTP 429/5xx) are retried for ``retry.seconds``, then fail with an error that names the
    server's endpoint.
    """

    name = "delta-sharing"

    def __init__(
        self,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.batch_rows = batch_rows
        self.batch_bytes = batch_bytes
        self.retry = retry or RetryPolicy()

    def _attempt(self, endpoint: str) -> Callable[[str, Callable[[], Any]], Any]:
        """``attempt(what, fn)``: ``fn()`` against the sharing server at ``endpoint``, retried
        within the budget; a server that never answers ends in an :class:`UnreachableError`
        naming the endpoint and ``what`` was being done."""

        def attempt(what: str, fn: Callable[[], Any]) -> Any:
            def give_up(ended: GaveUp) -> Exception:
                failure = describe_failure(ended.failure)
                status = http_status(ended.failure)
                problem = f"answered {failure}" if status else f"cannot be reached: {failure}"
                return UnreachableError(
                    f"the sharing server at {endpoint} {problem}, while {what}; {ended}",
                    hint=_SHARING_HINT,
                )

            return retry_call(
                fn,
                self.retry,
                what=f"the sharing server at {endpoint} ({what})",
                retryable=is_transient,
                give_up=give_up,
            )

        return attempt

    def _request(self, coordinate: str, what: str, call: Any) -> Any:
        """``call(client, share, schema, table)`` against the coordinate's sharing server,
        retried within the budget.

        Raises:
            UnreachableError: the server did not answer, or kept failing, until time was up.
            SharingAnswerError: (ARC730) the server's answer is malformed.
            NotFoundError, BackendError, InputError: as :func:`_client_error` and
                :func:`read_profile` say.
        """
        profile_path, name = _split(coordinate)
        share, schema, table = name.split(".")
        profile = read_profile(profile_path)
        client = SharingClient(profile)
        try:
            return self._attempt(client.endpoint)(what, lambda: call(client, share, schema, table))
        except ArcuateError:
            raise
        except Exception as exc:
            raise _client_error(coordinate, exc) from exc
        finally:
            client.close()

    def metadata(self, coordinate: str) -> dict[str, Any]:
        """The table's version, description marker (format version, content) and schema.

        Raises:
            NotFoundError: the coordinate is malformed, or the table is not shared with you.
            BackendError: the sharing server cannot be reached or answered an error.
        """
        answer = self._request(
            coordinate,
            f"reading the metadata of shared table {coordinate!r}",
            lambda client, *table: client.query_metadata(*table),
        )
        meta = answer.metadata
        marker = parse_description(meta.description)
        return {
            "coordinate": coordinate,
            "version": answer.version,
            "name": meta.name,
            "description": meta.description,
            "format_version": marker[0] if marker else None,
            "content": marker[1] if marker else None,
            "schema": _schema(coordinate, meta.schema_string),
        }

    def list_shared(self, profile: str) -> SharedListing:
        """What ``profile`` can read: every share, schema and table, with each table's content
        kind, format version, rows and bytes (from the file list, no data is downloaded).

        Raises:
            NotFoundError: the profile file does not exist.
            BackendError: the profile is unreadable, the server cannot be reached, rejects the
                token or lists more than the bounds allow.
        """
        from arcuate.backends.sharing.listing import list_shared

        with SharingClient(read_profile(profile)) as client:
            return list_shared(profile, client.endpoint, client, self._attempt(client.endpoint))

    def check(self, coordinate: str) -> dict[str, Any]:
        """The table's metadata, verified to be an arcuate table of a supported format version.

        Raises:
            ShareDataError: the table is not an arcuate table, or of a newer format version.
        """
        meta = self.metadata(coordinate)
        _check_marker(coordinate, meta["description"])
        return meta

    def frame(self, coordinate: str, *, limit: int | None = None) -> pd.DataFrame:
        """The shared table (or its first ``limit`` rows) as the client's pandas frame."""
        import delta_sharing

        _split(coordinate)
        try:
            return delta_sharing.load_as_pandas(coordinate, limit=limit)
        except Exception as exc:
            raise _client_error(coordinate, exc) from exc

    def batches(self, coordinate: str) -> Iterator[pa.RecordBatch]:
        """Record batches of the shared table, streamed file by file.

        The table is checked to be an arcuate table of a supported format version and its
        files are listed now (so a wrong coordinate, a missing grant or a foreign table fails
        here); the files are downloaded and read as the batches are consumed.

        Raises:
            NotFoundError: the coordinate is malformed, or the table is not shared with you.
            BackendError: the sharing server cannot be reached or answered an error.
            ShareDataError: the table is not an arcuate table, or of a newer format version.
        """
        listing = self.list_files(coordinate)
        return SharedBatches(self, listing)

    def list_files(self, coordinate: str) -> SharedFiles:
        """The table's files (signed URLs) and the metadata they belong to, checked.

        One ``query`` request of the protocol: the metadata and the file list describe the
        same table version.
        """
        answer = self._request(
            coordinate,
            f"listing the files of shared table {coordinate!r}",
            lambda client, *table: client.query_files(*table),
        )
        marker = _check_marker(coordinate, answer.metadata.description)
        files = [
            SharedFileRef(
                url=f.url,
                id=f.id,
                size=f.size,
                partition_values=dict(f.partition_values),
            )
            for f in answer.files
        ]
        return SharedFiles(coordinate, answer.version, files, marker[1])

    def _stream(self, listing: SharedFiles) -> Iterator[pa.RecordBatch]:
        """Download each file (one ahead), read it in bounded batches, remove it."""
        if not listing.files:
            return
        tmp = tempfile.mkdtemp(prefix="arcuate-share-")
        session = _http_session()
        pool = ThreadPoolExecutor(1, thread_name_prefix="arcuate-share-download")
        cancel = threading.Event()
        try:

            def fetch(index: int) -> str:
                ref = listing.files[index]
                path = os.path.join(tmp, f"{index}.parquet")
                _download(session, ref, path, listing.coordinate, cancel)
                return path

            pending: Future[str] = pool.submit(fetch, 0)
            for index, ref in enumerate(listing.files):
                path = pending.result()
                if index + 1 < len(listing.files):
                    pending = pool.submit(fetch, index + 1)
                try:
                    yield from self._read_file(path, ref, listing.coordinate)
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
        finally:
            cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            session.close()
            shutil.rmtree(tmp, ignore_errors=True)

    def _read_file(
        self, path: str, ref: SharedFileRef, coordinate: str
    ) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise ShareDataError(
                f"file {ref.id} of shared table {coordinate!r} is not a readable Parquet "
                f"file: {exc}"
            ) from exc
        with parquet:
            by_lower = {n.lower(): n for n in parquet.schema_arrow.names}
            columns = [by_lower[f.name.lower()] for f in SCHEMA if f.name.lower() in by_lower]
            try:
                # one row group at a time, decoded on this thread: reading ahead across row
                # groups (or decoding on Arrow's pool) keeps several of them in memory
                for group in range(parquet.metadata.num_row_groups):
                    rows = _rows_per_batch(
                        parquet.metadata.row_group(group), self.batch_rows, self.batch_bytes
                    )
                    for batch in parquet.iter_batches(
                        batch_size=rows, row_groups=[group], columns=columns, use_threads=False
                    ):
                        yield conform(batch, ref.partition_values)
            except (pa.ArrowException, OSError) as exc:
                raise ShareDataError(
                    f"file {ref.id} of shared table {coordinate!r} cannot be read: {exc}"
                ) from exc


class SharedBatches(Iterator[pa.RecordBatch]):
    """The record batches of a listed table: iterating downloads and reads the files here.

    It also carries the listing, so that an importer may read the same files in a helper
    process instead (:mod:`arcuate.engine.ingest_worker`), as long as it has not started.
    """

    def __init__(self, reader: DeltaSharingReader, listing: SharedFiles) -> None:
        self.reader = reader
        self.listing = listing
        self._stream: Iterator[pa.RecordBatch] | None = None

    @property
    def started(self) -> bool:
        return self._stream is not None

    @property
    def content(self) -> Content | None:
        """What the table's marker says it holds: ``experiment`` or ``model``."""
        return self.listing.content

    @property
    def total_bytes(self) -> int:
        """Bytes of the table's Parquet files, as the server listed them."""
        return sum(f.size for f in self.listing.files)

    def __next__(self) -> pa.RecordBatch:
        if self._stream is None:
            self._stream = self.reader._stream(self.listing)
        return next(self._stream)

    def close(self) -> None:
        """Stop reading: the download in flight is cancelled, temporary files removed."""
        if self._stream is not None:
            self._stream.close()  # type: ignore[attr-defined]

    def to_json(self) -> dict[str, Any]:
        """What a helper process needs to read the same files (no credentials: the URLs are
        the server's pre-signed file links)."""
        return {
            "coordinate": self.listing.coordinate,
            "version": self.listing.version,
            "content": self.listing.content,
            "files": [
                {
                    "url": f.url,
                    "id": f.id,
                    "size": f.size,
                    "partition_values": f.partition_values,
                }
                for f in self.listing.files
            ],
            "batch_rows": self.reader.batch_rows,
            "batch_bytes": self.reader.batch_bytes,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SharedBatches:
        reader = DeltaSharingReader(batch_rows=doc["batch_rows"], batch_bytes=doc["batch_bytes"])
        files = [SharedFileRef(**f) for f in doc["files"]]
        listing = SharedFiles(doc["coordinate"], doc["version"], files, doc.get("content"))
        return cls(reader, listing)


@dataclass(frozen=True)
class SharedFileRef:
    """One data file of a shared table, as the server listed it (a signed URL)."""

    url: str
    id: str
    size: int
    partition_values: dict[str, str | None]


@dataclass(frozen=True)
class SharedFiles:
    """The files of one version of a shared table."""

    coordinate: str
    version: int
    files: list[SharedFileRef]
    #: what the table's marker says it holds (an importer refuses to read it as the other)
    content: Content | None = None


def _schema(coordinate: str, text: str) -> Any:
    """The table's schema (the metadata's ``schemaString``), parsed."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BackendError(
            f"the sharing server sent a schema of shared table {coordinate!r} that is not JSON"
        ) from None


def _check_marker(coordinate: str, description: str | None) -> tuple[int, Content]:
    """The table's description marks an arcuate table of a format version this reads: the
    marker's (format version, content)."""
    marker = parse_description(description)
    if marker is None:
        raise ShareDataError(
            f"shared table {coordinate!r} is not an arcuate table (its description "
            "carries no arcuate format marker)"
        )
    if marker[0] not in SUPPORTED_VERSIONS:
        raise ShareDataError(
            f"shared table {coordinate!r} uses arcuate format version "
            f"{marker[0]}; this arcuate reads "
            f"{', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}; upgrade arcuate"
        )
    return marker


def _http_session() -> Any:
    """A ``requests`` session for the signed file URLs (proxies from the environment, as the
    client's own file system does)."""
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = "arcuate (delta-sharing file reader)"
    return session


def _download(
    session: Any, ref: SharedFileRef, path: str, coordinate: str, cancel: threading.Event
) -> None:
    """Stream one signed URL to ``path`` in 1 MiB pieces; check the size the server listed.

    Connection failures and 5xx answers are retried (with a short back-off); anything else,
    or a file of the wrong size, is an error naming the file.
    """
    import requests

    problem = ""
    unreachable = False
    for attempt in range(_DOWNLOAD_TRIES):
        if attempt:
            time.sleep(0.5 * 2**attempt)
        got = 0
        try:
            with session.get(ref.url, stream=True, timeout=_TIMEOUT) as response:
                if response.status_code >= 500:
                    problem, unreachable = f"HTTP {response.status_code}", False
                    continue
                if response.status_code >= 400:
                    raise BackendError(
                        f"could not download file {ref.id} of shared table {coordinate!r}: "
                        f"HTTP {response.status_code} (the signed URL may have expired; "
                        "run the statement again)"
                    )
                with open(path, "wb") as out:
                    for piece in response.iter_content(_PIECE):
                        if cancel.is_set():
                            return
                        got += len(piece)
                        if got > ref.size:
                            break
                        out.write(piece)
        except requests.RequestException as exc:
            # never the exception's text: it holds the signed URL
            problem = describe_failure(exc)
            unreachable = isinstance(exc, requests.ConnectionError | requests.Timeout)
            continue
        if got != ref.size:
            raise ShareDataError(
                f"file {ref.id} of shared table {coordinate!r} has "
                f"{'more than ' if got > ref.size else ''}{got} bytes; the server listed "
                f"{ref.size}"
            )
        return
    raise _download_failed(ref, coordinate, problem, unreachable=unreachable)


def _download_failed(
    ref: SharedFileRef, coordinate: str, problem: str, *, unreachable: bool
) -> BackendError:
    """The error once every download attempt failed; names the server only by its origin (the
    rest of a signed URL is a credential)."""
    if unreachable:
        return UnreachableError(
            f"the server of the shared files at {origin(ref.url)} cannot be reached: {problem},"
            f" while downloading file {ref.id} of shared table {coordinate!r}; gave up after"
            f" {_DOWNLOAD_TRIES} attempts",
            hint="check that the provider's sharing server is still running, then run the"
            " statement again",
        )
    return BackendError(
        f"could not download file {ref.id} of shared table {coordinate!r} after "
        f"{_DOWNLOAD_TRIES} attempts: {problem}"
    )


def _rows_per_batch(group: Any, max_rows: int, max_bytes: int) -> int:
    """Rows per batch so that a batch of this row group stays near ``max_bytes``."""
    if not group.num_rows or group.total_byte_size <= 0:
        return max_rows
    per_row = group.total_byte_size / group.num_rows
    return max(1, min(max_rows, int(max_bytes // per_row)))


def _client_error(coordinate: str, exc: Exception) -> Exception:
    """The client's failure as an arcuate error that says where and, if it can, why."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    # the text may quote a signed file URL; ArcuateError redacts its query on the way in
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        profile = coordinate.rpartition("#")[0]
        if not os.path.isfile(profile):
            return NotFoundError(f"profile file of {coordinate!r} not found: {text}")
        # fsspec says FileNotFoundError when a data file's signed URL is refused
        return BackendError(
            f"could not download a data file of shared table {coordinate!r}: {text}",
            hint="the file links may have expired or been revoked; run the statement again",
        )
    if status in (403, 404):
        return NotFoundError(
            f"shared table {coordinate!r} is not available to this profile ({status}): {text}"
        )
    if status == 401:
        return BackendError(
            f"the sharing server rejected the profile's token for {coordinate!r}: {text}",
            hint="ask the provider for a new profile (the token may have expired or been rotated)",
        )
    return BackendError(f"could not read shared table {coordinate!r}: {text}")
