"""The Delta Sharing protocol over the local share catalog, as a Starlette ASGI app.

Every protocol route authenticates the bearer token to a recipient, and then sees only the
shares granted to it: a share or table it may not read answers exactly like one that does not
exist. Data files are fetched through signed, expiring URLs that need no token: the server's
own under ``<prefix>/files/`` for tables on local disk, the object store's pre-signed URLs for
tables in object storage (:mod:`.objectstore`), whose bytes never pass through the server.
Client mistakes are 4xx with the protocol's ``{"errorCode", "message"}`` body;
the 1.4 client retries 5xx for minutes, so only real bugs produce a 500.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arcuate.backends.sharing.audit import log_location, spool_location
from arcuate.backends.sharing.profiles import ACTIVATION_PATH, TOKEN_PATH
from arcuate.backends.sharing.server.access import AccessControl, SharedBuckets
from arcuate.backends.sharing.server.activation import activation_endpoint
from arcuate.backends.sharing.server.audit import ACTIONS, AuditLog, record_of
from arcuate.backends.sharing.server.delta import (
    DataFile,
    DeltaTables,
    LocalRoot,
    Snapshot,
    TableRoot,
    cdf_enabled,
    local_root,
    safe_relative,
)
from arcuate.backends.sharing.server.logline import log_field
from arcuate.backends.sharing.server.oauth import (
    access_token_holder,
    is_access_token,
    token_endpoint,
)
from arcuate.backends.sharing.server.objectstore import ObjectRoot, ObjectStores, is_object_store
from arcuate.backends.sharing.server.signing import (
    FileClaim,
    Signer,
    expiry,
    key_path_for,
    load_or_create_key,
)
from arcuate.backends.sharing.server.state import CatalogView, CatalogWatcher, Recipient, TableEntry
from arcuate.backends.sharing.server.wire import (
    Capabilities,
    QueryRequest,
    SharingError,
    ascii_int,
    echo,
    error_response,
    invalid,
    json_response,
    ndjson_response,
    not_found,
    parse_bool,
    parse_int,
    parse_range,
    parse_timestamp,
    unsupported,
    without_nulls,
)
from arcuate.backends.sharing.server.zerocopy import EXTENSION as ZEROCOPY_EXTENSION
from arcuate.errors import redact_secrets

log = logging.getLogger("arcuate.server")

DEFAULT_PREFIX: Final = "/delta-sharing"
#: The reference server's page size and its upper bound for maxResults.
MAX_RESULTS: Final = 500
#: A query body is a handful of fields; anything bigger is not a real client.
MAX_BODY_BYTES: Final = 1 << 20
#: Responses that carry signed file URLs (bearer capabilities) must not be stored anywhere.
_NO_STORE: Final = {"Cache-Control": "no-store"}
#: Reader features a delta-format client must list before it gets such a table.
_CHECKED_FEATURES: Final = frozenset({"columnmapping", "deletionvectors"})
#: Bytes of a file body the kernel is asked to start reading before the send begins.
_PREFETCH: Final = 64 * 1024 * 1024
#: Lifetime of the server's own file URLs: revoking a grant or a token stops them at once.
DEFAULT_URL_TTL: Final = 3600
#: Lifetime of pre-signed object-store URLs: nothing stops them before they expire.
DEFAULT_PRESIGNED_TTL: Final = 900


@dataclass(frozen=True)
class ServerOptions:
    """How the server runs.

    ``url_ttl_seconds``: lifetime of data-file URLs (the 1.4 client cannot refresh them, so
    make it longer than the slowest read); by default :data:`DEFAULT_URL_TTL` for the
    server's own URLs and :data:`DEFAULT_PRESIGNED_TTL` for an object store's pre-signed
    ones, which revoking a grant or a token does not stop. ``public_url``: the base of file
    URLs when the server sits behind a proxy (default: the URL the request came in on).
    ``storage_options``: how to reach tables in object storage (deltalake's keys), on top of
    the cloud's environment variables; never shown in a repr.
    """

    prefix: str = DEFAULT_PREFIX
    url_ttl_seconds: int | None = None
    public_url: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    # -- access (issue 15) --
    #: Proxies (addresses, CIDR ranges) whose ``X-Forwarded-For`` names the client.
    trusted_proxies: tuple[str, ...] = ()
    #: Keep the access log (a Delta table next to the catalog; see :mod:`.audit`).
    audit: bool = True
    #: A sqlite file whose rate-limit buckets the server's worker processes share
    #: (:class:`~.access.SharedBuckets`); None: in this process's memory.
    limits_file: str | None = None

    def ttl(self, root: TableRoot) -> int:
        """Seconds the data-file URLs of a table at ``root`` stay valid."""
        if self.url_ttl_seconds is not None:
            return self.url_ttl_seconds
        return DEFAULT_PRESIGNED_TTL if isinstance(root, ObjectRoot) else DEFAULT_URL_TTL


@dataclass
class ServerStats:
    """Counters the tests and the load benchmark read."""

    requests: int = 0
    server_errors: int = 0
    file_bytes: int = 0
    #: body bytes of every response (file bodies included): what the server sent
    response_bytes: int = 0
    #: data-file URLs pre-signed by an object store (their bytes never pass through here)
    presigned_urls: int = 0


Handler = Callable[[Request], Awaitable[Response]]


class SharingServer:
    """The protocol's routes over one catalog file."""

    def __init__(
        self, catalog_path: str | os.PathLike[str], key: bytes, options: ServerOptions
    ) -> None:
        self.watcher = CatalogWatcher(catalog_path)
        self.signer = Signer(key)
        self.tables = DeltaTables()
        self.stores = ObjectStores(options.storage_options)
        self.options = options
        self.stats = ServerStats()
        shared = SharedBuckets(options.limits_file) if options.limits_file else None
        self.access = AccessControl(options.trusted_proxies, shared)
        self.audit = (
            AuditLog(log_location(catalog_path), spool_location(catalog_path))
            if options.audit
            else None
        )
        prefix = "/" + options.prefix.strip("/") if options.prefix.strip("/") else ""
        self.prefix = prefix

    # -- the app -----------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        p = self.prefix
        t = p + "/shares/{share}/schemas/{schema}/tables/{table}"
        return [
            Route(p + "/shares", self._wrap(self.list_shares), methods=["GET"]),
            Route(p + "/shares/{share}", self._wrap(self.get_share), methods=["GET"]),
            Route(p + "/shares/{share}/schemas", self._wrap(self.list_schemas), methods=["GET"]),
            Route(
                p + "/shares/{share}/schemas/{schema}/tables",
                self._wrap(self.list_tables),
                methods=["GET"],
            ),
            Route(
                p + "/shares/{share}/all-tables", self._wrap(self.list_all_tables), methods=["GET"]
            ),
            Route(t, self._wrap(self.table_version), methods=["HEAD"]),
            Route(t + "/version", self._wrap(self.table_version), methods=["GET"]),
            Route(t + "/metadata", self._wrap(self.table_metadata), methods=["GET"]),
            Route(t + "/query", self._wrap(self.query_table), methods=["POST"]),
            Route(t + "/changes", self._wrap(self.table_changes), methods=["GET"]),
            Route(
                p + "/files/{table_id}/{path:path}",
                self._wrap(self.get_file),
                methods=["GET", "HEAD"],
            ),
            # -- credentials: the OAuth token endpoint and activation links (issue 15) --
            Route(p + TOKEN_PATH, self._wrap(self.oauth_token), methods=["POST"]),
            Route(p + ACTIVATION_PATH, self._wrap(self.activation), methods=["GET", "POST"]),
        ]

    def _wrap(self, handler: Handler) -> Handler:
        action = ACTIONS.get(handler.__name__, handler.__name__)

        async def endpoint(request: Request) -> Response:
            head = request.method == "HEAD"
            state = request.scope.setdefault("state", {})
            state["action"] = action  # for the access log, with the names in the path
            for key in ("share", "schema", "table"):
                if key in request.path_params:
                    state[key] = request.path_params[key]
            try:
                return await handler(request)
            except SharingError as exc:
                state["error_code"] = exc.code
                return error_response(exc, head=head)
            except Exception as exc:
                self.stats.server_errors += 1
                # one line, escaped and without signed URLs: it may quote what the client sent
                trace = self.stores.scrub(redact_secrets("".join(traceback.format_exception(exc))))
                log.error(
                    "internal error serving %s %s: %s",
                    log_field(request.method),
                    log_field(request.url.path),
                    log_field(trace, 8192, spaces=True),
                )
                return error_response(SharingError(500, "INTERNAL_ERROR", ""), head=head)

        endpoint.__name__ = handler.__name__
        return endpoint

    # -- authentication ----------------------------------------------------------------------
    def _recipient(self, request: Request, view: CatalogView) -> Recipient:
        header = request.headers.get("authorization")
        if not header:
            raise SharingError(
                401, "UNAUTHENTICATED", "missing bearer token: send 'Authorization: Bearer <token>'"
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise SharingError(
                401, "UNAUTHENTICATED", "the Authorization header must be 'Bearer <token>'"
            )
        if is_access_token(token):  # issued by the OAuth token endpoint
            recipient: Recipient | None = access_token_holder(self.signer, view, token)
        else:
            recipient, _ = view.recipient_by_token(token) if len(token) <= 512 else (None, False)
        if recipient is None:
            raise SharingError(401, "UNAUTHENTICATED", "the bearer token is not valid")
        problem = recipient.refusal()
        if problem is not None:
            raise SharingError(401, "UNAUTHENTICATED", f"the bearer token {problem}")
        request.scope.setdefault("state", {})["recipient"] = recipient.name
        return recipient

    def _auth(self, request: Request) -> tuple[CatalogView, Recipient]:
        view = self.watcher.view()
        recipient = self._recipient(request, view)
        # issue 15: its IP access list (403) and rate limit (429), before any lookup
        self.access.admit(request.scope, view.doc, recipient.name)
        return view, recipient

    # -- discovery ---------------------------------------------------------------------------
    def _page(self, request: Request, items: list[dict[str, Any]], listing: str) -> Response:
        q = request.query_params
        # 0 is legal in the protocol, but its page is empty and its nextPageToken points at
        # the same place: a client that follows it never ends. So pages hold at least one.
        max_results = parse_int("maxResults", q.get("maxResults"), minimum=1, maximum=MAX_RESULTS)
        limit = MAX_RESULTS if max_results is None else max_results
        offset = 0
        token = q.get("pageToken")
        if token:
            payload = self.signer.open("page", token)
            if (
                payload is None
                or payload.get("l") != listing
                or not isinstance(payload.get("o"), int)
            ):
                raise invalid("pageToken is not valid for this listing")
            offset = payload["o"]
        body: dict[str, Any] = {"items": items[offset : offset + limit]}
        if offset + limit < len(items):
            body["nextPageToken"] = self.signer.seal("page", {"l": listing, "o": offset + limit})
        return json_response(body)

    def _share(self, view: CatalogView, recipient: Recipient, name: str) -> dict[str, Any]:
        share = view.share(recipient.name, name)
        if share is None:
            raise not_found(f"share {echo(name)} does not exist")
        return share

    async def list_shares(self, request: Request) -> Response:
        view, recipient = self._auth(request)
        items = [{"name": s["name"]} for s in view.granted_shares(recipient.name)]
        return self._page(request, items, f"shares:{recipient.name}")

    async def get_share(self, request: Request) -> Response:
        view, recipient = self._auth(request)
        share = self._share(view, recipient, request.path_params["share"])
        return json_response({"share": {"name": share["name"]}})

    async def list_schemas(self, request: Request) -> Response:
        view, recipient = self._auth(request)
        share = self._share(view, recipient, request.path_params["share"])
        items = [{"name": sc["name"], "share": share["name"]} for sc in share.get("schemas") or []]
        return self._page(request, items, f"schemas:{recipient.name}:{str(share['name']).lower()}")

    @staticmethod
    def _table_item(
        share: dict[str, Any], schema: dict[str, Any], t: dict[str, Any]
    ) -> dict[str, Any]:
        return without_nulls(
            {
                "name": t["name"],
                "schema": schema["name"],
                "share": share["name"],
                "id": t.get("id") or None,
            }
        )

    async def list_tables(self, request: Request) -> Response:
        view, recipient = self._auth(request)
        share = self._share(view, recipient, request.path_params["share"])
        wanted = request.path_params["schema"]
        schema = next(
            (sc for sc in share.get("schemas") or [] if str(sc["name"]).lower() == wanted.lower()),
            None,
        )
        if schema is None:
            raise not_found(f"schema {echo(wanted)} does not exist in share {echo(share['name'])}")
        items = [self._table_item(share, schema, t) for t in schema.get("tables") or []]
        listing = f"tables:{recipient.name}:{str(share['name']).lower()}:{wanted.lower()}"
        return self._page(request, items, listing)

    async def list_all_tables(self, request: Request) -> Response:
        view, recipient = self._auth(request)
        share = self._share(view, recipient, request.path_params["share"])
        items = [
            self._table_item(share, sc, t)
            for sc in share.get("schemas") or []
            for t in sc.get("tables") or []
        ]
        return self._page(
            request, items, f"all-tables:{recipient.name}:{str(share['name']).lower()}"
        )

    # -- tables ------------------------------------------------------------------------------
    def _root(self, location: str) -> TableRoot:
        """The root of a table: in object storage, or a local directory."""
        if is_object_store(location):
            return ObjectRoot(location, self.stores)
        return LocalRoot(local_root(location))

    def _table(self, request: Request) -> tuple[CatalogView, Recipient, TableEntry, TableRoot]:
        view, recipient = self._auth(request)
        p = request.path_params
        entry = view.table(recipient.name, p["share"], p["schema"], p["table"])
        if entry is None:
            if view.share(recipient.name, p["share"]) is None:
                raise not_found(f"share {echo(p['share'])} does not exist")
            raise not_found(
                f"table {echo(p['schema'] + '.' + p['table'])} does not exist in share "
                f"{echo(p['share'])}"
            )
        return view, recipient, entry, self._root(entry.location)

    @staticmethod
    def _need_history(entry: TableEntry, what: str) -> None:
        if not entry.history_shared:
            raise invalid(
                f"{what} needs the table's history, which is not shared for {entry.name!r}"
            )

    def _check_version(self, entry: TableEntry, root: TableRoot, version: int, latest: int) -> None:
        if version > latest:
            raise invalid(f"version {version} does not exist: the latest version is {latest}")
        if version < entry.start_version:
            raise invalid(f"versions before {entry.start_version} of this table are not shared")
        if version < self.tables.earliest_version(root) and version != latest:
            raise invalid(f"version {version} of this table is no longer in its history")

    async def table_version(self, request: Request) -> Response:
        return await run_in_threadpool(self._table_version, request)

    def _table_version(self, request: Request) -> Response:
        _, _, entry, root = self._table(request)
        latest = self.tables.latest_version(root)
        raw = request.query_params.get("startingTimestamp")
        version = latest
        if raw is not None:
            self._need_history(entry, "startingTimestamp")
            found = self.tables.version_at_or_after(root, parse_timestamp("startingTimestamp", raw))
            if found is None:
                raise invalid(
                    f"startingTimestamp {echo(raw)} is after the latest commit of the table"
                )
            version = max(found, entry.start_version)
        return Response(None, headers={"Delta-Table-Version": str(version)})

    def _format(self, caps: Capabilities, snap: Snapshot, entry: TableEntry) -> str:
        known = [f for f in caps.formats if f in ("parquet", "delta")]
        if not known:
            raise unsupported(
                f"response format {echo(','.join(caps.formats))} is not supported; "
                "use parquet or delta"
            )
        if len(known) == 1:
            fmt = known[0]
        else:
            fmt = "parquet" if snap.min_reader_version == 1 else "delta"
        if "deletionvectors" in snap.reader_features:
            raise unsupported(
                f"table {entry.name!r} uses deletion vectors, which this server does not serve"
            )
        if fmt == "parquet" and snap.column_mapping:
            raise unsupported(
                f"table {entry.name!r} uses column mapping: read it in delta format "
                "(load_as_pandas(..., use_delta_format=True))"
            )
        if fmt == "delta":
            missing = sorted(snap.reader_features & _CHECKED_FEATURES - caps.reader_features)
            if missing:
                raise unsupported(
                    f"table {entry.name!r} needs reader features {missing}, "
                    "which the client did not list"
                )
        return fmt

    @staticmethod
    def _protocol_line(fmt: str, snap: Snapshot) -> dict[str, Any]:
        if fmt == "delta":
            return {"protocol": {"deltaProtocol": snap.protocol}}
        return {"protocol": {"minReaderVersion": 1}}

    @staticmethod
    def _metadata_line(fmt: str, snap: Snapshot, *, version: int | None) -> dict[str, Any]:
        size = sum(f.size for f in snap.files)
        if fmt == "delta":
            return {
                "metaData": without_nulls(
                    {
                        "deltaMetadata": snap.metadata,
                        "version": version,
                        "size": size,
                        "numFiles": len(snap.files),
                    }
                )
            }
        m = snap.metadata
        return {
            "metaData": without_nulls(
                {
                    "id": m["id"],
                    "name": m.get("name"),
                    "description": m.get("description"),
                    "format": {"provider": "parquet"},
                    "schemaString": m["schemaString"],
                    "partitionColumns": m.get("partitionColumns", []),
                    "configuration": {"enableChangeDataFeed": "true"} if snap.cdf_enabled else {},
                    "version": version,
                    "size": size,
                    "numFiles": len(snap.files),
                }
            )
        }

    @staticmethod
    def _answer_headers(version: int, fmt: str) -> dict[str, str]:
        return {
            "Delta-Table-Version": str(version),
            "delta-sharing-capabilities": f"responseformat={fmt}",
        }

    async def table_metadata(self, request: Request) -> Response:
        return await run_in_threadpool(self._table_metadata, request)

    def _table_metadata(self, request: Request) -> Response:
        _, _, entry, root = self._table(request)
        q = request.query_params
        latest = self.tables.latest_version(root)
        version = self._resolve_version(
            entry, root, latest, parse_int("version", q.get("version")), q.get("timestamp")
        )
        snap = self.tables.snapshot(root, version)
        fmt = self._format(
            Capabilities.parse(request.headers.get("delta-sharing-capabilities")), snap, entry
        )
        lines = [self._protocol_line(fmt, snap), self._metadata_line(fmt, snap, version=version)]
        return ndjson_response(lines, headers=self._answer_headers(version, fmt))

    def _resolve_version(
        self,
        entry: TableEntry,
        root: TableRoot,
        latest: int,
        version: int | None,
        timestamp: str | None,
    ) -> int:
        if version is not None and timestamp is not None:
            raise invalid("only one of version and timestamp may be set")
        if version is not None:
            self._need_history(entry, "reading a past version")
            self._check_version(entry, root, version, latest)
            return version
        if timestamp is not None:
            self._need_history(entry, "reading the table as of a timestamp")
            found = self.tables.version_at_or_before(root, parse_timestamp("timestamp", timestamp))
            if found is None:
                raise invalid(
                    f"timestamp {echo(timestamp)} is before the first commit of the table"
                )
            self._check_version(entry, root, found, latest)
            return found
        return latest

    async def _body(self, request: Request) -> bytes:
        limit = self.options.max_body_bytes
        declared = request.headers.get("content-length")
        too_big = SharingError(
            413, "MALFORMED_REQUEST", f"the request body is larger than {limit} bytes"
        )
        if declared is not None:
            length = ascii_int(declared.strip())
            if length is None:
                raise SharingError(400, "MALFORMED_REQUEST", "Content-Length is not a number")
            if length > limit:
                raise too_big
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    async def query_table(self, request: Request) -> Response:
        view, recipient, entry, root = self._table(request)
        body = await self._body(request)
        # parsed off the event loop: a megabyte of JSON takes a while, even within limits
        return await run_in_threadpool(
            self._query_table, request, view, recipient, entry, root, body
        )

    def _query_table(
        self,
        request: Request,
        view: CatalogView,
        recipient: Recipient,
        entry: TableEntry,
        root: TableRoot,
        body: bytes,
    ) -> Response:
        query = QueryRequest.parse(body)
        if query.starting_version is not None:
            raise unsupported(
                "startingVersion queries (streaming) are not supported by this server; "
                "read changes through the table changes API"
            )
        latest = self.tables.latest_version(root)
        offset = 0
        pinned: int | None = None
        if query.page_token is not None:
            payload = self.signer.open("query", query.page_token)
            if (
                payload is None
                or payload.get("t") != entry.id
                or payload.get("r") != recipient.name
            ):
                raise invalid("pageToken is not valid for this table")
            pinned, offset = int(payload["v"]), int(payload["o"])
        elif query.refresh_token is not None:
            payload = self.signer.open("refresh", query.refresh_token)
            if (
                payload is None
                or payload.get("t") != entry.id
                or payload.get("r") != recipient.name
            ):
                raise invalid("refreshToken is not valid for this table")
            pinned = int(payload["v"])
        if pinned is not None:
            self._check_version(entry, root, pinned, latest)
            version = pinned
        else:
            version = self._resolve_version(entry, root, latest, query.version, query.timestamp)
        snap = self.tables.snapshot(root, version)
        caps = Capabilities.parse(request.headers.get("delta-sharing-capabilities"))
        fmt = self._format(caps, snap, entry)

        files = snap.files
        if query.limit_hint is not None:
            files = _limit(files, query.limit_hint)
        next_token = None
        if query.max_files is not None or query.page_token is not None:
            size = query.max_files or len(files)
            page = files[offset : offset + size]
            if offset + size < len(files):
                next_token = self.signer.seal(
                    "query", {"t": entry.id, "r": recipient.name, "v": version, "o": offset + size}
                )
            files = page
        expires = expiry(self.options.ttl(root))
        base = self._base_url(request)
        lines: list[dict[str, Any]] = [
            self._protocol_line(fmt, snap),
            self._metadata_line(fmt, snap, version=version),
        ]
        for f in files:
            lines.append(self._file_line(fmt, f, root, entry, recipient, base, expires))
        if (
            caps.end_stream_action
            or query.max_files is not None
            or query.page_token is not None
            or query.include_refresh_token
        ):
            end: dict[str, Any] = {"minUrlExpirationTimestamp": expires * 1000}
            if next_token:
                end["nextPageToken"] = next_token
            if query.include_refresh_token:
                end["refreshToken"] = self.signer.seal(
                    "refresh", {"t": entry.id, "r": recipient.name, "v": version}
                )
            lines.append({"endStreamAction": end})
        return ndjson_response(lines, headers=self._answer_headers(version, fmt) | _NO_STORE)

    def _base_url(self, request: Request) -> str:
        if self.options.public_url:
            return self.options.public_url.rstrip("/")
        return str(request.base_url).rstrip("/") + self.prefix

    def _url(
        self,
        root: TableRoot,
        log_path: str,
        entry: TableEntry,
        recipient: Recipient,
        base: str,
        expires: int,
    ) -> str:
        relative = root.relative(log_path)
        if isinstance(root, ObjectRoot):
            # signed now for the whole TTL, so it outlives ``expires`` (taken a moment earlier)
            self.stats.presigned_urls += 1
            return root.presign(relative, self.options.ttl(root))
        claim = FileClaim(entry.id, relative, recipient.name, expires)
        return self.signer.file_url(base, claim, recipient.token_id)

    def _file_line(
        self,
        fmt: str,
        f: DataFile,
        root: TableRoot,
        entry: TableEntry,
        recipient: Recipient,
        base: str,
        expires: int,
    ) -> dict[str, Any]:
        url = self._url(root, f.path, entry, recipient, base, expires)
        if fmt == "delta":
            add = without_nulls(
                {
                    "path": url,
                    "partitionValues": f.partition_values,
                    "size": f.size,
                    "modificationTime": f.modification_time,
                    "dataChange": True,
                    "stats": f.stats,
                }
            )
            return {
                "file": {
                    "id": hashlib.sha256(f.path.encode()).hexdigest(),
                    "expirationTimestamp": expires * 1000,
                    "deltaSingleAction": {"add": add},
                }
            }
        return {
            "file": without_nulls(
                {
                    "url": url,
                    "id": hashlib.md5(f.path.encode()).hexdigest(),
                    "partitionValues": f.partition_values,
                    "size": f.size,
                    "stats": f.stats,
                    "expirationTimestamp": expires * 1000,
                }
            )
        }

    # -- change data feed ----------------------------------------------------------------------
    async def table_changes(self, request: Request) -> Response:
        return await run_in_threadpool(self._table_changes, request)

    def _table_changes(self, request: Request) -> Response:
        _, recipient, entry, root = self._table(request)
        q = request.query_params
        self._need_history(entry, "reading table changes")
        start_v = parse_int("startingVersion", q.get("startingVersion"))
        start_ts = q.get("startingTimestamp")
        end_v = parse_int("endingVersion", q.get("endingVersion"))
        end_ts = q.get("endingTimestamp")
        historical = (
            parse_bool("includeHistoricalMetadata", q.get("includeHistoricalMetadata")) or False
        )
        parse_int("maxFiles", q.get("maxFiles"), minimum=1)
        if (start_v is None) == (start_ts is None):
            raise invalid("give exactly one of startingVersion and startingTimestamp")
        if end_v is not None and end_ts is not None:
            raise invalid("give at most one of endingVersion and endingTimestamp")
        latest = self.tables.latest_version(root)
        if start_ts is not None:
            found = self.tables.version_at_or_after(
                root, parse_timestamp("startingTimestamp", start_ts)
            )
            if found is None:
                raise invalid(
                    f"startingTimestamp {echo(start_ts)} is after the latest commit of the table"
                )
            start = found
        else:
            assert start_v is not None
            start = start_v
        if start > latest:
            raise invalid(f"startingVersion {start} is after the latest version {latest}")
        end = latest
        if end_v is not None:
            end = min(end_v, latest)
        elif end_ts is not None:
            found = self.tables.version_at_or_before(
                root, parse_timestamp("endingTimestamp", end_ts)
            )
            if found is None:
                raise invalid(
                    f"endingTimestamp {echo(end_ts)} is before the first commit of the table"
                )
            end = found
        if end < start:
            raise invalid(f"the ending version {end} is before the starting version {start}")
        if start < entry.start_version:
            raise invalid(f"versions before {entry.start_version} of this table are not shared")
        if start < self.tables.earliest_version(root):
            raise invalid(f"version {start} of this table is no longer in its history")

        snap = self.tables.snapshot(root, start)
        if not snap.cdf_enabled:
            raise invalid(
                f"change data feed is not enabled on table {entry.name!r} at version {start}"
            )
        commits = [self.tables.commit(root, v) for v in range(start, end + 1)]
        for c in commits:
            for a in c.actions:
                if "metaData" in a and not cdf_enabled(a["metaData"]):
                    raise invalid(
                        f"change data feed is not enabled on table {entry.name!r} "
                        f"at version {c.version}"
                    )
        caps = Capabilities.parse(request.headers.get("delta-sharing-capabilities"))
        fmt = self._format(caps, snap, entry)
        expires = expiry(self.options.ttl(root))
        base = self._base_url(request)
        lines: list[dict[str, Any]] = [
            self._protocol_line(fmt, snap),
            self._metadata_line(fmt, snap, version=start),
        ]
        for c in commits:
            if historical and c.version > start:
                for a in c.actions:
                    if "metaData" in a:
                        lines.append(self._historical_metadata(fmt, a["metaData"], c.version))
            cdc = [a["cdc"] for a in c.actions if "cdc" in a]
            if cdc:
                changes = [("cdc", x) for x in cdc]
            else:
                changes = [
                    (kind, a[kind])
                    for a in c.actions
                    for kind in ("add", "remove")
                    if kind in a and a[kind].get("dataChange", True)
                ]
            for kind, action in changes:
                url = self._url(root, str(action["path"]), entry, recipient, base, expires)
                lines.append(
                    self._change_line(fmt, kind, action, url, c.version, c.timestamp, expires)
                )
        return ndjson_response(lines, headers=self._answer_headers(start, fmt) | _NO_STORE)

    @staticmethod
    def _historical_metadata(fmt: str, metadata: dict[str, Any], version: int) -> dict[str, Any]:
        if fmt == "delta":
            return {"metaData": {"version": version, "deltaMetadata": metadata}}
        return {
            "metaData": without_nulls(
                {
                    "id": metadata.get("id"),
                    "name": metadata.get("name"),
                    "description": metadata.get("description"),
                    "format": {"provider": "parquet"},
                    "schemaString": metadata.get("schemaString"),
                    "partitionColumns": metadata.get("partitionColumns", []),
                    "configuration": {"enableChangeDataFeed": "true"}
                    if cdf_enabled(metadata)
                    else {},
                    "version": version,
                }
            )
        }

    @staticmethod
    def _change_line(
        fmt: str,
        kind: str,
        action: dict[str, Any],
        url: str,
        version: int,
        timestamp: int,
        expires: int,
    ) -> dict[str, Any]:
        path = str(action["path"])
        if fmt == "delta":
            single = {k: v for k, v in action.items() if v is not None}
            single["path"] = url
            return {
                "file": {
                    "id": hashlib.sha256(path.encode()).hexdigest(),
                    "version": version,
                    "timestamp": timestamp,
                    "expirationTimestamp": expires * 1000,
                    "deltaSingleAction": {kind: single},
                }
            }
        line = without_nulls(
            {
                "url": url,
                "id": hashlib.md5(path.encode()).hexdigest(),
                "partitionValues": action.get("partitionValues") or {},
                "size": action.get("size"),
                "timestamp": timestamp,
                "version": version,
                "stats": action.get("stats") if kind == "add" else None,
                "expirationTimestamp": expires * 1000,
            }
        )
        return {"cdf" if kind == "cdc" else kind: line}

    # -- data files ----------------------------------------------------------------------------
    @staticmethod
    def _ranges(request: Request, size: int) -> list[tuple[int, int]]:
        """The byte ranges the response will carry (the whole file without a Range header).

        A bad header is refused here, with the protocol's JSON error, before Starlette's
        file response (which would answer text/plain) ever sees it.
        """
        header = request.headers.get("range")
        if header is None:
            return [(0, size)]
        return parse_range(header, size)

    async def get_file(self, request: Request) -> Response:
        denied = SharingError(403, "PERMISSION_DENIED", "the file URL is not valid")
        q = request.query_params
        table_id = request.path_params["table_id"]
        path = request.path_params["path"]
        sig, who, se = q.get("sig"), q.get("rc"), ascii_int(q.get("se") or "")
        if not sig or not who or se is None or q.get("sp") != "r":
            raise denied
        if not safe_relative(path):
            raise denied
        view = self.watcher.view()
        claim = FileClaim(table_id, path, who, se)
        # signed for the recipient's current credential, or one in a grace window
        recipient = next(
            (c for c in view.credentials(who) if self.signer.check_file(claim, c.token_id, sig)),
            None,
        )
        if recipient is None:
            raise denied  # logged without a recipient: an unchecked claim names nobody
        # the signature proves whose URL it is: every refusal from here on is logged as theirs
        state = request.scope.setdefault("state", {})
        state["recipient"] = recipient.name
        if claim.expires < time.time():
            raise SharingError(
                403, "PERMISSION_DENIED", "the file URL has expired; query the table again"
            )
        problem = recipient.refusal()
        if problem is not None:
            raise SharingError(403, "PERMISSION_DENIED", f"the recipient's token {problem}")
        self.access.admit_file(request.scope, view.doc, recipient.name)  # its IP access list
        entry = view.readable_table(recipient.name, table_id)
        if entry is None or is_object_store(entry.location):  # those get pre-signed URLs
            raise denied
        state.update(share=entry.share, schema=entry.schema, table=entry.name)
        root = local_root(entry.location)
        target = root / path
        try:
            resolved_root = root.resolve()
            resolved = target.resolve()
            st = os.stat(resolved)
        except (OSError, RuntimeError):
            raise not_found("the file no longer exists") from None
        if not resolved.is_relative_to(resolved_root) or not _is_regular(st.st_mode):
            raise denied
        ranges = self._ranges(request, st.st_size)
        if request.method != "HEAD":
            self.stats.file_bytes += sum(end - start for start, end in ranges)
        return _FileResponse(
            resolved,
            stat_result=st,
            media_type="application/octet-stream",
            headers={"Cache-Control": "private, no-store"},
        )

    # -- credentials (issue 15) ---------------------------------------------------------------
    async def oauth_token(self, request: Request) -> Response:
        """The OAuth client-credentials grant of OAuth recipients (:mod:`.oauth`)."""
        view = self.watcher.view()
        return await token_endpoint(
            request,
            view,
            self.signer,
            lambda name: self.access.admit(request.scope, view.doc, name),
        )

    async def activation(self, request: Request) -> Response:
        """A one-time activation link's page, or its profile (:mod:`.activation`)."""
        view = self.watcher.view()
        return await activation_endpoint(
            request,
            self.watcher.catalog,
            self._base_url(request),
            lambda name: self.access.admit_file(request.scope, view.doc, name),
        )


class _FileResponse(FileResponse):
    """A file body sent by the kernel (``os.sendfile``) when the server offers the zero-copy
    extension (:mod:`.zerocopy`), else streamed in 512 KiB reads (Starlette's 64 KiB costs
    throughput). Headers, ranges and HEAD are Starlette's either way."""

    chunk_size = 512 * 1024
    _zerocopy = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._zerocopy = ZEROCOPY_EXTENSION in (scope.get("extensions") or {})
        await super().__call__(scope, receive, send)

    async def _handle_simple(self, send: Send, send_header_only: bool, send_pathsend: bool) -> None:
        if not self._zerocopy or send_header_only:
            await super()._handle_simple(send, send_header_only, send_pathsend)
            return
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await self._send_range(send, 0, int(self.headers["content-length"]))

    async def _handle_single_range(
        self, send: Send, start: int, end: int, file_size: int, send_header_only: bool
    ) -> None:
        if not self._zerocopy or send_header_only:
            await super()._handle_single_range(send, start, end, file_size, send_header_only)
            return
        headers = MutableHeaders(raw=list(self.raw_headers))
        headers["content-range"] = f"bytes {start}-{end - 1}/{file_size}"
        headers["content-length"] = str(end - start)
        await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
        await self._send_range(send, start, end - start)

    async def _send_range(self, send: Send, offset: int, count: int) -> None:
        with open(self.path, "rb") as fh:
            if hasattr(os, "posix_fadvise"):
                # read ahead harder when the file is not cached, and start reading the first
                # part now, so the disk works while the socket sends
                os.posix_fadvise(fh.fileno(), offset, count, os.POSIX_FADV_SEQUENTIAL)
                os.posix_fadvise(fh.fileno(), offset, min(count, _PREFETCH), os.POSIX_FADV_WILLNEED)
            await send(
                {
                    "type": ZEROCOPY_EXTENSION,
                    "file": fh,
                    "offset": offset,
                    "count": count,
                    "more_body": False,
                }
            )


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def _limit(files: list[DataFile], limit: int) -> list[DataFile]:
    """Files until their counted rows reach ``limit`` (files without stats count 0)."""
    out: list[DataFile] = []
    rows = 0
    for f in files:
        if rows >= limit:
            break
        out.append(f)
        rows += f.num_records or 0
    return out


class RequestLog:
    """ASGI middleware: one log line per request (client, recipient, method, path, status,
    time), and one access-log record (:mod:`.audit`).

    No query string is logged, so signatures and page tokens never reach the log, and every
    field is escaped (:func:`.logline.log_field`), so no request can add or split a line. The
    client is resolved here, once, from the socket and the trusted proxies (:mod:`.access`),
    and every response carries the ``X-Request-Id`` its record has.
    """

    def __init__(self, app: ASGIApp, server: SharingServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, start = time.time(), time.perf_counter()
        request_id = secrets.token_hex(16)
        scope.setdefault("state", {})["client"] = self.server.access.client(scope)
        status, sent, version = 0, 0, None

        async def send_status(message: Message) -> None:
            nonlocal status, sent, version
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers") or [])
                version = next((v for k, v in headers if k.lower() == _VERSION_HEADER), None)
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            elif kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == ZEROCOPY_EXTENSION:
                sent += int(message["count"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            duration = time.perf_counter() - start
            self._done(scope, request_id, started, duration, status, sent, version)

    def _done(
        self,
        scope: Scope,
        request_id: str,
        started: float,
        duration: float,
        status: int,
        sent: int,
        version: bytes | None,
    ) -> None:
        stats = self.server.stats
        stats.requests += 1
        stats.response_bytes += sent
        state = scope.get("state") or {}
        if self.server.audit is not None:
            self.server.audit.record(
                record_of(
                    scope,
                    request_id=request_id,
                    started=started,
                    status=status,
                    bytes_sent=sent,
                    duration=duration,
                    table_version=version.decode("latin-1") if version else None,
                )
            )
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s %s %s %d %.1fms",
                log_field(state.get("client")),
                log_field(state.get("recipient")),
                log_field(scope.get("method")),
                log_field(scope.get("path")),
                status,
                duration * 1000,
            )


#: The response header that names the table version an answer is about (lower case, as ASGI).
_VERSION_HEADER: Final = b"delta-table-version"


def create_app(
    catalog_path: str | os.PathLike[str],
    *,
    signing_key: bytes | None = None,
    key_path: str | os.PathLike[str] | None = None,
    options: ServerOptions | None = None,
) -> Starlette:
    """The ASGI app serving ``catalog_path``.

    The signing key is ``signing_key`` if given, else read from ``key_path`` (default: next
    to the catalog, created 0600 on first use). ``app.state.sharing`` is the
    :class:`SharingServer` (its ``stats`` count requests, server errors and file bytes).
    """
    key = signing_key or load_or_create_key(key_path or key_path_for(catalog_path))
    server = SharingServer(catalog_path, key, options or ServerOptions())

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            err = SharingError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here")
        elif exc.status_code == 404:
            err = not_found("no such endpoint")
        else:
            err = SharingError(exc.status_code, "MALFORMED_REQUEST", str(exc.detail))
        request.scope.setdefault("state", {})["error_code"] = err.code
        return error_response(err, head=request.method == "HEAD")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # the access log's writer starts with the server, and is flushed once the requests
        # in flight are done (uvicorn runs this after its graceful shutdown)
        if server.audit is not None:
            server.audit.start()
        try:
            yield
        finally:
            if server.audit is not None:
                await run_in_threadpool(server.audit.close)

    app = Starlette(
        routes=server.routes(), exception_handlers={HTTPException: http_error}, lifespan=lifespan
    )
    app.add_middleware(RequestLog, server=server)
    app.state.sharing = server
    return app


def configure_logging(level: str = "info") -> None:
    """Request and server logs to stderr (the ``arcuate serve`` console)."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for name in ("arcuate.server", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def create_app_from_env() -> Starlette:
    """Factory for multi-worker uvicorn: settings come from ``ARCUATE_SERVE_*`` variables."""
    env = os.environ
    if env.get("ARCUATE_SERVE_LOG_LEVEL"):
        configure_logging(env["ARCUATE_SERVE_LOG_LEVEL"])
    from arcuate.config import env_var, storage_options

    ttl = env.get("ARCUATE_SERVE_URL_TTL")
    proxies = env.get("ARCUATE_SERVE_TRUSTED_PROXIES", "")
    options = ServerOptions(
        prefix=env.get("ARCUATE_SERVE_PREFIX", DEFAULT_PREFIX),
        url_ttl_seconds=int(ttl) if ttl else None,
        public_url=env.get("ARCUATE_SERVE_PUBLIC_URL") or None,
        storage_options=storage_options(env.get(env_var("storage_options") or "", "{}")),
        trusted_proxies=tuple(filter(None, proxies.split(","))),
        audit=env.get("ARCUATE_SERVE_AUDIT", "on") != "off",
        limits_file=env.get("ARCUATE_SERVE_LIMITS") or None,
    )
    return create_app(
        env["ARCUATE_SERVE_CATALOG"],
        key_path=env.get("ARCUATE_SERVE_KEY_FILE") or None,
        options=options,
    )
