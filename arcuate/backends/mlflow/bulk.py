"""The bulk path of an import: complete new runs written straight into MLflow's SQL tables.

MLflow's public API costs about 185 ms per run of 1000 metric points in ``log_batch`` alone
against a sqlite store, nearly all of it building one ORM object per point
(``/work/shared/research/mlflow-facts.md`` section 7). For runs an import *creates*, this
module writes the same rows MLflow's own ``SqlAlchemyStore`` would write, with SQLAlchemy Core
inserts on MLflow's own table models (the way MLflow's ``mlflow/store/fs2db`` migrator
writes), a batch of runs per transaction: a batch is in the store completely or not at all.

It is used only where it is known to be exact:

* the tracking store is MLflow's own ``SqlAlchemyStore`` (not a subclass: no workspaces) on a
  dialect in :data:`DIALECTS`;
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
through MLflow's artifact repositories before the transaction; if it fails they are removed.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from arcuate.backends.protocols import Record

if TYPE_CHECKING:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from arcuate.backends.mlflow.sink import MlflowSink

#: Alembic revisions of MLflow's tracking schema that the bulk path's tests cover.
COVERED_REVISIONS: Final = frozenset({"dc11669786a5"})
#: SQL dialects the bulk path writes to (the others fall back to the public API).
DIALECTS: Final = frozenset({"sqlite"})
_MAX_FLOAT: Final = 1.7976931348623157e308
#: Rows per executemany round (bounds the parameter lists SQLAlchemy builds).
_ROUND: Final = 10_000
_UPLOAD_THREADS: Final = 4


def eligible_store(client: Any) -> tuple[SqlAlchemyStore | None, str]:
    """MLflow's SQL store behind ``client`` if the bulk path may write to it, and why (not)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if type(store) is not SqlAlchemyStore:
        return None, f"the tracking store is {type(store).__name__}, not MLflow's SqlAlchemyStore"
    dialect = store.engine.dialect.name
    if dialect not in DIALECTS:
        return None, f"the bulk path does not write to {dialect} databases"
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    if revision not in COVERED_REVISIONS:
        return None, f"schema revision {revision} is not one the bulk path is tested against"
    return store, f"{dialect} store at schema revision {revision}"


#: Names MLflow gives run and logged-model artifact directories (uuid4 hex ids).
_RUN_DIR: Final = re.compile(r"[0-9a-f]{32}")
_MODEL_DIR: Final = re.compile(r"m-[0-9a-f]{32}")


def remove_orphans(store: SqlAlchemyStore, experiment_id: str) -> int:
    """Remove the artifact directories of runs and logged models that no row names: what a
    batch left when its process was killed between its uploads and its commit. How many.

    Only directories named like MLflow's ids, in the experiment's local artifact location
    (``<location>/<run id>``, ``<location>/models/<model id>``), whose ids no run or logged
    model of the whole store has. MLflow's own API writes a run's or model's row before its
    files, so such a directory can only come from the bulk path, and the caller holds the
    import lease of the experiment: no batch of it is between uploads and commit now.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
    from mlflow.store.tracking.dbmodels.models import SqlLoggedModel, SqlRun

    experiment = store.get_experiment(experiment_id)  # type: ignore[no-untyped-call]
    repo = get_artifact_repository(experiment.artifact_location)
    if not isinstance(repo, LocalArtifactRepository):
        return 0
    root = repo.artifact_dir
    runs = _children(root, _RUN_DIR)
    models = _children(os.path.join(root, "models"), _MODEL_DIR)
    doomed = [os.path.join(root, r) for r in runs - _known(store, SqlRun.run_uuid, runs)]
    doomed += [
        os.path.join(root, "models", m)
        for m in models - _known(store, SqlLoggedModel.model_id, models)
    ]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return len(doomed)


def _children(folder: str, pattern: re.Pattern[str]) -> set[str]:
    """Names of the subdirectories of ``folder`` that match ``pattern`` (not links)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return set()
    return {
        e.name for e in entries if pattern.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
    }


def _known(store: SqlAlchemyStore, column: Any, ids: set[str]) -> set[str]:
    """Which of ``ids`` the store has a row for (in ``column``)."""
    import sqlalchemy as sa

    found: set[str] = set()
    wanted = sorted(ids)
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            query = sa.select(column).where(column.in_(wanted[start : start + 500]))
            found.update(str(x) for x in conn.execute(query).scalars())
    return found


def sanitize(value: float) -> tuple[bool, float]:
    """(is_nan, stored value): MLflow's ``SqlAlchemyStore.sanitize_metric_value``."""
    if math.isnan(value):
        return True, 0.0
    if math.isinf(value):
        return False, _MAX_FLOAT if value > 0 else -_MAX_FLOAT
    return False, value


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
    #: (key, value, timestamp, step, is_nan, run_uuid): the bulk of the rows, kept as tuples
    metrics: list[tuple[Any, ...]] = field(default_factory=list)
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


class BulkRunWriter:
    """Writes batches of complete new runs of one experiment into a SQL tracking store."""

    def __init__(self, sink: MlflowSink, store: SqlAlchemyStore) -> None:
        self.sink = sink
        self.store = store
        self._locations: dict[str, str] = {}

    def _location(self, experiment_id: str) -> str:
        if experiment_id not in self._locations:
            exp = self.store.get_experiment(experiment_id)  # type: ignore[no-untyped-call]
            self._locations[experiment_id] = str(exp.artifact_location)
        return self._locations[experiment_id]

    def write(
        self,
        experiment_id: str,
        runs: list[NewRun],
        *,
        run_ids: dict[str, str],
        model_ids: dict[str, str],
        source: str,
        exact: bool,
        provenance: dict[str, str] | None = None,
    ) -> Record:
        """Write ``runs`` (files first, then every row in one transaction); counters as
        :meth:`MlflowSink.fill_run` returns them.

        ``run_ids``/``model_ids`` map source ids to ids here (the runs' own logged models
        included, with ids chosen by the caller).
        """
        from mlflow.utils.time import get_current_time_millis

        location = self._location(experiment_id)
        now: int = get_current_time_millis()  # type: ignore[no-untyped-call]
        rows = _Rows()
        uploads: list[_Upload] = []
        stats: Record = {"metric_points": 0, "files": 0, "bytes": 0, "unlinked": 0}
        datasets: dict[tuple[str, str], Record] = {}
        for new in runs:
            self._run_rows(
                experiment_id, location, now, new, rows, uploads, datasets, stats,
                run_ids=run_ids, model_ids=model_ids, source=source, exact=exact,
                provenance=provenance or {},
            )  # fmt: skip
        try:
            for n, size in self._upload(uploads):
                stats["files"] += n
                stats["bytes"] += size
            self._commit(int(experiment_id), rows, datasets)
        except BaseException:
            self._remove(uploads)
            raise
        return stats

    # -- rows of one run ------------------------------------------------------------------
    def _run_rows(
        self,
        experiment_id: str,
        location: str,
        now: int,
        new: NewRun,
        rows: _Rows,
        uploads: list[_Upload],
        datasets: dict[tuple[str, str], Record],
        stats: Record,
        *,
        run_ids: dict[str, str],
        model_ids: dict[str, str],
        source: str,
        exact: bool,
        provenance: dict[str, str],
    ) -> None:
        from mlflow.entities.logged_model_status import LoggedModelStatus
        from mlflow.utils.name_utils import _generate_random_name
        from mlflow.utils.uri import append_to_uri_path

        from arcuate.backends.mlflow import sink as s
        from arcuate.format.schema import OWNER_ARTIFACTS, OWNER_LOGGED_MODEL_PREFIX

        run, rid, eid = new.run, new.run_id, int(experiment_id)

        # create_run: name, user (from the mlflow.user tag), start time, provenance tags
        created = {s.SOURCE_RUN_ID: new.source_run_id, **provenance}
        if source:
            created[s.SOURCE] = source
        if run.get("user_id"):
            created[s.USER_TAG] = run["user_id"]
        name = run.get("run_name") or run["tags"].get(s.RUN_NAME_TAG) or _generate_random_name()  # type: ignore[no-untyped-call]
        created.setdefault(s.RUN_NAME_TAG, name)
        user_id = created.get(s.USER_TAG, "unknown")
        # fill_run: the shared tags (ids remapped), stale ones dropped; then the files' and
        # the content's hashes
        wanted = self.sink.run_tags(run, run_ids)
        tags = {**created, **wanted}
        for key in s._stale_tags(created, wanted, exact=exact):
            tags.pop(key, None)
        name = tags.get(s.RUN_NAME_TAG, name)
        artifacts = [f for f in new.files if f["owner"] == OWNER_ARTIFACTS]
        tags[s.FILES_HASH] = s.files_digest(artifacts)
        tags[s.CONTENT_HASH] = new.content_hash
        status, end = run["status"], run.get("end_time")
        if end is not None:  # set_terminated: an end time of 0 means "now" to MLflow
            end = end or now
        artifact_uri: str = append_to_uri_path(location, rid, "artifacts")  # type: ignore[no-untyped-call]
        rows.runs.append(
            {
                "run_uuid": rid,
                "name": name,
                "source_type": "UNKNOWN",
                "source_name": "",
                "entry_point_name": "",
                "user_id": user_id,
                "status": status,
                "start_time": run.get("start_time") or now,
                "end_time": end,
                "deleted_time": now if new.deleted else None,
                "source_version": "",
                "lifecycle_stage": "deleted" if new.deleted else "active",
                "artifact_uri": artifact_uri,
                "experiment_id": eid,
            }
        )
        rows.tags += [{"key": k, "value": v, "run_uuid": rid} for k, v in tags.items()]
        rows.params += [{"key": k, "value": v, "run_uuid": rid} for k, v in run["params"].items()]
        if artifacts:
            uploads.append(_Upload(artifact_uri, artifacts))

        # logged models of the run: created, tagged, files, finalized
        for lm in run["logged_models"]:
            mid = model_ids[lm["model_id"]]
            model_uri: str = append_to_uri_path(location, "models", mid, "artifacts")  # type: ignore[no-untyped-call]
            owner = OWNER_LOGGED_MODEL_PREFIX + lm["model_id"]
            mine = [f for f in new.files if f["owner"] == owner]
            status_name = lm.get("status")
            final = status_name if status_name in ("READY", "FAILED") else "PENDING"
            rows.models.append(
                {
                    "model_id": mid,
                    "experiment_id": eid,
                    "name": lm["name"],
                    "artifact_location": model_uri,
                    "creation_timestamp_ms": now,
                    "last_updated_timestamp_ms": now,
                    "status": LoggedModelStatus(final).to_int(),
                    "lifecycle_stage": "active",
                    "model_type": lm.get("model_type"),
                    "source_run_id": rid,
                    "status_message": None,
                }
            )
            model_tags = {s.SOURCE_MODEL_ID: lm["model_id"]}
            shared = {k: v for k, v in lm["tags"].items() if not s._is_managed(k)}
            if s.MODEL_VERSIONS_TAG in shared:
                shared[s.SOURCE_MODEL_VERSIONS] = shared.pop(s.MODEL_VERSIONS_TAG)
            model_tags.update(shared)
            model_tags[s.FILES_HASH] = s.files_digest(mine)
            rows.model_tags += [
                {"model_id": mid, "experiment_id": eid, "tag_key": k, "tag_value": v}
                for k, v in model_tags.items()
            ]
            rows.model_params += [
                {"model_id": mid, "experiment_id": eid, "param_key": k, "param_value": v}
                for k, v in lm["params"].items()
            ]
            if mine:
                uploads.append(_Upload(model_uri, mine))
            if lm.get("step") is not None:
                rows.inputs.append(_input("RUN_OUTPUT", rid, "MODEL_OUTPUT", mid, int(lm["step"])))

        # metrics: the history (exact duplicates once), latest values, the models' metrics
        seen: set[tuple[Any, ...]] = set()
        latest: dict[str, dict[str, Any]] = {}
        model_seen: set[tuple[Any, ...]] = set()
        for m in run["metrics"]:
            is_nan, value = sanitize(m["value"])
            key, ts, step = m["key"], m["timestamp"], m["step"]
            link = model_ids.get(m["model_id"]) if m["model_id"] else None
            if m["model_id"] and link is None:
                stats["unlinked"] += 1
            stats["metric_points"] += 1
            ident = (key, ts, step, value, is_nan)
            if ident not in seen:
                seen.add(ident)
                rows.metrics.append((key, value, ts, step, is_nan, rid))
                best = latest.get(key)
                if best is None or (step, ts, value) > (
                    best["step"],
                    best["timestamp"],
                    best["value"],
                ):
                    latest[key] = {
                        "key": key,
                        "value": value,
                        "timestamp": ts,
                        "step": step,
                        "is_nan": is_nan,
                        "run_uuid": rid,
                    }
            if link is not None and (link, key, ts, step) not in model_seen:
                model_seen.add((link, key, ts, step))
                rows.model_metrics.append(
                    {
                        "model_id": link,
                        "metric_name": key,
                        "metric_timestamp_ms": ts,
                        "metric_step": step,
                        "metric_value": value,
                        "experiment_id": eid,
                        "run_id": rid,
                        "dataset_uuid": None,
                        "dataset_name": m["dataset_name"],
                        "dataset_digest": m["dataset_digest"],
                    }
                )
        rows.latest += latest.values()

        # dataset inputs: one per (name, digest), the first wins (as log_inputs keeps it)
        linked: set[tuple[str, str]] = set()
        for d in run["inputs"]:
            pair = (d["name"], d["digest"])
            if pair in linked:
                continue
            linked.add(pair)
            dataset = datasets.setdefault(pair, {"input": d, "uuid": None, "runs": []})
            input_uuid = uuid.uuid4().hex
            dataset["runs"].append((rid, input_uuid))
            rows.input_tags += [
                {"input_uuid": input_uuid, "name": k, "value": v} for k, v in d["tags"].items()
            ]
        # model inputs
        used: set[str] = set()
        for src in run["model_inputs"]:
            target = model_ids.get(src)
            if target is None:
                stats["unlinked"] += 1
            elif target not in used:
                used.add(target)
                rows.inputs.append(_input("RUN_INPUT", rid, "MODEL_INPUT", target, 0))

    # -- files ----------------------------------------------------------------------------
    def _upload(self, uploads: list[_Upload]) -> list[tuple[int, int]]:
        """Upload every file set, a few at a time (I/O: threads overlap it)."""
        if not uploads:
            return []

        def one(up: _Upload) -> tuple[int, int]:
            return self.sink._sync_files(self.sink._repo(up.uri), up.files, fresh=True)

        if len(uploads) == 1:
            return [one(uploads[0])]
        with ThreadPoolExecutor(min(_UPLOAD_THREADS, len(uploads))) as pool:
            return list(pool.map(one, uploads))

    def _remove(self, uploads: list[_Upload]) -> None:
        """Best effort: take back the files of a batch whose rows were not committed."""
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

        for up in uploads:
            with contextlib.suppress(Exception):
                repo = self.sink._repo(up.uri)
                if isinstance(repo, LocalArtifactRepository):
                    # <experiment>/<run id>/artifacts or <experiment>/models/<model id>/artifacts
                    shutil.rmtree(os.path.dirname(repo.artifact_dir), ignore_errors=True)
                else:
                    repo.delete_artifacts()  # type: ignore[no-untyped-call]

    # -- the transaction ------------------------------------------------------------------
    def _commit(
        self, experiment_id: int, rows: _Rows, datasets: dict[tuple[str, str], Record]
    ) -> None:
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import (
            SqlDataset,
            SqlInput,
            SqlInputTag,
            SqlLatestMetric,
            SqlLoggedModel,
            SqlLoggedModelMetric,
            SqlLoggedModelParam,
            SqlLoggedModelTag,
            SqlMetric,
            SqlParam,
            SqlRun,
            SqlTag,
        )

        with self.store.ManagedSessionMaker(read_only=False) as session:
            # datasets are shared per experiment: reuse those already there, by name and digest
            if datasets:
                table = SqlDataset.__table__
                names = sorted({name for name, _ in datasets})
                for start in range(0, len(names), 500):
                    found = session.execute(
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
                    rows.inputs.append(
                        _input("DATASET", dataset["uuid"], "RUN", run_id, 0, input_uuid)
                    )
            metric_columns = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")
            for model, values in (
                (SqlRun, rows.runs),
                (SqlTag, rows.tags),
                (SqlParam, rows.params),
                (SqlMetric, rows.metrics),
                (SqlLatestMetric, rows.latest),
                (SqlLoggedModel, rows.models),
                (SqlLoggedModelParam, rows.model_params),
                (SqlLoggedModelTag, rows.model_tags),
                (SqlLoggedModelMetric, rows.model_metrics),
                (SqlDataset, new_datasets),
                (SqlInput, rows.inputs),
                (SqlInputTag, rows.input_tags),
            ):
                if not values:
                    continue
                if isinstance(values[0], dict):
                    columns = tuple(values[0])
                    tuples = [tuple(v[c] for c in columns) for v in values]  # type: ignore[index]
                else:
                    columns, tuples = metric_columns, values  # type: ignore[assignment]
                _insert(session, model.__table__, columns, tuples)


def _insert(session: Any, table: Any, columns: tuple[str, ...], rows: list[Any]) -> None:
    """``INSERT INTO <table> (<columns>)`` of many rows through the driver's ``executemany``.

    SQLite's driver takes the rows as they are (tuples of str, int, float, bool, None): that
    skips SQLAlchemy's per-row parameter processing, most of the cost of a Core insert. The
    table and its column names are MLflow's own models'; other paramstyles go through
    SQLAlchemy Core.
    """
    import sqlalchemy as sa

    for name in columns:
        if name not in table.c:
            raise ValueError(f"table {table.name} has no column {name}")
    dialect = session.get_bind().dialect
    if dialect.paramstyle != "qmark":
        statement = sa.insert(table)
        for start in range(0, len(rows), _ROUND):
            part = rows[start : start + _ROUND]
            session.execute(statement, [dict(zip(columns, r, strict=True)) for r in part])
        return
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    connection = session.connection()
    for start in range(0, len(rows), _ROUND):
        connection.exec_driver_sql(sql, rows[start : start + _ROUND])


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
