"""Connecting to MLflow with explicit URIs, and keeping credentials out of everything we write.

MLflow resolves a missing registry URI through the Spark session when pyspark is installed,
which can exit the process; so every client here gets both URIs spelled out, and nothing
global (``mlflow.set_tracking_uri``) is touched. The one exception: while a statement runs,
:func:`bounded_retries` sets MLflow's HTTP retry variables (unless the user set them), so that
a server that is down fails the statement in seconds instead of minutes.

:func:`redact_uri` is applied to every URI-like value that leaves the provider: model version
sources and run links, dataset sources, tag and param values that are URIs, and error messages.
"""

from __future__ import annotations

import importlib.abc
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeGuard
from urllib.parse import parse_qsl, urlsplit

from arcuate.backends.retry import SETTING_HINT, describe_failure, find_in_chain, origin
from arcuate.errors import BackendError, UnreachableError, is_secret_key

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from arcuate.backends.mlflow.rest import RestError

_URI: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_USERINFO: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#]*@)")
_URI_LIKE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://\S*$")


# -- servers that do not answer ---------------------------------------------------------------

#: MLflow reads these on every request; its defaults (7 retries, back-off factor 2) retry a
#: server that is down for about four minutes.
_RETRIES_ENV: Final = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
_BACKOFF_ENV: Final = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
#: MLflow refuses more retries than this (``_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT``).
_MAX_RETRIES: Final = 10


def mlflow_retries(seconds: float) -> int:
    """How many MLflow retries fit in ``seconds`` with a back-off factor of 1: the pauses are
    0, 2, 4, 8... s, plus up to 1 s of jitter each."""
    n = 0
    while n < _MAX_RETRIES and 2 ** (n + 1) - 2 + (n + 1) <= seconds:
        n += 1
    return n


class _Bounded:
    """The variables set for running statements; the last statement to end removes them."""

    lock = threading.Lock()
    users = 0
    added: dict[str, str] = {}  # noqa: RUF012 - class-level state shared by all statements


@contextmanager
def bounded_retries(seconds: float) -> Iterator[None]:
    """MLflow's HTTP retries bounded to about ``seconds`` while a statement runs.

    Only variables the user has not set are set (an explicit ``MLFLOW_HTTP_REQUEST_*`` wins),
    and only they are removed afterwards. Helper processes started meanwhile inherit them.
    """
    with _Bounded.lock:
        if _Bounded.users == 0:
            wanted = {_RETRIES_ENV: str(mlflow_retries(seconds)), _BACKOFF_ENV: "1"}
            _Bounded.added = {k: v for k, v in wanted.items() if k not in os.environ}
            os.environ.update(_Bounded.added)
        _Bounded.users += 1
    try:
        yield
    finally:
        with _Bounded.lock:
            _Bounded.users -= 1
            if _Bounded.users == 0:
                for key, value in _Bounded.added.items():
                    if os.environ.get(key) == value:
                        del os.environ[key]


def unreachable(
    exc: BaseException, tracking_uri: str, registry_uri: str
) -> UnreachableError | None:
    """An MLflow failure for want of a server, as an error that names the server, what failed
    and what to check; None when ``exc`` is any other failure."""
    import requests

    failed = find_in_chain(exc, (requests.ConnectionError, requests.Timeout))
    if failed is None:
        return None
    request = getattr(failed, "request", None)
    url = str(getattr(request, "url", None) or "")
    where = origin(url) if url else "an unknown address"
    known = {  # tracking last: it wins when both are the same server
        origin(registry_uri): (
            "the MLflow registry server",
            "--registry-uri (MLFLOW_REGISTRY_URI)",
        ),
        origin(tracking_uri): (
            "the MLflow tracking server",
            "--tracking-uri (MLFLOW_TRACKING_URI)",
        ),
    }
    server, setting = known.get(where, ("the server", ""))
    check = f"that {setting} points to it" if setting else "that this machine can reach it"
    call = f"{getattr(request, 'method', None) or 'request'} {urlsplit(url).path}".strip()
    return UnreachableError(
        f"{server} at {where} cannot be reached: {describe_failure(failed)} ({call}); {_retried()}",
        hint=f"check that the server is running and {check}; {SETTING_HINT}",
    )


def _retried() -> str:
    """How often MLflow retried the request (its setting, as in effect now)."""
    value = os.environ.get(_RETRIES_ENV, "7")
    if value.strip() in ("0", "1"):
        return "MLflow did not retry it" if value.strip() == "0" else "MLflow retried it once"
    return f"MLflow retried it {value.strip()} times"


class _RetryNotices(logging.Handler):
    """Shows urllib3's "Retrying ..." warnings (MLflow's retries) as one line each."""

    def __init__(self, notify: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.notify = notify

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if not str(record.msg).startswith("Retrying") or len(args) < 3:
            return
        err = args[1] if isinstance(args[1], BaseException) else None
        conn = getattr(err, "conn", None)
        host = f" at {conn.host}:{conn.port}" if conn is not None else ""
        failure = describe_failure(err) if err is not None else "no answer"
        path = urlsplit(str(args[2])).path
        self.notify(f"an MLflow server{host} ({path}): {failure}; retrying")


@contextmanager
def retry_notices(notify: Callable[[str], None] | None) -> Iterator[None]:
    """While a statement runs, each MLflow retry is told to ``notify`` (None: nothing)."""
    if notify is None:
        yield
        return
    logger = logging.getLogger("urllib3.connectionpool")
    handler = _RetryNotices(notify)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def make_client(tracking_uri: str, registry_uri: str) -> MlflowClient:
    """An MlflowClient bound to both URIs explicitly; sets nothing global."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


#: Tracking URIs of databases arcuate's SQL client reads and writes.
SQL_SCHEMES: Final = ("sqlite", "postgresql", "postgresql+psycopg")


def is_database(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` names a database of :data:`SQL_SCHEMES`."""
    return urlsplit(tracking_uri).scheme.lower() in SQL_SCHEMES


def client_for(tracking_uri: str, registry_uri: str) -> Any:
    """The client the source and the sink use: arcuate's own REST client for a tracking
    server (:mod:`arcuate.backends.mlflow.rest`), arcuate's own SQL client for a ``sqlite://``
    or ``postgresql://`` database at a covered schema revision
    (:mod:`arcuate.backends.mlflow.sqlclient`): neither imports ``mlflow`` for experiments,
    runs and logged models. MLflow's client otherwise, or when ``ARCUATE_MLFLOW_CLIENT=mlflow``.
    """
    from arcuate.backends.mlflow import rest

    if rest.wanted(tracking_uri):
        return rest.RestClient(tracking_uri, registry_uri)
    if is_database(tracking_uri):
        from arcuate.backends.mlflow import sqlclient

        light = sqlclient.open_client(tracking_uri, registry_uri)
        if light is not None:
            return light
    return make_client(tracking_uri, registry_uri)


def _loaded(module: str, name: str) -> type | None:
    """Class ``name`` of ``module`` if that module is loaded (an instance needs it loaded)."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls if isinstance(cls, type) else None


def is_rest(client: object) -> bool:
    """Whether ``client`` is arcuate's REST client."""
    cls = _loaded("arcuate.backends.mlflow.rest", "RestClient")
    return cls is not None and isinstance(client, cls)


def is_sql(client: object) -> bool:
    """Whether ``client`` is arcuate's SQL client."""
    cls = _loaded("arcuate.backends.mlflow.sqlclient", "SqlClient")
    return cls is not None and isinstance(client, cls)


def is_light(client: object) -> bool:
    """Whether ``client`` is one of arcuate's own clients (REST or SQL), not MLflow's: MLflow's
    own client is then ``client.mlflow``."""
    return is_rest(client) or is_sql(client)


def mlflow_of(client: Any) -> MlflowClient:
    """MLflow's own client: ``client`` itself, or the one behind arcuate's."""
    return client.mlflow if is_light(client) else client  # type: ignore[no-any-return]


def failures(*more: type[Exception]) -> tuple[type[RestError], ...]:
    """The exception types of a failed MLflow call, for an ``except`` clause: the REST
    client's :class:`~arcuate.backends.mlflow.rest.RestError`, and ``MlflowException`` once
    MLflow is loaded (before that nothing can have raised one, and importing it to catch it
    would cost a REST statement the whole of MLflow's start-up); and the types ``more``.

    Typed as ``RestError`` for the checker: both have ``message`` and ``error_code``.
    """
    from arcuate.backends.mlflow.rest import RestError

    module = sys.modules.get("mlflow.exceptions")
    found = getattr(module, "MlflowException", None)
    mine: tuple[Any, ...] = (RestError, found) if isinstance(found, type) else (RestError,)
    return (*mine, *more)


def is_sql_store(store: object, *, subclass: bool = False) -> TypeGuard[SqlAlchemyStore]:
    """Whether ``store`` is MLflow's own ``SqlAlchemyStore`` (or, with ``subclass``, one of
    its subclasses), without importing it.

    A client imports that module only when it builds a store for a database URI, so a store
    whose class is not loaded cannot be one; importing it just to compare would cost a REST
    command about a second (sqlalchemy, alembic, the ORM models) for nothing.
    """
    module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    cls = getattr(module, "SqlAlchemyStore", None)
    if not isinstance(cls, type):
        return False
    return isinstance(store, cls) if subclass else type(store) is cls


def pages(search: Callable[[str | None], Any]) -> Iterator[list[Any]]:
    """Every page of a paginated MLflow search: ``search(page_token)`` until no token."""
    token: str | None = None
    while True:
        page = search(token)
        yield list(page)
        token = page.token
        if not token:
            return


def every(search: Callable[[str | None], Any], limit: int | None = None) -> list[Any]:
    """All items of a paginated MLflow search (``limit``: stop after the page that reaches it)."""
    out: list[Any] = []
    for page in pages(search):
        out.extend(page)
        if limit is not None and len(out) >= limit:
            break
    return out


def error_code(exc: BaseException) -> str:
    """The ``error_code`` of an MlflowException (``RESOURCE_DOES_NOT_EXIST``...), or ""."""
    return str(getattr(exc, "error_code", ""))


class _NoSparkConnect(importlib.abc.MetaPathFinder):
    """Refuses to import Spark Connect (not yet loaded): MLflow then sees no Spark session."""

    _BLOCKED = ("pyspark.sql.connect", "pyspark.testing")

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if any(name == b or name.startswith(b + ".") for b in self._BLOCKED):
            raise ImportError(f"{name} is not used by arcuate's MLflow calls")
        return None


@contextmanager
def spark_guard() -> Iterator[None]:
    """Keep MLflow from importing Spark Connect for the duration of a call.

    MLflow looks for an active Spark session (context tags of fluent calls, request headers
    of every REST call); with ``pyspark-client`` installed
    and no ``SPARK_HOME``, the first import of ``pyspark.sql.connect`` in a process whose
    ``__main__`` has no file (``python -c``, notebooks, pytest-xdist workers) calls
    ``sys.exit``. A live Connect session has those modules loaded already, and a finder is
    only asked about modules not yet loaded, so such a session is never hidden.
    """
    guard = _NoSparkConnect()
    sys.meta_path.insert(0, guard)
    try:
        yield
    finally:
        sys.meta_path.remove(guard)


@contextmanager
def mlflow_errors(what: str) -> Iterator[None]:
    """MLflow and OS failures as :class:`BackendError` saying what was being done.

    Also keeps MLflow away from Spark Connect (:func:`spark_guard`) during the call.
    """
    try:
        with spark_guard():
            yield
    except failures() as exc:
        raise BackendError(f"{what}: {getattr(exc, 'message', exc)}") from exc
    except OSError as exc:
        raise BackendError(f"{what}: {exc}") from exc


# -- the URIs MLflow resolves by itself ------------------------------------------------------
_URI_VARS: Final = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def _set_uri_env(tracking_uri: str, registry_uri: str) -> dict[str, str | None]:
    """Point ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` at a store; what they were."""
    saved = {var: os.environ.get(var) for var in _URI_VARS}
    os.environ.update(zip(_URI_VARS, (tracking_uri, registry_uri), strict=True))
    return saved


def _restore_env(saved: dict[str, str | None]) -> None:
    for var, value in saved.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


class _EnvUsers:
    """The calls inside :func:`mlflow_env` now; the first one in set the variables."""

    lock = threading.Lock()
    count = 0
    saved: dict[str, str | None] = {}  # noqa: RUF012 - class-level state shared by all calls


@contextmanager
def mlflow_env(tracking_uri: str, registry_uri: str) -> Iterator[None]:
    """``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` set while a Spark task works, then
    restored: MLflow resolves a missing registry URI through Spark, which can exit a process
    that has pyspark installed.

    Tasks may share a process (and threads); the first one in sets the variables, the last
    one out restores them.
    """
    with _EnvUsers.lock:
        if _EnvUsers.count == 0:
            _EnvUsers.saved = _set_uri_env(tracking_uri, registry_uri)
        else:
            _set_uri_env(tracking_uri, registry_uri)
        _EnvUsers.count += 1
    try:
        yield
    finally:
        with _EnvUsers.lock:
            _EnvUsers.count -= 1
            if _EnvUsers.count == 0:
                _restore_env(_EnvUsers.saved)


_URI_LOCK = threading.Lock()


@contextmanager
def global_uris(tracking_uri: str, registry_uri: str) -> Iterator[None]:
    """Point MLflow's global URIs (and their env vars) at a store, then restore them exactly.

    ``SqlAlchemyStore.create_model_version`` resolves ``models:/m-...`` through a bare
    ``MlflowClient()``; without this it would look in whatever store is configured globally.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    with _URI_LOCK:
        saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
        setattr(tracking_utils, "_tracking_uri", tracking_uri)  # noqa: B010 - typed as None
        setattr(registry_utils, "_registry_uri", registry_uri)  # noqa: B010
        saved_env = _set_uri_env(tracking_uri, registry_uri)
        try:
            yield
        finally:
            tracking_utils._tracking_uri, registry_utils._registry_uri = saved
            _restore_env(saved_env)


def _has_secret(part: str) -> bool:
    """Whether a query string or fragment carries a credential-like ``key=value``."""
    try:
        pairs = parse_qsl(part, keep_blank_values=True)
    except ValueError:  # malformed: keep nothing we cannot read
        return True
    return any(is_secret_key(k) for k, _ in pairs)


def redact_uri(uri: str) -> str:
    """``uri`` without userinfo (``user:password@``) and without a query or fragment carrying
    credentials (SAS tokens, ``X-Amz-*``, ``token=``...).

    Anything else is returned unchanged, character for character, so plain paths, ``runs:/``
    and ``models:/`` URIs and harmless query strings round-trip exactly.
    """
    if not uri or not _URI.match(uri):
        return uri
    out = uri
    m = _USERINFO.match(out)
    if m:
        out = m.group("scheme") + out[m.end() :]
    frag = ""
    hash_at = out.find("#")
    if hash_at >= 0:
        out, frag = out[:hash_at], out[hash_at + 1 :]
    query = ""
    q_at = out.find("?")
    if q_at >= 0:
        out, query = out[:q_at], out[q_at + 1 :]
    if query and not _has_secret(query):
        out += "?" + query
    elif not query and q_at >= 0:
        out += "?"
    if frag and not _has_secret(frag):
        out += "#" + frag
    elif not frag and hash_at >= 0:
        out += "#"
    return out


def redact_value(value: str | None) -> str | None:
    """A tag/param value redacted if it is a URI, unchanged otherwise."""
    if value is None or not _URI_LIKE.match(value):
        return value
    return redact_uri(value)


def redact_json_uris(text: str | None) -> str | None:
    """A JSON document (a dataset source) with every URI-valued string redacted.

    Unchanged, character for character, when nothing in it needs redaction; text that is not
    JSON is treated as one value.
    """
    if not text:
        return text
    try:
        doc = json.loads(text)
    except ValueError:
        return redact_value(text)
    changed = False

    def walk(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, str):
            red = redact_value(node)
            if red != node:
                changed = True
            return red
        if isinstance(node, list):
            return [walk(x) for x in node]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    cleaned = walk(doc)
    return json.dumps(cleaned) if changed else text
