"""Zero-copy file bodies: uvicorn's h11 protocol with the ASGI ``http.response.zerocopysend``
extension, sent with ``os.sendfile`` through ``loop.sendfile``.

Starlette streams a file by reading it into Python in pieces (each read a thread hop) and
writing every piece to the socket: on big files that costs more than the disk. Here the kernel
copies the page cache straight to the socket. The app sees the extension in
``scope["extensions"]`` and sends ``{"type": "http.response.zerocopysend", "file": <binary file
object>, "offset": int, "count": int, "more_body": bool}`` after ``http.response.start``; h11
still frames the body (its ``Data`` events accept any object with a length, the way its
documentation describes for sendfile), so Content-Length, keep-alive and HEAD behave exactly
as before.

Only uvicorn's h11 protocol is extended, and it is private to uvicorn: :func:`http_protocol`
checks that the class and the attributes used here are still there, and otherwise gives
uvicorn's own protocol (file bodies streamed by the app, as without the extension) and logs
one warning, so a uvicorn release that changes them slows big files down but never breaks the
server. ``pyproject.toml`` pins the uvicorn versions this was tested with.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import h11
import uvicorn

if TYPE_CHECKING:
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base
    from uvicorn.protocols.http.h11_impl import RequestResponseCycle
else:
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol as _Base
    except ImportError:  # http_protocol() will not use the subclass below
        _Base = asyncio.Protocol

log = logging.getLogger("arcuate.server")

EXTENSION: Final = "http.response.zerocopysend"
#: The cycle attributes this module relies on (checked by :func:`http_protocol`, so a uvicorn
#: upgrade that changes them turns the extension off instead of breaking responses).
_NEEDED: Final = (
    "scope",
    "send",
    "conn",
    "transport",
    "flow",
    "disconnected",
    "response_started",
    "response_complete",
    "message_event",
    "keep_alive",
    "on_response",
)
#: uvicorn's ``http`` setting when the extension cannot be offered: its own choice of protocol.
STREAMING: Final = "auto"


class _Placeholder:
    """Stands for ``count`` file bytes in h11's output (h11 only calls ``len`` on it)."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count


class ZeroCopyH11Protocol(_Base):
    """uvicorn's h11 protocol, offering ``http.response.zerocopysend`` to every HTTP request."""

    def handle_events(self) -> None:
        before = getattr(self, "cycle", None)
        super().handle_events()
        cycle = getattr(self, "cycle", None)
        if cycle is not None and cycle is not before and not cycle.response_started:
            # The cycle's task is created but has not run yet: it looks up scope and send
            # only when it starts, so both can still be extended here.
            extensions = cycle.scope.setdefault("extensions", {})
            extensions[EXTENSION] = {}
            original = cycle.send

            async def send(message: Any) -> None:
                if message.get("type") == EXTENSION:
                    await _send_file(cycle, message)
                else:
                    await original(message)

            cycle.send = send  # type: ignore[method-assign]


def _names(function: Any) -> set[str]:
    """The attribute and global names a function's code uses (empty if it is not Python)."""
    code = getattr(function, "__code__", None)
    return set(code.co_names) if code is not None else set()


def _unsupported() -> str | None:
    """Why this uvicorn cannot take the extension, or None when its internals are as expected."""
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
    except ImportError as exc:
        return f"uvicorn.protocols.http.h11_impl has no H11Protocol ({exc})"
    if not issubclass(ZeroCopyH11Protocol, H11Protocol):
        return "uvicorn.protocols.http.h11_impl.H11Protocol was replaced"
    if "cycle" not in _names(getattr(H11Protocol, "handle_events", None)):
        return "H11Protocol.handle_events no longer sets self.cycle"
    known = _names(RequestResponseCycle.__init__) | set(vars(RequestResponseCycle))
    missing = [name for name in _NEEDED if name not in known]
    if missing:
        return f"RequestResponseCycle has no {', '.join(missing)}"
    if not hasattr(h11.Connection, "send_with_data_passthrough"):
        return "h11.Connection has no send_with_data_passthrough"
    return None


@functools.cache
def http_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's ``http`` setting: :class:`ZeroCopyH11Protocol`, or :data:`STREAMING` (with
    one warning) when this uvicorn's internals are not the ones it was written against."""
    why = _unsupported()
    if why is None:
        return ZeroCopyH11Protocol
    log.warning(
        "uvicorn %s: zero-copy file serving is off (%s); file bodies are streamed instead,"
        " which is slower for big files (a uvicorn in the range arcuate requires restores it)",
        uvicorn.__version__,
        why,
    )
    return STREAMING


async def _send_file(cycle: RequestResponseCycle, message: Any) -> None:
    """Send ``count`` bytes of ``file`` from ``offset`` as (part of) the response body."""
    if cycle.flow.write_paused and not cycle.disconnected:
        await cycle.flow.drain()
    if cycle.disconnected:
        return
    if not cycle.response_started or cycle.response_complete:
        raise RuntimeError(f"unexpected ASGI message {EXTENSION!r} outside a response body")
    file: BinaryIO = message["file"]
    offset = int(message.get("offset") or 0)
    count = message.get("count")
    if count is None:
        count = os.fstat(file.fileno()).st_size - offset
    count = int(count)
    more_body = bool(message.get("more_body", False))
    transport = cycle.transport
    if cycle.scope["method"] != "HEAD" and count > 0:
        placeholder: Any = _Placeholder(count)
        pieces: list[Any] = cycle.conn.send_with_data_passthrough(h11.Data(data=placeholder)) or []
        for piece in pieces:
            if piece is not placeholder:
                transport.write(bytes(piece))
                continue
            loop = asyncio.get_running_loop()
            try:
                sent = await loop.sendfile(transport, file, offset, count, fallback=True)
            except (ConnectionError, OSError):
                sent = -1
            if sent != count:
                # The peer went away, or the file shrank: the framing is broken, so the
                # connection cannot carry another response.
                cycle.disconnected = True
                cycle.keep_alive = False
                if not transport.is_closing():
                    transport.close()
                if sent >= 0:
                    log.warning("file body ended after %d of %d bytes", sent, count)
                cycle.response_complete = True
                cycle.message_event.set()
                return
    if not more_body:
        cycle.response_complete = True
        cycle.message_event.set()
        transport.write(cycle.conn.send(h11.EndOfMessage()) or b"")
        if cycle.conn.our_state is h11.MUST_CLOSE or not cycle.keep_alive:
            cycle.conn.send(h11.ConnectionClosed())
            transport.close()
        cycle.on_response()
