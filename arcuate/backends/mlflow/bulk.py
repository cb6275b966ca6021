"""The bulk path of an import: complete new runs written straight into MLflow's SQL tables.

MLflow's public API costs about 185 ms per run of 1000 metric points in ``log_batch`` alone
against a sqlite store, nearly all of it building one ORM object per point. For runs an
import *creates*, this module writes the same rows MLflow's own ``SqlAlchemyStore`` would
write, into MLflow's own tables (:mod:`~arcuate.backends.mlflow.sqltables`, checked against
MLflow's models; the way MLflow's ``mlflow/store/fs2db`` migrator writes; each dialect's
fastest way to take many rows) on the database's engine, without MLflow's store; a batch of
runs per transaction: a batch is in the store completely or not at all. PostgreSQL takes two
batches at the same time (:data:`TRANSACTIONS`; batches that use datasets take turns).

It is used only where it is known to be exact:

* the tracking store is a database arcuate's SQL client reads
  (:mod:`~arcuate.backends.mlflow.sqlclient`), or MLflow's own ``SqlAlchemyStore`` (not a
  subclass: no workspaces), on a dialect in :data:`DIALECTS` (sqlite: the driver's
  executemany; PostgreSQL: psycopg 3's ``COPY``, see :data:`_WRITERS`; MySQL is not covered
  by tests, so it takes the public API);
* the database's alembic revision is in :data:`COVERED_REVISIONS`, the schemas the round-trip
  tests of this path run against (MLflow itself refuses a database that is not at the head
  revision of the installed MLflow);
* the run is new (updates of existing runs go through the public API), and every logged model
  its metrics or inputs point at already exists or is written in the same transaction.

Everything else, and every store that is not eligible, goes through the public API. What the
rows hold is what the public API sequence of :class:`~arcuate.backends.mlflow.sink.MlflowSink`
(``create_run``, ``create_logged_model``, ``fill_run``, ``finish_run``) leaves in the tables:
the run's name, user, start and end time, status, params, tags (provenance included, the
content hash too: a committed run is complete), every metric point with NaN stored as
``value=0, is_nan=1`` and ±inf as ±1.7976931348623157e308, ``latest_metrics`` computed the way
MLflow does (the greatest ``(step, timestamp, value)``, the first one logged on ties), dataset
inputs (datasets shared per experiment and reused by name and digest), model inputs and
outputs, and logged models with their params, tags, status and metrics. Files are uploaded
through MLflow's artifact repositories (a file per call, several at a time) while the
transaction's rows are sent; it commits only once every file is up, and if it fails they are
removed.
The tags come from :mod:`arcuate.backends.mlflow.tags` and the files go through
:mod:`arcuate.backends.mlflow.artifacts`, as on the public-API path; this module never
imports the sink.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final

from arcuate.backends import spooled
from arcuate.backends.mlflow import artifacts, objects, sqlclient
from arcuate.backends.mlflow.connect import is_rest, is_sql, is_sql_store
from arcuate.backends.mlflow.metric_rows import MetricBlock, metric_block
from arcuate.backends.mlflow.points import sanitize
from arcuate.backends.mlflow.sqlclient import MODEL_STATUS_INT, append_to_uri_path, now_ms
from arcuate.backends.mlflow.tags import (
    CONTENT_HASH,
    FILES_HASH,
    RUN_NAME_TAG,
    SOURCE_MODEL_ID,
    USER_TAG,
    created_run_tags,
    files_digest,
    logged_model_tags,
    run_tags,
    stale_tags,
)
from arcuate.backends.protocols import Provenance, Record
from arcuate.format.history import MetricColumns
from arcuate.format.schema import OWNER_ARTIFACTS, OWNER_LOGGED_MODEL_PREFIX

if TYPE_CHECKING:
    import sqlalchemy as sa

#: Alembic revisions of MLflow's tracking schema that the bulk path's tests cover (those of
#: arcuate's SQL client).
COVERED_REVISIONS: Final = sqlclient.COVERED_REVISIONS
#: SQL dialects the bulk path writes to (the others fall back to the public API).
DIALECTS: Final = frozenset({"sqlite", "postgresql"})
#: Bulk transactions a database takes at the same time, by dialect (the others: one at a
#: time). PostgreSQL spends a backend process per connection, so two batches use two CPUs
#: for the indexes and foreign keys, MLflow's metric rows' main cost; sqlite has one writer.
TRANSACTIONS: Final = {"postgresql": 2}
#: Rows per executemany round (bounds the parameter lists SQLAlchemy builds).
_ROUND: Final = 10_000
#: Files uploaded at the same time (each is mostly waiting for its store's answer).
_UPLOAD_THREADS: Final = 8
#: Attempts at writing a pending mark while other batches empty and remove its folder.
_MARK_TRIES: Final = 20
#: What MLflow's sessions set on a sqlite connection (``_get_managed_session_maker``).
_SQLITE_PRAGMAS: Final = (
    "PRAGMA foreign_keys = ON;",
    "PRAGMA busy_timeout = 20000;",
    "PRAGMA case_sensitive_like = true;",
)


def _random_name() -> str:
    """MLflow's name for a run that has none (its word lists: loaded only when needed)."""
    from mlflow.utils.name_utils import _generate_random_name

    return str(_generate_random_name())  # type: ignore[no-untyped-call]


def eligible_store(client: Any) -> tuple[sa.Engine | None, str]:
    """The engine of the SQL tracking database behind ``client`` if the bulk path may write
    to it, and why (not): arcuate's SQL client's, or that of MLflow's own SQL store."""
    if is_rest(client):  # arcuate's REST client: a tracking server
        return None, "the tracking store is RestStore, not MLflow's SqlAlchemyStore"
    if is_sql(client):
        engine = client.engine
    else:
        store = getattr(getattr(client, "_tracking_client", None), "store", None)
        if not is_sql_store(store):
            what = type(store).__name__
            return None, f"the tracking store is {what}, not MLflow's SqlAlchemyStore"
        engine = store.engine
    dialect = engine.dialect.name
    if dialect not in DIALECTS:
        return None, f"the bulk path does not write to {dialect} databases"
    import sqlalchemy as sa

    from arcuate.backends.mlflow.sqltables import alembic_version

    with engine.connect() as conn:
        revision = conn.execute(sa.select(alembic_version.c.version_num)).scalar()
    if revision not in COVERED_REVISIONS:
        return None, f"schema revision {revision} is not one the bulk path is tested against"
    return engine, f"{dialect} store at schema revision {revision}"


#: Names MLflow gives run and logged-model artifact directories (uuid4 hex ids).
_RUN_DIR: Final = re.compile(r"[0-9a-f]{32}")
_MODEL_DIR: Final = re.compile(r"m-[0-9a-f]{32}")
#: The folder of a local artifact location where a batch marks the ids whose directories it
#: is about to upload, until its rows are committed: a file per id, holding :func:`_owner`.
PENDING: Final = ".arcuate-pending"


def _local_root(location: str) -> str | None:
    """The directory of a local artifact location (None for any other kind)."""
    if objects.wanted():
        return objects.local_path(location)
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    repo = get_artifact_repository(location)
    return str(repo.artifact_dir) if isinstance(repo, LocalArtifactRepository) else None


def _owner(engine: sa.Engine) -> str:
    """Which database a pending mark belongs to (a digest of its URL, password left out)."""
    url = engine.url.render_as_string(hide_password=True)
    return hashlib.sha256(url.encode()).hexdigest()


def _dir_of(root: str, ident: str) -> str:
    """The artifact directory of a run or (``m-`` id) logged model under ``root``."""
    if ident.startswith("m-"):
        return os.path.join(root, "models", ident)
    return os.path.join(root, ident)


def _unmark(marks: list[str]) -> None:
    """Remove pending marks, and their folder once it is empty."""
    for mark in marks:
        with contextlib.suppress(OSError):
            os.remove(mark)
    if marks:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(marks[0]))


def remove_orphans(engine: sa.Engine, experiment_id: str) -> int:
    """Remove the artifact directories a batch of this store marked pending and never
    committed (its process was killed between its uploads and its commit). How many.

    Only directories whose ids a pending mark of *this* database names and no run or
    logged model of the store has: a directory of another store sharing the location (two
    databases used from one directory share MLflow's default ``./mlruns/<id>``) is never
    touched. The caller holds the import lease of the experiment: no batch of it is between
    uploads and commit now.
    """
    root = _local_root(_artifact_location(engine, experiment_id))
    if root is None:
        return 0
    marks = os.path.join(root, PENDING)
    owner = _owner(engine)
    mine = {i for i in _marks(marks) if _read(os.path.join(marks, i)) == owner}
    known = _known(engine, mine)
    for ident in mine - known:
        shutil.rmtree(_dir_of(root, ident), ignore_errors=True)
    _unmark([os.path.join(marks, ident) for ident in sorted(mine)])
    return len(mine - known)


def _write_mark(folder: str, path: str, owner: str) -> None:
    """Write one pending mark. Another batch of the experiment (a Spark task, a concurrent
    import) removes the folder when its last mark goes, possibly between our ``makedirs``
    and ``open``: then the folder is made again (a few times at most: each removal needs
    the folder empty, and our mark is in it once written)."""
    for attempt in range(_MARK_TRIES):
        try:
            os.makedirs(folder, exist_ok=True)
            with open(path, "w", encoding="ascii") as f:
                f.write(owner)
            return
        except (FileExistsError, FileNotFoundError):
            if attempt == _MARK_TRIES - 1:
                raise


def _marks(folder: str) -> set[str]:
    """The ids marked pending in ``folder`` (files named like MLflow's ids)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return set()
    return {
        e.name
        for e in entries
        if (_RUN_DIR.fullmatch(e.name) or _MODEL_DIR.fullmatch(e.name))
        and e.is_file(follow_symlinks=False)
    }


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read(200)
    except (OSError, ValueError):
        return ""


def _artifact_location(engine: sa.Engine, experiment_id: str) -> str:
    """The artifact location of an experiment, as MLflow's store reads it."""
    import sqlalchemy as sa

    from arcuate.backends.mlflow.sqltables import experiments as e

    with engine.connect() as conn:
        found = conn.execute(
            sa.select(e.c.artifact_location).where(e.c.experiment_id == int(experiment_id))
        ).first()
    if found is None:
        from arcuate.backends.mlflow.sqlclient import SqlError

        raise SqlError(f"No Experiment with id={experiment_id} exists", "RESOURCE_DOES_NOT_EXIST")
    return str(found[0])


def _known(engine: sa.Engine, ids: set[str]) -> set[str]:
    """Which of ``ids`` (run ids and ``m-`` logged-model ids) the store has a row for."""
    import sqlalchemy as sa

    from arcuate.backends.mlflow.sqltables import logged_models, runs

    found: set[str] = set()
    columns: list[tuple[Any, list[str]]] = [
        (runs.c.run_uuid, sorted(i for i in ids if not i.startswith("m-"))),
        (logged_models.c.model_id, sorted(i for i in ids if i.startswith("m-"))),
    ]
    with engine.connect() as conn:
        for column, wanted in columns:
            for start in range(0, len(wanted), 500):
                query: Any = sa.select(column).where(column.in_(wanted[start : start + 500]))
                found.update(str(x) for x in conn.execute(query).scalars())
    return found


@dataclass
class NewRun:
    """A run to create: its id (chosen here), the shared record, its files and hash."""

    run_id: str
    source_run_id: str
    run: Record
    files: list[Record]
    content_hash: str
    deleted: bool = False


@dataclass
class _Rows:
    """The rows of one transaction, table by table, in the order they are inserted."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    #: the bulk of the rows: each run's metric history, written at once (:mod:`.metric_rows`)
    metric_blocks: list[MetricBlock] = field(default_factory=list)
    latest: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    model_params: list[dict[str, Any]] = field(default_factory=list)
    model_tags: list[dict[str, Any]] = field(default_factory=list)
    model_metrics: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    input_tags: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Upload:
    """Files to put under one artifact root (a run's, or a logged model's)."""

    uri: str
    files: list[Record]


class _Uploads:
    """The files of a batch uploading on threads (started when built): a file per task, each
    through its repository's ``log_artifact`` into its run's or logged model's folder (a local
    repository takes a set per task, copied). :meth:`wait` until all are up; :meth:`stop`
    cancels what has not started and waits for what has."""

    #: the kinds of repository a file went up to in this process (their clients are built)
    warm: ClassVar[set[type]] = set()

    def __init__(self, repo: Callable[[str], Any], uploads: list[_Upload]) -> None:
        self.files = sum(len(up.files) for up in uploads)
        self.bytes = sum(int(f["size"]) for up in uploads for f in up.files)
        self.error: BaseException | None = None
        self._stage = tempfile.mkdtemp(prefix="arcuate-stage-") if uploads else ""
        # the first upload alone: it builds the store's client (MLflow caches it), which a
        # few threads at once would each build (seconds and tens of MiB apiece)
        self._first = threading.Lock()
        self._pool = ThreadPoolExecutor(_UPLOAD_THREADS, thread_name_prefix="arcuate-upload")
        self._tasks: list[Future[Any]] = []
        try:
            for up in uploads:
                target = repo(up.uri)
                if artifacts.is_local(target):
                    self._submit(artifacts.sync_files, target, up.files, fresh=True)
                else:
                    for f in up.files:
                        self._submit(self._put, target, f)
        except BaseException:
            self.stop()
            raise

    def _submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._tasks.append(self._pool.submit(fn, *args, **kwargs))

    def _put(self, repo: Any, f: Record) -> None:
        """One file, hard-linked (or copied) under its own name into a folder of its own,
        logged to the folder of its relative path (arcuate's S3 repository: put straight to
        its key)."""
        if isinstance(repo, objects.S3Repo):
            repo.put_spooled(f, f["path"])
            return
        folder, name = posixpath.split(f["path"])
        own = tempfile.mkdtemp(dir=self._stage)
        staged = os.path.join(own, name)
        spooled.copy_to(f, staged, link=True)
        if type(repo) in _Uploads.warm:
            repo.log_artifact(staged, folder or None)
            return
        with self._first:
            repo.log_artifact(staged, folder or None)
            _Uploads.warm.add(type(repo))

    def wait(self) -> None:
        """Until every file is up; the first failure is raised (and kept in :attr:`error`)."""
        for task in self._tasks:
            try:
                task.result()
            except BaseException as exc:
                self.error = exc
                raise

    def stop(self) -> None:
        """Cancel the uploads not started, wait for the others, remove the staged links."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._stage:
            shutil.rmtree(self._stage, ignore_errors=True)


@dataclass
class _Batch:
    """One transaction being gathered: its rows, the files to upload first, the datasets its
    runs use, the counters; and what every run of it is written with."""

    experiment_id: int
    location: str
    now: int
    run_ids: dict[str, str]
    model_ids: dict[str, str]
    exact: bool
    provenance: Provenance
    rows: _Rows = field(default_factory=_Rows)
    uploads: list[_Upload] = field(default_factory=list)
    datasets: dict[tuple[str, str], Record] = field(default_factory=dict)
    stats: Record = field(
        default_factory=lambda: {"metric_points": 0, "files": 0, "bytes": 0, "unlinked": 0}
    )


class BulkRunWriter:
    """Writes batches of complete new runs of one experiment into a SQL tracking database
    (``engine``: its SQLAlchemy engine, or MLflow's store, whose engine is taken); files go to
    artifact repositories built with the tracking and registry URIs."""

    def __init__(self, engine: Any, tracking_uri: str, registry_uri: str) -> None:
        self.engine: sa.Engine = engine.engine  # an Engine's own .engine is itself
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self._locations: dict[str, str] = {}
        #: how many :meth:`write` calls may run at the same time (:data:`TRANSACTIONS`)
        self.transactions = TRANSACTIONS.get(self.engine.dialect.name, 1)
        # batches that use datasets one at a time: each looks up the experiment's datasets
        # by name and digest, and inserts those missing, which two at once would both insert
        self._datasets = threading.Lock()

    def _location(self, experiment_id: str) -> str:
        if experiment_id not in self._locations:
            self._locations[experiment_id] = _artifact_location(self.engine, experiment_id)
        return self._locations[experiment_id]

    def _repo(self, uri: str) -> Any:
        return artifacts.repository(uri, self.tracking_uri, self.registry_uri)

    def write(
        self,
        experiment_id: str,
        runs: list[NewRun],
        *,
        run_ids: dict[str, str],
        model_ids: dict[str, str],
        exact: bool,
        provenance: Provenance,
    ) -> Record:
        """Write ``runs``: every row in one transaction, committed once their files, uploaded
        meanwhile, are all up; counters as :meth:`MlflowSink.fill_run` returns them. Up to
        :attr:`transactions` threads may call it at the same time.

        ``run_ids``/``model_ids`` map source ids to ids here (the runs' own logged models
        included, with ids chosen by the caller).
        """
        now = now_ms()
        location = self._location(experiment_id)
        batch = _Batch(int(experiment_id), location, now, run_ids, model_ids, exact, provenance)
        for new in runs:
            self._run_rows(new, batch)
        ids = [r["run_uuid"] for r in batch.rows.runs] + [m["model_id"] for m in batch.rows.models]
        marks = self._mark(location, ids)
        try:
            uploads = _Uploads(self._repo, batch.uploads)
        except BaseException:
            _unmark(marks)  # nothing went up
            raise
        try:
            # the files go up while the rows are sent; the rows are committed only once every
            # file is in place (a failed upload rolls the transaction back)
            with self._datasets if batch.datasets else contextlib.nullcontext():
                self._commit(batch.experiment_id, batch.rows, batch.datasets, ready=uploads.wait)
            batch.stats["files"] += uploads.files
            batch.stats["bytes"] += uploads.bytes
        except BaseException as exc:
            uploads.stop()  # none still running: nothing lands after it is taken back
            self._remove(batch.uploads)
            if uploads.error is not None and uploads.error is not exc:
                raise uploads.error from None  # the upload's own failure, not MLflow's wrap
            raise
        finally:
            uploads.stop()
            _unmark(marks)  # committed, or its files taken back
        return batch.stats

    def _mark(self, location: str, ids: list[str]) -> list[str]:
        """Mark ``ids`` pending in a local artifact location before their files are uploaded
        (see :func:`remove_orphans`); the marks' paths."""
        root = _local_root(location)
        if root is None:
            return []
        folder = os.path.join(root, PENDING)
        owner, marks = _owner(self.engine), []
        for ident in ids:
            path = os.path.join(folder, ident)
            _write_mark(folder, path, owner)
            marks.append(path)
        return marks

    # -- rows of one run ------------------------------------------------------------------
    def _run_rows(self, new: NewRun, batch: _Batch) -> None:
        """Every row of one new run, as the public API's calls would leave them."""
        run_uri = append_to_uri_path(batch.location, new.run_id, "artifacts")
        self._run_row(new, run_uri, batch)
        for lm in new.run["logged_models"]:
            self._model_rows(new, lm, batch)
        self._metric_rows(new, batch)
        self._input_rows(new, batch)

    def _run_row(self, new: NewRun, artifact_uri: str, batch: _Batch) -> None:
        """The run (what create_run writes), its params and tags, and its artifact files."""
        run, rid, now = new.run, new.run_id, batch.now
        # create_run: name, user (from the mlflow.user tag), start time, provenance tags
        created = created_run_tags(new.source_run_id, run, batch.provenance)
        name = run.get("run_name") or run["tags"].get(RUN_NAME_TAG) or _random_name()
        created.setdefault(RUN_NAME_TAG, name)
        user_id = created.get(USER_TAG, "unknown")
        # fill_run: the shared tags (ids remapped), stale ones dropped; then the files' and
        # the content's hashes
        wanted = run_tags(run, batch.run_ids)
        tags = {**created, **wanted}
        for key in stale_tags(created, wanted, exact=batch.exact):
            tags.pop(key, None)
        files = [f for f in new.files if f["owner"] == OWNER_ARTIFACTS]
        tags[FILES_HASH] = files_digest(files)
        tags[CONTENT_HASH] = new.content_hash
        end = run.get("end_time")
        if end is not None:  # set_terminated: an end time of 0 means "now" to MLflow
            end = end or now
        batch.rows.runs.append(
            {
                "run_uuid": rid,
                "name": tags.get(RUN_NAME_TAG, name),
                "source_type": "UNKNOWN",
                "source_name": "",
                "entry_point_name": "",
                "user_id": user_id,
                "status": run["status"],
                "start_time": run.get("start_time") or now,
                "end_time": end,
                "deleted_time": now if new.deleted else None,
                "source_version": "",
                "lifecycle_stage": "deleted" if new.deleted else "active",
                "artifact_uri": artifact_uri,
                "experiment_id": batch.experiment_id,
            }
        )
        batch.rows.tags += [{"key": k, "value": v, "run_uuid": rid} for k, v in tags.items()]
        batch.rows.params += [
            {"key": k, "value": v, "run_uuid": rid} for k, v in run["params"].items()
        ]
        if files:
            batch.uploads.append(_Upload(artifact_uri, files))

    def _model_rows(self, new: NewRun, lm: Record, batch: _Batch) -> None:
        """One logged model of the run: created, tagged, its files, finalized, an output."""
        eid, rows = batch.experiment_id, batch.rows
        mid = batch.model_ids[lm["model_id"]]
        model_uri = append_to_uri_path(batch.location, "models", mid, "artifacts")
        owner = OWNER_LOGGED_MODEL_PREFIX + lm["model_id"]
        files = [f for f in new.files if f["owner"] == owner]
        status = lm.get("status")
        final = status if status in ("READY", "FAILED") else "PENDING"
        rows.models.append(
            {
                "model_id": mid,
                "experiment_id": eid,
                "name": lm["name"],
                "artifact_location": model_uri,
                "creation_timestamp_ms": batch.now,
                "last_updated_timestamp_ms": batch.now,
                "status": MODEL_STATUS_INT[final],
                "lifecycle_stage": "active",
                "model_type": lm.get("model_type"),
                "source_run_id": new.run_id,
                "status_message": None,
            }
        )
        tags = {SOURCE_MODEL_ID: lm["model_id"], **logged_model_tags(lm["tags"])}
        tags[FILES_HASH] = files_digest(files)
        rows.model_tags += [
            {"model_id": mid, "experiment_id": eid, "tag_key": k, "tag_value": v}
            for k, v in tags.items()
        ]
        rows.model_params += [
            {"model_id": mid, "experiment_id": eid, "param_key": k, "param_value": v}
            for k, v in lm["params"].items()
        ]
        if files:
            batch.uploads.append(_Upload(model_uri, files))
        if lm.get("step") is not None:
            step = int(lm["step"])
            rows.inputs.append(_input("RUN_OUTPUT", new.run_id, "MODEL_OUTPUT", mid, step))

    def _metric_rows(self, new: NewRun, batch: _Batch) -> None:
        """The metric history (exact duplicates once) and latest values, made column-wise
        (:func:`~arcuate.backends.mlflow.metric_rows.metric_block`); the logged models'
        metrics point by point."""
        rid, stats = new.run_id, batch.stats
        metrics = new.run["metrics"]
        history = metrics if isinstance(metrics, MetricColumns) else MetricColumns.of(metrics)
        block, latest = metric_block(history, rid)
        stats["metric_points"] += len(history)
        batch.rows.metric_blocks.append(block)
        batch.rows.latest += latest
        if not any(history.model_id):
            return
        seen: set[tuple[Any, ...]] = set()
        for i, model_id in enumerate(history.model_id):
            if not model_id:
                continue
            link = batch.model_ids.get(model_id)
            if link is None:
                stats["unlinked"] += 1
                continue
            key, ts, step = history.key[i], history.timestamp[i], history.step[i]
            if (link, key, ts, step) in seen:
                continue
            seen.add((link, key, ts, step))
            batch.rows.model_metrics.append(
                {
                    "model_id": link,
                    "metric_name": key,
                    "metric_timestamp_ms": ts,
                    "metric_step": step,
                    "metric_value": sanitize(history.value[i])[1],
                    "experiment_id": batch.experiment_id,
                    "run_id": rid,
                    "dataset_uuid": None,
                    "dataset_name": history.dataset_name[i],
                    "dataset_digest": history.dataset_digest[i],
                }
            )

    def _input_rows(self, new: NewRun, batch: _Batch) -> None:
        """Dataset inputs (one per name and digest, the first wins, as log_inputs keeps it;
        the datasets are shared per experiment) and model inputs."""
        rid = new.run_id
        linked: set[tuple[str, str]] = set()
        for d in new.run["inputs"]:
            pair = (d["name"], d["digest"])
            if pair in linked:
                continue
            linked.add(pair)
            dataset = batch.datasets.setdefault(pair, {"input": d, "uuid": None, "runs": []})
            input_uuid = uuid.uuid4().hex
            dataset["runs"].append((rid, input_uuid))
            batch.rows.input_tags += [
                {"input_uuid": input_uuid, "name": k, "value": v} for k, v in d["tags"].items()
            ]
        used: set[str] = set()
        for src in new.run["model_inputs"]:
            target = batch.model_ids.get(src)
            if target is None:
                batch.stats["unlinked"] += 1
            elif target not in used:
                used.add(target)
                batch.rows.inputs.append(_input("RUN_INPUT", rid, "MODEL_INPUT", target, 0))

    # -- files ----------------------------------------------------------------------------
    def _remove(self, uploads: list[_Upload]) -> None:
        """Best effort: take back the files of a batch whose rows were not committed."""
        for up in uploads:
            with contextlib.suppress(Exception):
                artifacts.remove_uploaded(self._repo(up.uri))

    # -- the transaction ------------------------------------------------------------------
    def _commit(
        self,
        experiment_id: int,
        rows: _Rows,
        datasets: dict[tuple[str, str], Record],
        *,
        ready: Callable[[], None] | None = None,
    ) -> None:
        """Every row of the batch, in one transaction; committed after ``ready()`` returns
        (it raises: rolled back)."""
        import sqlalchemy as sa

        from arcuate.backends.mlflow import sqltables as t
        from arcuate.backends.mlflow.sqlclient import sql_errors

        with sql_errors(), self.engine.begin() as conn:
            if conn.dialect.name == "sqlite":  # as MLflow's sessions (an engine of MLflow's)
                for pragma in _SQLITE_PRAGMAS:
                    conn.execute(sa.text(pragma))
            new_datasets = _dataset_rows(conn, experiment_id, rows, datasets)
            for table, values in (
                (t.runs, rows.runs),
                (t.tags, rows.tags),
                (t.params, rows.params),
                (t.latest_metrics, rows.latest),
                (t.logged_models, rows.models),
                (t.logged_model_params, rows.model_params),
                (t.logged_model_tags, rows.model_tags),
                (t.logged_model_metrics, rows.model_metrics),
                (t.datasets, new_datasets),
                (t.inputs, rows.inputs),
                (t.input_tags, rows.input_tags),
            ):
                if not values:
                    continue
                columns = tuple(values[0])
                _insert(conn, table, columns, [tuple(v[c] for c in columns) for v in values])
            if rows.metric_blocks:
                _insert_histories(conn, t.metrics, rows.metric_blocks)
            if ready is not None:
                ready()


def _dataset_rows(
    conn: sa.Connection, experiment_id: int, rows: _Rows, datasets: dict[tuple[str, str], Record]
) -> list[dict[str, Any]]:
    """The datasets the batch's runs use: those the experiment has already (by name and
    digest) are reused, the others are new rows (returned); every run's input row added."""
    import sqlalchemy as sa

    from arcuate.backends.mlflow.sqltables import datasets as table

    if datasets:
        names = sorted({name for name, _ in datasets})
        for start in range(0, len(names), 500):
            found = conn.execute(
                sa.select(table.c.name, table.c.digest, table.c.dataset_uuid).where(
                    table.c.experiment_id == experiment_id,
                    table.c.name.in_(names[start : start + 500]),
                )
            )
            for name, digest, dataset_uuid in found:
                if (name, digest) in datasets:
                    datasets[(name, digest)]["uuid"] = dataset_uuid
    new_datasets = []
    for (name, digest), dataset in datasets.items():
        if dataset["uuid"] is None:
            dataset["uuid"] = uuid.uuid4().hex
            d = dataset["input"]
            new_datasets.append(
                {
                    "dataset_uuid": dataset["uuid"],
                    "experiment_id": experiment_id,
                    "name": name,
                    "digest": digest,
                    "dataset_source_type": d["source_type"],
                    "dataset_source": d["source"],
                    "dataset_schema": d["schema"],
                    "dataset_profile": d["profile"],
                }
            )
        for run_id, input_uuid in dataset["runs"]:
            rows.inputs.append(_input("DATASET", dataset["uuid"], "RUN", run_id, 0, input_uuid))
    return new_datasets


def _insert(conn: sa.Connection, table: Any, columns: tuple[str, ...], rows: list[Any]) -> None:
    """``INSERT INTO <table> (<columns>)`` of many rows, the way the dialect takes them fastest
    (:data:`_WRITERS`; SQLAlchemy Core's executemany for any other). The table and its column
    names are those of :mod:`~arcuate.backends.mlflow.sqltables`."""
    for name in columns:
        if name not in table.c:
            raise ValueError(f"table {table.name} has no column {name}")
    dialect = conn.dialect
    writer = _WRITERS.get((dialect.name, dialect.driver), _core_insert)
    writer(conn, table, columns, rows)


def _core_insert(conn: Any, table: Any, columns: tuple[str, ...], rows: list[Any]) -> None:
    """SQLAlchemy Core's insert, :data:`_ROUND` rows at a time."""
    import sqlalchemy as sa

    statement = sa.insert(table)
    for start in range(0, len(rows), _ROUND):
        part = rows[start : start + _ROUND]
        conn.execute(statement, [dict(zip(columns, r, strict=True)) for r in part])


def _qmark_executemany(conn: Any, table: Any, columns: tuple[str, ...], rows: list[Any]) -> None:
    """sqlite: the driver's ``executemany`` takes the rows as they are (tuples of str, int,
    float, bool, None), which skips SQLAlchemy's per-row parameter processing, most of the
    cost of a Core insert."""
    quote = conn.dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    for start in range(0, len(rows), _ROUND):
        conn.exec_driver_sql(sql, rows[start : start + _ROUND])


def _copy(conn: Any, table: Any, columns: tuple[str, ...], rows: list[Any]) -> None:
    """PostgreSQL through psycopg 3: ``COPY <table> (<columns>) FROM STDIN`` on the
    transaction's own connection, the rows adapted by psycopg as for an insert."""
    quote = conn.dialect.identifier_preparer.quote
    sql = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    driver = conn.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)


def _insert_histories(conn: Any, table: Any, blocks: list[MetricBlock]) -> None:
    """The metric rows of whole histories: one ``COPY`` of the text Arrow made of them
    (PostgreSQL through psycopg 3), else as rows (:func:`_insert`)."""
    dialect = conn.dialect
    if (dialect.name, dialect.driver) == ("postgresql", "psycopg"):
        texts = [block.copy_text() for block in blocks]
        if all(text is not None for text in texts):
            quote = dialect.identifier_preparer.quote
            columns = ", ".join(quote(c) for c in _METRIC_COLUMNS)
            sql = f"COPY {quote(table.name)} ({columns}) FROM STDIN"
            driver = conn.connection.driver_connection
            with driver.cursor() as cursor, cursor.copy(sql) as copy:
                for text in texts:
                    copy.write(text)  # type: ignore[arg-type]
            return
    _insert(conn, table, _METRIC_COLUMNS, [row for block in blocks for row in block.tuples()])


#: The metric rows' columns, in the order the rows hold them.
_METRIC_COLUMNS: Final = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")


#: How each (dialect, driver) takes many rows; the others get SQLAlchemy Core's insert.
_WRITERS: Final[dict[tuple[str, str], Any]] = {
    ("sqlite", "pysqlite"): _qmark_executemany,
    ("postgresql", "psycopg"): _copy,
}


def _input(
    source_type: str,
    source_id: str,
    destination_type: str,
    destination_id: str,
    step: int,
    input_uuid: str | None = None,
) -> dict[str, Any]:
    return {
        "input_uuid": input_uuid or uuid.uuid4().hex,
        "source_type": source_type,
        "source_id": source_id,
        "destination_type": destination_type,
        "destination_id": destination_id,
        "step": step,
    }
