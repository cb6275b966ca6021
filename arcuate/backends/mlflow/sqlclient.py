"""A small client for MLflow's SQL tracking stores (``sqlite://``, ``postgresql://``), so that
an experiment export or import against a database does not import ``mlflow`` for its runs:
``import mlflow`` and building MLflow's ``SqlAlchemyStore`` (its ORM models, alembic's schema
check) cost 4-6 s and about 100 MiB of a small command (docs/performance.md).

:class:`SqlClient` has the names and signatures of the ``MlflowClient`` calls the source and
the sink make for experiments, runs and logged models, and returns the light entities of
:mod:`arcuate.backends.mlflow.rest` (MLflow's attribute names), read with SQLAlchemy Core from
the tables of :mod:`arcuate.backends.mlflow.sqltables`. It reads what MLflow's store reads and
writes what it writes, for the calls it covers; anything else (runs written through the public
API, the model registry, prompts, traces, evaluation datasets, scorers, filters it does not
parse) goes to a real ``MlflowClient`` built on first use (:attr:`SqlClient.mlflow`).

It is used (:func:`open_client`) only for a database whose alembic revision is one of
:data:`COVERED_REVISIONS` (the schema these tables are checked
against), in MLflow's single-tenant mode, unless ``ARCUATE_MLFLOW_CLIENT=mlflow``. A new or
empty database, another revision or another dialect gets MLflow's client, which creates or
checks the schema. The engine is made from the tracking URI as MLflow makes its own (the same
driver: SQLAlchemy's default, psycopg 3 for ``postgresql://``; ``pool_pre_ping``; sqlite's
foreign keys, busy timeout and case-sensitive ``LIKE``); no error or repr shows the URI's
credentials.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import posixpath
import re
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlparse, urlunparse

from arcuate.backends.mlflow.rest import (
    CLIENT_ENV,
    Dataset,
    DatasetInput,
    Entity,
    InputTag,
    LoggedModelInput,
    LoggedModelOutput,
    Metric,
    MlflowFallback,
    PagedList,
    RestError,
)

if TYPE_CHECKING:
    import sqlalchemy as sa
    from mlflow import MlflowClient

#: Alembic revisions of MLflow's tracking schema that this client and the bulk path
#: (:mod:`~arcuate.backends.mlflow.bulk`) are tested against.
COVERED_REVISIONS: Final = frozenset({"dc11669786a5"})
#: Dialects (URI schemes) this client reads and writes; MySQL and MSSQL take MLflow's client.
SCHEMES: Final = ("sqlite", "postgresql", "postgresql+psycopg")
#: MLflow's ``ViewType``: ACTIVE_ONLY, DELETED_ONLY, ALL
_VIEWS: Final = {
    1: ("active",),
    2: ("deleted",),
    3: ("active", "deleted"),
    "ACTIVE_ONLY": ("active",),
    "DELETED_ONLY": ("deleted",),
    "ALL": ("active", "deleted"),
}
#: MLflow's defaults for a page of runs, experiments and logged models
_RUNS_PAGE: Final = 1000
_EXPERIMENTS_PAGE: Final = 1000
_MODELS_PAGE: Final = 100
#: Filters of the sink's and the source's searches this client answers itself.
_TAG_FILTER: Final = re.compile(r"^\s*tags\.`([^`]+)`\s*=\s*'([^']*)'\s*$")
_SOURCE_RUN_FILTER: Final = re.compile(r"^\s*source_run_id\s*=\s*'([0-9A-Za-z_-]+)'\s*$")
#: What MLflow accepts in a tag key (``validate_param_and_metric_name``, not on Windows);
#: anything else is handed to MLflow, which raises its own error.
_PLAIN_KEY: Final = re.compile(r"^[/\w.\- :]*$")
_IN_CHUNK: Final = 500
#: MLflow's ``LoggedModelStatus`` as stored (``to_int``/``from_int``)
MODEL_STATUS: Final = {0: "UNSPECIFIED", 1: "PENDING", 2: "READY", 3: "FAILED"}
MODEL_STATUS_INT: Final = {v: k for k, v in MODEL_STATUS.items()}


class SqlError(RestError):
    """A failed call, with MLflow's ``error_code`` and ``message`` (as ``MlflowException``)."""


@contextmanager
def sql_errors() -> Iterator[None]:
    """A database failure as :class:`SqlError`, with the ``error_code`` MLflow's sessions give
    it (``TEMPORARILY_UNAVAILABLE`` for an operational error, ``BAD_REQUEST`` otherwise)."""
    import sqlite3

    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    psycopg = sys.modules.get("psycopg")
    driver: tuple[type[Exception], ...] = (sqlite3.Error,)
    if psycopg is not None:  # a COPY goes to the driver's connection directly
        driver = (*driver, psycopg.Error)
    try:
        yield
    except SQLAlchemyError as exc:
        code = "TEMPORARILY_UNAVAILABLE" if isinstance(exc, OperationalError) else "BAD_REQUEST"
        raise SqlError(str(exc), code) from exc
    except driver as exc:
        raise SqlError(str(exc), "INTERNAL_ERROR") from exc


def _wrapped(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with its database failures raised as :class:`SqlError`."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with sql_errors():
            return method(*args, **kwargs)

    return call


def _choice() -> str:
    return os.environ.get(CLIENT_ENV, "").strip().lower()


def wanted(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` may be read with :class:`SqlClient` (the database is not
    looked at: :func:`open_client` does that)."""
    if _choice() == "mlflow":
        return False
    if urlparse(tracking_uri).scheme.lower() not in SCHEMES:
        return False
    # workspaces: MLflow builds another store, which scopes every query
    return os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() not in ("true", "1")


# -- engines: one per URI, as MLflow caches its own --------------------------------------------

_ENGINES: dict[str, sa.Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """What MLflow's sessions set on sqlite (``_get_managed_session_maker``)."""
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON;")
        cursor.execute("PRAGMA busy_timeout = 20000;")
        cursor.execute("PRAGMA case_sensitive_like = true;")
    finally:
        cursor.close()


def engine_for(tracking_uri: str) -> sa.Engine:
    """The engine of ``tracking_uri`` (made once per process, like MLflow's)."""
    import sqlalchemy as sa

    with _ENGINES_LOCK:
        engine = _ENGINES.get(tracking_uri)
        if engine is None:
            engine = sa.create_engine(tracking_uri, pool_pre_ping=True)
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            _ENGINES[tracking_uri] = engine
        return engine


def _sqlite_file(tracking_uri: str) -> str | None:
    """The file a sqlite URI names; None for an in-memory or URI-form (``file:``) database."""
    from sqlalchemy.engine import make_url

    database = make_url(tracking_uri).database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def _sqlite_missing(tracking_uri: str) -> bool:
    """Whether a sqlite URI names no existing database file (MLflow creates it)."""
    database = _sqlite_file(tracking_uri)
    return database is None or not os.path.isfile(database)


def missing_store(tracking_uri: str) -> str | None:
    """Why the database ``tracking_uri`` names holds no MLflow store to read: a sqlite file
    that does not exist, or a database reached that has no MLflow tables; None otherwise
    (an unreachable database included: using it reports that). Read-only: a sqlite file is
    opened read-only, so not even its journal mode changes."""
    import sqlite3

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    if make_url(tracking_uri).get_backend_name() == "sqlite":
        database = _sqlite_file(tracking_uri)
        if database is None:
            return None  # MLflow's in-memory or URI-form database: left to MLflow
        if not os.path.exists(database):
            return f"the file {database} does not exist"
        try:
            with closing(sqlite3.connect(f"file:{quote(database)}?mode=ro", uri=True)) as conn:
                found = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'experiments'"
                ).fetchone()
        except sqlite3.Error:
            return None  # not a database sqlite opens: MLflow's own error says so
        return None if found else f"the database {database} has no MLflow tables"
    try:
        with engine_for(tracking_uri).connect() as conn:
            found = sa.inspect(conn).has_table("experiments")
    except SQLAlchemyError:
        return None
    return None if found else "the database has no MLflow tables"


def probe(tracking_uri: str) -> tuple[sa.Engine | None, str]:
    """The engine of ``tracking_uri`` when :class:`SqlClient` covers its database, and why
    (not): its alembic revision is a covered one, MLflow's default experiment exists and no
    experiment is in a workspace other than the default one."""
    from sqlalchemy.exc import SQLAlchemyError

    from arcuate.backends.mlflow import sqltables as t

    if urlparse(tracking_uri).scheme.lower() == "sqlite" and _sqlite_missing(tracking_uri):
        return None, "the sqlite database does not exist yet"
    engine = engine_for(tracking_uri)
    import sqlalchemy as sa

    try:
        with engine.connect() as conn:
            revision = conn.execute(sa.select(t.alembic_version.c.version_num)).scalar()
            if revision not in COVERED_REVISIONS:
                return None, f"schema revision {revision} is not one arcuate's client covers"
            e = t.experiments
            default = conn.execute(sa.select(e.c.experiment_id).where(e.c.experiment_id == 0))
            if default.first() is None:
                return None, "MLflow's default experiment does not exist yet"
            other = conn.execute(sa.select(e.c.experiment_id).where(e.c.workspace != "default"))
            if other.first() is not None:
                return None, "experiments exist outside MLflow's default workspace"
    except SQLAlchemyError:  # no such table (an empty database), or not reachable
        return None, "the database has no MLflow schema arcuate's client could read"
    return engine, f"{engine.dialect.name} store at schema revision {revision}"


def open_client(tracking_uri: str, registry_uri: str) -> SqlClient | None:
    """:class:`SqlClient` for ``tracking_uri`` if it is wanted and covers the database."""
    if not wanted(tracking_uri):
        return None
    engine, _why = probe(tracking_uri)
    return None if engine is None else SqlClient(tracking_uri, registry_uri, engine)


# -- helpers ----------------------------------------------------------------------------------


def now_ms() -> int:
    """MLflow's ``get_current_time_millis``."""
    return int(time.time() * 1000)


def append_to_uri_path(uri: str, *paths: str) -> str:
    """MLflow's ``mlflow.utils.uri.append_to_uri_path``: ``paths`` appended to the path of
    ``uri`` (a POSIX path, or a URI whose query and fragment are kept)."""
    path = ""
    for sub in paths:
        path = _join(path, sub)
    parsed = urlparse(uri)
    if ".." in parsed.query or "%2e%2e" in parsed.query.lower():
        raise ValueError(f"invalid query string in URI {uri!r}")
    if not parsed.scheme:
        return _join(uri, path)
    prefix = ""
    if not parsed.path.startswith("/"):
        prefix = parsed.scheme + ":"
        parsed = parsed._replace(scheme="")
    return prefix + urlunparse(parsed._replace(path=_join(parsed.path, path)))


def _join(prefix: str, suffix: str) -> str:
    if not prefix:
        return suffix
    return posixpath.join(prefix, suffix.lstrip("/"))


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _token(offset: int) -> str:
    """A page token as MLflow's SQL store writes it."""
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.b64decode(token))["offset"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SqlError("Invalid page token", "INVALID_PARAMETER_VALUE") from exc


def _value(value: float, is_nan: Any) -> float:
    return math.nan if is_nan else float(value)


# -- reads shared with the source's and the bulk path's bulk SQL ------------------------------


def run_inputs(conn: sa.Connection, run_ids: list[str]) -> list[list[DatasetInput]]:
    """The dataset inputs of each of ``run_ids`` (in that order), with their tags: what
    MLflow's ``SqlAlchemyStore._get_run_inputs`` gives."""
    import sqlalchemy as sa

    from arcuate.backends.mlflow import sqltables as t

    i, d, g = t.inputs, t.datasets, t.input_tags
    per_run: dict[str, dict[str, DatasetInput]] = defaultdict(dict)
    for part in _chunks(run_ids):
        stmt = (
            sa.select(
                i.c.destination_id,
                d.c.dataset_uuid,
                d.c.name,
                d.c.digest,
                d.c.dataset_source_type,
                d.c.dataset_source,
                d.c.dataset_schema,
                d.c.dataset_profile,
                g.c.name,
                g.c.value,
            )
            .select_from(i.join(d, i.c.source_id == d.c.dataset_uuid))
            .outerjoin(g, g.c.input_uuid == i.c.input_uuid)
            .where(i.c.destination_type == "RUN", i.c.destination_id.in_(part))
            .order_by(i.c.destination_id)
        )
        for rid, duuid, name, digest, stype, source, schema, profile, tkey, tval in conn.execute(
            stmt
        ):
            found = per_run[rid].get(duuid)
            if found is None:
                found = DatasetInput(Dataset(name, digest, stype, source, schema, profile), [])
                per_run[rid][duuid] = found
            if tkey is not None:
                found.tags.append(InputTag(tkey, tval))
    return [list(per_run[rid].values()) for rid in run_ids]


def model_outputs(conn: sa.Connection, run_ids: list[str]) -> dict[str, list[LoggedModelOutput]]:
    """run id -> its logged-model outputs (``_get_model_outputs_bulk``)."""
    import sqlalchemy as sa

    from arcuate.backends.mlflow import sqltables as t

    i = t.inputs
    out: dict[str, list[LoggedModelOutput]] = {rid: [] for rid in run_ids}
    for part in _chunks(run_ids):
        stmt = sa.select(i.c.source_id, i.c.destination_id, i.c.step).where(
            i.c.source_type == "RUN_OUTPUT",
            i.c.source_id.in_(part),
            i.c.destination_type == "MODEL_OUTPUT",
        )
        for rid, mid, step in conn.execute(stmt):
            out[rid].append(LoggedModelOutput(mid, step))
    return out


def _model_inputs(conn: sa.Connection, run_id: str) -> list[LoggedModelInput]:
    import sqlalchemy as sa

    from arcuate.backends.mlflow import sqltables as t

    i = t.inputs
    stmt = sa.select(i.c.destination_id).where(
        i.c.source_type == "RUN_INPUT",
        i.c.source_id == run_id,
        i.c.destination_type == "MODEL_INPUT",
    )
    return [LoggedModelInput(mid) for mid in conn.execute(stmt).scalars()]


class SqlClient(MlflowFallback):
    """The ``MlflowClient`` methods arcuate uses for experiments, runs and logged models, on
    MLflow's tables directly; a real ``MlflowClient`` for everything else."""

    def __init__(self, tracking_uri: str, registry_uri: str, engine: sa.Engine) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.engine = engine
        self._mlflow: MlflowClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        url = self.engine.url  # no user, password or query: nothing that may be a credential
        port = f":{url.port}" if url.port else ""
        return f"SqlClient({url.drivername}://{url.host or ''}{port}/{url.database or ''})"

    # -- MLflow's client for everything else ------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # MLflow's internals are not passed on, but for the tracking client, whose store the
        # sink writes runs through (as behind MLflow's own client)
        if name.startswith("_") and name != "_tracking_client":
            raise AttributeError(name)
        return getattr(self.mlflow, name)

    # -- experiments -----------------------------------------------------------------------

    def _experiments(
        self, conn: sa.Connection, where: Any, *, order: Any = (), offset: int = 0, limit: int = 0
    ) -> list[Entity]:
        import sqlalchemy as sa

        from arcuate.backends.mlflow import sqltables as t

        e, g = t.experiments, t.experiment_tags
        stmt = sa.select(
            e.c.experiment_id,
            e.c.name,
            e.c.artifact_location,
            e.c.lifecycle_stage,
            e.c.creation_time,
            e.c.last_update_time,
        ).where(where)
        if order:
            stmt = stmt.order_by(*order)
        if limit:
            stmt = stmt.offset(offset).limit(limit)
        rows = conn.execute(stmt).all()
        ids = [r.experiment_id for r in rows]
        tags: dict[int, dict[str, str]] = defaultdict(dict)
        for part in _chunks(ids):
            for eid, key, value in conn.execute(
                sa.select(g.c.experiment_id, g.c.key, g.c.value).where(g.c.experiment_id.in_(part))
            ):
                tags[eid][key] = value
        return [
            Entity(
                experiment_id=str(r.experiment_id),
                name=r.name,
                artifact_location=r.artifact_location,
                lifecycle_stage=r.lifecycle_stage,
                creation_time=r.creation_time,
                last_update_time=r.last_update_time,
                tags=tags.get(r.experiment_id, {}),
            )
            for r in rows
        ]

    @_wrapped
    def get_experiment_by_name(self, name: str) -> Entity | None:
        from arcuate.backends.mlflow import sqltables as t

        e = t.experiments
        with self.engine.connect() as conn:
            found = self._experiments(
                conn, (e.c.name == name) & e.c.lifecycle_stage.in_(("active", "deleted"))
            )
        return found[0] if found else None

    @_wrapped
    def get_experiment(self, experiment_id: str) -> Entity:
        from arcuate.backends.mlflow import sqltables as t

        eid = self._experiment_id(experiment_id)
        with self.engine.connect() as conn:
            found = self._experiments(conn, t.experiments.c.experiment_id == eid)
        if not found:
            raise SqlError(
                f"No Experiment with id={experiment_id} exists", "RESOURCE_DOES_NOT_EXIST"
            )
        return found[0]

    @staticmethod
    def _experiment_id(experiment_id: Any) -> int:
        try:
            return int(experiment_id)
        except (TypeError, ValueError):
            raise SqlError(
                f"Invalid experiment ID '{experiment_id}'", "INVALID_PARAMETER_VALUE"
            ) from None

    @_wrapped
    def search_experiments(
        self,
        view_type: int | str = 1,
        max_results: int = _EXPERIMENTS_PAGE,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        """Without a filter or an order: MLflow's order (newest first, then by id)."""
        if filter_string or order_by or view_type not in _VIEWS:
            return self.mlflow.search_experiments(  # type: ignore[return-value]
                view_type,  # type: ignore[arg-type]
                max_results,
                filter_string,
                order_by,
                page_token,
            )
        from arcuate.backends.mlflow import sqltables as t

        e, offset = t.experiments, _offset(page_token)
        with self.engine.connect() as conn:
            found = self._experiments(
                conn,
                e.c.lifecycle_stage.in_(_VIEWS[view_type]),
                order=(e.c.creation_time.desc(), e.c.experiment_id.asc()),
                offset=offset,
                limit=max_results + 1,
            )
        more = len(found) > max_results
        return PagedList(found[:max_results], _token(offset + max_results) if more else None)

    @_wrapped
    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        """A new experiment, as MLflow's store creates it (its default artifact location when
        none is given). Values MLflow would refuse are handed to MLflow, which says why."""
        import sqlalchemy as sa
        from sqlalchemy.exc import IntegrityError

        from arcuate.backends.mlflow import sqltables as t

        location = self._location(artifact_location)
        tags = {str(k): str(v) for k, v in (tags or {}).items()}
        if (
            location is None
            or not isinstance(name, str)
            or not 0 < len(name) <= 500
            or not all(self._plain_tag(k, v) for k, v in tags.items())
        ):
            return self.mlflow.create_experiment(name, artifact_location, tags or None)
        e = t.experiments
        created = now_ms()
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    sa.insert(e).values(
                        name=name,
                        workspace="default",
                        artifact_location=location or None,
                        lifecycle_stage="active",
                        creation_time=created,
                        last_update_time=created,
                    )
                )
                eid = int(result.inserted_primary_key[0])  # type: ignore[index]
                if not location:
                    conn.execute(
                        sa.update(e)
                        .where(e.c.experiment_id == eid)
                        .values(artifact_location=self._default_location(eid))
                    )
                if tags:
                    conn.execute(
                        sa.insert(t.experiment_tags),
                        [{"experiment_id": eid, "key": k, "value": v} for k, v in tags.items()],
                    )
        except IntegrityError as exc:
            raise SqlError(
                f"Experiment(name={name}) already exists. Error: {exc.orig}",
                "RESOURCE_ALREADY_EXISTS",
            ) from exc
        return str(eid)

    @staticmethod
    def _plain_tag(key: str, value: str) -> bool:
        """Whether MLflow accepts this experiment tag (else MLflow is asked, to say why)."""
        return (
            bool(_PLAIN_KEY.match(key))
            and len(key) <= 250
            and len(value) <= 20000
            and not key.startswith("mlflow.")  # MLflow checks some of its own tags' values
            and ".." not in key
            and not key.startswith("/")
        )

    @staticmethod
    def _location(artifact_location: str | None) -> str | None:
        """The location MLflow's store would write ("" for its default); None when only MLflow
        can say (a relative ``file:`` URI, one too long, a server's artifact root)."""
        if not artifact_location:
            return None if os.environ.get("_MLFLOW_SERVER_ARTIFACT_ROOT") else ""
        parsed = urlparse(artifact_location)
        out = artifact_location
        if not parsed.scheme:
            path = Path(artifact_location)
            out = artifact_location if path.is_absolute() else Path.cwd().joinpath(path).as_posix()
        elif parsed.scheme.lower() == "file" and not parsed.path.startswith("/"):
            return None
        limit = os.environ.get("MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH", "").strip()
        if len(out) > (int(limit) if limit.isdigit() else 2048):
            return None
        return out

    @staticmethod
    def _default_location(experiment_id: int) -> str:
        """MLflow's default artifact location of an experiment for a database URI outside a
        server: ``./mlruns`` under the working directory, then the id."""
        return append_to_uri_path(Path.cwd().joinpath("mlruns").as_posix(), str(experiment_id))

    def _active_experiment(self, conn: sa.Connection, experiment_id: Any) -> int:
        from arcuate.backends.mlflow import sqltables as t

        eid = self._experiment_id(experiment_id)
        found = self._experiments(conn, t.experiments.c.experiment_id == eid)
        if not found:
            raise SqlError(
                f"No Experiment with id={experiment_id} exists", "RESOURCE_DOES_NOT_EXIST"
            )
        if found[0].lifecycle_stage != "active":
            raise SqlError(
                f"The experiment {eid} must be in the 'active' state. "
                f"Current state is {found[0].lifecycle_stage}.",
                "INVALID_PARAMETER_VALUE",
            )
        return eid

    @_wrapped
    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        import sqlalchemy as sa

        from arcuate.backends.mlflow import sqltables as t

        value = str(value)
        if not self._plain_tag(key, value):
            self.mlflow.set_experiment_tag(experiment_id, key, value)
            return
        g = t.experiment_tags
        with self.engine.begin() as conn:
            eid = self._active_experiment(conn, experiment_id)
            where = (g.c.experiment_id == eid) & (g.c.key == key)
            if conn.execute(sa.update(g).where(where).values(value=value)).rowcount == 0:
                conn.execute(sa.insert(g).values(experiment_id=eid, key=key, value=value))

    @_wrapped
    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        import sqlalchemy as sa

        from arcuate.backends.mlflow import sqltables as t

        g = t.experiment_tags
        with self.engine.begin() as conn:
            eid = self._active_experiment(conn, experiment_id)
            gone = conn.execute(
                sa.delete(g).where(g.c.experiment_id == eid, g.c.key == key)
            ).rowcount
        if gone == 0:
            raise SqlError(
                f"No tag with name: {key} in experiment with id {experiment_id}",
                "RESOURCE_DOES_NOT_EXIST",
            )

    # -- runs ------------------------------------------------------------------------------

    def _runs(
        self, conn: sa.Connection, rows: Sequence[Any], *, model_inputs: bool = False
    ) -> list[Entity]:
        """Run entities of ``runs`` rows: latest metrics, params, tags, inputs, outputs."""
        import sqlalchemy as sa

        from arcuate.backends.mlflow import sqltables as t

        ids = [r.run_uuid for r in rows]
        latest: dict[str, dict[str, float]] = defaultdict(dict)
        params: dict[str, dict[str, str]] = defaultdict(dict)
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        lm, p, g = t.latest_metrics, t.params, t.tags
        for part in _chunks(ids):
            for rid, key, value, is_nan in conn.execute(
                sa.select(lm.c.run_uuid, lm.c.key, lm.c.value, lm.c.is_nan).where(
                    lm.c.run_uuid.in_(part)
                )
            ):
                latest[rid][key] = _value(value, is_nan)
            for rid, key, value in conn.execute(
                sa.select(p.c.run_uuid, p.c.key, p.c.value).where(p.c.run_uuid.in_(part))
            ):
                params[rid][key] = value
            for rid, key, value in conn.execute(
                sa.select(g.c.run_uuid, g.c.key, g.c.value).where(g.c.run_uuid.in_(part))
            ):
                tags[rid][key] = value
        inputs = run_inputs(conn, ids)
        outputs = model_outputs(conn, ids)
        out = []
        for r, dataset_inputs in zip(rows, inputs, strict=True):
            rid = r.run_uuid
            run_tags = tags.get(rid, {})
            info = Entity(
                run_id=rid,
                run_uuid=rid,
                run_name=r.name or run_tags.get("mlflow.runName") or r.name,
                experiment_id=str(r.experiment_id),
                user_id=r.user_id,
                status=r.status,
                start_time=r.start_time,
                end_time=r.end_time,
                lifecycle_stage=r.lifecycle_stage,
                artifact_uri=r.artifact_uri,
            )
            out.append(
                Entity(
                    info=info,
                    data=Entity(
                        metrics=latest.get(rid, {}), params=params.get(rid, {}), tags=run_tags
                    ),
                    inputs=Entity(
                        dataset_inputs=dataset_inputs,
                        model_inputs=_model_inputs(conn, rid) if model_inputs else [],
                    ),
                    outputs=Entity(model_outputs=outputs.get(rid, [])),
                )
            )
        return out

    @staticmethod
    def _run_columns() -> list[Any]:
        from arcuate.backends.mlflow import sqltables as t

        r = t.runs
        return [
            r.c.run_uuid,
            r.c.name,
            r.c.experiment_id,
            r.c.user_id,
            r.c.status,
            r.c.start_time,
            r.c.end_time,
            r.c.lifecycle_stage,
            r.c.artifact_uri,
        ]

    @_wrapped
    def get_run(self, run_id: str) -> Entity:
        import sqlalchemy as sa

        from arcuate.backends.mlflow import sqltables as t

        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(*self._run_columns()).where(t.runs.c.run_uuid == run_id)
            ).all()
            if not rows:
                raise SqlError(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
            return self._runs(conn, rows, model_inputs=True)[0]

    @_wrapped
    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        run_view_type: int | str = 1,
        max_results: int = _RUNS_PAGE,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        """Without an order, with no filter or one on a tag's value (``tags.`k` = 'v'``):
        MLflow's order (newest first, then by id). Anything else is MLflow's."""
        import sqlalchemy as sa

        from arcuate.backends.mlflow import sqltables as t

        tag = _TAG_FILTER.match(filter_string) if filter_string else None
        if (filter_string and tag is None) or order_by or run_view_type not in _VIEWS:
            return self.mlflow.search_runs(  # type: ignore[return-value]
                experiment_ids,
                filter_string,
                run_view_type,  # type: ignore[arg-type]
                max_results,
                order_by,
                page_token,
            )
        r, g = t.runs, t.tags
        eids = [self._experiment_id(e) for e in experiment_ids]
        stmt = sa.select(*self._run_columns()).where(
            r.c.experiment_id.in_(eids), r.c.lifecycle_stage.in_(_VIEWS[run_view_type])
        )
        if tag is not None:
            stmt = stmt.where(
                sa.exists().where(
                    g.c.run_uuid == r.c.run_uuid, g.c.key == tag.group(1), g.c.value == tag.group(2)
                )
            )
        offset = _offset(page_token)
        stmt = stmt.order_by(r.c.start_time.desc(), r.c.run_uuid).offset(offset)
        stmt = stmt.limit(max_results + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            more = len(rows) > max_results
            found = self._runs(conn, rows[:max_results])
        return PagedList(found, _token(offset + max_results) if more else None)

    @_wrapped
    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        import sqlalchemy as sa

        from arcuate.backends.mlflow import sqltables as t

        m = t.metrics
        stmt = (
            sa.select(m.c.key, m.c.value, m.c.is_nan, m.c.timestamp, m.c.step)
            .where(m.c.run_uuid == run_id, m.c.key == key)
            .order_by(m.c.timestamp, m.c.step, m.c.value)
        )
        with self.engine.connect() as conn:
            return [
                Metric(k, _value(v, nan), int(ts), int(step), run_id=run_id)
                for k, v, nan, ts, step in conn.execute(stmt)
            ]

    # -- logged models ---------------------------------------------------------------------

    def _models(self, conn: sa.Connection, rows: Sequence[Any]) -> list[Entity]:
        import sqlalchemy as sa

        from arcuate.backends.mlflow import sqltables as t

        ids = [r.model_id for r in rows]
        params: dict[str, dict[str, str]] = defaultdict(dict)
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        metrics: dict[str, list[Metric]] = defaultdict(list)
        p, g, m = t.logged_model_params, t.logged_model_tags, t.logged_model_metrics
        for part in _chunks(ids):
            for mid, key, value in conn.execute(
                sa.select(p.c.model_id, p.c.param_key, p.c.param_value).where(
                    p.c.model_id.in_(part)
                )
            ):
                params[mid][key] = value
            for mid, key, value in conn.execute(
                sa.select(g.c.model_id, g.c.tag_key, g.c.tag_value).where(g.c.model_id.in_(part))
            ):
                tags[mid][key] = value
            for x in conn.execute(sa.select(m).where(m.c.model_id.in_(part))):
                metrics[x.model_id].append(
                    Metric(
                        x.metric_name,
                        x.metric_value,
                        x.metric_timestamp_ms,
                        x.metric_step,
                        model_id=x.model_id,
                        dataset_name=x.dataset_name,
                        dataset_digest=x.dataset_digest,
                        run_id=x.run_id,
                    )
                )
        return [
            Entity(
                experiment_id=str(r.experiment_id),
                model_id=r.model_id,
                name=r.name,
                artifact_location=r.artifact_location,
                creation_timestamp=r.creation_timestamp_ms,
                last_updated_timestamp=r.last_updated_timestamp_ms,
                model_type=r.model_type,
                source_run_id=r.source_run_id,
                status=MODEL_STATUS.get(r.status, str(r.status)),
                status_message=r.status_message,
                tags=tags.get(r.model_id) or None,
                params=params.get(r.model_id) or None,
                metrics=metrics.get(r.model_id) or None,
            )
            for r in rows
        ]

    @_wrapped
    def get_logged_model(self, model_id: str) -> Entity:
        import sqlalchemy as sa

        from arcuate.backends.mlflow import sqltables as t

        lm = t.logged_models
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(lm).where(lm.c.model_id == model_id, lm.c.lifecycle_stage != "deleted")
            ).all()
            if not rows:
                raise SqlError(
                    f"Logged model with ID '{model_id}' not found.", "RESOURCE_DOES_NOT_EXIST"
                )
            return self._models(conn, rows)[0]

    @_wrapped
    def search_logged_models(
        self,
        experiment_ids: list[str],
        filter_string: str | None = None,
        datasets: list[Any] | None = None,
        max_results: int | None = None,
        order_by: list[Any] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        """Without datasets or an order, with no filter or ``source_run_id = '<id>'``:
        MLflow's order (newest first, then by id). Anything else is MLflow's."""
        import sqlalchemy as sa

        from arcuate.backends.mlflow import sqltables as t

        by_run = _SOURCE_RUN_FILTER.match(filter_string) if filter_string else None
        if (filter_string and by_run is None) or datasets or order_by:
            return self.mlflow.search_logged_models(  # type: ignore[return-value]
                experiment_ids, filter_string, datasets, max_results, order_by, page_token
            )
        lm = t.logged_models
        limit = max_results or _MODELS_PAGE
        eids = [self._experiment_id(e) for e in experiment_ids]
        stmt = sa.select(lm).where(lm.c.lifecycle_stage != "deleted", lm.c.experiment_id.in_(eids))
        if by_run is not None:
            stmt = stmt.where(lm.c.source_run_id == by_run.group(1))
        offset = _offset(page_token)
        stmt = stmt.order_by(lm.c.creation_timestamp_ms.desc(), lm.c.model_id.asc())
        stmt = stmt.offset(offset).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            more = len(rows) > limit
            found = self._models(conn, rows[:limit])
        return PagedList(found, _token(offset + limit) if more else None)
