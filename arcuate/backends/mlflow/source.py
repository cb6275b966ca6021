"""The MLflow side of an export: experiments, runs, logged models, registry versions, files.

Everything leaves this module as record dicts shaped like the structs of
:mod:`arcuate.format.schema` and as :class:`FileRef` s; no MLflow object crosses the line.

Choices worth knowing:

* Only **active** runs are exported (``ViewType.ACTIVE_ONLY``): a deleted run is not part of
  what a user sees in the experiment, and the filter of ``WHERE`` applies on top.
* From a SQL store (through arcuate's SQL client, or MLflow's own ``SqlAlchemyStore``, no
  subclass) and without a filter, runs, params, tags, inputs, outputs and metric histories are
  read with a few SQLAlchemy Core queries per group of runs on the database's engine, on
  MLflow's tables (:mod:`~arcuate.backends.mlflow.sqltables`): the values ``search_runs``
  would give, without building ORM objects and entities; the metric points are handed over as
  one Arrow array per run (:class:`~arcuate.format.records.ColumnarList`). With a filter, or
  from any other store, runs come from ``search_runs``; the history is read in bulk from SQL
  stores and key by key through the client otherwise.
* A metric point that also belongs to a logged model's metrics carries that model's id and
  dataset; a point shared by several models appears once per model.
* Files are listed through MLflow's artifact repositories built from the run's artifact URI
  (or the logged model's artifact location) with this source's tracking and registry URIs,
  never through ``runs:/`` or ``models:/`` resolution, which may consult the global URIs.
* URIs that may hold credentials are passed through :func:`redact_uri` on the way out.
"""

from __future__ import annotations

import difflib
import gc
import json
import math
import os
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import urlsplit

from arcuate.backends.mlflow import artifacts, objects
from arcuate.backends.mlflow.ahead import (
    AHEAD_BYTES,
    RUNS_PER_THREAD,
    Prefetcher,
    downloader,
)
from arcuate.backends.mlflow.connect import (
    client_for,
    error_code,
    every,
    failures,
    is_database,
    is_light,
    is_rest,
    is_sql,
    is_sql_store,
    mlflow_of,
    pages,
    redact_json_uris,
    redact_uri,
    redact_value,
)
from arcuate.backends.mlflow.points import PointKey, point_key
from arcuate.backends.mlflow.tags import PARENT_TAG, RUN_NAME_TAG
from arcuate.backends.protocols import FileRef, Record
from arcuate.errors import BackendError, NotFoundError
from arcuate.format.records import ColumnarList
from arcuate.format.schema import METRIC, OWNER_ARTIFACTS, OWNER_LOGGED_MODEL_PREFIX, OWNER_MODEL

if TYPE_CHECKING:
    import pyarrow as pa
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: The epoch milliseconds a datetime can hold (:func:`to_utc`'s range).
_MIN_MS: Final = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
_MAX_MS: Final = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
#: MLflow's ``ViewType.ACTIVE_ONLY``
_ACTIVE_ONLY: Final = 1
#: Runs whose metric history is read in one query (bounded memory, bounded IN list).
_HISTORY_GROUP: Final = 100
_PAGE: Final = 1000
#: Answers of the bulk history endpoint decoded at once in the process (each up to
#: :data:`_BULK_POINTS` points, about 500 bytes a point while decoded); more are read at once
#: (``concurrency``), and wait as bytes.
DECODES: Final = 2
_DECODING: Final = threading.BoundedSemaphore(DECODES)
#: MLflow's bulk history endpoint (``get-history-bulk``, up to 100 runs and one key a
#: request) and the most points it answers (no pages: an answer this long may be cut off)
_BULK_HISTORY: Final = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
_BULK_POINTS: Final = 25000
#: Requests in flight at once through the client (MLflow's HTTP pool keeps 10 connections).
DEFAULT_CONCURRENCY: Final = 8
#: Names read for a "did you mean" hint at the most.
_HINT_NAMES: Final = 5000
#: MLflow's prefix of artifact files still being uploaded (local_artifact_repo)
_UPLOADING: Final = ".artifact.uploading."
#: model_id, dataset_name, dataset_digest
_ModelLink = tuple[str, str | None, str | None]
#: A run's metric points: [(key, value, step, epoch ms)], or one Arrow array of METRIC
_History: TypeAlias = "list[tuple[str, float, int, int]] | pa.StructArray"


def to_utc(ms: int | None) -> datetime | None:
    """Epoch milliseconds as a timezone-aware UTC datetime (exact: no float rounding)."""
    if ms is None:
        return None
    return _EPOCH + timedelta(milliseconds=int(ms))


def _ms(value: datetime) -> int:
    """A UTC datetime back to epoch milliseconds (exact)."""
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _empty_metrics() -> pa.StructArray:
    import pyarrow as pa

    return pa.array([], type=METRIC)


def _points_array(
    keys: Sequence[str] | pa.Array,
    values: Sequence[float] | pa.Array,
    steps: Sequence[int] | pa.Array,
    millis: Sequence[int] | pa.Array,
) -> pa.StructArray:
    """Metric points (key, value, step, epoch milliseconds; Python values or Arrow arrays)
    as one :data:`METRIC` array, with no model or dataset."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def column(values: Any, kind: pa.DataType) -> pa.Array:
        return values if isinstance(values, pa.Array) else pa.array(values, kind)

    nulls = pa.nulls(len(keys), pa.string())
    # a typed scalar: inferring a Python int's type makes pyarrow import pandas
    stamps = pc.multiply_checked(column(millis, pa.int64()), pa.scalar(1000, pa.int64()))
    return pa.StructArray.from_arrays(
        [
            column(keys, pa.string()),
            column(values, pa.float64()),
            column(steps, pa.int64()),
            stamps.cast(METRIC.field("timestamp").type),
            nulls,
            nulls,
            nulls,
        ],
        fields=list(METRIC),
    )


def _points_table(
    run_ids: Sequence[str] = (),
    keys: Sequence[str] = (),
    values: Sequence[float] = (),
    steps: Sequence[int] = (),
    millis: Sequence[int] = (),
) -> pa.Table:
    """Metric points of several runs as Arrow columns (run_id, key, value, step, millis)."""
    import pyarrow as pa

    return pa.Table.from_arrays(
        [
            pa.array(run_ids, pa.string()),
            pa.array(keys, pa.string()),
            pa.array(values, pa.float64()),
            pa.array(steps, pa.int64()),
            pa.array(millis, pa.int64()),
        ],
        names=["run_id", "key", "value", "step", "millis"],
    )


def _bulk_points(key: str, asked: set[str], body: bytes, where: str) -> pa.Table | bool:
    """One JSON answer of the bulk history endpoint (the points of ``key`` in the runs
    ``asked``) as columns, or True when it may be cut off (:data:`_BULK_POINTS` points or
    more). An answer that is not JSON, or a point that is not a dict of numbers or is of a
    run not asked for, is refused naming the key."""
    run_ids: list[str] = []
    values: list[float] = []
    steps: list[int] = []
    millis: list[int] = []
    try:
        points = json.loads(body).get("metrics") or []
        if len(points) >= _BULK_POINTS:
            return True
        for p in points:
            rid = p["run_id"]
            if rid not in asked:
                raise ValueError(f"a point of run {str(rid)[:64]!r}, which was not asked for")
            run_ids.append(rid)
            values.append(float(p["value"]))
            steps.append(int(p.get("step", 0)))
            ms = int(p["timestamp"])
            if not _MIN_MS <= ms <= _MAX_MS:
                raise ValueError(f"timestamp {ms} is out of range")
            millis.append(ms)
        return _points_table(run_ids, [key] * len(run_ids), values, steps, millis)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise BackendError(
            f"the bulk history of metric {key!r} {where} is malformed: "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from exc


def _by_run(table: pa.Table) -> dict[str, _History]:
    """run id -> its points as one :data:`METRIC` array, ordered by key, timestamp, step,
    value (the SQL path's order); slices of one array, so nothing is copied per run."""
    import pyarrow.compute as pc

    if not table.num_rows:
        return {}
    order = ["run_id", "key", "millis", "step", "value"]
    table = table.sort_by([(name, "ascending") for name in order]).combine_chunks()
    column = table.column
    points = _points_array(*(column(n).chunk(0) for n in ("key", "value", "step", "millis")))
    run_ids = column("run_id").chunk(0)
    runs = pc.run_end_encode(run_ids)
    out: dict[str, _History] = {}
    begin = 0
    for rid, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist(), strict=True):
        out[rid] = points.slice(begin, end - begin)
        begin = end
    return out


def _fetch_raw(conn: Any, stmt: Any) -> list[tuple[Any, ...]]:
    """All rows of a Core ``SELECT`` as plain tuples, fetched by the DB-API cursor itself.

    SQLAlchemy's result rows cost about three times the query for 100,000 points; the
    columns read this way (strings, integers, floats, MLflow's ``is_nan`` flag) need none of
    its result processing (``is_nan`` may come back as 0/1 and is only tested for truth).
    """
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    if compiled.positiontup is not None:
        args: Any = tuple(params[name] for name in compiled.positiontup)
    else:
        args = params
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(compiled.string, args)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def _fetch_each(conn: Any, stmt: Any, name: str, values: list[Any]) -> Iterator[list[Any]]:
    """The rows of ``stmt`` for each value of its bind parameter ``name``, as plain tuples
    (one statement compiled once, executed per value on one DB-API cursor)."""
    compiled = stmt.compile(dialect=conn.dialect)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        for value in values:
            params = compiled.construct_params({name: value})
            if compiled.positiontup is not None:
                args: Any = tuple(params[key] for key in compiled.positiontup)
            else:
                args = params
            cursor.execute(compiled.string, args)
            yield [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: the hundreds of thousands of row tuples of a
    bulk read hold no cycles, yet each full generation triggers a scan of all of them (a
    bulk history read took 2.6x as long with the collector running)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _kv(items: dict[str, str] | None) -> list[dict[str, str | None]]:
    """A dict as a list of KV structs sorted by key, URI values redacted."""
    return [{"key": k, "value": redact_value(v)} for k, v in sorted((items or {}).items())]


def _did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    near = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean {near[0]!r}?" if near else None


def _names(search: Callable[[str | None], Any]) -> list[str]:
    """The names a paginated search lists (up to about :data:`_HINT_NAMES`), for a "did you
    mean" hint; what could be read when the store fails (a hint never hides the real error,
    and a programming error is not taken for a store's failure)."""
    names: list[str] = []
    try:
        for page in pages(search):
            names.extend(item.name for item in page)
            if len(names) >= _HINT_NAMES:
                break
    except failures(OSError):  # OSError: requests' errors too
        return names
    return names


def _is_local_uri(uri: str) -> bool:
    """Whether an artifact URI names a local directory (no scheme, ``file:``, a drive)."""
    scheme = urlsplit(uri).scheme.lower()
    return scheme in ("", "file") or len(scheme) == 1


class _Listing:
    """The files under one artifact URI, and the repository to download them from (None:
    they are local)."""

    __slots__ = ("refs", "repo")

    def __init__(self, refs: list[FileRef], repo: ArtifactRepository | None = None) -> None:
        self.refs = refs
        self.repo = repo


def _local_dir(repo: object) -> str | None:
    """The directory of a local artifact repository, arcuate's or MLflow's (None for any
    other kind)."""
    if artifacts.is_local(repo):
        return str(repo.artifact_dir)
    return None


def _opener(path: str) -> Callable[[], IO[bytes]]:
    """Opens a local file for reading bytes when called."""

    def open_local() -> IO[bytes]:
        return open(path, "rb")

    return open_local


class OutsideLinkError(Exception):
    """A symbolic link in an artifact directory leads outside it (``path``: the link's)."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(path)
        self.path = path
        self.kind = kind


def _list_local(artifact_dir: str) -> list[tuple[str, str]]:
    """(path with ``/``, full path) of every file under a local artifact directory, sorted.

    What MLflow's ``LocalArtifactRepository.list_artifacts`` gives when called directory by
    directory (in-progress uploads skipped), without its per-call path objects: about half of
    a small run's export time went there. A link that leads outside the directory is refused,
    a file's as a directory's (MLflow refuses only directories, and would export the bytes a
    file link points at, a key file for instance); links that stay inside are followed.

    Raises:
        OutsideLinkError: a link leads outside the artifact directory.
    """
    base = os.path.realpath(artifact_dir)
    inside = base.rstrip(os.sep) + os.sep
    files: list[tuple[str, str]] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        here = os.path.join(artifact_dir, os.path.normpath(rel)) if rel else artifact_dir
        real = os.path.realpath(here)
        if real != base and not real.startswith(inside):
            raise OutsideLinkError(rel, "directory")
        if not os.path.isdir(here):
            continue
        for name in os.listdir(here):
            if name.startswith(_UPLOADING):
                continue
            full = os.path.join(here, name)
            child = f"{rel}/{name}" if rel else name
            if os.path.isdir(full):
                pending.append(child)
            elif os.path.islink(full) and not os.path.realpath(full).startswith(inside):
                raise OutsideLinkError(child, "file")
            else:
                files.append((child, full))
    return sorted(files)


def _dataset_record(d: Any) -> Record:
    """A dataset input as the format holds it (URIs redacted)."""
    return {
        "name": d.dataset.name,
        "digest": d.dataset.digest,
        "source_type": d.dataset.source_type,
        "source": redact_json_uris(d.dataset.source),
        "schema": d.dataset.schema,
        "profile": d.dataset.profile,
        "tags": [{"key": t.key, "value": redact_value(t.value)} for t in d.tags],
    }


def _logged_model_record(m: Any, step: int | None) -> Record:
    """A logged model as the format holds it (``step``: of the run's output, if any)."""
    return {
        "model_id": m.model_id,
        "name": m.name,
        "model_type": m.model_type,
        "status": str(m.status) if m.status is not None else None,
        "status_message": m.status_message,
        "creation_time": to_utc(m.creation_timestamp),
        "step": step,
        "tags": _kv(m.tags),
        "params": _kv(m.params),
    }


class _ModelIndex:
    """Logged models by source run, and their metric points by the run that logged them."""

    def __init__(self, models: list[Any]) -> None:
        self.by_source_run: dict[str, list[Any]] = defaultdict(list)
        self.links: dict[str, dict[PointKey, list[_ModelLink]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for model in models:
            if model.source_run_id:
                self.by_source_run[model.source_run_id].append(model)
            for m in model.metrics or ():
                if m.run_id:
                    point = point_key(m.key, m.step, m.timestamp, m.value)
                    self.links[m.run_id][point].append(
                        (model.model_id, m.dataset_name, m.dataset_digest)
                    )


class MlflowSource:
    """A :class:`~arcuate.backends.protocols.ModelSource` over any MLflow tracking/registry URI."""

    def __init__(
        self,
        tracking_uri: str,
        registry_uri: str | None = None,
        *,
        bulk: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        #: read runs with bulk SQL queries where the store allows it (False: public API only)
        self.bulk = bulk
        #: metric histories read at once through the client (the ``rest_concurrency`` setting)
        self.concurrency = max(1, concurrency)
        #: whether a tracking server's bulk history endpoint is tried (off once it fails)
        self._bulk_history = True
        self._client: Any = None
        # run id -> (artifact uri, {model id: artifact location}); filled by iter_runs/get_run
        # and consumed by iter_run_files, so files need no second round trip.
        self._locations: dict[str, tuple[str, dict[str, str]]] = {}

    def __repr__(self) -> str:
        return f"MlflowSource({redact_uri(self.tracking_uri)!r}, {redact_uri(self.registry_uri)!r})"

    @property
    def client(self) -> Any:
        """The client, built on first use with both URIs explicit: arcuate's REST client for a
        tracking server (:func:`~arcuate.backends.mlflow.connect.client_for`), MLflow's
        ``MlflowClient`` otherwise."""
        if self._client is None:
            self._check_store()
            self._client = client_for(self.tracking_uri, self.registry_uri)
        return self._client

    def _check_store(self) -> None:
        """A source reads a store and creates none: for a database URI naming no MLflow store
        (a sqlite file that does not exist, a database without MLflow's tables), an error
        before MLflow's client would create the file, its folders or the schema."""
        if not is_database(self.tracking_uri):
            return
        from arcuate.backends.mlflow.sqlclient import missing_store

        why = missing_store(self.tracking_uri)
        if why is not None:
            raise NotFoundError(
                f"no MLflow database at {redact_uri(self.tracking_uri)}: {why}",
                hint="check --tracking-uri (MLFLOW_TRACKING_URI); an export reads an existing "
                "MLflow store and creates none",
            )

    @property
    def mlflow_client(self) -> MlflowClient:
        """MLflow's own client (for what the REST client does not read: GenAI entities,
        traces, prompts)."""
        return mlflow_of(self.client)

    def _store(self) -> Any:
        """MLflow's tracking store behind the client; None for arcuate's own clients."""
        client = self.client
        return None if is_light(client) else client._tracking_client.store

    def _engine(self, *, subclass: bool = False) -> Any:
        """The SQLAlchemy engine of the tracking database: arcuate's SQL client's, or that of
        MLflow's own SQL store (with ``subclass``, of a subclass too); None for other stores."""
        client = self.client
        if is_sql(client):
            return client.engine
        store = self._store()
        if store is not None and is_sql_store(store, subclass=subclass):
            return store.engine
        return None

    def _where(self) -> str:
        return f"in the MLflow tracking store {redact_uri(self.tracking_uri)}"

    # -- experiments and runs -------------------------------------------------------------

    def get_experiment(self, name: str) -> Record:
        """The experiment record. Raises NotFoundError (with a close match) if missing/deleted."""
        try:
            exp = self.client.get_experiment_by_name(name)
        except failures() as exc:
            raise BackendError(f"could not look up experiment {name!r}: {exc.message}") from exc
        if exp is None:
            raise NotFoundError(
                f"experiment {name!r} does not exist {self._where()}",
                hint=_did_you_mean(name, self._experiment_names()),
            )
        if exp.lifecycle_stage == "deleted":
            raise NotFoundError(
                f"experiment {name!r} is deleted {self._where()}",
                hint=f"restore it first: mlflow experiments restore --experiment-id "
                f"{exp.experiment_id}",
            )
        return {
            "experiment_id": exp.experiment_id,
            "name": exp.name,
            "lifecycle_stage": exp.lifecycle_stage,
            "tags": _kv(exp.tags),
        }

    def _experiment_names(self) -> list[str]:
        return _names(
            lambda token: self.client.search_experiments(max_results=_PAGE, page_token=token)
        )

    def iter_runs(self, experiment_id: str, *, filter: str | None = None) -> Iterator[Record]:
        """Active runs matching ``filter``, oldest first, each with its full metric history."""

        index = _ModelIndex(self._logged_models(experiment_id))
        engine = self._engine() if self.bulk and not filter else None
        if engine is not None:
            yield from self._iter_runs_sql(engine, experiment_id, index)
            return
        for runs in self.search_run_pages(experiment_id, filter):
            for start in range(0, len(runs), _HISTORY_GROUP):
                group = runs[start : start + _HISTORY_GROUP]
                histories = self._histories(group)
                for run in group:  # each history released once its run's record is built
                    yield self._run_record(run, histories.pop(run.info.run_id, []), index)
                del histories

    def search_run_pages(self, experiment_id: str, filter: str | None) -> Iterator[list[Any]]:
        """Pages of the active runs matching ``filter``, oldest first (MLflow Run objects)."""

        def search(token: str | None) -> Any:
            return self.client.search_runs(
                [experiment_id],
                filter_string=filter or "",
                run_view_type=_ACTIVE_ONLY,
                max_results=_PAGE,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )

        try:
            yield from pages(search)
        except failures() as exc:
            where = f" with filter {filter!r}" if filter else ""
            raise BackendError(
                f"could not search the runs of experiment {experiment_id}{where}: {exc.message}"
            ) from exc

    def get_run(self, run_id: str) -> tuple[Record, Record] | None:
        """(experiment, run) records of a run, or None when it no longer exists."""
        try:
            run = self.client.get_run(run_id)
        except failures() as exc:
            if error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise BackendError(f"could not read run {run_id}: {exc.message}") from exc
        exp = self.client.get_experiment(run.info.experiment_id)
        experiment = {
            "experiment_id": exp.experiment_id,
            "name": exp.name,
            "lifecycle_stage": exp.lifecycle_stage,
            "tags": _kv(exp.tags),
        }
        index = _ModelIndex(self._logged_models(run.info.experiment_id, source_run_id=run_id))
        history = self._histories([run]).get(run_id, [])
        return experiment, self._run_record(run, history, index)

    def _logged_models(self, experiment_id: str, *, source_run_id: str | None = None) -> list[Any]:
        """Every (non-deleted) logged model of the experiment, or of one source run."""
        filt = f"source_run_id = '{source_run_id}'" if source_run_id else None
        try:
            return every(
                lambda token: self.client.search_logged_models(
                    experiment_ids=[experiment_id], filter_string=filt, page_token=token
                )
            )
        except failures() as exc:
            raise BackendError(
                f"could not list the logged models of experiment {experiment_id}: {exc.message}"
            ) from exc

    def _histories(self, runs: list[Run]) -> dict[str, _History]:
        """run id -> its points, ordered by key, timestamp, step, value: [(key, value, step,
        timestamp)], or one Arrow array of :data:`METRIC` from the bulk endpoint."""
        engine = self._engine(subclass=True)
        if engine is not None:
            return dict(self._histories_sql(engine, [r.info.run_id for r in runs]))
        bulk = self._histories_bulk(runs)
        if bulk is not None:
            return bulk
        # one request (or page run) per metric key: over REST that is the whole cost of an
        # export, so up to ``concurrency`` of them are in flight at once
        jobs = [(run.info.run_id, key) for run in runs for key in sorted(run.data.metrics)]
        out: dict[str, _History] = {r.info.run_id: [] for r in runs}
        for (rid, _), history in zip(jobs, self._each_history(jobs), strict=True):
            out[rid].extend((m.key, m.value, m.step, m.timestamp) for m in history)  # type: ignore[union-attr]
        return out

    def _histories_bulk(self, runs: list[Run]) -> dict[str, _History] | None:
        """The histories of up to 100 runs through a tracking server's bulk endpoint (the one
        MLflow's UI uses): one request per metric key for all the runs that have it, instead
        of one per run and key. None when the store is not a server offering it.

        The endpoint answers at most :data:`_BULK_POINTS` points and has no pages: a key
        whose answer may be cut off is read run by run instead. The answers are read
        ``concurrency`` at once, but decoded at most :data:`DECODES` at once in the process,
        each into Arrow columns right away: a decoded point costs about 500 bytes of Python
        objects (its bytes about 130, its columns about 40), so 8 answers of 10,000 points
        decoded together are about 40 MiB, and two about 10; decoding more at once is no
        faster (it holds the GIL).
        """
        import pyarrow as pa

        store = self._store()
        light = is_rest(self.client)
        if not self._bulk_history or not runs or not (light or hasattr(store, "get_host_creds")):
            return None
        keys: dict[str, list[str]] = defaultdict(list)
        for run in runs:
            for key in run.data.metrics:
                keys[key].append(run.info.run_id)
        jobs = sorted(keys.items())
        client = self.client

        def read(job: tuple[str, list[str]]) -> pa.Table | bool | None:
            key, run_ids = job
            if light:
                body = client.bulk_history(key, run_ids, _BULK_POINTS)
            else:
                body = self._bulk_key(store, key, run_ids)
            if body is None:
                return None  # no such endpoint
            with _DECODING:
                return _bulk_points(key, set(run_ids), body, self._where())

        answers = self._map(read, jobs)
        if any(a is None for a in answers):  # the server has no such endpoint
            self._bulk_history = False
            return None
        tables: list[pa.Table] = []
        for (key, run_ids), answer in zip(jobs, answers, strict=True):
            if isinstance(answer, pa.Table):
                tables.append(answer)
                continue
            retry = [(rid, key) for rid in run_ids]
            rows = [
                (rid, m.key, m.value, m.step, m.timestamp)
                for (rid, _), history in zip(retry, self._each_history(retry), strict=True)
                for m in history
            ]
            tables.append(_points_table(*zip(*rows, strict=True)) if rows else _points_table())
        del answers
        out: dict[str, _History] = {r.info.run_id: [] for r in runs}
        if tables:  # none when no run of the group has a metric
            out.update(_by_run(pa.concat_tables(tables)))
        return out

    @staticmethod
    def _bulk_key(store: Any, key: str, run_ids: list[str]) -> bytes | None:
        """The JSON answer of the bulk endpoint for ``key`` in ``run_ids`` (not decoded);
        None if it has no such endpoint."""
        from mlflow.utils.rest_utils import http_request

        resp = http_request(  # type: ignore[no-untyped-call]
            store.get_host_creds(),
            _BULK_HISTORY,
            "GET",
            params={"run_id": run_ids, "metric_key": key, "max_results": _BULK_POINTS},
            raise_on_status=False,
        )
        if resp.status_code != 200:
            return None
        body: bytes = resp.content
        return body

    def _map(self, fn: Callable[[Any], Any], jobs: list[Any]) -> list[Any]:
        """``fn`` over ``jobs`` in order, up to :attr:`concurrency` at once."""
        if self.concurrency <= 1 or len(jobs) <= 1:
            return [fn(job) for job in jobs]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(self.concurrency, len(jobs)), "arcuate-read") as pool:
            return list(pool.map(fn, jobs))

    def _each_history(self, jobs: list[tuple[str, str]]) -> Iterator[list[Any]]:
        """The metric history of each (run id, key), in order, read by up to
        :attr:`concurrency` threads (the client's HTTP session is shared and thread-safe)."""
        client = self.client

        def read(job: tuple[str, str]) -> list[Any]:
            return list(client.get_metric_history(*job))

        if self.concurrency <= 1 or len(jobs) <= 1:
            yield from map(read, jobs)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(self.concurrency, len(jobs)), "arcuate-history") as pool:
            yield from pool.map(read, jobs)

    @staticmethod
    def _histories_sql(
        engine: Any, run_ids: list[str]
    ) -> dict[str, list[tuple[str, float, int, int]]]:
        from sqlalchemy import select

        from arcuate.backends.mlflow.sqltables import metrics as t

        stmt = (
            select(t.c.run_uuid, t.c.key, t.c.value, t.c.is_nan, t.c.step, t.c.timestamp)
            .where(t.c.run_uuid.in_(run_ids))
            .order_by(t.c.run_uuid, t.c.key, t.c.timestamp, t.c.step, t.c.value)
        )
        out: dict[str, list[tuple[str, float, int, int]]] = defaultdict(list)
        with engine.connect() as conn:
            for rid, key, value, is_nan, step, ts in conn.execute(stmt):
                out[rid].append((key, math.nan if is_nan else float(value), int(step), int(ts)))
        return out

    def _iter_runs_sql(
        self, engine: Any, experiment_id: str, index: _ModelIndex
    ) -> Iterator[Record]:
        """The active runs of an experiment in ``search_runs`` order, read in bulk from
        MLflow's tables (:mod:`~arcuate.backends.mlflow.sqltables`) on ``engine``."""
        from sqlalchemy import case, select
        from sqlalchemy.exc import SQLAlchemyError

        from arcuate.backends.mlflow.sqltables import runs as t

        stmt = (
            select(
                t.c.run_uuid,
                t.c.name,
                t.c.status,
                t.c.start_time,
                t.c.end_time,
                t.c.user_id,
                t.c.lifecycle_stage,
                t.c.artifact_uri,
            )
            .where(t.c.experiment_id == int(experiment_id), t.c.lifecycle_stage == "active")
            # search_runs' order for "attributes.start_time ASC": nulls last, then the run id
            .order_by(case((t.c.start_time.is_(None), 1), else_=0), t.c.start_time, t.c.run_uuid)
        )
        try:
            with engine.connect() as conn:
                infos = conn.execute(stmt).all()
            for start in range(0, len(infos), _HISTORY_GROUP):
                group = infos[start : start + _HISTORY_GROUP]
                yield from self._sql_group(engine, group, index)
        except failures(SQLAlchemyError) as exc:
            raise BackendError(
                f"could not read the runs of experiment {experiment_id} {self._where()}: {exc}"
            ) from exc

    def _sql_group(self, engine: Any, infos: list[Any], index: _ModelIndex) -> Iterator[Record]:
        """Run records of one group of runs: params, tags, inputs, outputs and history."""
        from sqlalchemy import select

        from arcuate.backends.mlflow import sqlclient, sqltables

        ids = [info.run_uuid for info in infos]
        params: dict[str, dict[str, str]] = defaultdict(dict)
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        with engine.connect() as conn:
            p, g = sqltables.params, sqltables.tags
            for rid, key, value in _fetch_raw(
                conn, select(p.c.run_uuid, p.c.key, p.c.value).where(p.c.run_uuid.in_(ids))
            ):
                params[rid][key] = value
            for rid, key, value in _fetch_raw(
                conn, select(g.c.run_uuid, g.c.key, g.c.value).where(g.c.run_uuid.in_(ids))
            ):
                tags[rid][key] = value
            history = self._history_columns(conn, ids)
            inputs = sqlclient.run_inputs(conn, ids)
            outputs = sqlclient.model_outputs(conn, ids)
        for info, dataset_inputs in zip(infos, inputs, strict=True):
            rid = info.run_uuid
            run_tags = tags.get(rid, {})
            links = index.links.get(rid)
            points = history.get(rid)
            metrics: list[dict[str, Any]] | ColumnarList
            if links:  # rare: points shared with logged models go the per-point way
                rows = points.to_pylist() if points is not None else []
                metrics = self._metric_dicts(
                    [(m["key"], m["value"], m["step"], _ms(m["timestamp"])) for m in rows], links
                )
            else:
                metrics = ColumnarList(points if points is not None else _empty_metrics())
            yield self._record(
                rid=rid,
                run_name=info.name or run_tags.get(RUN_NAME_TAG) or info.name,
                status=info.status,
                start_time=info.start_time,
                end_time=info.end_time,
                user_id=info.user_id,
                lifecycle_stage=info.lifecycle_stage,
                artifact_uri=info.artifact_uri,
                params=params.get(rid, {}),
                tags=run_tags,
                metrics=metrics,
                dataset_inputs=dataset_inputs,
                model_inputs=[],  # search_runs does not return them either
                model_outputs=outputs.get(rid, []),
                mine=index.by_source_run.get(rid, []),
            )

    @staticmethod
    def _history_columns(conn: Any, run_ids: list[str]) -> dict[str, pa.StructArray]:
        """run id -> its metric points as a METRIC StructArray, in the order of _histories_sql."""
        from sqlalchemy import bindparam, select

        from arcuate.backends.mlflow.sqltables import metrics as t

        # one query per run (on MLflow's run_uuid index): each run's points are read whole at
        # once, and no run id has to be fetched per point
        stmt = (
            select(t.c.key, t.c.value, t.c.is_nan, t.c.step, t.c.timestamp)
            .where(t.c.run_uuid == bindparam("run_id"))
            .order_by(t.c.key, t.c.timestamp, t.c.step, t.c.value)
        )
        rows: list[tuple[Any, ...]] = []
        counts: list[int] = []
        with _gc_paused():
            for got in _fetch_each(conn, stmt, "run_id", run_ids):
                rows.extend(got)
                counts.append(len(got))
            if not rows:
                return {}
            keys, values, nans, steps, stamps = zip(*rows, strict=True)
            del rows
        points = _points_array(
            keys,
            [math.nan if nan else float(v) for v, nan in zip(values, nans, strict=True)],
            steps,
            stamps,
        )
        out: dict[str, pa.StructArray] = {}
        offset = 0
        for run_id, count in zip(run_ids, counts, strict=True):
            if count:
                out[run_id] = points.slice(offset, count)
                offset += count
        return out

    def _run_record(self, run: Run, history: _History, models: _ModelIndex) -> Record:
        info = run.info
        rid = info.run_id
        inputs = run.inputs
        return self._record(
            rid=rid,
            run_name=info.run_name,
            status=info.status,
            start_time=info.start_time,
            end_time=info.end_time,
            user_id=info.user_id,
            lifecycle_stage=info.lifecycle_stage,
            artifact_uri=info.artifact_uri,
            params=run.data.params,
            tags=run.data.tags,
            metrics=self._metrics(history, models.links.get(rid, {})),
            dataset_inputs=inputs.dataset_inputs if inputs else (),
            model_inputs=(inputs.model_inputs if inputs else ()) or (),
            model_outputs=run.outputs.model_outputs if run.outputs else (),
            mine=models.by_source_run.get(rid, []),
        )

    @classmethod
    def _metrics(
        cls, history: _History, links: dict[PointKey, list[_ModelLink]]
    ) -> list[dict[str, Any]] | ColumnarList:
        """A run's metric structs: one Arrow array (:class:`ColumnarList`, as the SQL path
        hands them over) unless a point is shared with a logged model. A Python dict and a
        datetime per point cost about 450 bytes each, the array about 50: a 200-run export of
        1,000 points a run held 90 MiB of dicts until its batch was built."""
        if not isinstance(history, list):  # already an array (the bulk endpoint's)
            if not links:
                return ColumnarList(history)
            history = [
                (m["key"], m["value"], m["step"], _ms(m["timestamp"])) for m in history.to_pylist()
            ]
        if links:  # rare: points shared with logged models go the per-point way
            return cls._metric_dicts(history, links)
        if not history:
            return ColumnarList(_empty_metrics())
        keys, values, steps, stamps = zip(*history, strict=True)
        try:
            if min(stamps) >= _MIN_MS and max(stamps) <= _MAX_MS:
                return ColumnarList(_points_array(keys, values, steps, stamps))
        except (TypeError, ValueError, OverflowError, ArithmeticError):
            pass  # a value Arrow refuses (pyarrow's errors derive from these)
        # the dicts: they fail as they always did, or pass where Python converts a value
        return cls._metric_dicts(history, links)

    @staticmethod
    def _metric_dicts(
        history: list[tuple[str, float, int, int]], links: dict[PointKey, list[_ModelLink]]
    ) -> list[dict[str, Any]]:
        """Metric structs of (key, value, step, timestamp) points, one per linked model."""
        metrics: list[dict[str, Any]] = []
        for key, value, step, ts in history:
            base = {"key": key, "value": value, "step": step, "timestamp": to_utc(ts)}
            found: list[tuple[str | None, str | None, str | None]] = [(None, None, None)]
            linked = links.get(point_key(key, step, ts, value)) if links else None
            if linked is None and links and math.isnan(value):
                # logged-model metrics store NaN as 0.0 (they have no is_nan column)
                linked = links.get(point_key(key, step, ts, 0.0))
            found = list(linked or ()) or found
            for model_id, dname, ddigest in found:
                metrics.append(
                    {**base, "model_id": model_id, "dataset_name": dname, "dataset_digest": ddigest}
                )
        return metrics

    def _record(
        self,
        *,
        rid: str,
        run_name: str | None,
        status: str,
        start_time: int | None,
        end_time: int | None,
        user_id: str | None,
        lifecycle_stage: str,
        artifact_uri: str,
        params: dict[str, str],
        tags: dict[str, str],
        metrics: list[dict[str, Any]] | ColumnarList,
        dataset_inputs: Iterable[Any],
        model_inputs: Iterable[Any],
        model_outputs: Iterable[Any],
        mine: list[Any],
    ) -> Record:
        """A run record from its parts (both the public-API and the bulk path end here)."""
        out_steps = {o.model_id: o.step for o in model_outputs}
        self._locations[rid] = (artifact_uri, {m.model_id: m.artifact_location for m in mine})
        return {
            "run_id": rid,
            "run_name": run_name,
            "status": status,
            "start_time": to_utc(start_time),
            "end_time": to_utc(end_time),
            "user_id": user_id,
            "lifecycle_stage": lifecycle_stage,
            "parent_run_id": tags.get(PARENT_TAG),
            "params": _kv(params),
            "tags": _kv(tags),
            "metrics": metrics,
            "inputs": [_dataset_record(d) for d in dataset_inputs],
            "model_inputs": [m.model_id for m in model_inputs],
            "logged_models": [
                _logged_model_record(m, out_steps.get(m.model_id))
                for m in sorted(mine, key=lambda m: (m.creation_timestamp or 0, m.model_id))
            ],
        }

    # -- files ----------------------------------------------------------------------------

    def iter_run_files(self, run: Record) -> Iterator[FileRef]:
        """The run's artifacts (owner ``artifacts``), then each logged model's files."""
        for uri, owner, where in self._run_parts(run, self._locations.pop(run["run_id"], None)):
            yield from self._iter_files(uri, owner, where)

    def iter_runs_files(
        self, runs: Iterable[Record]
    ) -> Generator[tuple[Record, Iterator[FileRef]]]:
        """Each of ``runs`` with its files (as :meth:`iter_run_files`), in order, the files of
        the next runs listed and their small files downloaded while earlier runs are written
        (:mod:`~arcuate.backends.mlflow.ahead`: ``concurrency`` threads; runs, files and bytes
        ahead bounded). A run's failure to list or download surfaces when that run's files
        are read, as it would without the look-ahead. Local artifact directories are listed
        when their run is read. Close the generator when done: that removes every copy
        downloaded ahead and not read.
        """
        if self.concurrency <= 1:
            for run in runs:
                yield run, self.iter_run_files(run)
            return
        prefetcher = Prefetcher(self.concurrency)
        trees = objects.Trees()  # this export's listings of experiment locations in S3
        limit = RUNS_PER_THREAD * self.concurrency
        window: deque[tuple[Record, Future[list[Any]] | None]] = deque()
        pending = iter(runs)
        first = True
        try:
            while True:
                while len(window) < limit:
                    upcoming: Record | None = next(pending, None)
                    if upcoming is None:
                        break
                    run = upcoming
                    located = self._locations.pop(run["run_id"], None)
                    if located is not None and _is_local_uri(located[0]):
                        self._locations[run["run_id"]] = located  # read when its turn comes
                        window.append((run, None))
                        continue
                    if first:  # MLflow's clients are built once, here, not by racing threads
                        first = False
                        done: Future[list[Any]] = Future()
                        done.set_result(self._list_run(run, located, prefetcher, trees))
                        window.append((run, done))
                        continue
                    window.append(
                        (run, prefetcher.submit(self._list_run, run, located, prefetcher, trees))
                    )
                if not window:
                    return
                run, listed = window.popleft()
                if listed is None:
                    yield run, self.iter_run_files(run)
                else:
                    yield run, self._listed_files(listed, prefetcher)
        finally:
            prefetcher.close()

    def _list_run(
        self,
        run: Record,
        located: tuple[str, dict[str, str]] | None,
        prefetcher: Prefetcher,
        trees: objects.Trees,
    ) -> list[_Listing | Exception]:
        """Each part of the run listed, its first small files downloading (a failure ends the
        list, to be raised when the run is read)."""
        out: list[_Listing | Exception] = []
        try:
            for uri, owner, where in self._run_parts(run, located):
                listing = self._list_files(uri, owner, where, trees)
                if listing.repo is not None:
                    listing.refs = prefetcher.reserve(listing.repo, listing.refs)
                out.append(listing)
        except Exception as exc:
            out.append(exc)
        return out

    @staticmethod
    def _listed_files(listed: Future[list[Any]], prefetcher: Prefetcher) -> Iterator[FileRef]:
        for part in listed.result():
            if isinstance(part, Exception):
                raise part
            if part.repo is None:
                yield from part.refs
            else:
                yield from prefetcher.window(part.repo, part.refs)

    def _run_parts(
        self, run: Record, located: tuple[str, dict[str, str]] | None
    ) -> Iterator[tuple[str, str, str]]:
        """(artifact URI, owner, whose) of the run's artifacts, then of each logged model."""
        rid = run["run_id"]
        if located is None:
            artifact_uri = self.client.get_run(rid).info.artifact_uri
            models = {
                m["model_id"]: self.client.get_logged_model(m["model_id"]).artifact_location
                for m in run.get("logged_models") or ()
            }
        else:
            artifact_uri, models = located
        yield artifact_uri, OWNER_ARTIFACTS, f"run {rid}"
        for lm in run.get("logged_models") or ():
            location = models.get(lm["model_id"])
            if location is None:
                location = self.client.get_logged_model(lm["model_id"]).artifact_location
            owner = OWNER_LOGGED_MODEL_PREFIX + lm["model_id"]
            yield location, owner, f"logged model {lm['model_id']}"

    def _repo(self, uri: str) -> ArtifactRepository:
        client = self.client
        if is_rest(client):
            served = client.artifact_repo(uri)
            if served is not None:  # read through the server, without MLflow
                return served  # type: ignore[no-any-return]
        return artifacts.repository(uri, self.tracking_uri, self.registry_uri)

    def _iter_files(self, uri: str, owner: str, where: str = "") -> Iterator[FileRef]:
        """Every file under ``uri`` (recursively, sorted by path), opened lazily; the small
        remote ones downloaded up to :attr:`concurrency` files ahead of the one being read.

        Raises:
            BackendError: as :meth:`_list_files`, when the first file is asked for.
        """
        listing = self._list_files(uri, owner, where)
        if listing.repo is None:
            yield from listing.refs
            return
        small = sum(1 for r in listing.refs if 0 <= r.size <= AHEAD_BYTES)
        if self.concurrency <= 1 or small <= 1:
            yield from listing.refs
            return
        prefetcher = Prefetcher(min(self.concurrency, small))
        try:
            yield from prefetcher.window(listing.repo, listing.refs)
        finally:
            prefetcher.close()

    def _list_files(
        self, uri: str, owner: str, where: str = "", trees: objects.Trees | None = None
    ) -> _Listing:
        """Every file under ``uri`` (recursively, sorted by path), each opened lazily; in S3
        from ``trees`` when given (one listing of the experiment's location).

        Raises:
            BackendError: listing failed, or (``ARC430``) a link in a local artifact
                directory leads outside it: nothing of it is exported (``where`` names whose
                artifacts these are).
        """
        try:
            repo = self._repo(uri)
            local_dir = _local_dir(repo)
            if local_dir is not None and os.path.isfile(local_dir):
                # a version whose source is one file rather than a directory
                name = os.path.basename(local_dir)
                size = os.path.getsize(local_dir)
                return _Listing([FileRef(owner, name, size, _opener(local_dir), local_dir)])
            if local_dir is not None:
                local = _list_local(local_dir)
            elif isinstance(repo, objects.S3Repo):  # the whole tree in one listing
                infos = trees.walk(repo) if trees is not None else repo.walk()
            else:
                infos = []
                pending: list[str | None] = [None]
                while pending:
                    for info in repo.list_artifacts(pending.pop()):
                        if info.is_dir:
                            pending.append(info.path)
                        else:
                            infos.append(info)
        except failures() as exc:
            raise BackendError(
                f"could not list the files of {where or owner} at {redact_uri(uri)}: {exc.message}"
            ) from exc
        except OutsideLinkError as exc:
            raise BackendError(
                f"artifact {exc.path!r} of {where or owner} is a symbolic link to a {exc.kind} "
                "outside the artifact directory: arcuate exports nothing from outside it, and "
                "the export was stopped before anything was committed",
                code="ARC430",
                hint="replace the link with a copy of what it points to, or remove it",
            ) from exc
        if local_dir is not None:
            return _Listing(
                [FileRef(owner, p, os.path.getsize(f), _opener(f), f) for p, f in local]
            )
        refs = []
        for info in sorted(infos, key=lambda i: i.path):
            path = info.path.replace(os.sep, "/")
            size = info.file_size if info.file_size is not None else -1
            refs.append(FileRef(owner, path, size, downloader(repo, path)))
        return _Listing(refs, repo)

    # -- registry -------------------------------------------------------------------------

    def get_model_versions(
        self, name: str, *, versions: tuple[int, ...] = (), aliases: tuple[str, ...] = ()
    ) -> list[Record]:
        """Versions of a registered model, ascending; all of them unless some are named.

        Raises NotFoundError if the model, a named version or an alias does not exist.
        """
        client = self.client
        try:
            rm = client.get_registered_model(name)
        except failures() as exc:
            if error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                raise NotFoundError(
                    f"registered model {name!r} does not exist in the MLflow registry "
                    f"{redact_uri(self.registry_uri)}",
                    hint=_did_you_mean(name, self._model_names()),
                ) from exc
            raise BackendError(f"could not read registered model {name!r}: {exc.message}") from exc
        alias_map: dict[str, int] = {a: int(v) for a, v in (rm.aliases or {}).items()}
        existing = self._version_numbers(name)
        wanted: set[int] = set()
        for v in versions:
            if v not in existing:
                shown = ", ".join(map(str, sorted(existing))) or "none"
                raise NotFoundError(
                    f"registered model {name!r} has no version {v} (versions: {shown})"
                )
            wanted.add(v)
        for alias in aliases:
            if alias not in alias_map:
                shown = ", ".join(sorted(alias_map)) or "none"
                raise NotFoundError(
                    f"registered model {name!r} has no alias {alias!r} (aliases: {shown})",
                    hint=_did_you_mean(alias, alias_map),
                )
            wanted.add(alias_map[alias])
        if not versions and not aliases:
            wanted = set(existing)
        by_version: dict[int, list[str]] = defaultdict(list)
        for alias, v in alias_map.items():
            by_version[v].append(alias)
        records = []
        for v in sorted(wanted):
            try:
                mv = client.get_model_version(name, str(v))
            except failures() as exc:
                raise NotFoundError(
                    f"registered model {name!r} version {v} disappeared while exporting"
                ) from exc
            records.append(self._version_record(rm, mv, sorted(by_version.get(v, []))))
        return records

    # -- scorers and evaluation datasets (format 2) ----------------------------------------------
    def get_scorers(self, experiment_id: str) -> tuple[list[Record], list[str]]:
        """See :class:`~arcuate.backends.protocols.GenAISource`."""
        from arcuate.backends.mlflow.scorers import read_scorers

        return read_scorers(self.mlflow_client, experiment_id)

    def iter_eval_records(self, experiment_id: str) -> Iterator[Record]:
        """See :class:`~arcuate.backends.protocols.GenAISource`."""
        from arcuate.backends.mlflow.datasets import iter_eval_records

        return iter_eval_records(self.mlflow_client, experiment_id)

    # -- traces (format 2) ----------------------------------------------------------------------
    def iter_traces(self, experiment_id: str, filter_string: str | None) -> Iterator[Record]:
        """See :class:`~arcuate.backends.protocols.TraceSource`."""
        from arcuate.backends.mlflow.traces import iter_traces

        return iter_traces(self.tracking_uri, experiment_id, experiment_id, filter_string)

    def get_prompt_versions(
        self, name: str, *, versions: tuple[int, ...] = (), aliases: tuple[str, ...] = ()
    ) -> list[Record]:
        """See :class:`~arcuate.backends.protocols.PromptSource`."""
        from arcuate.backends.mlflow.prompts import read_prompt_versions

        return read_prompt_versions(self.mlflow_client, name, versions=versions, aliases=aliases)

    def _model_names(self) -> list[str]:
        return _names(
            lambda token: self.client.search_registered_models(max_results=_PAGE, page_token=token)
        )

    def _version_numbers(self, name: str) -> set[int]:
        quote = '"' if "'" in name else "'"
        try:
            found = every(
                lambda token: self.client.search_model_versions(
                    f"name = {quote}{name}{quote}", max_results=_PAGE, page_token=token
                )
            )
        except failures() as exc:
            raise BackendError(
                f"could not list the versions of registered model {name!r}: {exc.message}"
            ) from exc
        return {int(mv.version) for mv in found if mv.name == name}

    @staticmethod
    def _version_record(rm: Any, mv: Any, aliases: list[str]) -> Record:
        source = mv.source or ""
        model_id = getattr(mv, "model_id", None)
        if not model_id and source.startswith("models:/m-") and "/" not in source[8:]:
            model_id = source[8:]
        return {
            "name": mv.name,
            "model_description": rm.description,
            "model_tags": _kv(rm.tags),
            "version": int(mv.version),
            "description": mv.description,
            "tags": _kv(mv.tags),
            "aliases": aliases,
            "stage": mv.current_stage,
            "status": mv.status,
            "status_message": mv.status_message,
            "creation_time": to_utc(mv.creation_timestamp),
            "last_updated_time": to_utc(mv.last_updated_timestamp),
            "user_id": mv.user_id,
            "source": redact_uri(mv.source) if mv.source is not None else None,
            "run_id": mv.run_id or None,
            "run_link": redact_uri(mv.run_link) if mv.run_link else mv.run_link,
            "model_id": model_id,
        }

    def iter_version_files(self, version: Record) -> Iterator[FileRef]:
        """The files of a version (owner ``model``), from its resolved download location."""
        name, number = version["name"], version["version"]
        try:
            uri = self.client.get_model_version_download_uri(name, str(number))
            location = self._resolve(uri)
        except failures() as exc:
            raise BackendError(
                f"could not locate the files of model {name!r} version {number}: {exc.message}"
            ) from exc
        yield from self._iter_files(location, OWNER_MODEL, f"model {name!r} version {number}")

    def _resolve(self, uri: str, depth: int = 0) -> str:
        """A concrete artifact location for a ``runs:/`` or ``models:/`` URI, resolved with this
        source's client (MLflow's own resolvers may consult the global tracking URI)."""
        if depth > 5:
            raise BackendError(f"model URI {redact_uri(uri)} refers to itself")
        if uri.startswith("models:/"):
            rest = uri[len("models:/") :].strip("/")
            if rest.startswith("m-") and "/" not in rest:
                return str(self.client.get_logged_model(rest).artifact_location)
            if "@" in rest and "/" not in rest:
                mname, alias = rest.split("@", 1)
                mv = self.client.get_model_version_by_alias(mname, alias)
                inner = self.client.get_model_version_download_uri(mname, mv.version)
                return self._resolve(inner, depth + 1)
            mname, _, ver = rest.rpartition("/")
            if not ver.isdigit():  # a stage name: the latest version in it
                latest = self.client.get_latest_versions(mname, stages=[ver])
                if not latest:
                    raise NotFoundError(f"model URI {uri!r}: no version in stage {ver!r}")
                ver = latest[0].version
            inner = self.client.get_model_version_download_uri(mname, ver)
            return self._resolve(inner, depth + 1)
        if uri.startswith("runs:/"):
            rest = uri[len("runs:/") :].strip("/")
            run_id, _, path = rest.partition("/")
            run = self.client.get_run(run_id)
            base = str(run.info.artifact_uri).rstrip("/")
            if not path:
                return base
            if self._repo(base).list_artifacts(path):
                return f"{base}/{path}"
            for model in self._logged_models(run.info.experiment_id, source_run_id=run_id):
                if model.name == path:
                    return str(model.artifact_location)
            return f"{base}/{path}"
        return uri
