"""Access rules and hostile requests: each gets its documented status and leaks nothing.

| request                                        | status | errorCode                |
|------------------------------------------------|--------|--------------------------|
| no / malformed / unknown / rotated / dropped token | 401 | UNAUTHENTICATED         |
| expired token                                  | 401    | UNAUTHENTICATED          |
| share or table not granted (or not there)      | 404    | RESOURCE_DOES_NOT_EXIST  |
| file URL tampered, expired, revoked, traversal | 403    | PERMISSION_DENIED        |
| body over 1 MiB                                | 413    | MALFORMED_REQUEST        |
| body not JSON / not an object / wrong types    | 400    | MALFORMED_REQUEST        |
| bad values (negative, conflicting, bad token)  | 400    | INVALID_PARAMETER_VALUE  |
| unknown body fields                            | 200    | (ignored)                |
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import delta_sharing
import httpx
import pytest
from requests import HTTPError

from tests.server.conftest import Sharing

TABLE = "/shares/models/schemas/mlflow/tables/simple"


def call(
    sharing: Sharing,
    method: str,
    path: str,
    *,
    token: str | None = "alice",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {sharing.tokens.get(token, token)}"
    return httpx.request(method, sharing.endpoint + path, headers=h, timeout=10, **kwargs)


def raw(
    sharing: Sharing, method: str, target: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """A request whose target goes out byte for byte (no client-side path normalisation)."""
    conn = http.client.HTTPConnection(sharing.handle.host, sharing.handle.port, timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"errorCode", "message"}
    assert body["errorCode"] == code
    return body


def assert_leaks_nothing(sharing: Sharing, text: str) -> None:
    assert str(sharing.root) not in text
    assert "Traceback" not in text and 'File "' not in text
    for token in sharing.tokens.values():
        assert token not in text


def first_file_url(sharing: Sharing, table: str = "simple", token: str = "alice") -> str:
    resp = call(
        sharing, "POST", f"/shares/models/schemas/mlflow/tables/{table}/query", token=token, json={}
    )
    assert resp.status_code == 200
    lines = [json.loads(x) for x in resp.text.splitlines()]
    return str(lines[2]["file"]["url"])


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- tokens ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
    ids=["missing", "empty", "basic", "unknown", "huge"],
)
def test_requests_without_a_valid_token_get_401(sharing: Sharing, headers: dict[str, str]) -> None:
    for path in ("/shares", "/shares/models/schemas", TABLE + "/metadata"):
        resp = call(sharing, "GET", path, token=None, headers=headers)
        body = assert_error(resp, 401, "UNAUTHENTICATED")
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert "models" not in body["message"]
        assert_leaks_nothing(sharing, resp.text)
    resp = call(sharing, "POST", TABLE + "/query", token=None, headers=headers, json={})
    assert_error(resp, 401, "UNAUTHENTICATED")


def test_the_client_sees_401_for_a_wrong_token(sharing: Sharing, tmp_path: Any) -> None:
    from arcuate.backends.sharing.server import write_profile

    profile = write_profile(tmp_path / "wrong.share", sharing.endpoint, "wrong-token")
    with pytest.raises(HTTPError) as info:
        delta_sharing.SharingClient(str(profile)).list_shares()
    assert info.value.response.status_code == 401


def test_expired_token_is_refused(sharing: Sharing) -> None:
    profile, token = sharing.new_recipient("dave", "models", expires_in_seconds=3600)
    assert delta_sharing.get_table_version(f"{profile}#models.mlflow.simple") == 2
    with sharing.catalog.editing() as doc:  # an hour passes
        r = next(r for r in doc["recipients"] if r["name"] == "dave")
        r["token"]["expires_at"] = "2020-01-01T00:00:00.000Z"
    resp = call(sharing, "GET", "/shares", token=token)
    body = assert_error(resp, 401, "UNAUTHENTICATED")
    assert "expired" in body["message"]
    with pytest.raises(HTTPError) as info:
        delta_sharing.get_table_version(f"{profile}#models.mlflow.simple")
    assert info.value.response.status_code == 401


def test_rotation_revocation_and_drop_apply_at_once(sharing: Sharing) -> None:
    profile, token = sharing.new_recipient("ivy", "models")
    url = f"{profile}#models.mlflow.simple"
    assert len(delta_sharing.load_as_pandas(url)) == 3
    file_url = first_file_url(sharing, token=token)
    assert httpx.get(file_url).status_code == 200

    sharing.catalog.revoke("models", "ivy")
    resp = call(sharing, "GET", "/shares/models/schemas", token=token)
    assert_error(resp, 404, "RESOURCE_DOES_NOT_EXIST")
    assert call(sharing, "GET", "/shares", token=token).json() == {"items": []}
    assert_error(httpx.get(file_url), 403, "PERMISSION_DENIED")

    sharing.catalog.grant("models", "ivy")
    assert httpx.get(file_url).status_code == 200
    new = sharing.catalog.rotate_token("ivy")
    assert_error(call(sharing, "GET", "/shares", token=token), 401, "UNAUTHENTICATED")
    assert_error(httpx.get(file_url), 403, "PERMISSION_DENIED")  # URLs of the old token die
    assert call(sharing, "GET", "/shares", token=new).status_code == 200

    sharing.catalog.drop_recipient("ivy")
    assert_error(call(sharing, "GET", "/shares", token=new), 401, "UNAUTHENTICATED")


# -- ungranted shares look like missing ones ---------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/shares/{s}",
        "/shares/{s}/schemas",
        "/shares/{s}/all-tables",
        "/shares/{s}/schemas/mlflow/tables",
        "/shares/{s}/schemas/mlflow/tables/simple/version",
        "/shares/{s}/schemas/mlflow/tables/simple/metadata",
        "/shares/{s}/schemas/mlflow/tables/simple/changes?startingVersion=0",
    ],
)
def test_an_ungranted_share_answers_like_a_missing_one(sharing: Sharing, path: str) -> None:
    # "other" exists (bob's) and holds mlflow.simple; "nosuch" does not exist.
    ungranted = call(sharing, "GET", path.format(s="other"))
    missing = call(sharing, "GET", path.format(s="nosuch"))
    assert_error(ungranted, 404, "RESOURCE_DOES_NOT_EXIST")
    assert ungranted.status_code == missing.status_code
    assert ungranted.text.replace("other", "X") == missing.text.replace("nosuch", "X")
    varying = {"date", "content-length", "x-request-id"}  # the request id is new each time
    assert {k: v for k, v in ungranted.headers.items() if k not in varying} == {
        k: v for k, v in missing.headers.items() if k not in varying
    }
    assert ungranted.headers["x-request-id"] != missing.headers["x-request-id"]
    # and bob, who holds the grant, reads it
    assert call(sharing, "GET", path.format(s="other"), token="bob").status_code == 200


def test_an_ungranted_share_through_the_client(sharing: Sharing) -> None:
    with pytest.raises(HTTPError) as info:
        delta_sharing.load_as_pandas(sharing.url("simple", share="other"))
    assert info.value.response.status_code == 404
    client = delta_sharing.SharingClient(str(sharing.profiles["bob"]))
    assert [s.name for s in client.list_shares()] == ["other"]


def test_unknown_schema_and_table_are_404(sharing: Sharing) -> None:
    assert_error(
        call(sharing, "GET", "/shares/models/schemas/nope/tables"), 404, "RESOURCE_DOES_NOT_EXIST"
    )
    resp = call(sharing, "GET", "/shares/models/schemas/mlflow/tables/nope/metadata")
    assert_error(resp, 404, "RESOURCE_DOES_NOT_EXIST")
    resp = call(sharing, "POST", "/shares/models/schemas/mlflow/tables/nope/query", json={})
    assert_error(resp, 404, "RESOURCE_DOES_NOT_EXIST")


def test_names_are_case_insensitive(sharing: Sharing) -> None:
    resp = call(sharing, "GET", "/shares/MODELS/schemas/MLflow/tables/SIMPLE/version")
    assert resp.status_code == 200 and resp.headers["delta-table-version"] == "2"


# -- path traversal ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "/shares/..%2F..%2F..%2Fetc/schemas",
        "/shares/../../../etc/passwd",
        "/shares/models/schemas/..%2F..%2Fshares.yaml/tables",
        "/shares/models/schemas/mlflow/tables/..%2F..%2Fshares.yaml/metadata",
        "/shares/models/schemas/mlflow/tables/%2e%2e/metadata",
        "/shares/models%00/schemas",
    ],
)
def test_traversal_in_names_finds_nothing(sharing: Sharing, target: str) -> None:
    status, body = raw(
        sharing,
        "GET",
        urlsplit(sharing.endpoint).path + target,
        {"Authorization": f"Bearer {sharing.tokens['alice']}"},
    )
    assert status == 404
    assert json.loads(body)["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
    assert_leaks_nothing(sharing, body.decode())


def test_traversal_in_file_urls_is_refused(sharing: Sharing) -> None:
    url = first_file_url(sharing)
    parts = urlsplit(url)
    base, _, name = parts.path.rpartition("/")
    table_dir = base  # .../files/<table id>
    attempts = [
        f"{table_dir}/../../shares.yaml",
        f"{table_dir}/%2e%2e/%2e%2e/shares.yaml",
        f"{table_dir}/..%2F..%2Fshares.yaml",
        f"{table_dir}/_delta_log/../../../shares.yaml",
        f"{table_dir}//etc/passwd",
        f"{table_dir}/{name}%00.txt",
        f"{table_dir}/..\\..\\shares.yaml",
    ]
    for path in attempts:
        status, body = raw(sharing, "GET", f"{path}?{parts.query}")
        assert status == 403, (path, status, body)
        assert json.loads(body)["errorCode"] == "PERMISSION_DENIED"
        assert_leaks_nothing(sharing, body.decode())


# -- file URLs -------------------------------------------------------------------------------
def test_file_urls_support_get_head_and_ranges(sharing: Sharing) -> None:
    url = first_file_url(sharing, "experiment")
    whole = httpx.get(url)
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "application/octet-stream"
    assert int(whole.headers["content-length"]) == len(whole.content) > 1000
    assert whole.content[:4] == b"PAR1"
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(whole.content))
    assert head.content == b""
    part = httpx.get(url, headers={"Range": "bytes=4-99"})
    assert part.status_code == 206 and part.content == whole.content[4:100]
    assert part.headers["content-range"] == f"bytes 4-99/{len(whole.content)}"
    tail = httpx.get(url, headers={"Range": "bytes=-8"})
    assert tail.status_code == 206 and tail.content == whole.content[-8:]
    bad = httpx.get(url, headers={"Range": f"bytes={len(whole.content) + 10}-"})
    assert bad.status_code == 416


def test_tampered_file_urls_are_refused(sharing: Sharing) -> None:
    url = first_file_url(sharing)
    assert httpx.get(url).status_code == 200
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    other = first_file_url(sharing, "experiment")
    tampered = [
        with_query(
            url, sig=query["sig"][:-2] + ("AA" if not query["sig"].endswith("AA") else "BB")
        ),
        with_query(url, se=str(int(query["se"]) + 3600)),
        with_query(url, rc="bob"),
        with_query(url, sig="not base64 !"),
        with_query(url, sp="w"),
        urlunsplit(parts._replace(query="")),
        urlunsplit(parts._replace(path=parts.path + "x")),
        urlunsplit(parts._replace(query=urlsplit(other).query)),  # another file's signature
    ]
    for bad in tampered:
        resp = httpx.get(bad)
        assert_error(resp, 403, "PERMISSION_DENIED")
        assert_leaks_nothing(sharing, resp.text)
        assert httpx.head(bad).status_code == 403


def test_expired_file_urls_are_refused(sharing: Sharing) -> None:
    from arcuate.backends.sharing.server.signing import FileClaim

    url = first_file_url(sharing)
    parts = urlsplit(url)
    _, _, rest = parts.path.partition("/files/")
    table_id, _, path = rest.partition("/")
    server = sharing.handle.sharing
    alice = server.watcher.view().recipient("alice")
    claim = FileClaim(table_id, path, "alice", int(time.time()) - 1)
    expired = server.signer.file_url(sharing.endpoint, claim, alice.token_id)
    body = assert_error(httpx.get(expired), 403, "PERMISSION_DENIED")
    assert "expired" in body["message"]
    fresh = server.signer.file_url(
        sharing.endpoint, FileClaim(table_id, path, "alice", int(time.time()) + 60), alice.token_id
    )
    assert httpx.get(fresh).status_code == 200


def test_file_url_of_a_removed_table_stops_working(sharing: Sharing) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    location = str(sharing.warehouse / "late" / "gone")
    write_deltalake(location, pa.table({"x": [1]}))
    sharing.catalog.add_table("models", "late", "gone", location)
    url = first_file_url_for(sharing, "/shares/models/schemas/late/tables/gone/query")
    assert httpx.get(url).status_code == 200
    sharing.catalog.remove_table("models", "late", "gone")
    assert_error(httpx.get(url), 403, "PERMISSION_DENIED")


def first_file_url_for(sharing: Sharing, path: str) -> str:
    resp = call(sharing, "POST", path, json={})
    assert resp.status_code == 200, resp.text
    return str(json.loads(resp.text.splitlines()[2])["file"]["url"])


# -- request bodies and parameters -------------------------------------------------------------
def test_oversized_bodies_get_413(sharing: Sharing) -> None:
    big = b'{"predicateHints": ["' + b"x" * (2 << 20) + b'"]}'
    resp = call(
        sharing, "POST", TABLE + "/query", content=big, headers={"Content-Type": "application/json"}
    )
    assert_error(resp, 413, "MALFORMED_REQUEST")

    def chunks() -> Any:  # no Content-Length: the server counts as it reads
        for _ in range(40):
            yield b"x" * 65536

    resp = call(sharing, "POST", TABLE + "/query", content=chunks())
    assert_error(resp, 413, "MALFORMED_REQUEST")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "MALFORMED_REQUEST"),
        (b"\xff\xfe", 400, "MALFORMED_REQUEST"),
        (b"[1, 2]", 400, "MALFORMED_REQUEST"),
        (b'"text"', 400, "MALFORMED_REQUEST"),
        (b'{"version": "1"}', 400, "MALFORMED_REQUEST"),
        (b'{"version": true}', 400, "MALFORMED_REQUEST"),
        (b'{"limitHint": 1.5}', 400, "MALFORMED_REQUEST"),
        (b'{"predicateHints": "id > 1"}', 400, "MALFORMED_REQUEST"),
        (b'{"timestamp": 5}', 400, "MALFORMED_REQUEST"),
        (b'{"version": -1}', 400, "INVALID_PARAMETER_VALUE"),
        (b'{"version": 99}', 400, "INVALID_PARAMETER_VALUE"),
        (b'{"version": 1, "timestamp": "2024-01-01T00:00:00Z"}', 400, "INVALID_PARAMETER_VALUE"),
        (b'{"timestamp": "yesterday"}', 400, "INVALID_PARAMETER_VALUE"),
        (b'{"timestamp": "1999-01-01T00:00:00Z"}', 400, "INVALID_PARAMETER_VALUE"),
        (b'{"maxFiles": 0}', 400, "INVALID_PARAMETER_VALUE"),
        (b'{"pageToken": "forged"}', 400, "INVALID_PARAMETER_VALUE"),
        (b'{"refreshToken": "forged"}', 400, "INVALID_PARAMETER_VALUE"),
        (b'{"startingVersion": 0}', 400, "UNSUPPORTED_OPERATION"),
        (b'{"version": 100000000000000000000000}', 400, "INVALID_PARAMETER_VALUE"),
    ],
)
def test_bad_query_bodies_are_4xx(sharing: Sharing, body: bytes, status: int, code: str) -> None:
    resp = call(
        sharing,
        "POST",
        TABLE + "/query",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert_error(resp, status, code)
    assert_leaks_nothing(sharing, resp.text)


def test_unknown_query_fields_are_ignored(sharing: Sharing) -> None:
    body = {
        "version": 1,
        "futureField": {"a": [1]},
        "jsonPredicateHints": "{not json",
        "predicateHints": ["id > 1"],
    }
    resp = call(sharing, "POST", TABLE + "/query", json=body)
    assert resp.status_code == 200
    assert resp.headers["delta-table-version"] == "1"
    lines = resp.text.splitlines()
    assert len(lines) == 4  # protocol, metadata, 2 files (create + append)
    assert resp.headers["content-type"] == "application/x-ndjson; charset=utf-8"
    assert resp.headers["delta-sharing-capabilities"] == "responseformat=parquet"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/shares?maxResults=abc", "INVALID_PARAMETER_VALUE"),
        ("/shares?maxResults=-1", "INVALID_PARAMETER_VALUE"),
        ("/shares?maxResults=501", "INVALID_PARAMETER_VALUE"),
        ("/shares?pageToken=forged", "INVALID_PARAMETER_VALUE"),
        (TABLE + "/version?startingTimestamp=garbage", "INVALID_PARAMETER_VALUE"),
        (TABLE + "/version?startingTimestamp=2999-01-01T00:00:00Z", "INVALID_PARAMETER_VALUE"),
        (TABLE + "/changes", "INVALID_PARAMETER_VALUE"),
        (TABLE + "/changes?startingVersion=x", "INVALID_PARAMETER_VALUE"),
        (TABLE + "/changes?startingVersion=9", "INVALID_PARAMETER_VALUE"),
        (TABLE + "/changes?startingVersion=2&endingVersion=1", "INVALID_PARAMETER_VALUE"),
        (
            TABLE + "/changes?startingVersion=0&includeHistoricalMetadata=maybe",
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "/shares/models/schemas/mlflow/tables/nocdf/changes?startingVersion=0",
            "INVALID_PARAMETER_VALUE",
        ),
        (TABLE + "/metadata?version=7", "INVALID_PARAMETER_VALUE"),
    ],
)
def test_bad_parameters_are_400(sharing: Sharing, path: str, code: str) -> None:
    resp = call(sharing, "GET", path)
    assert_error(resp, 400, code)
    assert_leaks_nothing(sharing, resp.text)


def test_page_tokens_are_bound_to_their_listing(sharing: Sharing) -> None:
    page = call(sharing, "GET", "/shares/models/all-tables?maxResults=1").json()
    token = page["nextPageToken"]
    resp = call(sharing, "GET", f"/shares/models/schemas/mlflow/tables?pageToken={token}")
    assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
    resp = call(sharing, "GET", f"/shares?pageToken={token}", token="bob")
    assert_error(resp, 400, "INVALID_PARAMETER_VALUE")


def test_wrong_method_and_unknown_path(sharing: Sharing) -> None:
    assert_error(call(sharing, "DELETE", "/shares"), 405, "METHOD_NOT_ALLOWED")
    assert_error(call(sharing, "GET", TABLE + "/query"), 405, "METHOD_NOT_ALLOWED")
    assert_error(call(sharing, "GET", "/nothing/here"), 404, "RESOURCE_DOES_NOT_EXIST")


def test_responses_are_ascii_single_line_json(sharing: Sharing) -> None:
    resp = call(sharing, "POST", TABLE + "/query", json={})
    assert resp.content.isascii()
    resp = call(sharing, "GET", "/shares/models/all-tables")
    assert resp.content.isascii() and resp.text.count("\n") == 1


def test_query_pages_and_end_stream_action(sharing: Sharing) -> None:
    resp = call(
        sharing, "POST", "/shares/models/schemas/mlflow/tables/parts/query", json={"maxFiles": 2}
    )
    lines = [json.loads(x) for x in resp.text.splitlines()]
    assert [next(iter(x)) for x in lines] == [
        "protocol",
        "metaData",
        "file",
        "file",
        "endStreamAction",
    ]
    urls = [x["file"]["url"] for x in lines[2:4]]
    token = lines[-1]["endStreamAction"]["nextPageToken"]
    while token:
        resp = call(
            sharing,
            "POST",
            "/shares/models/schemas/mlflow/tables/parts/query",
            json={"maxFiles": 2, "pageToken": token},
        )
        lines = [json.loads(x) for x in resp.text.splitlines()]
        urls += [x["file"]["url"] for x in lines if "file" in x]
        token = lines[-1]["endStreamAction"].get("nextPageToken")
    assert len({urlsplit(u).path for u in urls}) == 5
    headers = {"delta-sharing-capabilities": "responseformat=parquet;includeendstreamaction=true"}
    resp = call(sharing, "POST", TABLE + "/query", json={}, headers=headers)
    last = json.loads(resp.text.splitlines()[-1])
    assert last["endStreamAction"]["minUrlExpirationTimestamp"] > time.time() * 1000


def test_delta_format_when_asked(sharing: Sharing) -> None:
    headers = {"delta-sharing-capabilities": "responseformat=delta;readerfeatures=deletionvectors"}
    resp = call(sharing, "GET", TABLE + "/metadata", headers=headers)
    assert resp.headers["delta-sharing-capabilities"] == "responseformat=delta"
    protocol, metadata = (json.loads(x) for x in resp.text.splitlines())
    assert protocol["protocol"]["deltaProtocol"]["minReaderVersion"] == 1
    assert (
        metadata["metaData"]["deltaMetadata"]["configuration"]["delta.enableChangeDataFeed"]
        == "true"
    )
    bad = {"delta-sharing-capabilities": "responseformat=csv"}
    assert_error(
        call(sharing, "GET", TABLE + "/metadata", headers=bad), 400, "UNSUPPORTED_OPERATION"
    )


def test_a_broken_catalog_file_keeps_the_last_good_one(sharing: Sharing) -> None:
    good = sharing.catalog_path.read_bytes()
    try:
        sharing.catalog_path.write_text("shares: [unclosed\n")
        resp = call(sharing, "GET", "/shares")
        assert resp.status_code == 200 and resp.json() == {"items": [{"name": "models"}]}
    finally:
        tmp = sharing.catalog_path.with_suffix(".restore")
        tmp.write_bytes(good)
        tmp.replace(sharing.catalog_path)
    assert call(sharing, "GET", "/shares").status_code == 200
