"""Bounded retries for a server that does not answer, and failures told in a few words.

The ``delta_sharing`` client retries a server that is down for 1 m 43 s, and MLflow for about
four minutes, both in silence, and then raise urllib3's own message. Here a call is retried for
a time budget (the ``retry_seconds`` setting) with a short exponential back-off; each retry can
be announced (``notify``, on a terminal), and when the time is up the caller names the endpoint.

:func:`describe_failure` says what went wrong ("connection refused", "HTTP 503") from the
exception chain, never from exception text: that text can hold a signed URL.

This module imports only the standard library (``requests`` lazily).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

#: The first pause between attempts; it doubles up to :data:`MAX_DELAY`.
FIRST_DELAY: Final = 0.25
MAX_DELAY: Final = 4.0
#: Where the setting is, for hints.
SETTING_HINT: Final = (
    "to keep trying longer, raise retry_seconds (--retry-seconds, ARCUATE_RETRY_SECONDS)"
)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep retrying a server that does not answer, and who hears about it."""

    seconds: float = 10.0
    notify: Callable[[str], None] | None = None


@dataclass(frozen=True)
class GaveUp:
    """How a retried call ended: the last failure, the attempts made and the time spent."""

    failure: Exception
    attempts: int
    seconds: float

    def __str__(self) -> str:
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return f"gave up after {tries} in {self.seconds:.1f} s"


def retry_call(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    what: str,
    retryable: Callable[[BaseException], bool],
    give_up: Callable[[GaveUp], Exception],
) -> T:
    """``fn()``, retried while it fails with a retryable error and time is left.

    ``what`` (e.g. "the sharing server at https://…: listing the files of …") is shown with
    each retry; ``give_up`` builds the error raised (chained to the last failure) when the
    budget is spent. Errors that are not retryable are raised as they are, at once.
    """
    start = time.monotonic()
    delay = FIRST_DELAY
    attempts = 0
    while True:
        attempts += 1
        try:
            return fn()
        except Exception as exc:
            if not retryable(exc):
                raise
            spent = time.monotonic() - start
            if spent + delay > policy.seconds:
                raise give_up(GaveUp(exc, attempts, spent)) from exc
            if policy.notify is not None:
                policy.notify(
                    f"{what}: {describe_failure(exc)}; retrying in {delay:.2g} s"
                    f" (for up to {policy.seconds:g} s)"
                )
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: no connection, no answer in time, HTTP 429 or 5xx."""
    import requests

    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    status = http_status(exc)
    return status is not None and (status == 429 or 500 <= status < 600)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed request, if the failure was an answer."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _chain(exc: BaseException, limit: int = 50) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps: causes, contexts, ``reason`` and ``args``."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < limit:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        nested = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        todo += [n for n in nested if isinstance(n, BaseException)]


def find_in_chain(exc: BaseException, kinds: type | tuple[type, ...]) -> BaseException | None:
    """The first exception of ``kinds`` among ``exc`` and what it wraps."""
    return next((e for e in _chain(exc) if isinstance(e, kinds)), None)


def describe_failure(exc: BaseException) -> str:
    """What failed, in a few words, from the exception types (never from their text)."""
    status = next((s for s in map(http_status, _chain(exc)) if s is not None), None)
    if status is not None:
        return f"HTTP {status}"
    reasons: list[tuple[type | tuple[type, ...], str]] = [
        (ConnectionRefusedError, "connection refused"),
        (socket.gaierror, "host name not found"),
        (ConnectionResetError, "connection reset by the server"),
        (ssl.SSLError, "TLS handshake failed"),
        (TimeoutError, "no answer in time"),
    ]
    for kinds, words in reasons:
        if find_in_chain(exc, kinds) is not None:
            return words
    names = [type(e).__name__ for e in _chain(exc)]
    if any("Timeout" in n for n in names):
        return "no answer in time"
    if any(n in ("RemoteDisconnected", "ProtocolError", "ChunkedEncodingError") for n in names):
        return "the connection closed without an answer"
    return f"the request failed ({type(exc).__name__})"


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: no user, path or query (which may carry secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: leave it out
        port = ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else host


def endpoint_text(url: str) -> str:
    """A server's URL as shown in messages: its origin and path, without user or query."""
    return origin(url) + urlsplit(url).path.rstrip("/")
