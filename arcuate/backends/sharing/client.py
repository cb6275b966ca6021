"""arcuate's own client for the read requests of the Delta Sharing protocol.

The official ``delta_sharing`` package imports pandas (and ``pyspark.sql`` when it is installed)
at its top: about 0.9 s before the first request. This module speaks the few requests a
recipient needs with ``requests`` alone: list shares, schemas and tables (every page), a
table's metadata (``GET .../metadata``) and its files (``POST .../query``, answered as NDJSON:
a protocol line, a metaData line, one line per file, and the ``delta-table-version`` header).
It sends what the official client sends (a ``User-Agent``, ``delta-sharing-capabilities:
responseformat=parquet``, an empty JSON body to ``query``) and reads profiles of version 1
(bearer token) and version 2 (``bearer_token`` and ``oauth_client_credentials``; the access
token is asked of the profile's token endpoint and asked again before it expires).

Every answer is hostile until checked: a body, a line and the number of files are bounded
(:mod:`arcuate.format.limits`); each field must have its type, or the request fails with a
:class:`SharingAnswerError` naming the request, the line and the field, never a value (a file
line holds a signed URL). An HTTP error is a :class:`SharingHTTPError` carrying the status,
for the caller's retries (:mod:`arcuate.backends.retry`) and messages. Nothing is retried
here: the caller bounds retries by time.
"""

from __future__ import annotations

import base64
import json
import platform
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode, urlsplit

from arcuate.backends.retry import endpoint_text, origin
from arcuate.errors import BackendError
from arcuate.format.limits import (
    MAX_FILE_BYTES,
    MAX_SHARED_TABLE_FILES,
    MAX_SHARING_ANSWER_BYTES,
    MAX_SHARING_LINE_BYTES,
)

if TYPE_CHECKING:
    import requests

#: Requests to the sharing server's API: connecting to a server that is up takes milliseconds,
#: so a server that does not accept the connection in 10 s is taken to be down (and retried).
API_TIMEOUT: Final = (10, 300)
#: The reader versions of the table protocol this client reads (the official client's bound).
MAX_READER_VERSION: Final = 3
CAPABILITIES_HEADER: Final = "delta-sharing-capabilities"
VERSION_HEADER: Final = "delta-table-version"
#: A token endpoint's answer and an error answer are a few hundred bytes of JSON.
_SMALL_ANSWER: Final = 64 * 1024
#: An access or bearer token: visible ASCII only (it goes into a header), and not huge.
_MAX_TOKEN_LENGTH: Final = 16 * 1024
#: A token is asked for again when less than this part of its life, or 600 s, is left.
_RENEW_SECONDS: Final = 600
_PIECE: Final = 64 * 1024
#: How much of a server's error message goes into an arcuate error.
_MESSAGE_CHARS: Final = 300

PROFILE_TYPES: Final = ("bearer_token", "oauth_client_credentials")


class ProfileProblem(ValueError):
    """A profile this client cannot use; the text names the field, never a value."""


class SharingAnswerError(BackendError):
    """The sharing server answered, but not in the protocol's terms (ARC730).

    ``problem`` is the short reason (the line and the field), for a listing row.
    """

    code = "ARC730"

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class _Status:
    status_code: int


class SharingHTTPError(Exception):
    """The server answered an HTTP error. ``response.status_code`` is the status (what
    :func:`arcuate.backends.retry.http_status` reads); the text is the status and the server's
    own message, cut short."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.response = _Status(status)
        self.status = status


@dataclass(frozen=True)
class Profile:
    """A Delta Sharing profile (``shareCredentialsVersion`` 1 or 2); secrets never repr'd."""

    version: int
    endpoint: str
    type: str = "bearer_token"
    bearer_token: str | None = field(default=None, repr=False)
    expiration_time: str | None = None
    token_endpoint: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scope: str | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Profile:
        """The profile of a parsed profile file.

        Raises:
            KeyError: a required field is missing (its name is the argument).
            ProfileProblem: a field has the wrong type or value, or the profile is of a
                version or type this client does not read.
        """
        version = _profile_version(doc.get("shareCredentialsVersion"))
        endpoint = _url(_field(doc, "endpoint"), "endpoint")
        if version == 1:
            kind = "bearer_token"
        else:
            kind = _field(doc, "type")
            if kind not in PROFILE_TYPES:
                raise ProfileProblem(
                    f"its 'type' is not one arcuate reads ({', '.join(PROFILE_TYPES)})"
                )
        if kind == "bearer_token":
            expiration = doc.get("expirationTime")
            return cls(
                version,
                endpoint,
                bearer_token=_token(_field(doc, "bearerToken"), "bearerToken"),
                expiration_time=expiration if isinstance(expiration, str) else None,
            )
        scope = doc.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise ProfileProblem("its 'scope' is not text")
        return cls(
            version,
            endpoint,
            type=kind,
            token_endpoint=_url(_field(doc, "tokenEndpoint"), "tokenEndpoint"),
            client_id=_field(doc, "clientId"),
            client_secret=_field(doc, "clientSecret"),
            scope=scope,
        )


def _profile_version(value: Any) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 4:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileProblem("its 'shareCredentialsVersion' is not a whole number")
    if value not in (1, 2):
        raise ProfileProblem(
            f"its 'shareCredentialsVersion' is {value}; arcuate reads versions 1 and 2"
        )
    return value


def _field(doc: dict[str, Any], name: str) -> str:
    """A required text field of a profile (KeyError names it when it is missing or empty)."""
    value = doc.get(name)
    if value is None or value == "":
        raise KeyError(name)
    if not isinstance(value, str):
        raise ProfileProblem(f"its {name!r} is not text")
    return value


def _url(value: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProfileProblem(f"its {name!r} is not an http:// or https:// URL")
    return value.rstrip("/")


def _token(value: str, name: str) -> str:
    if len(value) > _MAX_TOKEN_LENGTH or not _header_safe(value):
        raise ProfileProblem(f"its {name!r} is not a token (an HTTP header cannot carry it)")
    return value


def _header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable() and " " not in value


# -- what the server lists ---------------------------------------------------------------------
@dataclass(frozen=True)
class Share:
    """A listed share; its name is as the server sent it (the caller checks it)."""

    name: object


@dataclass(frozen=True)
class Schema:
    name: object
    share: object


@dataclass(frozen=True)
class Table:
    name: object
    schema: object
    share: object


@dataclass(frozen=True)
class Page:
    """One page of a listing: its items, and the token of the next page (None at the end)."""

    items: list[Any]
    next_page_token: str | None


@dataclass(frozen=True)
class TableMetadata:
    """The ``metaData`` of a table, checked."""

    id: str
    name: str | None
    description: str | None
    schema_string: str
    partition_columns: list[str]
    configuration: dict[str, str]


@dataclass(frozen=True)
class SharedFile:
    """One ``file`` line of a query answer (``url`` is a signed URL: a credential)."""

    url: str = field(repr=False)
    id: str
    size: int
    partition_values: dict[str, str | None]
    stats: str | None


@dataclass(frozen=True)
class TableAnswer:
    """A table's version, reader version and metadata; its files for a ``query``."""

    version: int
    min_reader_version: int
    metadata: TableMetadata
    files: list[SharedFile] = field(default_factory=list)


# -- OAuth client credentials ------------------------------------------------------------------
@dataclass
class _AccessToken:
    value: str = field(repr=False)
    expires_at: float
    lifetime: float

    def fresh(self) -> bool:
        left = self.expires_at - time.time()
        return left > min(_RENEW_SECONDS, self.lifetime / 2)


#: Access tokens by (token endpoint, client id, secret, scope): a process reuses a token
#: across statements until it is due for renewal, as the official client does.
_TOKENS: dict[tuple[str, str, str, str | None], _AccessToken] = {}
_TOKENS_LOCK: Final = threading.Lock()


def user_agent() -> str:
    """What the client calls itself: arcuate, then the official client's fields."""
    import pyarrow

    from arcuate import __version__

    return (
        f"arcuate/{__version__} (Delta Sharing protocol)"
        f" PyArrow/{pyarrow.__version__}"
        f" Python/{platform.python_version()}"
        f" System/{platform.system()}-{platform.machine()}"
    )


class SharingClient:
    """The read requests of the protocol against ``profile``'s server.

    Each method makes one request (two when an OAuth access token must be fetched first, or
    again after a 401); errors are :class:`SharingHTTPError` (an HTTP error),
    :class:`SharingAnswerError` (a malformed answer) and ``requests``' own (no answer).
    """

    def __init__(self, profile: Profile) -> None:
        import requests

        self.profile = profile
        self.endpoint = endpoint_text(profile.endpoint)
        self._session = requests.Session()
        self._session.headers["User-Agent"] = user_agent()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> SharingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- listings ------------------------------------------------------------------------------
    def list_shares(self, page_token: str | None = None, max_results: int | None = None) -> Page:
        what = "listing shares"
        doc = self._listing("/shares", page_token, max_results, what)
        shares = [Share(i.get("name")) for i in _items(doc, self._bad(what))]
        return Page(shares, _next(doc, self._bad(what)))

    def list_schemas(
        self, share: str, page_token: str | None = None, max_results: int | None = None
    ) -> Page:
        what = f"listing the schemas of share {share!r}"
        doc = self._listing(f"/shares/{_seg(share)}/schemas", page_token, max_results, what)
        schemas = [Schema(i.get("name"), i.get("share")) for i in _items(doc, self._bad(what))]
        return Page(schemas, _next(doc, self._bad(what)))

    def list_tables(
        self,
        share: str,
        schema: str,
        page_token: str | None = None,
        max_results: int | None = None,
    ) -> Page:
        what = f"listing the tables of schema {share}.{schema}"
        path = f"/shares/{_seg(share)}/schemas/{_seg(schema)}/tables"
        return self._table_page(self._listing(path, page_token, max_results, what), what)

    def list_all_tables(
        self, share: str, page_token: str | None = None, max_results: int | None = None
    ) -> Page:
        what = f"listing the tables of share {share!r}"
        path = f"/shares/{_seg(share)}/all-tables"
        return self._table_page(self._listing(path, page_token, max_results, what), what)

    def _table_page(self, doc: dict[str, Any], what: str) -> Page:
        items = _items(doc, self._bad(what))
        tables = [Table(i.get("name"), i.get("schema"), i.get("share")) for i in items]
        return Page(tables, _next(doc, self._bad(what)))

    def _listing(
        self, path: str, page_token: str | None, max_results: int | None, what: str
    ) -> dict[str, Any]:
        params: dict[str, str] = {}
        if max_results is not None:
            params["maxResults"] = str(max_results)
        if page_token:
            params["pageToken"] = page_token
        with self._request("GET", path, params=params or None) as response:
            body = _read(response, MAX_SHARING_LINE_BYTES, self._bad(what))
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise self._bad(what)("the answer is not JSON") from None
        if not isinstance(doc, dict):
            raise self._bad(what)("the answer is not a JSON object")
        return doc

    # -- a table ---------------------------------------------------------------------------------
    def query_metadata(self, share: str, schema: str, table: str) -> TableAnswer:
        """``GET .../metadata``: the table's version, protocol and metadata."""
        what = f"the metadata request of table {share}.{schema}.{table}"
        path = f"{_table_path(share, schema, table)}/metadata"
        with self._request("GET", path, parquet=True) as response:
            return self._table_answer(response, what, files=False)

    def query_files(self, share: str, schema: str, table: str) -> TableAnswer:
        """``POST .../query``: the table's version, protocol, metadata and every file."""
        what = f"the file list of table {share}.{schema}.{table}"
        path = f"{_table_path(share, schema, table)}/query"
        with self._request("POST", path, parquet=True, json_body={}) as response:
            return self._table_answer(response, what, files=True)

    def _table_answer(self, response: Any, what: str, *, files: bool) -> TableAnswer:
        bad = self._bad(what)
        formats = response.headers.get(CAPABILITIES_HEADER, "")
        if "responseformat=delta" in formats.lower().replace(" ", ""):
            raise bad("the server answered in delta format, which was not asked for")
        raw_version = response.headers.get(VERSION_HEADER)
        if raw_version is None:
            raise bad(f"the answer has no {VERSION_HEADER} header")
        version = _header_int(raw_version)
        if version is None:
            raise bad(f"the {VERSION_HEADER} header is not a whole number")
        lines = _lines(response, bad)
        protocol = _action(next(lines, None), "protocol", 1, bad)
        reader_version = _int(protocol, "minReaderVersion", "line 1, protocol", bad)
        if reader_version > MAX_READER_VERSION:
            raise bad(
                f"line 1, protocol: the table needs reader version {reader_version}; "
                f"arcuate reads up to {MAX_READER_VERSION}"
            )
        metadata = _metadata(_action(next(lines, None), "metaData", 2, bad), bad)
        listed: list[SharedFile] = []
        for number, line in enumerate(lines, start=3):
            if not files:
                raise bad(f"line {number}: a metadata answer has two lines")
            if len(listed) >= MAX_SHARED_TABLE_FILES:
                raise bad(f"it lists more than {MAX_SHARED_TABLE_FILES} files")
            listed.append(_file(_action(line, "file", number, bad), number, bad))
        return TableAnswer(version, reader_version, metadata, listed)

    # -- the request -----------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        parquet: bool = False,
    ) -> Any:
        """The open response to one API request (a context manager), after a 401 with an
        OAuth access token has been retried once with a new token.

        Raises:
            SharingHTTPError: the server answered an HTTP error.
        """
        headers = {CAPABILITIES_HEADER: "responseformat=parquet"} if parquet else {}
        url = self.profile.endpoint + path
        for renewed in (False, True):
            headers["Authorization"] = f"Bearer {self._token(renew=renewed)}"
            response = self._session.request(
                method,
                url,
                params=params,
                json=json_body,
                headers=headers,
                timeout=API_TIMEOUT,
                stream=True,
            )
            if response.status_code < 400:
                return response
            with response:
                status = response.status_code
                message = _error_message(response)
            if status != 401 or renewed or self.profile.type != "oauth_client_credentials":
                raise SharingHTTPError(status, message)
        raise AssertionError("unreachable")  # pragma: no cover

    def _token(self, *, renew: bool = False) -> str:
        """The bearer token to send: the profile's, or an OAuth access token (asked for when
        there is none, it is due for renewal, or ``renew``)."""
        p = self.profile
        if p.type != "oauth_client_credentials":
            assert p.bearer_token is not None
            return p.bearer_token
        assert p.token_endpoint and p.client_id and p.client_secret is not None
        key = (p.token_endpoint, p.client_id, p.client_secret, p.scope)
        with _TOKENS_LOCK:
            token = _TOKENS.get(key)
            if token is not None and token.fresh() and not renew:
                return token.value
            token = self._fetch_token()
            _TOKENS[key] = token
            return token.value

    def _fetch_token(self) -> _AccessToken:
        """The client-credentials grant (RFC 6749 section 4.4), HTTP Basic as the official
        client sends it."""
        p = self.profile
        assert p.token_endpoint and p.client_id and p.client_secret is not None
        pair = f"{p.client_id}:{p.client_secret}".encode()
        form = {"grant_type": "client_credentials"}
        if p.scope:
            form["scope"] = p.scope
        where = origin(p.token_endpoint)
        started = time.time()
        response = self._session.post(
            p.token_endpoint,
            data=urlencode(form),
            headers={
                "Accept": "application/json",
                "Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            timeout=API_TIMEOUT,
            stream=True,
        )
        with response:
            if response.status_code >= 400:
                raise SharingHTTPError(
                    response.status_code,
                    f"the token endpoint at {where} refused the profile's client credentials"
                    + _oauth_error(response),
                )

            def bad(problem: str) -> SharingAnswerError:
                return SharingAnswerError(
                    f"the token endpoint at {where} answered the profile's token request with "
                    f"something that is not a token: {problem}",
                    problem,
                )

            body = _read(response, _SMALL_ANSWER, bad)
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise bad("the answer is not JSON") from None
        if not isinstance(doc, dict):
            raise bad("the answer is not a JSON object")
        value = doc.get("access_token")
        if not isinstance(value, str) or not value:
            raise bad("'access_token' is missing or not text")
        if len(value) > _MAX_TOKEN_LENGTH or not _header_safe(value):
            raise bad("'access_token' holds characters an HTTP header cannot carry")
        lifetime = doc.get("expires_in")
        if isinstance(lifetime, str):
            lifetime = _header_int(lifetime)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
            raise bad("'expires_in' is missing or not a positive whole number")
        lifetime = min(lifetime, 10**9)
        return _AccessToken(value, started + lifetime, float(lifetime))

    def _bad(self, what: str) -> Any:
        """A builder of the error for a malformed answer to ``what``."""

        def bad(problem: str) -> SharingAnswerError:
            return SharingAnswerError(
                f"the sharing server at {self.endpoint} sent a malformed answer to {what}: "
                f"{problem}",
                problem,
            )

        return bad


# -- reading answers ---------------------------------------------------------------------------
def _seg(name: str) -> str:
    """A name as one path segment."""
    return quote(name, safe="")


def _table_path(share: str, schema: str, table: str) -> str:
    return f"/shares/{_seg(share)}/schemas/{_seg(schema)}/tables/{_seg(table)}"


def _chunks(response: requests.Response) -> Iterator[bytes]:
    yield from response.iter_content(_PIECE)


def _read(response: Any, limit: int, bad: Any) -> bytes:
    """The whole body, at most ``limit`` bytes."""
    body = bytearray()
    for piece in _chunks(response):
        body += piece
        if len(body) > limit:
            raise bad(f"the answer is longer than {limit} bytes")
    return bytes(body)


def _lines(response: Any, bad: Any) -> Iterator[dict[str, Any]]:
    """The body's NDJSON objects (blank lines skipped), each line and the whole bounded."""
    pending = bytearray()
    total = 0
    number = 0

    def parse(raw: bytes) -> dict[str, Any] | None:
        nonlocal number
        number += 1
        if len(raw) > MAX_SHARING_LINE_BYTES:
            raise bad(f"line {number} is longer than {MAX_SHARING_LINE_BYTES} bytes")
        if not raw.strip():
            return None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise bad(f"line {number} is not JSON") from None
        if not isinstance(doc, dict):
            raise bad(f"line {number} is not a JSON object")
        return doc

    for piece in _chunks(response):
        total += len(piece)
        if total > MAX_SHARING_ANSWER_BYTES:
            raise bad(f"the answer is longer than {MAX_SHARING_ANSWER_BYTES} bytes")
        pending += piece
        while (end := pending.find(b"\n")) >= 0:
            doc = parse(bytes(pending[:end]))
            del pending[: end + 1]
            if doc is not None:
                yield doc
        if len(pending) > MAX_SHARING_LINE_BYTES:
            raise bad(f"line {number + 1} is longer than {MAX_SHARING_LINE_BYTES} bytes")
    if pending:
        doc = parse(bytes(pending))
        if doc is not None:
            yield doc


def _action(doc: dict[str, Any] | None, key: str, number: int, bad: Any) -> dict[str, Any]:
    """The object under ``key`` of line ``number``."""
    if doc is None:
        raise bad(f"the answer ends before line {number} ({key})")
    value = doc.get(key)
    if not isinstance(value, dict):
        raise bad(f"line {number} is not a {key!r} line")
    return value


def _metadata(doc: dict[str, Any], bad: Any) -> TableMetadata:
    where = "line 2, metaData"
    form = doc.get("format")
    if not isinstance(form, dict):
        raise bad(f"{where}: 'format' is missing or not an object")
    provider = form.get("provider", "parquet")
    if provider != "parquet":
        raise bad(f"{where}: 'format.provider' is not 'parquet'")
    columns = doc.get("partitionColumns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise bad(f"{where}: 'partitionColumns' is missing or not a list of text")
    configuration = doc.get("configuration") or {}
    if not isinstance(configuration, dict) or not all(
        isinstance(v, str) for v in configuration.values()
    ):
        raise bad(f"{where}: 'configuration' is not an object of text values")
    return TableMetadata(
        id=_text(doc, "id", where, bad),
        name=_text(doc, "name", where, bad, required=False),
        description=_text(doc, "description", where, bad, required=False),
        schema_string=_text(doc, "schemaString", where, bad),
        partition_columns=list(columns),
        configuration=dict(configuration),
    )


def _file(doc: dict[str, Any], number: int, bad: Any) -> SharedFile:
    where = f"line {number}, file"
    url = _text(doc, "url", where, bad)
    if urlsplit(url).scheme not in ("http", "https"):
        raise bad(f"{where}: 'url' is not an http:// or https:// URL")
    size = _int(doc, "size", where, bad)
    if size > MAX_FILE_BYTES:
        raise bad(f"{where}: 'size' is over {MAX_FILE_BYTES} bytes")
    values = doc.get("partitionValues")
    if values is None:
        values = {}
    if not isinstance(values, dict) or not all(
        v is None or isinstance(v, str) for v in values.values()
    ):
        raise bad(f"{where}: 'partitionValues' is not an object of text values")
    stats = doc.get("stats")
    return SharedFile(
        url=url,
        id=_text(doc, "id", where, bad),
        size=size,
        partition_values=dict(values),
        stats=stats if isinstance(stats, str) else None,
    )


def _text(doc: dict[str, Any], key: str, where: str, bad: Any, *, required: bool = True) -> Any:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise bad(f"{where}: {key!r} is missing or not text")
    return value


def _int(doc: dict[str, Any], key: str, where: str, bad: Any) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise bad(f"{where}: {key!r} is missing or not a whole number")
    return value


def _header_int(raw: str) -> int | None:
    raw = raw.strip()
    if 0 < len(raw) <= 18 and raw.isascii() and raw.isdigit():
        return int(raw)
    return None


def _items(doc: dict[str, Any], bad: Any) -> list[dict[str, Any]]:
    items = doc.get("items") or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise bad("'items' is not a list of objects")
    return items


def _next(doc: dict[str, Any], bad: Any) -> str | None:
    token = doc.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise bad("'nextPageToken' is not text")
    return token or None


def _error_body(response: Any) -> Any:
    """The JSON body of an error answer, or None when it has none that can be read: the
    caller reports the HTTP status either way, so an unreadable body only loses detail."""
    import requests

    try:
        body = _read(response, _SMALL_ANSWER, lambda problem: ValueError(problem))
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError, OSError, requests.RequestException):
        return None


def _error_message(response: Any) -> str:
    """The server's own words for an HTTP error (``errorCode: message``), cut short; empty
    when it sent none."""
    doc = _error_body(response)
    if not isinstance(doc, dict):
        return ""
    parts = [doc.get("errorCode"), doc.get("message")]
    text = ": ".join(p for p in parts if isinstance(p, str) and p)
    return _printable(text)


def _oauth_error(response: Any) -> str:
    """RFC 6749's ``error`` code of a refused token request, as ``" (invalid_client)"``."""
    doc = _error_body(response)
    error = doc.get("error") if isinstance(doc, dict) else None
    return f" ({_printable(error)[:80]})" if isinstance(error, str) and error else ""


def _printable(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    cleaned = "".join(c if c.isprintable() else "?" for c in first)
    return cleaned if len(cleaned) <= _MESSAGE_CHARS else cleaned[:_MESSAGE_CHARS] + "…"
