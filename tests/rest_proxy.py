"""A counting HTTP proxy in front of a real ``mlflow server``: how many requests a statement
makes per REST endpoint, and how many of them were in flight at once (call counts, not
timings, are what the tests pin)."""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: Where the server's artifact proxy serves files
DOWNLOAD = "/api/2.0/mlflow-artifacts/artifacts/"
#: Hop-by-hop headers a proxy does not forward.
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class CountingProxy:
    """Forwards every request to ``upstream``; counts them by (method, path)."""

    def __init__(
        self,
        upstream: str,
        hold: float = 0.0,
        refuse: tuple[str, ...] = (),
        rewrite: Mapping[str, Callable[[bytes], bytes]] | None = None,
    ) -> None:
        self.upstream = urlsplit(upstream)
        #: paths answered 404 without asking upstream (a server without that endpoint)
        self.refuse = refuse
        #: path -> what the server's answer body becomes (a hostile or broken server)
        self.rewrite = dict(rewrite or {})
        #: seconds each request is held before it is forwarded (makes overlap observable)
        self.hold = hold
        self.counts: Counter[tuple[str, str]] = Counter()
        self.peak: Counter[str] = Counter()
        self._inflight: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.peak.clear()

    def count(self, suffix: str) -> int:
        """Requests whose path ends with ``suffix`` (any method)."""
        return sum(n for (_, path), n in self.counts.items() if path.endswith(suffix))

    def total(self) -> int:
        return sum(self.counts.values())

    @staticmethod
    def _kinds(method: str, path: str) -> list[str]:
        """What a request's in-flight peak is kept under: its path, and ``download`` for
        every file download from the server's artifact proxy."""
        if method == "GET" and path.startswith(DOWNLOAD):
            return [path, "download"]
        return [path]

    def _enter(self, method: str, path: str) -> None:
        with self._lock:
            self.counts[(method, path)] += 1
            for kind in self._kinds(method, path):
                self._inflight[kind] += 1
                self.peak[kind] = max(self.peak[kind], self._inflight[kind])

    def _leave(self, method: str, path: str) -> None:
        with self._lock:
            for kind in self._kinds(method, path):
                self._inflight[kind] -= 1

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        self._enter(handler.command, path)
        try:
            if self.hold:
                threading.Event().wait(self.hold)
            if path in self.refuse:
                handler.send_response(404)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length) if length else None
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
            conn = http.client.HTTPConnection(self.upstream.netloc, timeout=120)
            try:
                conn.request(handler.command, handler.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if path in self.rewrite and resp.status == 200:
                    data = self.rewrite[path](data)
                handler.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in _HOP and key.lower() != "content-length":
                        handler.send_header(key, value)
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
            finally:
                conn.close()
        finally:
            self._leave(handler.command, path)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = lambda self: (
                proxy._forward(self)
            )

        return Handler

    @contextmanager
    def running(self) -> Iterator[CountingProxy]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(10)
