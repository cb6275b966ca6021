"""arcuate's own artifact repositories for ``s3://`` and local locations (plain paths and
``file://``), so that reading and writing their files does not import ``mlflow`` (seconds of
start-up and about 100 MiB) nor go through MLflow's S3 repository, which lists a run's tree
directory by directory and lists again before every download.

:class:`S3Repo` and :class:`LocalRepo` have the methods arcuate calls on MLflow's repositories
(``list_artifacts``, ``download_artifacts``, ``log_artifact``, ``log_artifacts``,
``delete_artifacts``) with MLflow's results and layout: the same object keys, content types and
upload arguments; the same files and modes on disk. :meth:`S3Repo.walk` lists a whole tree in
one paginated ``list_objects_v2`` (no delimiter), :class:`Trees` the trees of an export's runs
from one listing of their experiment's location, and :meth:`S3Repo.download_artifacts` is one
``get_object`` streamed to its destination.

S3 is configured as MLflow configures it (``mlflow/store/artifact/s3_artifact_repo.py``):
``MLFLOW_S3_ENDPOINT_URL``, ``MLFLOW_S3_IGNORE_TLS``, ``MLFLOW_S3_UPLOAD_EXTRA_ARGS``,
``MLFLOW_S3_EXPECTED_BUCKET_OWNER``, ``MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE``,
``MLFLOW_EXPERIMENTAL_S3_SIGNATURE_VERSION`` (``s3v4``), and boto3's own chain for the
``AWS_*`` credentials, profile and region. One client per configuration and process, built
under a lock (boto3 builds clients unsafely from several threads at once), then shared by
every thread. ``ARCUATE_MLFLOW_CLIENT=mlflow`` puts MLflow's repositories back.

With obstore installed (``arcuate[objectstore]``), a file's ``put_object`` (below
:data:`PUT_BYTES`) and ``get_object``, and a tree's listing (:meth:`S3Repo.listed`), go
through it instead (:func:`obstore_for`): the same requests to the same URL (endpoint,
region, path-style or virtual-hosted addressing, attempts and credentials as the boto3 client
and session above resolve them; with an explicit ``MLFLOW_S3_ENDPOINT_URL`` without building
that client, and with the keys in the environment and no shared config file without
importing botocore), signed and sent in Rust, about a quarter of boto3's CPU per request.
Deletions and one-level listings stay on boto3, and so does every request of a configuration
only boto3 expresses (upload arguments other than the content headers, metadata and bucket
owner, virtual-hosted addressing at a custom endpoint, a signature other than ``s3v4``, no
credentials, real AWS without a configured region, whose redirects boto3 follows), of a key
obstore's paths cannot hold (a control character, ``..``, an empty part), and a listing whose
keys obstore cannot give back exactly (an empty object: obstore drops a key's trailing
``/``). A CA bundle boto3 would use is trusted beside the system's roots. One difference
remains: through obstore, a ``dir/`` key that holds bytes is listed as the file ``dir``, which
then cannot be read (boto3's listing refuses it by name).

Errors are :class:`~arcuate.backends.mlflow.rest.RestError` (what the callers catch for a
failed MLflow call), naming the file or the listing; never a credential or the endpoint's
user part (:func:`~arcuate.backends.mlflow.connect.redact_uri`).
"""

from __future__ import annotations

import bisect
import contextlib
import datetime
import json
import mimetypes
import os
import posixpath
import re
import shutil
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from arcuate.backends import spooled
from arcuate.backends.mlflow.rest import RestError, _safe, own_clients
from arcuate.config import MAX_REST_CONCURRENCY
from arcuate.format.files import Record

#: MLflow's prefix of a local file still being written (``local_artifact_repo``)
UPLOADING: Final = ".artifact.uploading."
#: Keys per page of a listing (S3's own maximum) and pages of one listing at most: a listing
#: that keeps answering with more pages stops at 10 million keys (a run holding more is not
#: one arcuate can export anyway: every file is a row), or when a page repeats its token.
PAGE_KEYS: Final = 1000
MAX_PAGES: Final = 10_000
#: Files smaller than this go up in one ``put_object``; larger ones through boto3's
#: ``upload_file`` (multipart above s3transfer's threshold, as MLflow's upload does).
PUT_BYTES: Final = 8 * 1024 * 1024
#: Connections the shared client keeps: every thread that may use it at once (the export's
#: files ahead and the REST writers, up to ``rest_concurrency``; the bulk path's uploads, 8).
POOL_CONNECTIONS: Final = MAX_REST_CONCURRENCY + 8
_CHUNK: Final = 1024 * 1024
#: Bytes read from a download's body at a time (a read of ``n`` bytes may allocate ``n``
#: first, on each of the look-ahead's threads)
_READ: Final = 64 * 1024

#: A URL inside botocore's message (an endpoint's user part or a query is redacted)
_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def _env_bool(name: str) -> bool:
    """An MLflow boolean variable (``true``/``false``/``1``/``0``, any case; unset: false)."""
    value = os.environ.get(name)
    if value is None:
        return False
    if value.lower() not in ("true", "false", "1", "0"):
        raise RestError(f"{name} must be one of true, false, 1, 0; got {value!r}")
    return value.lower() in ("true", "1")


def wanted() -> bool:
    """Whether arcuate's repositories are used (not with ``ARCUATE_MLFLOW_CLIENT=mlflow``).

    Raises:
        ConfigurationError: ``ARCUATE_MLFLOW_CLIENT`` is neither ``rest`` nor ``mlflow``.
    """
    return own_clients()


def local_path(uri: str) -> str | None:
    """The directory a local artifact URI names (a plain path or ``file:``; None for any
    other scheme), as MLflow's ``local_file_uri_to_path`` reads it."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme not in ("", "file"):
        return None
    path = urllib.parse.urlparse(uri).path if uri.startswith("file:") else uri
    return urllib.request.url2pathname(path)


def repository(uri: str) -> S3Repo | LocalRepo | None:
    """arcuate's repository for ``uri`` (``s3://``, a local path or ``file://``); None for
    any other scheme or with ``ARCUATE_MLFLOW_CLIENT=mlflow``."""
    if not wanted():
        return None
    if urllib.parse.urlsplit(uri).scheme.lower() == "s3":
        return S3Repo(uri)
    path = local_path(uri)
    return LocalRepo(uri, path) if path is not None else None


class FileInfo:
    """One entry of a listing, as MLflow's ``FileInfo``: relative ``path``, ``is_dir`` and
    ``file_size`` (None for a directory)."""

    __slots__ = ("file_size", "is_dir", "path")

    def __init__(self, path: str, is_dir: bool, file_size: int | None) -> None:
        self.path = path
        self.is_dir = is_dir
        self.file_size = file_size

    def __repr__(self) -> str:
        return f"FileInfo(path={self.path!r}, is_dir={self.is_dir}, file_size={self.file_size})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileInfo) and (self.path, self.is_dir, self.file_size) == (
            other.path,
            other.is_dir,
            other.file_size,
        )

    __hash__ = None  # type: ignore[assignment]


# -- local ----------------------------------------------------------------------------------
def _within(base: str, path: str, shown: str) -> str:
    """``path`` if it stays inside ``base`` once links are resolved (MLflow's
    ``validate_path_within_directory``)."""
    real_base = os.path.realpath(base)
    real = os.path.realpath(path)
    if real != real_base and not real.startswith(real_base.rstrip(os.sep) + os.sep):
        raise RestError(f"Invalid path: {shown!r} leads outside the artifact directory")
    return path


class LocalRepo:
    """The files of a local artifact location: MLflow's ``LocalArtifactRepository``."""

    def __init__(self, uri: str, artifact_dir: str | None = None) -> None:
        self.artifact_uri = uri
        self.artifact_dir = artifact_dir if artifact_dir is not None else str(local_path(uri))

    def __repr__(self) -> str:
        return f"LocalRepo({self.artifact_dir!r})"

    def _path(self, rel: str | None) -> str:
        if not rel:
            return self.artifact_dir
        full = os.path.join(self.artifact_dir, os.path.normpath(_safe(rel)))
        return _within(self.artifact_dir, full, rel)

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        """The entries directly under ``path`` (none for a file or nothing), sorted."""
        here = self._path(path)
        if not os.path.isdir(here):
            return []
        infos = []
        for name in os.listdir(here):
            if name.startswith(UPLOADING):
                continue
            full = os.path.join(here, name)
            rel = os.path.relpath(full, self.artifact_dir).replace(os.sep, "/")
            if os.path.isdir(full):
                infos.append(FileInfo(rel, True, None))
            else:
                infos.append(FileInfo(rel, False, os.path.getsize(full)))
        return sorted(infos, key=lambda f: f.path)

    def download_artifacts(self, artifact_path: str, dst_path: str | None = None) -> str:
        """The local file or directory itself (no ``dst_path``), else a copy under
        ``dst_path`` at its relative path."""
        src = self._path(artifact_path)
        if not os.path.exists(src):
            raise RestError(f"No such artifact: {artifact_path!r}", "RESOURCE_DOES_NOT_EXIST")
        if not dst_path:
            return os.path.abspath(src)
        dest = os.path.join(os.path.abspath(dst_path), *artifact_path.strip("/").split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest)
        return dest

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        """``local_file`` copied (mode and times kept) under ``artifact_path``, through a
        hidden temporary file renamed into place, as MLflow writes it."""
        name = os.path.basename(local_file)
        if name.startswith(UPLOADING):
            raise RestError(f"Invalid artifact file name: {name!r}", "INVALID_PARAMETER_VALUE")
        folder = self._path(artifact_path)
        os.makedirs(folder, exist_ok=True)
        dest = _within(self.artifact_dir, os.path.join(folder, name), name)
        try:
            if os.path.samefile(local_file, dest):
                return
        except FileNotFoundError:
            pass
        fd, temp = tempfile.mkstemp(dir=folder, prefix=UPLOADING)
        try:
            with os.fdopen(fd, "wb") as out, open(local_file, "rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
            shutil.copystat(local_file, temp)
            os.replace(temp, dest)
        except BaseException:
            _remove(temp)
            raise

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Every file under ``local_dir`` copied (``copy2``) at its relative path; folders
        made with the default mode (MLflow's ``shutil_copytree_without_file_permissions``)."""
        dest = self._path(artifact_path)
        os.makedirs(dest, exist_ok=True)
        for here, dirs, names in os.walk(local_dir):
            rel = os.path.relpath(here, local_dir)
            for name in dirs:
                os.makedirs(os.path.join(dest, rel, name), exist_ok=True)
            for name in names:
                shutil.copy2(os.path.join(here, name), os.path.join(dest, rel, name))

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        """The file or tree at ``artifact_path`` (everything: none) removed."""
        target = self._path(artifact_path)
        if os.path.isfile(target) or os.path.islink(target):
            os.remove(target)
        elif os.path.isdir(target):
            shutil.rmtree(target)


# -- S3 ---------------------------------------------------------------------------------------
def _config() -> tuple[Any, ...]:
    """What MLflow builds its client from, read from the environment now."""
    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None
    verify = None if not _env_bool("MLFLOW_S3_IGNORE_TLS") else False
    signature = os.environ.get("MLFLOW_EXPERIMENTAL_S3_SIGNATURE_VERSION", "s3v4")
    addressing = os.environ.get("MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE", "auto")
    return signature, addressing, endpoint, verify


def client() -> Any:
    """The process's boto3 S3 client for the current configuration, built once under a lock
    (then used from any thread: boto3 clients are thread-safe once built)."""
    key = _config()
    found = _clients.get(key)
    if found is not None:
        return found
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = _build(*key)
    return found


def _build(signature: str, addressing: str, endpoint: str | None, verify: bool | None) -> Any:
    import boto3.session
    from botocore.config import Config

    sign: Any = signature
    if signature.lower() == "unsigned":  # public buckets, as MLflow allows
        from botocore import UNSIGNED

        sign = UNSIGNED
    config = Config(
        signature_version=sign,
        s3={"addressing_style": addressing},
        max_pool_connections=POOL_CONNECTIONS,
    )
    # a session of its own: boto3's default session is not safe to build from many threads
    session = boto3.session.Session()
    return session.client("s3", config=config, endpoint_url=endpoint, verify=verify)


def _owner_params() -> dict[str, str]:
    owner = os.environ.get("MLFLOW_S3_EXPECTED_BUCKET_OWNER")
    return {"ExpectedBucketOwner": owner} if owner else {}


def _upload_args(name: str) -> dict[str, Any]:
    """MLflow's upload arguments: the type and encoding guessed from the file's name, the
    bucket owner, then ``MLFLOW_S3_UPLOAD_EXTRA_ARGS`` (JSON)."""
    args: dict[str, Any] = {}
    kind, encoding = mimetypes.guess_type(name)
    if kind is not None:
        args["ContentType"] = kind
    if encoding is not None:
        args["ContentEncoding"] = encoding
    args.update(_owner_params())
    extra = os.environ.get("MLFLOW_S3_UPLOAD_EXTRA_ARGS")
    if extra:
        try:
            parsed = json.loads(extra)
        except ValueError as exc:
            raise RestError(f"MLFLOW_S3_UPLOAD_EXTRA_ARGS is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise RestError("MLFLOW_S3_UPLOAD_EXTRA_ARGS must be a JSON object")
        args.update(parsed)
    return args


def _failed(exc: Exception, what: str) -> RestError:
    """A boto3 failure as a :class:`RestError` naming ``what``, with S3's code and message
    (never the request, its headers or a signed URL)."""
    from arcuate.backends.mlflow.connect import redact_uri

    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error") or {}
        code = str(err.get("Code") or "")
        message = str(err.get("Message") or code or type(exc).__name__)
        mapped = {
            "NoSuchKey": "RESOURCE_DOES_NOT_EXIST",
            "404": "RESOURCE_DOES_NOT_EXIST",
            "NoSuchBucket": "RESOURCE_DOES_NOT_EXIST",
            "AccessDenied": "PERMISSION_DENIED",
            "403": "PERMISSION_DENIED",
            "InvalidAccessKeyId": "UNAUTHENTICATED",
            "SignatureDoesNotMatch": "UNAUTHENTICATED",
        }.get(code, "INTERNAL_ERROR")
        return RestError(f"{what}: {code} {message}".rstrip(), mapped)
    text = _URL.sub(lambda m: redact_uri(m.group(0)), str(exc))
    return RestError(f"{what}: {type(exc).__name__}: {text}")


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


#: Upload arguments obstore sends as the same headers boto3 does (``Metadata`` too: its
#: entries become ``x-amz-meta-*`` either way); any other argument keeps the upload on boto3.
_HEADERS: Final = {
    "ContentType": "Content-Type",
    "ContentEncoding": "Content-Encoding",
    "ContentDisposition": "Content-Disposition",
    "ContentLanguage": "Content-Language",
    "CacheControl": "Cache-Control",
}
#: How long obstore retries one request before it fails (boto3's attempts are kept).
_RETRY_SECONDS: Final = 60
_stores: dict[tuple[Any, ...], Any] = {}
_stores_lock = threading.Lock()


def obstore_for(bucket: str) -> Any | None:
    """obstore's store for ``bucket`` under the current configuration, built once; None when
    boto3 sends the requests (obstore missing, or a configuration only boto3 expresses)."""
    config = _config()
    key = (*config, os.environ.get("MLFLOW_S3_EXPECTED_BUCKET_OWNER"), bucket)
    if key in _stores:
        return _stores[key]
    with _stores_lock:
        if key not in _stores:
            _stores[key] = _build_store(bucket, *config)
    return _stores[key]


def _build_store(
    bucket: str, signature: str, addressing: str, endpoint: str | None, verify: bool | None
) -> Any | None:
    """The store sending what boto3's :func:`client` would: its endpoint, region, addressing
    and retries, the credentials of a boto3 session (refreshed through it), or with an
    explicit endpoint and everything in the environment, those of :func:`_env_settings`."""
    try:
        from obstore.store import S3Store
    except ImportError:
        return None
    if signature.lower() not in ("s3v4", "unsigned"):
        return None
    unsigned = signature.lower() == "unsigned"
    env = _env_settings(unsigned) if endpoint is not None else None
    session: Any = None
    if env is None:
        import botocore.session

        session = botocore.session.Session()
    if endpoint is None:  # boto3's own resolution (AWS, a configured endpoint): its client's
        meta = client().meta
        url, region, retries = meta.endpoint_url, meta.region_name, meta.config.retries or {}
    elif env is not None:  # the variables boto3 would read, and nothing else sets them
        url, region, retries = endpoint, env.region, env.retries
    else:  # what boto3's client makes of an explicit endpoint, without building one
        url, region = endpoint, session.get_config_variable("region")
        retries = {"mode": session.get_config_variable("retry_mode")}
        if session.get_config_variable("max_attempts"):
            retries["total_max_attempts"] = session.get_config_variable("max_attempts")
    host = urllib.parse.urlsplit(url).hostname or ""
    aws = endpoint is None and host.endswith(".amazonaws.com")
    virtual = addressing == "virtual" or (addressing == "auto" and aws)
    if virtual and not aws:
        from botocore.utils import is_valid_ipv4_endpoint_url, is_valid_ipv6_endpoint_url

        if not (is_valid_ipv4_endpoint_url(url) or is_valid_ipv6_endpoint_url(url)):
            return None  # the bucket in the host name: obstore would want it in the endpoint
    # every setting spelled out: obstore also reads the AWS_* environment, where
    # AWS_ENDPOINT_URL_S3 would otherwise win over the endpoint boto3 resolved
    config: dict[str, Any] = {
        "region": region or "us-east-1",
        "virtual_hosted_style_request": virtual,
        "skip_signature": signature.lower() == "unsigned",
    }
    if not aws:
        config["endpoint"] = config["aws_endpoint_url_s3"] = url
    elif os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
        return None  # set, yet not boto3's endpoint (it was told to ignore them)
    elif not session.get_config_variable("region"):
        return None  # boto3 follows S3's redirect to the bucket's region; obstore does not
    options: dict[str, Any] = {"allow_http": url.startswith("http:")}
    bundle = env.ca_bundle if env is not None else session.get_config_variable("ca_bundle")
    if verify is False:
        options["allow_invalid_certificates"] = True
    elif bundle:
        try:  # trusted beside the system's roots (boto3 trusts the bundle alone)
            options["root_certificate"] = Path(bundle).read_bytes()
        except OSError:
            return None  # boto3 names the missing bundle
    owner = os.environ.get("MLFLOW_S3_EXPECTED_BUCKET_OWNER")
    if owner:
        options["default_headers"] = {"x-amz-expected-bucket-owner": owner}
    # boto3's attempts: AWS_MAX_ATTEMPTS, else its retry mode's (standard 3, legacy 5)
    attempts = int(
        retries.get("total_max_attempts") or (5 if retries.get("mode") == "legacy" else 3)
    )
    retry = {"max_retries": max(0, attempts - 1),
             "retry_timeout": datetime.timedelta(seconds=_RETRY_SECONDS)}  # fmt: skip
    make: Any = S3Store  # its overloads want literal config dicts
    if config["skip_signature"]:
        return make(bucket, config=config, client_options=options, retry_config=retry)
    if env is not None:
        config.update(env.credentials)
        return make(bucket, config=config, client_options=options, retry_config=retry)
    from obstore.auth.boto3 import Boto3CredentialProvider

    try:
        provider = Boto3CredentialProvider(session)
    except ValueError:  # no credentials at all: boto3 says so in its own words
        return None
    return make(bucket, config=config, client_options=options, retry_config=retry,
                credential_provider=provider)  # fmt: skip


@dataclass(frozen=True)
class _EnvSettings:
    """boto3's settings for an explicit endpoint, read from the environment alone."""

    region: str | None
    ca_bundle: str | None
    retries: dict[str, Any]
    #: obstore's names for the keys (empty for unsigned requests)
    credentials: dict[str, str]


def _env_settings(unsigned: bool) -> _EnvSettings | None:
    """What boto3 would use, read from the ``AWS_*`` variables as botocore reads them, when
    nothing else can set it: the keys in ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``
    (the first place botocore's chain looks, and it stops there), no shared config file (or
    an empty one, such as ``/dev/null``), no profile and no defaults mode. None otherwise:
    botocore resolves them (a fifth of a second of CPU to import it)."""
    env = os.environ
    config_file = os.path.expanduser(env.get("AWS_CONFIG_FILE", "~/.aws/config"))
    if (
        not config_file
        or (os.path.exists(config_file) and os.path.getsize(config_file) > 0)
        or env.get("AWS_PROFILE")
        or env.get("AWS_DEFAULT_PROFILE")
        or env.get("AWS_DEFAULTS_MODE", "legacy") != "legacy"
        or "AWS_CREDENTIAL_EXPIRATION" in env
    ):
        return None
    retries: dict[str, Any] = {"mode": env.get("AWS_RETRY_MODE") or "standard"}
    if attempts := env.get("AWS_MAX_ATTEMPTS"):
        try:
            retries["total_max_attempts"] = int(attempts)
        except ValueError:
            return None  # botocore words the error
    credentials: dict[str, str] = {}
    if not unsigned:
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            return None
        credentials = {"access_key_id": key, "secret_access_key": secret}
        # botocore takes the first of these that is set, even empty (then it sends none)
        token = next((env[n] for n in ("AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN") if n in env), "")
        if token:
            credentials["session_token"] = token
    return _EnvSettings(
        env.get("AWS_DEFAULT_REGION") or None,
        env.get("AWS_CA_BUNDLE") or None,
        retries,
        credentials,
    )


def _attributes(args: dict[str, Any]) -> dict[str, str] | None:
    """boto3's upload arguments as obstore's attributes; None for one obstore cannot send."""
    out: dict[str, str] = {}
    for name, value in args.items():
        if name == "ExpectedBucketOwner" and {name: value} == _owner_params():
            continue  # the store sends it with every request
        if name == "Metadata" and isinstance(value, dict):
            out.update({str(k): str(v) for k, v in value.items()})
        elif name in _HEADERS and isinstance(value, str):
            out[_HEADERS[name]] = value
        else:
            return None
    return out


def _store_errors() -> tuple[type[Exception], ...]:
    """What obstore raises: its own errors, and Python's ``OSError``s (a missing object is a
    ``FileNotFoundError``, an unreachable store a ``ConnectionError``)."""
    from obstore.exceptions import BaseError

    return (BaseError, OSError)


def _store_failed(exc: Exception, what: str) -> RestError:
    """An obstore failure as :func:`_failed` words a boto3 one: ``what``, then the store's
    message (its debug dump cut, URLs without userinfo or credentials in their query)."""
    from obstore import exceptions as oe

    from arcuate.backends.mlflow.connect import redact_uri

    codes = (
        ((oe.NotFoundError, FileNotFoundError), "RESOURCE_DOES_NOT_EXIST"),
        ((oe.PermissionDeniedError, PermissionError), "PERMISSION_DENIED"),
        ((oe.UnauthenticatedError,), "UNAUTHENTICATED"),
    )
    code = next((c for kinds, c in codes if isinstance(exc, kinds)), "INTERNAL_ERROR")
    text = str(exc).split("\n\nDebug source:", 1)[0].strip()
    text = _URL.sub(lambda m: redact_uri(m.group(0)), " ".join(text.split()))
    return RestError(f"{what}: {type(exc).__name__}: {text}"[:2000], code)


class S3Repo:
    """The objects under one ``s3://bucket/prefix``: MLflow's ``S3ArtifactRepository``."""

    def __init__(self, uri: str) -> None:
        parts = urllib.parse.urlparse(uri)
        if parts.scheme.lower() != "s3" or not parts.netloc:
            raise RestError(f"Not an S3 URI: {uri!r}", "INVALID_PARAMETER_VALUE")
        self.artifact_uri = uri
        self.bucket = parts.netloc
        #: the prefix, without its leading or trailing ``/`` (as MLflow joins keys)
        self.root = parts.path.removeprefix("/").rstrip("/")

    def __repr__(self) -> str:
        return f"S3Repo('s3://{self.bucket}/{self.root}')"

    def _key(self, rel: str | None) -> str:
        if not rel:
            return self.root
        return posixpath.join(self.root, rel) if self.root else rel

    def _where(self, rel: str | None = None) -> str:
        return f"s3://{self.bucket}/{self._key(rel)}"

    def _pages(self, prefix: str, delimiter: bool) -> Any:
        """The pages of one listing under ``prefix``, bounded (:data:`MAX_PAGES`, and a page
        that repeats a continuation token ends it with an error)."""
        s3 = client()
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": PAGE_KEYS}
        args.update(_owner_params())
        if delimiter:
            args["Delimiter"] = "/"
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            try:
                page = s3.list_objects_v2(**args)
            except _boto_errors() as exc:
                raise _failed(exc, f"could not list {self._where()}") from None
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            if token in seen:
                raise RestError(f"the listing of {self._where()} repeats a page: stopped")
            seen.add(token)
            args["ContinuationToken"] = token
        raise self._unending(MAX_PAGES)

    def _unending(self, pages: int) -> RestError:
        """The error of a listing cut off after ``pages`` pages' worth of keys."""
        return RestError(
            f"the listing of {self._where()} did not end after {pages} pages of "
            f"{PAGE_KEYS} keys: stopped"
        )

    def _relative(self, key: str, start: str) -> str:
        """``key`` relative to ``start`` (a prefix ending in ``/`` or empty), refused when
        the store answers a key outside it or one whose path could escape a directory
        (``..``, an empty part, a leading ``/``)."""
        if not key.startswith(start):
            raise RestError(
                f"the store listed {key!r} under {self._where()}, which does not begin with "
                "the prefix asked for"
            )
        rel = key[len(start) :]
        parts = rel.split("/")
        if not rel or any(p in ("", ".", "..") for p in parts) or "\\" in rel:
            raise RestError(
                f"object {key!r} under {self._where()} has a path arcuate refuses to read "
                "(an empty, '.' or '..' part, or a backslash)",
                "INVALID_PARAMETER_VALUE",
            )
        return rel

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        """The entries directly under ``path`` (one level, as MLflow lists), sorted."""
        base = self._key(_safe(path) if path else None).rstrip("/")
        prefix = f"{base}/" if base else ""
        start = f"{self.root}/" if self.root else ""
        infos = []
        for page in self._pages(prefix, delimiter=True):
            for p in page.get("CommonPrefixes") or ():
                rel = self._relative(str(p["Prefix"]).removesuffix("/"), start)
                infos.append(FileInfo(rel, True, None))
            for obj in page.get("Contents") or ():
                key, size = str(obj["Key"]), int(obj["Size"])
                if key.endswith("/") and size == 0:
                    continue  # a "directory" marker
                infos.append(FileInfo(self._relative(key, start), False, size))
        return sorted(infos, key=lambda f: f.path)

    def walk(self, path: str | None = None) -> list[FileInfo]:
        """Every file under ``path``, recursively, in one listing without a delimiter (its
        pages), sorted by path. Empty ``key/`` directory markers are skipped (as MLflow's
        listing does); a ``key/`` object that holds bytes is refused, as are keys with an
        empty, ``.`` or ``..`` part.
        """
        base = self._key(_safe(path) if path else None).rstrip("/")
        prefix = f"{base}/" if base else ""
        listed = self.listed(prefix, MAX_PAGES)
        objects: Iterable[tuple[str, int]] = (
            listed
            if listed is not None
            else (
                (str(obj["Key"]), int(obj["Size"]))
                for page in self._pages(prefix, delimiter=False)
                for obj in page.get("Contents") or ()
            )
        )
        return self.files_of(objects)

    def listed(self, prefix: str, pages: int) -> list[tuple[str, int]] | None:
        """Every (key, size) under ``prefix`` (empty or ending in ``/``) as obstore lists it,
        when that is exactly what boto3's listing says; None when boto3 must list: no store,
        a key obstore's paths cannot hold (``..``, an empty part, a control character), or an
        empty object, a key twice, or a key that is also a folder of another (obstore drops a
        key's trailing ``/``, so an empty ``dir/`` marker would read as a file).

        Raises:
            RestError: the listing failed, or went on past ``pages`` pages' worth of keys.
        """
        store = obstore_for(self.bucket)
        if store is None:
            return None
        from obstore import list as list_objects
        from obstore.exceptions import InvalidPathError

        found: list[tuple[str, int]] = []
        try:
            for chunk in list_objects(store, prefix or None, chunk_size=PAGE_KEYS):
                found += ((str(meta["path"]), int(meta["size"])) for meta in chunk)
                if len(found) > pages * PAGE_KEYS:
                    raise self._unending(pages)
        except (ValueError, InvalidPathError):
            return None
        except _store_errors() as exc:
            raise _store_failed(exc, f"could not list {self._where()}") from None
        keys = {key for key, _ in found}
        if len(keys) < len(found) or any(size == 0 for _, size in found):
            return None
        for key in keys:
            at = key.find("/", len(prefix))
            while at >= 0:
                if key[:at] in keys:
                    return None
                at = key.find("/", at + 1)
        return found

    def files_of(self, objects: Iterable[tuple[str, int]]) -> list[FileInfo]:
        """What :meth:`walk` makes of the (key, size) pairs a listing answered, sorted."""
        start = f"{self.root}/" if self.root else ""
        infos = []
        for key, size in objects:
            if key.endswith("/"):
                if size == 0:
                    continue
                raise RestError(
                    f"object {key!r} under {self._where()} ends in '/' but holds {size} "
                    "bytes: neither a directory marker nor a file arcuate can name",
                    "INVALID_PARAMETER_VALUE",
                )
            infos.append(FileInfo(self._relative(key, start), False, size))
        return sorted(infos, key=lambda f: f.path)

    def download_artifacts(self, artifact_path: str, dst_path: str | None = None) -> str:
        """One file (or every file of a directory) downloaded under ``dst_path`` at its
        relative path; the local path. A file is one ``get_object`` streamed to disk, checked
        against the length the store announced."""
        rel = _safe(artifact_path).strip("/")
        dst = os.path.abspath(dst_path) if dst_path else tempfile.mkdtemp(prefix="arcuate-s3-")
        local = os.path.join(dst, *rel.split("/"))
        try:
            self._get(rel, local)
            return local
        except RestError as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            files = self.walk(rel)
            if not files:
                raise RestError(
                    f"No such artifact: {rel!r} in {self._where()}", "RESOURCE_DOES_NOT_EXIST"
                ) from None
        for f in files:
            self._get(f.path, os.path.join(dst, *f.path.split("/")))
        return local

    def _get(self, rel: str, local: str) -> None:
        """One object streamed to ``local`` (nothing is left there on failure), through
        obstore when :func:`obstore_for` gives a store, else boto3."""
        key = self._key(rel)
        what = f"could not download s3://{self.bucket}/{key}"
        store = obstore_for(self.bucket)
        close: Any = None
        chunks: Iterator[Any] | None = None
        if store is not None:
            from obstore import get

            failures, failed = _store_errors(), _store_failed
            try:
                answer = get(store, key)
                expected = int(answer.meta["size"])
                chunks = iter(answer.stream(min_chunk_size=_READ))
            except ValueError:
                pass  # a key obstore's paths cannot hold (a control character): boto3's
            except failures as exc:
                raise failed(exc, what) from None
        if chunks is None:
            failures, failed = _boto_errors(), _failed
            try:
                found = client().get_object(Bucket=self.bucket, Key=key, **_owner_params())
            except failures as exc:
                raise failed(exc, what) from None
            expected = int(found.get("ContentLength", -1))
            body = found["Body"]
            chunks, close = iter(lambda: body.read(_READ), b""), body.close
        try:
            got = 0
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "wb") as out:
                while True:
                    try:  # only the store's reads are its failures (a local one is raised)
                        chunk = next(chunks)
                    except StopIteration:
                        break
                    except failures as exc:
                        raise failed(exc, what) from None
                    out.write(chunk)
                    got += len(chunk)
            if expected >= 0 and got != expected:
                raise RestError(f"{what}: it ended after {got} of {expected} bytes")
        except BaseException:
            _remove(local)
            raise
        finally:
            if close is not None:
                close()

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        """``local_file`` put at ``<prefix>/<artifact_path>/<its name>``."""
        name = os.path.basename(local_file)
        self.put_file(local_file, posixpath.join(artifact_path, name) if artifact_path else name)

    def put_file(self, local_file: str, path: str) -> None:
        """``local_file`` put at ``<prefix>/<path>`` with MLflow's upload arguments (the type
        guessed from the name there): one ``put_object``, or boto3's ``upload_file`` (parts)
        from :data:`PUT_BYTES`. Without a staging directory named after the destination."""
        if os.path.getsize(local_file) < PUT_BYTES:
            with open(local_file, "rb") as body:
                self._put(body.read(), path)
            return
        key, args = self._key(_safe(path)), _upload_args(posixpath.basename(path))
        try:
            client().upload_file(Filename=local_file, Bucket=self.bucket, Key=key, ExtraArgs=args)
        except _boto_errors() as exc:
            raise _failed(exc, f"could not upload {path!r} to s3://{self.bucket}/{key}") from None

    def _put(self, data: bytes, path: str) -> None:
        """``data`` (below :data:`PUT_BYTES`) put at ``<prefix>/<path>`` in one request:
        obstore's where it sends what boto3 would, else boto3's ``put_object``."""
        key = self._key(_safe(path))
        args = _upload_args(posixpath.basename(path))
        what = f"could not upload {path!r} to s3://{self.bucket}/{key}"
        store = obstore_for(self.bucket)
        attributes = _attributes(args) if store is not None else None
        if store is not None and attributes is not None:
            from obstore import put

            try:
                put(store, key, data, attributes=attributes)
                return
            except ValueError:
                pass  # a key obstore's paths cannot hold (a control character): boto3's
            except _store_errors() as exc:
                raise _store_failed(exc, what) from None
        try:
            client().put_object(Bucket=self.bucket, Key=key, Body=data, **args)
        except _boto_errors() as exc:
            raise _failed(exc, what) from None

    def put_spooled(self, f: Record, path: str) -> None:
        """A spooled file (:mod:`arcuate.backends.spooled`) put at ``<prefix>/<path>``, as
        :meth:`put_file` puts a file; a packed one (small) from its bytes."""
        if not spooled.packed(f):
            self.put_file(f["local"], path)
            return
        self._put(spooled.packed_bytes(f), path)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Every file under ``local_dir`` put at its relative path under ``artifact_path``."""
        local_dir = os.path.abspath(local_dir)
        for here, _dirs, names in os.walk(local_dir):
            rel = os.path.relpath(here, local_dir).replace(os.sep, "/")
            folder = artifact_path if rel == "." else posixpath.join(artifact_path or "", rel)
            for name in names:
                self.log_artifact(os.path.join(here, name), folder or None)

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        """Every object at or under ``artifact_path`` (everything: none) deleted."""
        base = self._key(_safe(artifact_path) if artifact_path else None)
        keys = []
        for page in self._pages(base, delimiter=False):
            for obj in page.get("Contents") or ():
                key = str(obj["Key"])
                if not base or key == base or key.startswith(base.rstrip("/") + "/"):
                    keys.append(key)
        s3 = client()
        for i in range(0, len(keys), PAGE_KEYS):
            batch = [{"Key": k} for k in keys[i : i + PAGE_KEYS]]
            try:
                s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch}, **_owner_params())
            except _boto_errors() as exc:
                raise _failed(exc, f"could not delete under {self._where()}") from None


#: A run's or logged model's artifact root under its experiment's location:
#: ``<location>/<run id>/artifacts`` or ``<location>/models/m-<id>/artifacts``.
_OWNED: Final = re.compile(r"(.*)/(?:[0-9a-f]{32}|models/m-[0-9a-f]{32})/artifacts")
#: Pages one listing of an experiment's location may take before it is given up for a
#: listing per run (an experiment far larger than what is read of it).
TREE_PAGES: Final = 10


class Trees:
    """The files of the runs and logged models of one export, from one listing of their
    experiment's location instead of one per run (``list_objects_v2`` is a request per
    page, and an S3-compatible store may scan the bucket for each: 200 runs, 199 requests
    fewer). A location is listed whole once a second root under it is asked for, and only
    if it ends within :data:`TREE_PAGES` pages; otherwise each root is walked alone, as
    :meth:`S3Repo.walk` would. Shared by the export's listing threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: per location seen: a lock its one listing is made under
        self._busy: dict[tuple[str, str], threading.Lock] = {}
        self._trees: dict[tuple[str, str], list[tuple[str, int]] | None] = {}

    def walk(self, repo: S3Repo) -> list[FileInfo]:
        """Every file under ``repo``'s root, as :meth:`S3Repo.walk` lists it."""
        found = _OWNED.fullmatch(repo.root)
        if found is None:
            return repo.walk()
        parent = (repo.bucket, found.group(1))
        with self._lock:
            first = parent not in self._busy
            busy = self._busy.setdefault(parent, threading.Lock())
        if first:
            return repo.walk()
        with busy:  # one listing of the location; the other threads wait for it
            if parent not in self._trees:
                self._trees[parent] = self._list(repo, parent[1])
        tree = self._trees[parent]
        if tree is None:
            return repo.walk()
        prefix = f"{repo.root}/"
        at = bisect.bisect_left(tree, (prefix, -1))
        end = bisect.bisect_left(tree, (prefix[:-1] + chr(ord("/") + 1), -1))
        return repo.files_of(tree[at:end])

    @staticmethod
    def _list(repo: S3Repo, location: str) -> list[tuple[str, int]] | None:
        """Every (key, size) under ``location``, sorted; None past :data:`TREE_PAGES` pages,
        or when the location cannot be listed (a policy may allow listing only the runs'
        own prefixes): each run is then listed alone, and its own failure is reported."""
        whole = S3Repo(f"s3://{repo.bucket}/{location}")
        found: list[tuple[str, int]] = []
        try:
            listed = whole.listed(f"{location}/", TREE_PAGES)
            if listed is not None:
                return sorted(listed)
            for count, page in enumerate(whole._pages(f"{location}/", delimiter=False)):
                if count >= TREE_PAGES:
                    return None
                found += ((str(o["Key"]), int(o["Size"])) for o in page.get("Contents") or ())
        except RestError:
            return None
        return sorted(found)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
        os.remove(path)
