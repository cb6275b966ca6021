"""Who is asking, from where, and how often: the client address behind trusted proxies, each
recipient's IP access list, and its request-rate limit.

The client address is the socket's peer. ``X-Forwarded-For`` is read only when that peer is a
proxy the provider named (``arcuate serve --trusted-proxy CIDR``), and then from the right:
each trusted proxy appends the address it got the request from, so the right-most address that
is not a trusted proxy is the client; everything left of it was written by the client and is
ignored. uvicorn's own reading of the header (which trusts any loopback peer) is turned off.

A recipient with an IP access list is refused with ``403 PERMISSION_DENIED`` from any other
address, on every protocol route and on the file URLs issued to it, before anything about its
shares is looked up (so a refusal says nothing about what exists). A recipient with a rate
limit draws one token per protocol request from a bucket holding at most the limit, refilled
continuously over the limit's period; an empty bucket answers ``429`` with ``Retry-After``.
Downloads of file URLs draw nothing: how many files a query hands out is the table's layout,
not the recipient's choice. A single server process keeps its buckets in memory; the worker
processes of ``--workers N`` share theirs in a sqlite file the server makes for its run
(:class:`SharedBuckets`), so a recipient gets its limit from the server as a whole.
"""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from arcuate.backends.sharing.server.wire import SharingError, echo
from arcuate.format import access as rules

#: What the log and the access check call a client whose address cannot be known (a Unix
#: socket, or a trusted proxy that forwarded something that is not an address).
UNKNOWN: Final = "unknown"


class ClientAddress:
    """The client address of a request, given the proxies trusted to forward it."""

    def __init__(self, trusted: Sequence[str] = ()) -> None:
        self.trusted = tuple(rules.network(t) for t in trusted)

    def __call__(self, scope: MutableMapping[str, Any]) -> str:
        peer = (scope.get("client") or (None,))[0]
        if peer is None:
            return UNKNOWN
        found = rules.address(str(peer))
        if found is None:
            return UNKNOWN
        if not self.trusted or not rules.allowed(found, self.trusted):
            return str(found)
        hops = _forwarded(scope)
        for hop in reversed(hops):
            address = rules.address(_without_port(hop))
            if address is None:
                return UNKNOWN
            if not rules.allowed(address, self.trusted):
                return str(address)
        # every hop is a trusted proxy: the request started at the left-most
        first = rules.address(_without_port(hops[0])) if hops else found
        return str(first) if first is not None else UNKNOWN


def _forwarded(scope: MutableMapping[str, Any]) -> list[str]:
    """The ``X-Forwarded-For`` hops, left to right, over every such header in order."""
    hops: list[str] = []
    for key, value in scope.get("headers") or []:
        if key == b"x-forwarded-for":
            hops += [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
    return hops


def _without_port(hop: str) -> str:
    """``1.2.3.4:80`` and ``[2001:db8::1]:80`` without the port, as some proxies write them."""
    if hop.startswith("[") and "]" in hop:
        return hop[1 : hop.index("]")]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


@dataclass(frozen=True)
class Policy:
    """One recipient's access policy, as the catalog holds it (checked by its shape check)."""

    networks: tuple[rules.Network, ...] | None = None
    requests: int = 0
    per_seconds: int = 0


class _Bucket:
    """A token bucket: ``capacity`` tokens, refilled at ``rate`` per second."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: int, per_seconds: int, now: float) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / per_seconds
        self.tokens = float(capacity)
        self.stamp = now

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is there (a clock that went
        back refills nothing)."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class SharedBuckets:
    """The token buckets of the worker processes of one server, in a sqlite file: one row per
    recipient and limit, taken from in an immediate transaction (one writer at a time across
    the processes; a take costs well under a millisecond). Times are the wall clock, the
    only clock processes share; a clock set back refills nothing."""

    #: Seconds a take waits for another worker's transaction at most.
    BUSY: Final = 5.0

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.BUSY, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")  # counters for this run only
            conn.execute(
                "CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tokens REAL, stamp REAL)"
            )
            self._local.conn = conn
        return conn

    def take(self, key: str, capacity: int, per_seconds: int) -> float:
        """:meth:`_Bucket.take` on ``key``'s bucket as the file holds it (a bucket not seen
        yet starts full)."""
        conn, now = self._conn(), time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            bucket = _Bucket(capacity, per_seconds, now)
            row = conn.execute("SELECT tokens, stamp FROM buckets WHERE key = ?", (key,)).fetchone()
            if row is not None:
                bucket.tokens, bucket.stamp = float(row[0]), float(row[1])
            wait = bucket.take(now)
            conn.execute(
                "INSERT INTO buckets VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET tokens = excluded.tokens, stamp = excluded.stamp",
                (key, bucket.tokens, bucket.stamp),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return wait


@contextmanager
def shared_buckets() -> Iterator[str]:
    """The path of a :class:`SharedBuckets` file for one run of a multi-worker server, in a
    private temporary directory removed when the run ends."""
    folder = tempfile.mkdtemp(prefix="arcuate-limits-")
    try:
        yield os.path.join(folder, "buckets.sqlite")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class AccessControl:
    """The IP access lists and rate limits of the catalog's recipients, checked per request;
    the buckets in memory, or in ``shared`` (the workers of one server)."""

    def __init__(
        self, trusted_proxies: Sequence[str] = (), shared: SharedBuckets | None = None
    ) -> None:
        self.client = ClientAddress(trusted_proxies)
        self._lock = threading.Lock()
        self._doc: object = None
        self._policies: dict[str, Policy] = {}
        self._buckets: dict[tuple[str, int, int], _Bucket] = {}
        self._shared = shared

    def admit(self, scope: MutableMapping[str, Any], doc: dict[str, Any], recipient: str) -> None:
        """Let a protocol request of ``recipient`` through, or refuse it (403, then 429)."""
        policy = self._policy(doc, recipient)
        self._check_address(scope, policy)
        if policy.requests:
            wait = self._take(recipient.lower(), policy)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                limit = rules.rate_text(policy.requests, policy.per_seconds)
                raise SharingError(
                    429,
                    "REQUEST_LIMIT_EXCEEDED",
                    f"this recipient may make {limit}; retry in {retry} s",
                    headers={"Retry-After": str(retry)},
                )

    def admit_file(
        self, scope: MutableMapping[str, Any], doc: dict[str, Any], recipient: str
    ) -> None:
        """Let a download of a file URL issued to ``recipient`` through, or refuse it (403)."""
        self._check_address(scope, self._policy(doc, recipient))

    def _check_address(self, scope: MutableMapping[str, Any], policy: Policy) -> None:
        if policy.networks is None:
            return
        client = client_of(scope, self.client)
        if not rules.allowed(rules.address(client), policy.networks):
            raise SharingError(
                403,
                "PERMISSION_DENIED",
                f"requests from {echo(client)} are not allowed for this recipient "
                "(its IP access list); ask the provider",
            )

    def _policy(self, doc: dict[str, Any], recipient: str) -> Policy:
        with self._lock:
            if doc is not self._doc:  # a new version of the catalog was loaded
                self._policies = {
                    str(r["name"]).lower(): _policy_of(r)
                    for r in doc.get("recipients") or []
                    if isinstance(r, dict) and "name" in r
                }
                self._doc = doc
            return self._policies.get(recipient.lower(), Policy())

    def _take(self, key: str, policy: Policy) -> float:
        if self._shared is not None:  # a new limit has a key of its own: it starts full
            shared_key = f"{key}\x00{policy.requests}\x00{policy.per_seconds}"
            return self._shared.take(shared_key, policy.requests, policy.per_seconds)
        now = time.monotonic()
        with self._lock:
            bucket_key = (key, policy.requests, policy.per_seconds)
            bucket = self._buckets.get(bucket_key)
            if bucket is None:  # a new limit starts full; an old one's bucket is dropped
                self._buckets = {k: b for k, b in self._buckets.items() if k[0] != key}
                bucket = self._buckets[bucket_key] = _Bucket(
                    policy.requests, policy.per_seconds, now
                )
            return bucket.take(now)


def client_of(scope: MutableMapping[str, Any], resolve: ClientAddress) -> str:
    """The request's client address, as the request log resolved it (else resolved now)."""
    state = scope.get("state") or {}
    found = state.get("client")
    return str(found) if found is not None else resolve(scope)


def _policy_of(r: dict[str, Any]) -> Policy:
    entries = r.get("ip_access_list")
    networks = tuple(rules.network(e) for e in entries) if entries else None
    limit = r.get("rate_limit") or {}
    return Policy(networks, int(limit.get("requests", 0)), int(limit.get("per_seconds", 0)))
