"""File bodies sent with os.sendfile (the zerocopysend extension): same bytes, same framing.

Every file URL of the session server goes through this path; these tests check the bytes and
the HTTP framing on one keep-alive connection, a body much larger than the socket buffers, and
a client that hangs up half-way. The extension is built on uvicorn's private h11 protocol: when
a uvicorn release changes it, the server streams file bodies instead and says so once.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest
import uvicorn
import uvicorn.protocols.http.auto
import uvicorn.protocols.http.h11_impl as h11_impl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from arcuate.backends.sharing.server import serve_in_thread
from arcuate.backends.sharing.server.app import _FileResponse
from arcuate.backends.sharing.server.runner import bind_socket
from arcuate.backends.sharing.server.zerocopy import ZeroCopyH11Protocol, http_protocol
from tests.server.conftest import Sharing


def test_the_installed_uvicorn_supports_the_extension() -> None:
    assert http_protocol() is ZeroCopyH11Protocol


def _file_url(sharing: Sharing, endpoint: str | None = None) -> str:
    resp = httpx.post(
        (endpoint or sharing.endpoint) + "/shares/models/schemas/mlflow/tables/experiment/query",
        headers={"Authorization": f"Bearer {sharing.tokens['alice']}"},
        json={},
        timeout=10,
    )
    assert resp.status_code == 200
    lines = [json.loads(x) for x in resp.text.splitlines()]
    return str(next(x["file"]["url"] for x in lines if "file" in x))


def test_one_keep_alive_connection_serves_whole_range_head_and_multi_range(
    sharing: Sharing,
) -> None:
    _serves_whole_range_head_and_multi_range(sharing, _file_url(sharing))


def _serves_whole_range_head_and_multi_range(sharing: Sharing, url: str) -> None:
    parts = urlsplit(url)
    rel = unquote(parts.path.split("/files/", 1)[1].split("/", 1)[1])
    on_disk = (Path(sharing.location("experiment")) / rel).read_bytes()
    target = f"{parts.path}?{parts.query}"
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:

        def get(method: str = "GET", **headers: str) -> http.client.HTTPResponse:
            conn.request(method, target, headers=headers)
            return conn.getresponse()

        whole = get()
        assert whole.status == 200 and whole.read() == on_disk
        part = get(Range="bytes=10-1009")
        assert part.status == 206 and part.read() == on_disk[10:1010]
        assert part.headers["content-range"] == f"bytes 10-1009/{len(on_disk)}"
        head = get("HEAD")
        assert head.status == 200 and head.read() == b""
        assert head.headers["content-length"] == str(len(on_disk))
        multi = get(Range="bytes=0-3,-4")  # several ranges: Starlette's streamed multipart
        body = multi.read()
        assert multi.status == 206 and on_disk[:4] in body and on_disk[-4:] in body
        again = get()
        assert again.status == 200 and again.read() == on_disk
        tail = get(Range=f"bytes={len(on_disk) - 5}-")
        assert tail.status == 206 and tail.read() == on_disk[-5:]
    finally:
        conn.close()


def _rewritten(cls: type, method: str) -> Callable[[pytest.MonkeyPatch], None]:
    """A release where ``cls.method`` still works but no longer shows the names zero-copy
    relies on (the attributes it sets were renamed or moved elsewhere)."""

    def change(monkeypatch: pytest.MonkeyPatch) -> None:
        original = getattr(cls, method)

        def wrapper(self: object, *args: object, **kwargs: object) -> object:
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, wrapper)

    return change


#: uvicorn (or h11) releases that change what zero-copy serving is built on; uvicorn itself
#: keeps serving in each (its own protocol is imported before the change).
CHANGES = {
    "the private module is gone": lambda mp: mp.setitem(
        sys.modules, "uvicorn.protocols.http.h11_impl", None
    ),
    "the private class is gone": lambda mp: mp.delattr(h11_impl, "H11Protocol"),
    "the cycle's attributes changed": _rewritten(h11_impl.RequestResponseCycle, "__init__"),
    "handle_events changed": _rewritten(h11_impl.H11Protocol, "handle_events"),
}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_uvicorn_streams_file_bodies_with_a_warning(sharing: Sharing, change: str) -> None:
    assert uvicorn.protocols.http.auto.AutoHTTPProtocol is h11_impl.H11Protocol
    collect = _Collect()
    logging.getLogger("arcuate.server").addHandler(collect)
    try:
        with pytest.MonkeyPatch.context() as mp:
            CHANGES[change](mp)
            http_protocol.cache_clear()
            with serve_in_thread(str(sharing.catalog_path)) as handle:
                url = _file_url(sharing, handle.endpoint)
                _serves_whole_range_head_and_multi_range(sharing, url)
                assert handle.sharing.stats.server_errors == 0
            http_protocol()  # asked again: the warning is not repeated
    finally:
        http_protocol.cache_clear()
        logging.getLogger("arcuate.server").removeHandler(collect)
    assert len(collect.messages) == 1, collect.messages
    warning = collect.messages[0]
    assert warning.startswith(f"uvicorn {uvicorn.__version__}: zero-copy file serving is off")
    assert "file bodies are streamed" in warning
    assert http_protocol() is ZeroCopyH11Protocol


@pytest.fixture(scope="module")
def big_file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A bare app serving one 24 MiB file through _FileResponse over the zero-copy protocol."""
    path = tmp_path_factory.mktemp("zerocopy") / "big.bin"
    with open(path, "wb") as fh:
        for i in range(24):
            fh.write(hashlib.sha256(str(i).encode()).digest() * (1 << 15))

    async def serve(request: Request) -> Response:
        return _FileResponse(path, stat_result=os.stat(path))

    app = Starlette(routes=[Route("/big", serve, methods=["GET", "HEAD"])])
    sock = bind_socket("127.0.0.1", 0)
    config = uvicorn.Config(
        app, log_config=None, lifespan="off", access_log=False, http=ZeroCopyH11Protocol
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/big", path
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_body_larger_than_the_socket_buffers_arrives_whole(
    big_file_server: tuple[str, Path],
) -> None:
    url, path = big_file_server
    want = hashlib.sha256(path.read_bytes()).hexdigest()
    with httpx.Client(timeout=30) as client:
        for _ in range(2):
            digest = hashlib.sha256()
            with client.stream("GET", url) as resp:
                assert resp.status_code == 200
                for piece in resp.iter_bytes(1 << 16):
                    digest.update(piece)
            assert digest.hexdigest() == want
        mid = client.get(url, headers={"Range": "bytes=1000000-9999999"})
        assert mid.status_code == 206 and mid.content == path.read_bytes()[1000000:10000000]


def test_a_client_hanging_up_mid_body_leaves_the_server_serving(
    big_file_server: tuple[str, Path],
) -> None:
    url, path = big_file_server
    parts = urlsplit(url)
    for _ in range(3):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
            s.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert s.recv(65536)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    resp = httpx.get(url, timeout=30)
    assert resp.status_code == 200 and resp.content == path.read_bytes()
