"""Tables in object storage: their ``_delta_log`` read, their data files pre-signed.

Through obstore, the Python face of the Rust ``object_store`` crate that delta-rs itself uses,
so the schemes (``s3://``, ``s3a://``, ``gs://``, ``az://``, ``abfs[s]://``), the storage
options and the cloud's environment variables are the ones deltalake understands. The server
lists and reads the log only; a data file is handed out as the store's own pre-signed GET URL,
so its bytes go from the store to the recipient and never through the server.

Credentials stay where they are: in the storage options or the environment of the server
process. They are never logged or answered (:meth:`ObjectStores.scrub` removes them from any
error text); a pre-signed URL carries only what the store's signature needs (an access key id,
a session token with temporary credentials), and is answered with ``Cache-Control: no-store``.
"""

from __future__ import annotations

import datetime
import io
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final
from urllib.parse import unquote, urlparse

from arcuate.backends.sharing.server.delta import safe_relative
from arcuate.backends.sharing.server.logline import log_field
from arcuate.backends.sharing.server.wire import SharingError, unsupported

log = logging.getLogger("arcuate.server")

#: The schemes served through obstore (deltalake's own spellings of the same stores).
SCHEMES: Final = frozenset({"s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss"})
#: obstore's HTTP client settings: passed as client options, not store configuration.
_CLIENT_KEYS: Final = frozenset(
    {
        "allow_http", "allow_invalid_certificates", "connect_timeout", "default_content_type",
        "http1_only", "http2_keep_alive_interval", "http2_keep_alive_timeout",
        "http2_keep_alive_while_idle", "http2_only", "pool_idle_timeout",
        "pool_max_idle_per_host", "proxy_url", "proxy_ca_certificate", "proxy_excludes",
        "randomize_addresses", "timeout", "user_agent",
    }
)  # fmt: skip
_CLOUD_PREFIXES: Final = ("aws_", "google_", "azure_")
_CLOUD: Final = {"gs": "google_", "az": "azure_", "adl": "azure_", "azure": "azure_"} | {
    "abfs": "azure_",
    "abfss": "azure_",
}
#: Options only deltalake reads (locking, unsafe renames): not needed to read or sign.
_DELTALAKE_ONLY: Final = ("aws_s3_locking", "aws_s3_allow_unsafe", "delta_", "dynamo")
#: A request to the store fails after this long rather than after object_store's 3 minutes:
#: the recipient is waiting on the other end of it.
_RETRY: Final = {"max_retries": 2, "retry_timeout": datetime.timedelta(seconds=20)}
#: Option or environment names whose values are credentials (scrubbed from error text):
#: object_store takes an Azure account key as ``account_key``, ``access_key`` or
#: ``master_key`` (each also ``azure_storage_``-prefixed); an S3 SSE-C key and a private key
#: are secrets too, an access key's id is not.
_SECRET_NAME: Final = re.compile(
    r"(?i)secret|token|password|sas|account_key|access_key(?!_id)|master_key|private_key"
    r"|customer_key|encryption_key"
)


class StoreError(OSError):
    """The store could not be read (unreachable, refused, a missing bucket): the message is
    the store's, without credentials."""


def is_object_store(location: str) -> bool:
    """Whether ``location`` is a URI this module serves."""
    return urlparse(location).scheme.lower() in SCHEMES


@dataclass(frozen=True)
class LogObject:
    """One object of a table's ``_delta_log``: what changes when it is rewritten, and when."""

    stamp: tuple[str, int]  # (e_tag or modification time, size)
    mtime_ms: int


class ObjectStores:
    """One obstore store per bucket (or container), built from the server's storage options.

    Args:
        storage_options: deltalake-style options (``aws_region``, ``AWS_ENDPOINT_URL``,
            ``allow_http``, ...); options only deltalake knows (a locking provider) are left
            out here, since reading and signing do not need them.
    """

    def __init__(self, storage_options: dict[str, str] | None = None) -> None:
        self.storage_options = dict(storage_options or {})
        self._stores: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._secrets = _secret_values(self.storage_options)

    def scrub(self, text: str) -> str:
        """``text`` without any credential of the options or of the cloud environment (and
        without object_store's multi-line debug dump of the same error)."""
        text = text.split("\n\nDebug source:", 1)[0]
        for value in self._secrets:
            text = text.replace(value, "<redacted>")
        return text

    def store(self, scheme: str, bucket: str) -> Any:
        """The (cached) store of one bucket.

        Raises:
            SharingError: UNSUPPORTED_OPERATION when obstore is not installed, or the
                storage options cannot make a store (the cause is logged, scrubbed).
        """
        key = (scheme, bucket)
        with self._lock:
            if key not in self._stores:
                self._stores[key] = self._build(scheme, bucket)
            return self._stores[key]

    def _build(self, scheme: str, bucket: str) -> Any:
        try:
            from obstore.exceptions import BaseError
            from obstore.store import from_url as open_store
        except ImportError:
            log.warning("serving tables in object storage needs obstore: arcuate[objectstore]")
            raise _not_set_up() from None
        from_url: Any = open_store  # its overloads want literal per-cloud config dicts
        url = f"{scheme}://{bucket}"
        config, client = _split_options(scheme, self.storage_options)
        while True:
            try:
                return from_url(url, config=config, client_options=client, retry_config=_RETRY)
            except BaseError as exc:
                unknown = _unknown_key(exc, config)
                if unknown is None:
                    log.warning(
                        "cannot open object store %s: %s",
                        log_field(url),
                        log_field(self.scrub(str(exc)), limit=2048, spaces=True),
                    )
                    raise _not_set_up() from None
                # an option only deltalake reads: reading and signing do without it
                config = {k: v for k, v in config.items() if k != unknown}


def _not_set_up() -> SharingError:
    return unsupported(
        "this table is stored in object storage, which this server is not set up to serve; "
        "ask the provider to check the server's log"
    )


def _unknown_key(exc: Exception, config: dict[str, str]) -> str | None:
    """The key of ``config`` obstore refused (it names it without its cloud prefix)."""
    found = re.search(r"Configuration key: '([^']+)' is not valid", str(exc))
    if found is None:
        return None
    name = found.group(1).lower()
    for key in config:
        bare = next((key[len(p) :] for p in _CLOUD_PREFIXES if key.startswith(p)), key)
        if name in (key, bare):
            return key
    return None


def _split_options(
    scheme: str, options: dict[str, str]
) -> tuple[dict[str, str], dict[str, str] | None]:
    """(store configuration, HTTP client options), as obstore takes them apart.

    deltalake takes both in one mapping, in any case; obstore wants client options apart
    (``allow_http``, also spelled ``AWS_ALLOW_HTTP``) and store keys in lower case. Client
    options given explicitly replace those obstore reads from the environment, so the
    environment's (``AWS_ALLOW_HTTP``, ...) are read here first.
    """
    cloud = _CLOUD.get(scheme, "aws_")
    config: dict[str, str] = {}
    client: dict[str, str] = {}
    for key, value in os.environ.items():
        name = key.lower()
        if name.startswith(cloud) and name[len(cloud) :] in _CLIENT_KEYS:
            client[name[len(cloud) :]] = value
    for key, value in options.items():
        name = key.lower()
        bare = next((name[len(p) :] for p in _CLOUD_PREFIXES if name.startswith(p)), name)
        if bare in _CLIENT_KEYS:
            client[bare] = value
        elif not name.startswith(_DELTALAKE_ONLY):
            config[name] = value
    return config, client or None


def _secret_values(options: dict[str, str]) -> list[str]:
    """Credential values of the options and of the cloud environment, longest first."""
    pairs = list(options.items()) + [
        (k, v) for k, v in os.environ.items() if k.upper().startswith(("AWS_", "AZURE_", "GOOGLE_"))
    ]
    values = {v for k, v in pairs if _SECRET_NAME.search(k) and len(v) >= 6}
    return sorted(values, key=len, reverse=True)


@dataclass
class ObjectRoot:
    """The root of one table in object storage, for the length of one request.

    The ``_delta_log`` listing is made once per request (one LIST call) and gives the stamp
    of every commit, so a request costs one LIST plus the GETs of commits not yet cached.
    """

    uri: str
    stores: ObjectStores
    _scheme: str = field(init=False)
    _bucket: str = field(init=False)
    _prefix: str = field(init=False)
    _listing: dict[str, LogObject] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        parsed = urlparse(self.uri)
        self._scheme, self._bucket = parsed.scheme.lower(), parsed.netloc
        self._prefix = unquote(parsed.path).strip("/")
        self.uri = f"{self._scheme}://{self._bucket}/{self._prefix}".rstrip("/")

    def __str__(self) -> str:
        return self.uri

    @property
    def storage_options(self) -> dict[str, str] | None:
        return self.stores.storage_options or None

    def scrub(self, text: str) -> str:
        return self.stores.scrub(text)

    def _key(self, relative: str) -> str:
        return f"{self._prefix}/{relative}" if self._prefix else relative

    def _store(self) -> Any:
        return self.stores.store(self._scheme, self._bucket)

    # -- the log --------------------------------------------------------------------------
    def log_names(self) -> Iterator[str]:
        return iter(self._log())

    def log_stamp(self, name: str) -> tuple[str, int] | None:
        found = self._log().get(name)
        return found.stamp if found is not None else None

    def _log(self) -> dict[str, LogObject]:
        if self._listing is None:
            store = self._store()  # first: it answers for a missing obstore
            import obstore
            from obstore.exceptions import BaseError

            prefix = self._key("_delta_log") + "/"
            listing: dict[str, LogObject] = {}
            try:
                for chunk in obstore.list(store, prefix, chunk_size=1000):
                    for meta in chunk:
                        name = str(meta["path"])[len(prefix) :]
                        if "/" not in name:
                            ms = int(meta["last_modified"].timestamp() * 1000)
                            stamp = (str(meta.get("e_tag") or ms), int(meta["size"]))
                            listing[name] = LogObject(stamp, ms)
            except BaseError as exc:
                raise StoreError(self.scrub(str(exc))) from None
            self._listing = listing
        return self._listing

    def open_log(self, name: str) -> tuple[BinaryIO, int]:
        """The bytes of one log file and its modification time (ms).

        Raises:
            FileNotFoundError: the file is not there (any more).
        """
        store = self._store()
        import obstore
        from obstore.exceptions import BaseError, NotFoundError

        try:
            result = obstore.get(store, self._key(f"_delta_log/{name}"))
            data = bytes(result.bytes())
            ms = int(result.meta["last_modified"].timestamp() * 1000)
        except NotFoundError:
            raise FileNotFoundError(name) from None
        except BaseError as exc:
            raise StoreError(self.scrub(str(exc))) from None
        return io.BytesIO(data), ms

    # -- data files -------------------------------------------------------------------------
    def relative(self, log_path: str) -> str:
        """The key of a log ``path`` below the table root (unquoted once, as Delta says).

        Raises:
            SharingError: UNSUPPORTED_OPERATION for a path outside the table's prefix (an
                absolute URI elsewhere, ``..``, an absolute path).
        """
        outside = unsupported("a data file of this table lives outside the table directory")
        if "://" in log_path:
            parsed = urlparse(log_path)
            key = unquote(parsed.path).lstrip("/")
            same = parsed.scheme.lower() == self._scheme and parsed.netloc == self._bucket
            if not same or not key.startswith(self._prefix + "/"):
                raise outside
            relative = key[len(self._prefix) + 1 :]
        else:
            relative = unquote(log_path)
        if not safe_relative(relative):
            raise outside
        return relative

    def presign(self, relative: str, ttl_seconds: int) -> str:
        """The store's own pre-signed GET URL of a data file, valid ``ttl_seconds``."""
        store = self._store()
        import obstore
        from obstore.exceptions import BaseError

        ttl = datetime.timedelta(seconds=ttl_seconds)
        try:
            return str(obstore.sign(store, "GET", self._key(relative), ttl))
        except BaseError as exc:
            log.warning(
                "cannot sign a URL for %s: %s",
                log_field(self.uri),
                log_field(self.scrub(str(exc)), limit=2048, spaces=True),
            )
            raise _not_set_up() from None
