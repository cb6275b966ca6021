"""arcuate's own Delta Sharing client (:mod:`arcuate.backends.sharing.client`), which reads
shares for DESCRIBE, the default import path and SHOW SHARES IN PROVIDER without importing the
official ``delta_sharing`` package (and pandas with it).

Against the session's real server: an OAuth (profile version 2) recipient reads, and keeps
reading after its access token expired. Against a real HTTP server answering what a hostile
server could: every malformed answer is an ARC730 error naming the request, the line and the
field, never a signed URL or a token; and the requests carry the official client's headers.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import arcuate
from arcuate.backends.sharing import client as sharing_client
from arcuate.backends.sharing.reader import DeltaSharingReader
from arcuate.errors import ArcuateError, BackendError, InputError, NotFoundError
from arcuate.format.schema import FORMAT_VERSION
from tests.server.conftest import Sharing
from tests.server.test_credentials import oauth_recipient

SIGNED = "http://127.0.0.1:1/f.parquet?X-Amz-Signature=s3cr3t-sig&se=2099"
TOKEN = "hostile-test-token"


# -- OAuth recipients (profile version 2) ---------------------------------------------------------
def test_an_oauth_recipient_describes_and_lists_through_arcuates_client(
    sharing: Sharing, tmp_path: Path
) -> None:
    path = oauth_recipient(sharing, "ophelia", tmp_path)
    assert json.loads(path.read_text())["type"] == "oauth_client_credentials"
    coordinate = f"{path}#models.mlflow.experiment"
    [described] = arcuate.execute(f"DESCRIBE '{coordinate}'")
    [as_alice] = arcuate.execute(f"DESCRIBE '{sharing.url('experiment')}'")
    assert described.summary["kind"] == "experiment"
    assert described.rows == as_alice.rows
    assert described.summary["problem"] == as_alice.summary["problem"]
    [listing] = arcuate.execute(f"SHOW SHARES IN PROVIDER '{path}'")
    row = next(r for r in listing.rows if r["table"] == "experiment")
    assert (row["kind"], row["format_version"], row["coordinate"]) == (
        "experiment",
        FORMAT_VERSION,
        coordinate,
    )
    secret = json.loads(path.read_text())["clientSecret"]
    assert secret not in str(described) + str(listing)
    sharing.catalog.drop_recipient("ophelia")


def test_an_expired_access_token_is_renewed_before_a_request(
    sharing: Sharing, tmp_path: Path
) -> None:
    path = oauth_recipient(sharing, "orla", tmp_path, "ACCESS TOKEN LIFETIME 2 SECONDS")
    reader = DeltaSharingReader()
    coordinate = f"{path}#models.mlflow.experiment"
    assert reader.check(coordinate)["content"] == "experiment"
    client_id = json.loads(path.read_text())["clientId"]
    first = _cached_tokens(client_id)
    time.sleep(2.5)  # the token the process holds has expired
    assert reader.list_files(coordinate).files
    second = _cached_tokens(client_id)
    assert second and second.isdisjoint(first)
    sharing.catalog.drop_recipient("orla")
    with pytest.raises(BackendError, match=r"rejected the profile's token|refused the profile's"):
        reader.check(coordinate)


def _cached_tokens(client_id: str) -> set[str]:
    return {t.value for key, t in sharing_client._TOKENS.items() if key[1] == client_id}


def test_profiles_the_client_cannot_use_are_arc710(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"shareCredentialsVersion": 3, "endpoint": "http://127.0.0.1:1/ds", "bearerToken": "t"},
            "'shareCredentialsVersion' is 3; arcuate reads versions 1 and 2",
        ),
        (
            {"shareCredentialsVersion": 2, "type": "basic", "endpoint": "http://127.0.0.1:1/ds"},
            "its 'type' is not one arcuate reads (bearer_token, oauth_client_credentials)",
        ),
        (
            {"shareCredentialsVersion": 1, "endpoint": "ftp://x/ds", "bearerToken": "t"},
            "its 'endpoint' is not an http:// or https:// URL",
        ),
        (
            {"shareCredentialsVersion": 1, "endpoint": "http://x/ds", "bearerToken": "a\nb s3cr3t"},
            "its 'bearerToken' is not a token",
        ),
        (
            {"shareCredentialsVersion": 2, "type": "oauth_client_credentials",
             "endpoint": "http://x/ds", "tokenEndpoint": "http://x/t", "clientId": "c"},
            "has no 'clientSecret'",
        ),
    ]  # fmt: skip
    for i, (doc, expected) in enumerate(cases):
        profile = tmp_path / f"p{i}.share"
        profile.write_text(json.dumps(doc))
        with pytest.raises(InputError) as info:
            DeltaSharingReader().metadata(f"{profile}#s.sc.t")
        assert info.value.code == "ARC710"
        assert expected in str(info.value)
        assert "s3cr3t" not in str(info.value)


# -- a hostile server -------------------------------------------------------------------------------
def _meta(**overrides: Any) -> dict[str, Any]:
    marker = json.dumps({"arcuate": {"format_version": 1, "content": "experiment"}})
    meta = {
        "id": "x",
        "description": marker,
        "format": {"provider": "parquet"},
        "schemaString": "{}",
        "partitionColumns": [],
    }
    meta.update(overrides)
    return meta


def _file(**overrides: Any) -> dict[str, Any]:
    return {"url": SIGNED, "id": "f1", "partitionValues": {}, "size": 10, **overrides}


def _ndjson(*lines: Any) -> bytes:
    return b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)


GOOD = _ndjson({"protocol": {"minReaderVersion": 1}}, {"metaData": _meta()}, {"file": _file()})


class _Server:
    """A real HTTP server answering every request with ``body`` and ``headers``; it records
    the requests' headers."""

    def __init__(self, body: bytes, headers: dict[str, str], status: int = 200) -> None:
        seen: list[dict[str, str]] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                seen.append({k.lower(): v for k, v in self.headers.items()})
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/ds"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``serve(body, headers=...)``: a coordinate of a table the hostile server answers."""
    servers: list[_Server] = []

    def serve(body: bytes, headers: dict[str, str] | None = None, status: int = 200) -> str:
        server = _Server(body, {"Delta-Table-Version": "3"} if headers is None else headers, status)
        servers.append(server)
        profile = tmp_path / f"h{len(servers)}.share"
        doc = {"shareCredentialsVersion": 1, "endpoint": server.endpoint, "bearerToken": TOKEN}
        profile.write_text(json.dumps(doc))
        return f"{profile}#s.sc.t"

    yield serve
    for server in servers:
        server.close()


def _fails(coordinate: str, read: str = "list_files") -> str:
    with pytest.raises(ArcuateError) as info:
        getattr(DeltaSharingReader(), read)(coordinate)
    text = str(info.value)
    for secret in ("s3cr3t", "X-Amz-Signature", TOKEN):
        assert secret not in text, text
    return text


def test_a_good_answer_is_read_with_the_official_clients_headers(
    hostile: Callable[..., str],
) -> None:
    coordinate = hostile(GOOD)
    listing = DeltaSharingReader().list_files(coordinate)
    assert (listing.version, listing.content, [f.size for f in listing.files]) == (
        3,
        "experiment",
        [10],
    )
    assert listing.files[0].url == SIGNED


def test_the_requests_carry_the_capabilities_user_agent_and_token(tmp_path: Path) -> None:
    metadata = _ndjson({"protocol": {"minReaderVersion": 1}}, {"metaData": _meta()})
    seen = []
    for body, read in ((GOOD, "list_files"), (metadata, "metadata")):
        server = _Server(body, {"Delta-Table-Version": "3"})
        try:
            profile = tmp_path / "p.share"
            doc = {"shareCredentialsVersion": 1, "endpoint": server.endpoint, "bearerToken": TOKEN}
            profile.write_text(json.dumps(doc))
            getattr(DeltaSharingReader(), read)(f"{profile}#s.sc.t")
        finally:
            server.close()
        seen += server.seen
    for headers in seen:
        assert headers["delta-sharing-capabilities"] == "responseformat=parquet"
        assert headers["authorization"] == f"Bearer {TOKEN}"
        assert headers["user-agent"].startswith("arcuate/")
    assert seen[0]["content-type"] == "application/json"  # the query's empty JSON body


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (GOOD, {}, "the answer has no delta-table-version header"),
        (GOOD, {"Delta-Table-Version": "-1"}, "the delta-table-version header is not a whole"),
        (
            GOOD,
            {"Delta-Table-Version": "1", "delta-sharing-capabilities": "responseformat=delta"},
            "the server answered in delta format, which was not asked for",
        ),
        (b"{not json\n", None, "line 1 is not JSON"),
        (_ndjson([1, 2]), None, "line 1 is not a JSON object"),
        (_ndjson({"protocol": {"minReaderVersion": 1}}), None, "the answer ends before line 2"),
        (
            _ndjson({"protocol": {"minReaderVersion": 9}}, {"metaData": _meta()}),
            None,
            "the table needs reader version 9; arcuate reads up to 3",
        ),
        (
            _ndjson({"protocol": {"minReaderVersion": "1"}}, {"metaData": _meta()}),
            None,
            "line 1, protocol: 'minReaderVersion' is missing or not a whole number",
        ),
        (
            _ndjson({"protocol": {"minReaderVersion": 1}}, {"metaData": _meta(schemaString=7)}),
            None,
            "line 2, metaData: 'schemaString' is missing or not text",
        ),
        (
            _ndjson(
                {"protocol": {"minReaderVersion": 1}},
                {"metaData": _meta()},
                {"file": _file(size="10")},
            ),
            None,
            "line 3, file: 'size' is missing or not a whole number",
        ),
        (
            _ndjson(
                {"protocol": {"minReaderVersion": 1}}, {"metaData": _meta()}, {"file": _file(id=5)}
            ),
            None,
            "line 3, file: 'id' is missing or not text",
        ),
        (
            _ndjson(
                {"protocol": {"minReaderVersion": 1}},
                {"metaData": _meta()},
                {"file": _file(url="file:///etc/passwd")},
            ),
            None,
            "line 3, file: 'url' is not an http:// or https:// URL",
        ),
        (
            _ndjson(
                {"protocol": {"minReaderVersion": 1}},
                {"metaData": _meta()},
                {"file": _file(partitionValues={"kind": 1})},
            ),
            None,
            "line 3, file: 'partitionValues' is not an object of text values",
        ),
        (
            _ndjson({"protocol": {"minReaderVersion": 1}}, {"metaData": _meta()}, {"add": {}}),
            None,
            "line 3 is not a 'file' line",
        ),
        (
            _ndjson({"protocol": {"minReaderVersion": 1}}, {"metaData": _meta()})
            + b"[" * 100_000
            + b"\n",
            None,
            "line 3 is not JSON",
        ),
    ],
)
def test_a_malformed_answer_names_the_line_and_field(
    hostile: Callable[..., str], body: bytes, headers: dict[str, str] | None, expected: str
) -> None:
    text = _fails(hostile(body, headers))
    assert text.startswith("the sharing server at http://127.0.0.1:")
    assert "sent a malformed answer to the file list of table s.sc.t: " in text
    assert expected in text


def test_oversize_lines_and_too_many_files_stop_the_read(
    hostile: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sharing_client, "MAX_SHARING_LINE_BYTES", 1024)
    long_line = _ndjson(
        {"protocol": {"minReaderVersion": 1}}, {"metaData": _meta(description="x" * 5000)}
    )
    assert "line 2 is longer than 1024 bytes" in _fails(hostile(long_line))
    monkeypatch.setattr(sharing_client, "MAX_SHARED_TABLE_FILES", 2)
    files = [{"file": _file(id=str(i))} for i in range(3)]
    many = _ndjson({"protocol": {"minReaderVersion": 1}}, {"metaData": _meta()}, *files)
    assert "it lists more than 2 files" in _fails(hostile(many))
    monkeypatch.setattr(sharing_client, "MAX_SHARED_TABLE_FILES", 100)
    monkeypatch.setattr(sharing_client, "MAX_SHARING_ANSWER_BYTES", 400)
    assert "the answer is longer than 400 bytes" in _fails(hostile(many))


def test_http_errors_keep_their_meaning(hostile: Callable[..., str]) -> None:
    refusal = json.dumps({"errorCode": "RESOURCE_DOES_NOT_EXIST", "message": "no such table"})
    with pytest.raises(NotFoundError, match="not available to this profile"):
        DeltaSharingReader().list_files(hostile(refusal.encode(), {}, 404))
    text = _fails(hostile(b'{"message": "bad token"}', {}, 401))
    assert "rejected the profile's token" in text and "HTTP 401: bad token" in text


def test_a_metadata_answer_with_a_schema_that_is_not_json(hostile: Callable[..., str]) -> None:
    body = _ndjson({"protocol": {"minReaderVersion": 1}}, {"metaData": _meta(schemaString="{")})
    assert "that is not JSON" in _fails(hostile(body), "metadata")
    both = _ndjson({"protocol": {"minReaderVersion": 1}}, {"metaData": _meta()}, {"file": _file()})
    assert "a metadata answer has two lines" in _fails(hostile(both), "metadata")


def test_every_listing_request_and_its_pages_agree_with_the_official_client(
    sharing: Sharing,
) -> None:
    import delta_sharing

    from arcuate.backends.sharing.client import SharingClient
    from arcuate.backends.sharing.reader import read_profile

    def every(call: Callable[..., Any]) -> list[tuple[object, ...]]:
        items: list[tuple[object, ...]] = []
        token = None
        for _ in range(100):
            page = call(page_token=token, max_results=1)
            assert len(page.items) <= 1
            items += [tuple(vars(i).values()) for i in page.items]
            token = page.next_page_token
            if token is None:
                return items
        raise AssertionError("endless pages")

    official = delta_sharing.SharingClient(str(sharing.profiles["alice"]))
    with SharingClient(read_profile(str(sharing.profiles["alice"]))) as client:
        assert [s for (s,) in every(client.list_shares)] == [s.name for s in official.list_shares()]
        assert every(lambda **kw: client.list_schemas("models", **kw)) == [("mlflow", "models")]
        tables = sorted(every(lambda **kw: client.list_tables("models", "mlflow", **kw)))
        assert tables == sorted(every(lambda **kw: client.list_all_tables("models", **kw)))
        assert tables == sorted((t.name, t.schema, t.share) for t in official.list_all_tables())
        answer = client.query_metadata("models", "mlflow", "experiment")
        assert (answer.version, answer.files) == (1, [])
        assert (
            answer.metadata.description
            == delta_sharing.get_table_metadata(sharing.url("experiment")).description
        )


def test_a_refused_access_token_is_replaced_once(sharing: Sharing, tmp_path: Path) -> None:
    """A token the server no longer takes (here: one it never issued, held as if fresh) gets
    a 401; the client asks the token endpoint for a new one and repeats the request once."""
    path = oauth_recipient(sharing, "oona", tmp_path)
    coordinate = f"{path}#models.mlflow.experiment"
    reader = DeltaSharingReader()
    assert reader.check(coordinate)["content"] == "experiment"
    client_id = json.loads(path.read_text())["clientId"]
    [key] = [k for k in sharing_client._TOKENS if k[1] == client_id]
    sharing_client._TOKENS[key] = sharing_client._AccessToken(
        "forged-token", time.time() + 3600, 3600.0
    )
    assert reader.list_files(coordinate).files
    assert sharing_client._TOKENS[key].value != "forged-token"
    sharing.catalog.drop_recipient("oona")
