"""Running the server: in a background thread (tests, notebooks, the demo) or in the
foreground (``arcuate serve``), and writing recipients' profile files.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

# the profile writers live in ..profiles (no server stack); they are named here as before
from arcuate.backends.sharing.profiles import profile_text as profile_text
from arcuate.backends.sharing.profiles import write_private as write_private
from arcuate.backends.sharing.profiles import write_profile as write_profile
from arcuate.backends.sharing.server.app import (
    DEFAULT_PREFIX,
    ServerOptions,
    SharingServer,
    create_app,
)
from arcuate.backends.sharing.server.zerocopy import http_protocol
from arcuate.errors import ConfigurationError


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio only turns Nagle off (TCP_NODELAY) on sockets that do, and
    # with Nagle on, every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class ServerHandle:
    """A server running in a background thread; a context manager that stops it on exit."""

    def __init__(
        self,
        server: uvicorn.Server,
        thread: threading.Thread,
        sock: socket.socket,
        prefix: str,
        sharing: SharingServer,
        scheme: str = "http",
    ) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        self.sharing = sharing
        host, port = sock.getsockname()[:2]
        self.host = str(host)
        self.port = int(port)
        self.endpoint = f"{scheme}://{_url_host(self.host)}:{self.port}{prefix}"

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to finish in-flight requests and exit; wait for the thread. The access
        log is flushed on the way out (by the app's shutdown, else here)."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()
        if self.sharing.audit is not None:
            self.sharing.audit.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(
    catalog_path: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    prefix: str = DEFAULT_PREFIX,
    url_ttl_seconds: int | None = None,
    signing_key: bytes | None = None,
    key_path: str | None = None,
    public_url: str | None = None,
    log_level: str = "warning",
    startup_timeout: float = 20.0,
    storage_options: dict[str, str] | None = None,
    trusted_proxies: tuple[str, ...] = (),
    audit: bool = True,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> ServerHandle:
    """Start the sharing server for ``catalog_path`` on a background thread.

    Returns once it accepts connections. ``handle.endpoint`` is what goes in profiles.
    ``url_ttl_seconds``: see :class:`ServerOptions` (default: 1 hour for local tables, 15
    minutes for tables in object storage). ``storage_options``: how to reach tables in
    object storage, on top of the cloud's environment variables. ``trusted_proxies``: whose
    ``X-Forwarded-For`` names the client; ``audit``: keep the access log; ``tls_cert`` and
    ``tls_key`` (PEM files): serve HTTPS, and ``handle.endpoint`` is an https URL.
    """
    options = ServerOptions(
        prefix=prefix,
        url_ttl_seconds=url_ttl_seconds,
        public_url=public_url,
        storage_options=dict(storage_options or {}),
        trusted_proxies=tuple(trusted_proxies),
        audit=audit,
    )
    app = create_app(catalog_path, signing_key=signing_key, key_path=key_path, options=options)
    sock = bind_socket(host, port)
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=log_level,
        access_log=False,
        lifespan="on",  # starts the access log's writer, and flushes it at shutdown
        proxy_headers=False,  # X-Forwarded-For is read from trusted proxies only (.access)
        timeout_graceful_shutdown=5,
        http=http_protocol(),
        **tls_options(tls_cert, tls_key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="arcuate-sharing-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the sharing server did not start")
        time.sleep(0.01)
    sharing: SharingServer = app.state.sharing
    scheme = "https" if tls_cert else "http"
    return ServerHandle(server, thread, sock, sharing.prefix, sharing, scheme)


def tls_options(cert: str | None, key: str | None) -> dict[str, Any]:
    """uvicorn's TLS settings for a PEM certificate (chain) and its private key.

    Raises:
        ConfigurationError: only one of the two, or a file that cannot be read as such.
    """
    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise ConfigurationError("serving HTTPS needs both a certificate and its key")
    import ssl

    try:  # uvicorn would fail at start-up with a traceback; say which file is wrong here
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot use the TLS certificate {cert} with the key {key}: "
            f"{getattr(exc, 'strerror', None) or exc}",
            hint="both are PEM files; the key must be the certificate's and not encrypted",
        ) from None
    return {"ssl_certfile": cert, "ssl_keyfile": key}
