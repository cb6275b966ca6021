"""A small client for MLflow's REST API, so that a statement against a tracking server does not
import ``mlflow`` (whose ``__init__`` alone costs 1.4-1.9 s of CPU: its dataset registry, GenAI
judges and server stack).

:class:`RestClient` has the names and signatures of the ``MlflowClient`` methods the source
and the sink call, and returns light objects with the attribute names of MLflow's entities
(``run.info.run_id``, ``run.data.params``...), so the source's and the sink's rules are the
same whichever client they hold. Anything it does not implement (the model registry, prompts,
traces, evaluation datasets, scorers) is passed on to a real ``MlflowClient`` built on first
use. Artifacts are read and written through the tracking server's artifact proxy
(``mlflow-artifacts:`` URIs) or an ``http(s):`` artifact root; ``s3://`` and local ones through
arcuate's own repositories (:mod:`~arcuate.backends.mlflow.objects`), any other through
MLflow's.

It is used for ``http://``/``https://`` tracking URIs unless ``ARCUATE_MLFLOW_CLIENT=mlflow``,
or MLflow would authenticate in a way it does not (an auth plugin, AWS SigV4, Databricks).
Requests are retried like MLflow's own (same ``MLFLOW_HTTP_REQUEST_*`` variables, same codes:
:func:`~arcuate.backends.mlflow.connect.bounded_retries` bounds them while a statement runs),
and its errors (:class:`RestError`) carry MLflow's ``error_code`` and ``message``.
"""

from __future__ import annotations

import base64
import math
import os
import posixpath
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

if TYPE_CHECKING:
    import requests
    from mlflow import MlflowClient

#: ``mlflow`` (MLflow's client everywhere) or ``rest`` (the default: this one for servers)
CLIENT_ENV: Final = "ARCUATE_MLFLOW_CLIENT"
_API: Final = "/api/2.0/mlflow"
_ARTIFACTS: Final = "/api/2.0/mlflow-artifacts/artifacts"
_BULK_HISTORY: Final = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
_DATASETS_SEARCH: Final = "/api/3.0/mlflow/datasets/search"
#: MLflow's codes worth retrying (``_TRANSIENT_FAILURE_RESPONSE_CODES``)
_RETRY_CODES: Final = (408, 429, 500, 502, 503, 504)
#: Variables under which MLflow authenticates in ways this client does not.
_OTHER_AUTH: Final = ("MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4", "MLFLOW_ENABLE_DB_SDK")
_HTTP_STATUS_CODES: Final = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
}
_DOWNLOAD_CHUNK: Final = 1024 * 1024
#: MLflow's limits of one ``runs/log-batch`` request
_BATCH_PARAMS_TAGS: Final = 100
_BATCH_METRICS: Final = 1000
_BATCH_ENTITIES: Final = 1000
#: logged-model params per request (MLflow's ``_MLFLOW_*_LOGGED_MODEL_PARAMS_BATCH_SIZE``)
_MODEL_PARAMS: Final = 100
#: files at least this large are uploaded through MLflow's repository (which may split them
#: into a multipart upload: ``MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE``)
_MULTIPART_BYTES: Final = 500 * 1024 * 1024


def own_clients() -> bool:
    """Whether arcuate's own clients and repositories are used (not with
    ``ARCUATE_MLFLOW_CLIENT=mlflow``).

    Raises:
        ConfigurationError: ``ARCUATE_MLFLOW_CLIENT`` is neither ``rest`` nor ``mlflow``.
    """
    choice = os.environ.get(CLIENT_ENV, "").strip().lower()
    if choice not in ("", "rest", "mlflow"):
        from arcuate.errors import ConfigurationError

        raise ConfigurationError(
            f"{CLIENT_ENV} must be 'rest' or 'mlflow', got {os.environ[CLIENT_ENV]!r}"
        )
    return choice != "mlflow"


def wanted(tracking_uri: str) -> bool:
    """Whether statements against ``tracking_uri`` use :class:`RestClient`.

    Raises:
        ConfigurationError: ``ARCUATE_MLFLOW_CLIENT`` is neither ``rest`` nor ``mlflow``.
    """
    if not own_clients():
        return False
    if urlsplit(tracking_uri).scheme.lower() not in ("http", "https"):
        return False
    return not any(os.environ.get(var, "").strip() for var in _OTHER_AUTH)


class RestError(Exception):
    """A failed MLflow REST call: ``error_code`` and ``message`` as in ``MlflowException``."""

    def __init__(self, message: str, error_code: str = "INTERNAL_ERROR") -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code


# -- entities: MLflow's attribute names, nothing else ---------------------------------------


def _kv(items: Iterable[dict[str, Any]] | None) -> dict[str, str]:
    return {str(t["key"]): t.get("value", "") for t in items or ()}


def _float(value: Any) -> float:
    """A JSON double (MLflow writes NaN and infinities as strings)."""
    return float(value) if value is not None else 0.0


class Entity:
    """Attributes from keyword arguments (a readable repr for failures in tests)."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    __hash__ = None  # type: ignore[assignment]

    if TYPE_CHECKING:  # the attributes are those given to __init__

        def __getattr__(self, name: str) -> Any: ...


class Metric(Entity):
    """MLflow's ``Metric``: key, value, timestamp, step (and the logged-model fields)."""

    def __init__(
        self,
        key: str,
        value: float,
        timestamp: int,
        step: int,
        model_id: str | None = None,
        dataset_name: str | None = None,
        dataset_digest: str | None = None,
        run_id: str | None = None,
    ) -> None:
        super().__init__(
            key=key,
            value=value,
            timestamp=timestamp,
            step=step,
            model_id=model_id,
            dataset_name=dataset_name,
            dataset_digest=dataset_digest,
            run_id=run_id,
        )

    @classmethod
    def from_json(cls, m: dict[str, Any]) -> Metric:
        return cls(
            str(m.get("key", "")),
            _float(m.get("value")),
            int(m.get("timestamp", 0)),
            int(m.get("step", 0)),
            model_id=m.get("model_id") or None,
            dataset_name=m.get("dataset_name") or None,
            dataset_digest=m.get("dataset_digest") or None,
            run_id=m.get("run_id") or None,
        )


class Param(Entity):
    def __init__(self, key: str, value: str) -> None:
        super().__init__(key=key, value=value)


class RunTag(Entity):
    def __init__(self, key: str, value: str) -> None:
        super().__init__(key=key, value=value)


class InputTag(Entity):
    def __init__(self, key: str, value: str) -> None:
        super().__init__(key=key, value=value)


class Dataset(Entity):
    def __init__(
        self,
        name: str,
        digest: str,
        source_type: str,
        source: str,
        schema: str | None = None,
        profile: str | None = None,
    ) -> None:
        super().__init__(
            name=name,
            digest=digest,
            source_type=source_type,
            source=source,
            schema=schema,
            profile=profile,
        )


class DatasetInput(Entity):
    def __init__(self, dataset: Dataset, tags: list[InputTag] | None = None) -> None:
        super().__init__(dataset=dataset, tags=list(tags or []))


class LoggedModelInput(Entity):
    def __init__(self, model_id: str) -> None:
        super().__init__(model_id=model_id)


class LoggedModelOutput(Entity):
    def __init__(self, model_id: str, step: int) -> None:
        super().__init__(model_id=model_id, step=step)


def _kv_json(items: Iterable[Any]) -> list[dict[str, str]]:
    """Param, RunTag, InputTag... objects (MLflow's or these) as JSON ``{key, value}``."""
    return [{"key": str(t.key), "value": str(t.value)} for t in items]


def _metric_json(m: Any) -> dict[str, Any]:
    """A metric (MLflow's or :class:`Metric`) as MLflow's JSON has it."""
    value = float(m.value)
    out: dict[str, Any] = {
        "key": m.key,
        "value": _json_double(value),
        "timestamp": int(m.timestamp),
        "step": int(m.step or 0),
    }
    for name in ("model_id", "dataset_name", "dataset_digest", "run_id"):
        if getattr(m, name, None):
            out[name] = getattr(m, name)
    return out


def _json_double(value: float) -> Any:
    """A double as protobuf's JSON writes it (NaN and infinities as strings)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _dataset_input_json(d: Any) -> dict[str, Any]:
    ds = d.dataset
    dataset = {
        "name": ds.name,
        "digest": ds.digest,
        "source_type": ds.source_type,
        "source": ds.source,
        "schema": ds.schema,
        "profile": ds.profile,
    }
    return {
        "tags": _kv_json(d.tags or ()),
        "dataset": {k: v for k, v in dataset.items() if v is not None},
    }


def _dataset_input(d: dict[str, Any]) -> DatasetInput:
    ds = d.get("dataset") or {}
    return DatasetInput(
        Dataset(
            ds.get("name", ""),
            ds.get("digest", ""),
            ds.get("source_type", ""),
            ds.get("source", ""),
            ds.get("schema"),
            ds.get("profile"),
        ),
        [InputTag(t.get("key", ""), t.get("value", "")) for t in d.get("tags") or ()],
    )


def _experiment(e: dict[str, Any]) -> Entity:
    return Entity(
        experiment_id=str(e.get("experiment_id", "")),
        name=e.get("name", ""),
        artifact_location=e.get("artifact_location", ""),
        lifecycle_stage=e.get("lifecycle_stage", ""),
        creation_time=int(e.get("creation_time") or 0) or None,
        last_update_time=int(e.get("last_update_time") or 0) or None,
        tags=_kv(e.get("tags")),
    )


def _run(r: dict[str, Any]) -> Entity:
    i = r.get("info") or {}
    d = r.get("data") or {}
    inputs = r.get("inputs") or {}
    outputs = r.get("outputs") or {}
    metrics: dict[str, float] = {}
    for m in d.get("metrics") or ():
        metrics[str(m.get("key", ""))] = _float(m.get("value"))
    info = Entity(
        run_id=i.get("run_id") or i.get("run_uuid", ""),
        run_name=i.get("run_name", ""),
        experiment_id=str(i.get("experiment_id", "")),
        user_id=i.get("user_id", ""),
        status=i.get("status", "RUNNING"),
        start_time=int(i.get("start_time", 0)),
        end_time=int(i.get("end_time", 0)) or None,
        lifecycle_stage=i.get("lifecycle_stage", ""),
        artifact_uri=i.get("artifact_uri", ""),
    )
    return Entity(
        info=info,
        data=Entity(metrics=metrics, params=_kv(d.get("params")), tags=_kv(d.get("tags"))),
        inputs=Entity(
            dataset_inputs=[_dataset_input(x) for x in inputs.get("dataset_inputs") or ()],
            model_inputs=[
                LoggedModelInput(x.get("model_id", "")) for x in inputs.get("model_inputs") or ()
            ],
        ),
        outputs=Entity(
            model_outputs=[
                LoggedModelOutput(x.get("model_id", ""), int(x.get("step", 0)))
                for x in outputs.get("model_outputs") or ()
            ]
        ),
    )


#: RunStatus as MLflow numbers it (``RunStatus.RUNNING`` ...)
_RUN_STATUS: Final = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_MODEL_STATUS: Final = {
    "LOGGED_MODEL_STATUS_UNSPECIFIED": "UNSPECIFIED",
    "LOGGED_MODEL_PENDING": "PENDING",
    "LOGGED_MODEL_READY": "READY",
    "LOGGED_MODEL_UPLOAD_FAILED": "FAILED",
}


def _logged_model(m: dict[str, Any]) -> Entity:
    i = m.get("info") or {}
    d = m.get("data") or {}
    status = i.get("status", "LOGGED_MODEL_STATUS_UNSPECIFIED")
    return Entity(
        experiment_id=str(i.get("experiment_id", "")),
        model_id=i.get("model_id", ""),
        name=i.get("name", ""),
        artifact_location=i.get("artifact_uri", ""),
        creation_timestamp=int(i.get("creation_timestamp_ms", 0)),
        last_updated_timestamp=int(i.get("last_updated_timestamp_ms", 0)),
        model_type=i.get("model_type", ""),
        source_run_id=i.get("source_run_id", ""),
        status=_MODEL_STATUS.get(status, status),
        status_message=i.get("status_message", ""),
        tags=_kv(i.get("tags")),
        params=_kv(d.get("params")),
        metrics=[Metric.from_json(x) for x in d.get("metrics") or ()],
    )


class PagedList(list[Any]):
    """A page of results and the token of the next one (None: the last page)."""

    def __init__(self, items: Iterable[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token or None


# -- the client ------------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("true", "1", "yes")


class _Sessions:
    """One ``requests`` session per retry setting and process (as MLflow caches its own)."""

    lock = threading.Lock()
    made: dict[tuple[int, float, float, int], requests.Session] = {}  # noqa: RUF012


def _session() -> requests.Session:
    """A session retrying like MLflow's: the ``MLFLOW_HTTP_REQUEST_*`` settings in effect."""
    retries = _env_int("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7)
    backoff = _env_float("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2)
    jitter = _env_float("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", 1.0)
    key = (retries, backoff, jitter, os.getpid())
    with _Sessions.lock:
        session = _Sessions.made.get(key)
        if session is None:
            import requests
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry

            kwargs: dict[str, Any] = {
                "total": retries,
                "connect": retries,
                "read": retries,
                "redirect": retries,
                "status": retries,
                "status_forcelist": _RETRY_CODES,
                "backoff_factor": backoff,
                "raise_on_status": False,
                "respect_retry_after_header": True,
                "allowed_methods": None,
            }
            try:
                retry = Retry(**kwargs, backoff_jitter=jitter)
            except TypeError:  # urllib3 < 2 has no jitter
                retry = Retry(**kwargs)
            adapter = HTTPAdapter(
                pool_connections=_env_int("MLFLOW_HTTP_POOL_CONNECTIONS", 10),
                pool_maxsize=_env_int("MLFLOW_HTTP_POOL_MAXSIZE", 10),
                max_retries=retry,
            )
            session = requests.Session()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _Sessions.made[key] = session
        return session


def _view(view: int | str) -> str:
    """MLflow's ``ViewType`` (an int) as its REST name."""
    if isinstance(view, str):
        return view
    return {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}.get(view, "ACTIVE_ONLY")


def _error(status: int, text: str, what: str) -> RestError:
    """A non-200 answer as MLflow's ``RestException`` would word it."""
    import json

    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and body:
        code = str(body.get("error_code") or "INTERNAL_ERROR")
        message = body.get("message", f"Response: {body}")
        if code.isdigit():
            code = _HTTP_STATUS_CODES.get(int(code), "INTERNAL_ERROR")
        return RestError(f"{code}: {message}", code)
    code = _HTTP_STATUS_CODES.get(status, "INTERNAL_ERROR")
    return RestError(
        f"API request to endpoint {what} failed with error code {status} != 200."
        f" Response body: '{text[:1000]}'",
        code,
    )


class MlflowFallback:
    """What arcuate's own clients (REST, SQL) share: MLflow's client on the same URIs, built on
    first use, for every call they do not cover."""

    tracking_uri: str
    registry_uri: str
    _mlflow: MlflowClient | None
    _lock: threading.Lock

    @property
    def mlflow(self) -> MlflowClient:
        """MLflow's own client on the same URIs (imports MLflow on first use)."""
        with self._lock:
            if self._mlflow is None:
                from mlflow import MlflowClient

                self._mlflow = MlflowClient(self.tracking_uri, self.registry_uri)
            return self._mlflow


class RestClient(MlflowFallback):
    """The ``MlflowClient`` methods arcuate uses, over a tracking server's REST API.

    Methods it lacks are those of a real ``MlflowClient`` (built on first use with the same
    URIs): the registry, prompts, traces and GenAI entities.
    """

    def __init__(self, tracking_uri: str, registry_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self._base = tracking_uri.rstrip("/")
        self._mlflow: MlflowClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        parts = urlsplit(self.tracking_uri)  # no userinfo, query or fragment: no credentials
        host = parts.netloc.rpartition("@")[2]
        return f"RestClient({parts.scheme}://{host}{parts.path})"

    # -- MLflow's client for everything else ------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # MLflow's internals are not part of what is passed on
            raise AttributeError(name)
        return getattr(self.mlflow, name)

    # -- HTTP ----------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "arcuate"}
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if user and password:
            basic = base64.standard_b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _tls(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if _truthy("MLFLOW_TRACKING_INSECURE_TLS"):
            out["verify"] = False
        elif os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            out["verify"] = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        if os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
            out["cert"] = os.environ["MLFLOW_TRACKING_CLIENT_CERT_PATH"]
        return out

    def request(
        self, method: str, url: str, *, headers_extra: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        """One HTTP request (retried as MLflow's are); a failure to get an answer as a
        :class:`RestError` chained to ``requests``' own exception (no URL in its text)."""
        import requests

        timeout = _env_float("MLFLOW_HTTP_REQUEST_TIMEOUT", 120)
        try:
            headers = {**self._headers(), **(headers_extra or {})}
            if url.startswith("http://"):
                # a connection kept open to an `mlflow server --workers N` (N > 1) answers each
                # later request about 40 ms late (a Nagle/delayed-ACK stall: 60 ms against 15 ms
                # for a new connection, measured on 127.0.0.1); with one worker both cost the
                # same. Over TLS a handshake per request would cost more, so https keeps them.
                headers.setdefault("Connection", "close")
            return _session().request(
                method, url, headers=headers, timeout=timeout, **self._tls(), **kwargs
            )
        except requests.RequestException as exc:
            path = urlsplit(url).path
            raise RestError(
                f"API request to {path} failed with exception {type(exc).__name__}"
            ) from exc

    def call(self, method: str, endpoint: str, body: dict[str, Any] | None = None) -> Any:
        """A JSON call to ``/api/2.0/mlflow/<endpoint>``: GET with ``body`` as the query,
        otherwise ``body`` as JSON; the decoded answer, or :class:`RestError`."""
        return self.call_path(method, f"{_API}/{endpoint}", body)

    def call_path(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A JSON call to ``path`` on the server (see :meth:`call`)."""
        url = f"{self._base}{path}"
        clean = {k: v for k, v in (body or {}).items() if v is not None}
        if method == "GET":
            resp = self.request(method, url, params=clean)
        else:
            resp = self.request(method, url, json=clean)
        if resp.status_code != 200:
            raise _error(resp.status_code, resp.text, path)
        if not resp.text.strip():
            return {}
        try:
            return resp.json()
        except ValueError:
            raise RestError(
                f"API request to endpoint {path} was successful but the response"
                " body was not in a valid JSON format"
            ) from None

    # -- experiments -----------------------------------------------------------------------

    def get_experiment_by_name(self, name: str) -> Entity | None:
        try:
            answer = self.call("GET", "experiments/get-by-name", {"experiment_name": name})
        except RestError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return _experiment(answer.get("experiment") or {})

    def get_experiment(self, experiment_id: str) -> Entity:
        answer = self.call("GET", "experiments/get", {"experiment_id": str(experiment_id)})
        return _experiment(answer.get("experiment") or {})

    def search_experiments(
        self,
        view_type: int | str = "ACTIVE_ONLY",
        max_results: int = 1000,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        view = _view(view_type)
        answer = self.call(
            "POST",
            "experiments/search",
            {
                "max_results": max_results,
                "filter": filter_string,
                "order_by": order_by,
                "page_token": page_token,
                "view_type": view,
            },
        )
        return PagedList(
            (_experiment(e) for e in answer.get("experiments") or ()),
            answer.get("next_page_token"),
        )

    # -- runs ------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Entity:
        answer = self.call("GET", "runs/get", {"run_id": run_id, "run_uuid": run_id})
        return _run(answer.get("run") or {})

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        run_view_type: int | str = "ACTIVE_ONLY",
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        view = _view(run_view_type)
        answer = self.call(
            "POST",
            "runs/search",
            {
                "experiment_ids": [str(e) for e in experiment_ids],
                "filter": filter_string,
                "run_view_type": view,
                "max_results": max_results,
                "order_by": order_by,
                "page_token": page_token,
            },
        )
        return PagedList((_run(r) for r in answer.get("runs") or ()), answer.get("next_page_token"))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        out: list[Metric] = []
        token: str | None = None
        while True:
            answer = self.call(
                "GET",
                "metrics/get-history",
                {"run_id": run_id, "run_uuid": run_id, "metric_key": key, "page_token": token},
            )
            out.extend(Metric.from_json(m) for m in answer.get("metrics") or ())
            token = answer.get("next_page_token")
            if not token:
                return out

    def bulk_history(self, key: str, run_ids: list[str], limit: int) -> bytes | None:
        """The points of ``key`` in ``run_ids`` from the server's bulk endpoint (the one its
        UI uses): its JSON answer, not decoded (the caller bounds how many answers are
        decoded at once); None when the server has no such endpoint."""
        resp = self.request(
            "GET",
            f"{self._base}{_BULK_HISTORY}",
            params={"run_id": run_ids, "metric_key": key, "max_results": limit},
        )
        if resp.status_code != 200:
            return None
        body: bytes = resp.content
        return body

    # -- logged models ---------------------------------------------------------------------

    def get_logged_model(self, model_id: str) -> Entity:
        answer = self.call("GET", f"logged-models/{quote(model_id, safe='')}")
        return _logged_model(answer.get("model") or {})

    def search_logged_models(
        self,
        experiment_ids: list[str],
        filter_string: str | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        answer = self.call(
            "POST",
            "logged-models/search",
            {
                "experiment_ids": [str(e) for e in experiment_ids],
                "filter": filter_string,
                "max_results": max_results,
                "page_token": page_token,
            },
        )
        return PagedList(
            (_logged_model(m) for m in answer.get("models") or ()),
            answer.get("next_page_token"),
        )

    # -- evaluation datasets (found here; their records are read through MLflow's client) ---

    def search_datasets(
        self,
        experiment_ids: list[str] | None = None,
        filter_string: str | None = None,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        """``MlflowClient.search_datasets``: evaluation datasets with their ``dataset_id``,
        ``name`` and ``tags`` (what an import needs to find the ones it wrote)."""
        import json

        answer = self.call_path(
            "POST",
            _DATASETS_SEARCH,
            {
                "experiment_ids": [str(e) for e in experiment_ids or ()],
                "filter_string": filter_string,
                "max_results": max_results,
                "order_by": order_by,
                "page_token": page_token,
            },
        )
        found = []
        for d in answer.get("datasets") or ():
            tags = json.loads(d["tags"]) if d.get("tags") else None
            found.append(
                Entity(dataset_id=d.get("dataset_id", ""), name=d.get("name", ""), tags=tags)
            )
        return PagedList(found, answer.get("next_page_token"))

    # -- writing experiments -----------------------------------------------------------------

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        tag_list = [{"key": k, "value": v} for k, v in (tags or {}).items()]
        answer = self.call(
            "POST",
            "experiments/create",
            {"name": name, "artifact_location": artifact_location, "tags": tag_list},
        )
        return str(answer.get("experiment_id", ""))

    def restore_experiment(self, experiment_id: str) -> None:
        self.call("POST", "experiments/restore", {"experiment_id": str(experiment_id)})

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        body = {"experiment_id": str(experiment_id), "key": key, "value": str(value)}
        self.call("POST", "experiments/set-experiment-tag", body)

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        body = {"experiment_id": str(experiment_id), "key": key}
        self.call("POST", "experiments/delete-experiment-tag", body)

    # -- writing runs ------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: int,
        tags: Iterable[Any],
        run_name: str | None = None,
    ) -> Entity:
        """A new run, as the tracking store's ``create_run`` makes it (no tags added)."""
        body = {
            "experiment_id": str(experiment_id),
            "user_id": user_id,
            "start_time": int(start_time),
            "tags": _kv_json(tags),
            "run_name": run_name,
        }
        return _run(self.call("POST", "runs/create", body).get("run") or {})

    def update_run_info(
        self, run_id: str, run_status: int | str, end_time: int | None, run_name: str | None
    ) -> None:
        """Status, end time and name, as the tracking store's ``update_run_info`` writes them."""
        status = (
            _RUN_STATUS.get(run_status, run_status) if isinstance(run_status, int) else run_status
        )
        body = {
            "run_id": run_id,
            "run_uuid": run_id,
            "status": status,
            "end_time": end_time,
            "run_name": run_name,
        }
        self.call("POST", "runs/update", body)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        """``MlflowClient.update_run``: the status (or the current one) and the end time read
        back, with ``name``."""
        if status is None and name is None:
            return
        info = self.get_run(run_id).info
        self.update_run_info(run_id, status or info.status, info.end_time, name)

    def delete_run(self, run_id: str) -> None:
        self.call("POST", "runs/delete", {"run_id": run_id})

    def restore_run(self, run_id: str) -> None:
        self.call("POST", "runs/restore", {"run_id": run_id})

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        body = {"run_id": run_id, "run_uuid": run_id, "key": key, "value": str(value)}
        self.call("POST", "runs/set-tag", body)

    def delete_tag(self, run_id: str, key: str) -> None:
        self.call("POST", "runs/delete-tag", {"run_id": run_id, "key": key})

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Any] = (),
        params: Iterable[Any] = (),
        tags: Iterable[Any] = (),
    ) -> None:
        """``MlflowClient.log_batch``: cut into requests within MLflow's limits (100 params and
        100 tags with up to 1000 metrics, 1000 entities in all), in its order."""
        points, params, tags = list(metrics), list(params), list(tags)
        if not points and not params and not tags:
            return
        p_batches = [
            params[i : i + _BATCH_PARAMS_TAGS] for i in range(0, len(params), _BATCH_PARAMS_TAGS)
        ]
        t_batches = [
            tags[i : i + _BATCH_PARAMS_TAGS] for i in range(0, len(tags), _BATCH_PARAMS_TAGS)
        ]
        rounds = max(len(p_batches), len(t_batches))
        for n in range(rounds):
            p = p_batches[n] if n < len(p_batches) else []
            t = t_batches[n] if n < len(t_batches) else []
            size = max(min(_BATCH_ENTITIES - len(p) - len(t), _BATCH_METRICS), 0)
            m, points = points[:size], points[size:]
            self._log_batch(run_id, m, p, t)
        while points:
            m, points = points[:_BATCH_METRICS], points[_BATCH_METRICS:]
            self._log_batch(run_id, m, [], [])

    def _log_batch(
        self, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]
    ) -> None:
        body = {
            "run_id": run_id,
            "metrics": [_metric_json(m) for m in metrics],
            "params": _kv_json(params),
            "tags": _kv_json(tags),
        }
        self.call("POST", "runs/log-batch", body)

    def log_inputs(
        self,
        run_id: str,
        datasets: list[Any] | None = None,
        models: list[Any] | None = None,
    ) -> None:
        body = {
            "run_id": run_id,
            "datasets": [_dataset_input_json(d) for d in datasets or ()],
            "models": [{"model_id": m.model_id} for m in models or ()],
        }
        self.call("POST", "runs/log-inputs", body)

    def log_outputs(self, run_id: str, models: list[Any]) -> None:
        body = {
            "run_id": run_id,
            "models": [{"model_id": m.model_id, "step": int(m.step)} for m in models],
        }
        self.call("POST", "runs/outputs", body)

    # -- writing logged models ---------------------------------------------------------------

    def create_logged_model(
        self,
        experiment_id: str,
        name: str | None = None,
        source_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        model_type: str | None = None,
    ) -> Entity:
        """``MlflowClient.create_logged_model``: the first 100 params with it, then the rest."""
        all_params = [{"key": str(k), "value": str(v)} for k, v in (params or {}).items()]
        body = {
            "experiment_id": str(experiment_id),
            "name": name,
            "model_type": model_type,
            "source_run_id": source_run_id,
            "params": all_params[:_MODEL_PARAMS],
            "tags": [{"key": str(k), "value": str(v)} for k, v in (tags or {}).items()],
        }
        model = _logged_model(self.call("POST", "logged-models", body).get("model") or {})
        if len(all_params) > _MODEL_PARAMS:
            self._model_params(model.model_id, all_params[_MODEL_PARAMS:])
            model = self.get_logged_model(model.model_id)
        return model

    def _model_params(self, model_id: str, params: list[dict[str, str]]) -> None:
        endpoint = f"logged-models/{quote(model_id, safe='')}/params"
        for start in range(0, len(params), _MODEL_PARAMS):
            batch = params[start : start + _MODEL_PARAMS]
            self.call("POST", endpoint, {"model_id": model_id, "params": batch})

    def log_model_params(self, model_id: str, params: dict[str, str]) -> None:
        self._model_params(model_id, [{"key": str(k), "value": str(v)} for k, v in params.items()])

    def set_logged_model_tags(self, model_id: str, tags: dict[str, Any]) -> None:
        body = {"tags": [{"key": str(k), "value": str(v)} for k, v in tags.items()]}
        self.call("PATCH", f"logged-models/{quote(model_id, safe='')}/tags", body)

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        endpoint = f"logged-models/{quote(model_id, safe='')}/tags/{quote(key, safe='')}"
        self.call("DELETE", endpoint)

    def finalize_logged_model(self, model_id: str, status: Any) -> Entity:
        name = str(getattr(status, "name", status))
        wire = {v: k for k, v in _MODEL_STATUS.items()}.get(name, name)
        body = {"model_id": model_id, "status": wire}
        answer = self.call("PATCH", f"logged-models/{quote(model_id, safe='')}", body)
        return _logged_model(answer.get("model") or {})

    def delete_logged_model(self, model_id: str) -> None:
        self.call("DELETE", f"logged-models/{quote(model_id, safe='')}")

    # -- artifacts -------------------------------------------------------------------------

    def artifact_repo(self, uri: str) -> ArtifactRepo | None:
        """A repository for ``uri`` when it is served over HTTP (the server's artifact proxy,
        ``mlflow-artifacts:``, or an ``http(s):`` root); None for any other scheme."""
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            return ArtifactRepo(self, uri.rstrip("/"), uri)
        if scheme != "mlflow-artifacts":
            return None
        track = urlsplit(self.tracking_uri)
        if parts.netloc and not parts.port and parts.hostname and parts.hostname.isdigit():
            return None  # MLflow refuses a port without a host: let it say so
        path = f"{track.path}/{_ARTIFACTS}/{parts.path}"
        path = re.sub(r"//+", "/", path).rstrip("/")
        url = urlunsplit((track.scheme, parts.netloc or track.netloc, path, "", ""))
        return ArtifactRepo(self, url, uri)


class FileInfo(Entity):
    def __init__(self, path: str, is_dir: bool, file_size: int | None) -> None:
        super().__init__(path=path, is_dir=is_dir, file_size=file_size)


def _safe(path: str) -> str:
    """A relative artifact path as the server lists it, refused if it could escape."""
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", path):
        raise RestError(f"Invalid path: {path!r}", "INVALID_PARAMETER_VALUE")
    return path


class ArtifactRepo:
    """The files under one artifact URI served over HTTP: MLflow's ``HttpArtifactRepository``
    reads (``list_artifacts``, ``download_artifacts``)."""

    def __init__(self, client: RestClient, url: str, uri: str) -> None:
        self.client = client
        self.url = url
        #: the artifact URI it was made for
        self.uri = uri

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        base, sep, tail = self.url.partition(_ARTIFACTS)
        if not sep:
            raise RestError(f"not an artifact proxy URL: {urlsplit(self.url).path}")
        root = tail.lstrip("/")
        query = posixpath.join(root, path) if path else root
        resp = self.client.request("GET", f"{base}{_ARTIFACTS}", params={"path": query})
        if resp.status_code != 200:
            raise _error(resp.status_code, resp.text, _ARTIFACTS)
        infos = []
        for f in resp.json().get("files") or ():
            rel = _safe(str(f["path"]))
            size = int(f["file_size"]) if "file_size" in f else None
            infos.append(
                FileInfo(posixpath.join(path, rel) if path else rel, bool(f.get("is_dir")), size)
            )
        if (
            len(infos) == 1
            and not infos[0].is_dir
            and path is not None
            and infos[0].path == posixpath.join(path, posixpath.basename(path))
        ):
            return []
        return sorted(infos, key=lambda f: f.path)

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        """One local file uploaded under ``artifact_path`` (a PUT through the server, as
        MLflow's ``HttpArtifactRepository`` does; very large files through MLflow's own)."""
        import mimetypes

        if os.path.getsize(local_file) >= _MULTIPART_BYTES:
            self._mlflow_repo().log_artifact(local_file, artifact_path)
            return
        name = os.path.basename(local_file)
        rel = _safe(posixpath.join(artifact_path, name) if artifact_path else name)
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        url = f"{self.url}/{quote(rel)}"
        with open(local_file, "rb") as data:
            resp = self.client.request("PUT", url, data=data, headers_extra={"Content-Type": mime})
        if resp.status_code != 200:
            raise _error(resp.status_code, resp.text, urlsplit(url).path)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Every file under ``local_dir`` uploaded at its relative path under
        ``artifact_path``."""
        local_dir = os.path.abspath(local_dir)
        for root, _dirs, names in os.walk(local_dir):
            rel = os.path.relpath(root, local_dir).replace(os.sep, "/")
            where = artifact_path if rel == "." else posixpath.join(artifact_path or "", rel)
            for name in sorted(names):
                self.log_artifact(os.path.join(root, name), where or None)

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        url = f"{self.url}/{quote(_safe(artifact_path))}" if artifact_path else f"{self.url}/"
        resp = self.client.request("DELETE", url)
        if resp.status_code != 200:
            raise _error(resp.status_code, resp.text, urlsplit(url).path)

    def _mlflow_repo(self) -> Any:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        c = self.client
        return get_artifact_repository(
            self.uri, tracking_uri=c.tracking_uri, registry_uri=c.registry_uri
        )

    def download_artifacts(self, artifact_path: str, dst_path: str) -> str:
        """One file downloaded into ``dst_path`` (its relative path kept); the local path."""
        rel = _safe(artifact_path)
        local = os.path.join(dst_path, *rel.split("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        url = f"{self.url}/{quote(rel)}"
        resp = self.client.request("GET", url, stream=True)
        try:
            if resp.status_code != 200:
                raise _error(resp.status_code, resp.text, urlsplit(url).path)
            with open(local, "wb") as out:
                for chunk in resp.iter_content(chunk_size=_DOWNLOAD_CHUNK):
                    out.write(chunk)
        finally:
            resp.close()
        return local
