"""Settings: resolved once at the edge (explicit arguments > ``ARCUATE_*`` env > defaults).

No module reads ``os.environ`` for arcuate settings after this; the resolved, frozen
:class:`Settings` is passed down.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlparse

from arcuate.backends.registry import check_name
from arcuate.errors import ConfigurationError
from arcuate.format.limits import MAX_CHUNK_BYTES

DEFAULT_WAREHOUSE: Final = "arcuate-warehouse"
#: How an import writes new runs: ``auto`` (the bulk path where it is eligible, else MLflow's
#: public API), ``api`` (always the public API) or ``bulk`` (an error where it is not eligible).
IMPORT_PATHS: Final = ("auto", "api", "bulk")
ImportPath = Literal["auto", "api", "bulk"]
#: Seconds an import waits for another import of the same target before it fails.
DEFAULT_LOCK_WAIT: Final = 600.0
#: Requests an export or import keeps in flight at once to an MLflow server (MLflow's HTTP
#: connection pool holds 10 per host by default: ``MLFLOW_HTTP_POOL_MAXSIZE``).
DEFAULT_REST_CONCURRENCY: Final = 8
MAX_REST_CONCURRENCY: Final = 64

_ENV: Final = {
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "registry_uri": "MLFLOW_REGISTRY_URI",
    "warehouse": "ARCUATE_WAREHOUSE",
    "catalog": "ARCUATE_CATALOG",
    "table_backend": "ARCUATE_TABLE_BACKEND",
    "share_catalog": "ARCUATE_SHARE_CATALOG",
    "chunk_bytes": "ARCUATE_CHUNK_BYTES",
    "endpoint": "ARCUATE_ENDPOINT",
    "progress": "ARCUATE_PROGRESS",
    "retry_seconds": "ARCUATE_RETRY_SECONDS",
    "storage_options": "ARCUATE_STORAGE_OPTIONS",
    "import_path": "ARCUATE_IMPORT_PATH",
    "lock_wait": "ARCUATE_LOCK_WAIT",
    "refuse_pickle": "ARCUATE_REFUSE_PICKLE",
    "rest_concurrency": "ARCUATE_REST_CONCURRENCY",
    "signing_key": "ARCUATE_SIGNING_KEY",
    "signing_certificate": "ARCUATE_SIGNING_CERTIFICATE",
    "signing_certificate_chain": "ARCUATE_SIGNING_CERTIFICATE_CHAIN",
    "require_signature": "ARCUATE_REQUIRE_SIGNATURE",
    "redaction_key": "ARCUATE_REDACTION_KEY",
}

#: Spellings of the ``progress`` setting (``ARCUATE_PROGRESS``): on, off, or automatic.
_PROGRESS: Final[dict[str, bool | None]] = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
    "auto": None,
}
#: How long a server that does not answer is retried before a statement fails (seconds).
DEFAULT_RETRY_SECONDS: Final = 10.0


@dataclass(frozen=True)
class Settings:
    """Everything a statement needs to know about where things live.

    ``tracking_uri``/``registry_uri``: the MLflow stores (registry defaults to tracking).
    ``warehouse``: where the deltalake backend writes tables (a directory or a cloud URI).
    ``catalog``: the local share catalog file (reference-server YAML).
    ``endpoint``: the public URL of the sharing server, written into recipients' profiles.
    ``progress``: progress bars on (True), off (False), or automatic (None: on a terminal
    and in a notebook).
    ``storage_options``: object-store settings for a warehouse in ``s3://``, ``gs://`` or
    ``az://`` (deltalake's keys: ``aws_region``, ``aws_endpoint_url``, ...); credentials are
    best left to the cloud's own environment variables. Never shown in a repr.
    ``spark``: a SparkSession; passing one selects the Spark table backend.
    ``retry_seconds``: how long a sharing or MLflow server that does not answer is retried
    (with back-off) before the statement fails with an error naming it.
    ``table_backend``/``share_catalog``: backend names the registry knows
    (:mod:`arcuate.backends.registry`: built-in, registered or installed plugins).
    ``import_path``: how an import writes new runs (:data:`IMPORT_PATHS`).
    ``lock_wait``: seconds an import waits for another import of the same target.
    ``refuse_pickle``: every import refuses a table holding a pickle-family file, as
    ``REFUSE PICKLE`` does for one statement (the serialization policy, docs/trust.md).
    ``rest_concurrency``: requests kept in flight at once to an MLflow server (metric
    histories read by an export, runs written by an import through the public API).
    ``signing_key``: every CREATE SHARE signs its table with this ECDSA private key (PEM), as
    ``SIGNED BY`` does for one statement (docs/trust.md).
    ``signing_certificate``: with ``signing_key`` (its private key), every CREATE SHARE signs
    with this certificate (PEM), as ``SIGNED BY CERTIFICATE`` does;
    ``signing_certificate_chain``: a PEM file of its intermediate certificates, carried in
    the signature. A statement's own ``SIGNED BY`` replaces all three.
    ``require_signature``: every experiment, model or prompt import must name the provider's key
    (``VERIFIED BY``) and refuses a table that does not verify with it.
    ``redaction_key``: the provider's key for ``REDACT … HASH`` (HMAC-SHA256, docs/trust.md);
    a secret, never shown in a repr, an error or EXPLAIN.
    """

    tracking_uri: str | None = None
    registry_uri: str | None = None
    warehouse: str = DEFAULT_WAREHOUSE
    catalog: str | None = None
    table_backend: str = "deltalake"
    share_catalog: str = "local"
    chunk_bytes: int = 8 * 1024 * 1024
    progress: bool | None = None
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    endpoint: str = "http://127.0.0.1:8080/delta-sharing"
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    import_path: ImportPath = "auto"
    lock_wait: float = DEFAULT_LOCK_WAIT
    refuse_pickle: bool = False
    rest_concurrency: int = DEFAULT_REST_CONCURRENCY
    signing_key: str | None = None
    signing_certificate: str | None = None
    signing_certificate_chain: str | None = None
    require_signature: bool = False
    redaction_key: str | None = field(default=None, repr=False)
    spark: Any = None

    @property
    def catalog_path(self) -> str:
        """The share catalog file: explicit, or ``shares.yaml`` in a local warehouse.

        Raises:
            ConfigurationError: the warehouse is in object storage and no catalog is named
                (the catalog is a local file the server watches).
        """
        if self.catalog:
            return self.catalog
        if self.warehouse.startswith("file://"):
            return str(Path(unquote(urlparse(self.warehouse).path)) / "shares.yaml")
        if "://" in self.warehouse:
            raise ConfigurationError(
                f"the warehouse {self.warehouse} is in object storage, but the share catalog "
                "is a local file: name it",
                hint="catalog='shares.yaml' (--catalog, ARCUATE_CATALOG)",
            )
        return str(Path(self.warehouse) / "shares.yaml")

    @property
    def effective_tracking_uri(self) -> str:
        """The tracking URI, made explicit: MLflow's own default is a sqlite file in the CWD."""
        return self.tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"

    @property
    def effective_registry_uri(self) -> str:
        """Always explicit: implicit resolution can exit the process when pyspark is installed."""
        return self.registry_uri or self.effective_tracking_uri


def env_var(name: str) -> str | None:
    """The environment variable a setting is read from, if it has one."""
    return _ENV.get(name)


def _progress(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    key = str(value).strip().lower()
    if key not in _PROGRESS:
        raise ConfigurationError(
            f"progress must be on, off or auto, got {value!r}. Known: {', '.join(_PROGRESS)}"
        )
    return _PROGRESS[key]


def storage_options(value: object) -> dict[str, str]:
    """Storage options as deltalake takes them (text values), from a mapping or from the JSON
    text of ``ARCUATE_STORAGE_OPTIONS``. Errors name the variable and the key, never a value:
    values are credentials.
    """
    source = "storage_options"
    if isinstance(value, str):
        source = _ENV["storage_options"]
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigurationError(
                f"{source} is not JSON",
                hint='ARCUATE_STORAGE_OPTIONS=\'{"aws_region": "eu-west-1"}\'',
            ) from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{source} must be a JSON object of option names and values")
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, int | float):
            item = str(item)
        if not isinstance(key, str) or not isinstance(item, str):
            raise ConfigurationError(f"{source}: the value of {key!r} must be a string")
        out[key] = item
    return out


def _import_path(value: Any) -> str:
    path = str(value).strip().lower()
    if path not in IMPORT_PATHS:
        raise ConfigurationError(
            f"import_path must be one of {', '.join(IMPORT_PATHS)}, got {value!r}"
            " (ARCUATE_IMPORT_PATH)"
        )
    return path


def _lock_wait(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not seconds >= 0:  # also rejects NaN
        raise ConfigurationError(
            f"lock_wait must be a number of seconds (>= 0), got {value!r} (ARCUATE_LOCK_WAIT)"
        )
    return seconds


def _refuse_pickle(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    flag = _PROGRESS.get(str(value).strip().lower())
    if flag is None:
        raise ConfigurationError(
            f"refuse_pickle must be on or off (true/false, yes/no, 1/0), got {value!r}"
            " (ARCUATE_REFUSE_PICKLE)"
        )
    return flag


def _require_signature(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    flag = _PROGRESS.get(str(value).strip().lower())
    if flag is None:
        raise ConfigurationError(
            f"require_signature must be on or off (true/false, yes/no, 1/0), got {value!r}"
            " (ARCUATE_REQUIRE_SIGNATURE)"
        )
    return flag


def _rest_concurrency(value: Any) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if not 1 <= count <= MAX_REST_CONCURRENCY:
        raise ConfigurationError(
            f"rest_concurrency must be a whole number from 1 to {MAX_REST_CONCURRENCY}, "
            f"got {value!r} (ARCUATE_REST_CONCURRENCY)"
        )
    return count


def _chunk_bytes(value: Any) -> int:
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"chunk_bytes must be a whole number of bytes, got {value!r}"
        ) from None
    if size < 1024:
        raise ConfigurationError("chunk_bytes must be at least 1024")
    if size > MAX_CHUNK_BYTES:  # what a recipient reads in a chunk row
        raise ConfigurationError(f"chunk_bytes must be at most {MAX_CHUNK_BYTES}")
    return size



def _closest(value: str, valid: tuple[str, ...]) -> str:
    near = difflib.get_close_matches(value, valid, n=1)
    return f" Did you mean {near[0]}?" if near else ""


def _retry_seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 <= seconds <= 24 * 3600:  # also rejects NaN
        raise ConfigurationError(
            f"retry_seconds must be a number of seconds from 0 to 86400, got {value!r}"
            f" (ARCUATE_RETRY_SECONDS, --retry-seconds)"
        )
    return seconds


#: How each setting given as text (or a value) is checked and converted. Backend names are
#: checked against the registry, the only list of them.
_CHECKS: Final[dict[str, Callable[[Any], Any]]] = {
    "chunk_bytes": _chunk_bytes,
    "progress": _progress,
    "retry_seconds": _retry_seconds,
    "import_path": _import_path,
    "lock_wait": _lock_wait,
    "refuse_pickle": _refuse_pickle,
    "require_signature": _require_signature,
    "rest_concurrency": _rest_concurrency,
    "storage_options": storage_options,
    "table_backend": lambda name: check_name("table", str(name)),
    "share_catalog": lambda name: check_name("catalog", str(name)),
}


def resolve_settings(base: Settings | None = None, **overrides: Any) -> Settings:
    """Build Settings from explicit values, then the environment, then defaults.

    Raises:
        ConfigurationError: an unknown setting name or an invalid value, with the valid ones.
    """
    names = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        bad = unknown[0]
        raise ConfigurationError(
            f"Unknown setting {bad!r}.{_closest(bad, tuple(sorted(names)))} "
            f"Known: {', '.join(sorted(names))}"
        )
    values: dict[str, Any] = {}
    if base is None:
        for name, env in _ENV.items():
            if env in os.environ and os.environ[env] != "":
                values[name] = os.environ[env]
    else:
        values = {f.name: getattr(base, f.name) for f in dataclasses.fields(Settings)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("spark") is not None and "table_backend" not in overrides:
        values["table_backend"] = "spark"
    for key, check in _CHECKS.items():
        if key in values:
            values[key] = check(values[key])
    for key in ("warehouse", "catalog"):
        if isinstance(values.get(key), os.PathLike):
            values[key] = os.fspath(values[key])
    return Settings(**values)
