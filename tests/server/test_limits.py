"""Limits on what a client sends: digits, JSON depth, page sizes, Range headers, broken tables.

Each case is a client mistake (or a provider's broken table) that must get a 4xx with the
protocol's JSON error body, never a 5xx: the 1.4 client retries 5xx for about 100 s.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.server.conftest import Sharing
from tests.server.test_security import (
    TABLE,
    assert_error,
    assert_leaks_nothing,
    call,
    first_file_url,
    first_file_url_for,
    raw,
)


def with_raw_query(url: str, name: str, value: str) -> str:
    """``url`` with query parameter ``name`` replaced by ``value`` as is (already encoded)."""
    parts = urlsplit(url)
    pairs = [p for p in parts.query.split("&") if not p.startswith(name + "=")]
    return urlunsplit(parts._replace(query="&".join([*pairs, f"{name}={value}"])))


# -- item 14: numbers are ASCII digits of bounded length ---------------------------------------
@pytest.mark.parametrize(
    "se",
    [
        "%C2%B2",  # superscript two: str.isdigit() says yes, int() says no
        "%D9%A3",  # ARABIC-INDIC DIGIT THREE: int() reads it as 3
        "9" * 5000,  # past int()'s 4300-digit limit
        "9" * 40,  # far beyond any epoch second
        "+1796000000",
        "1_796_000_000",
        "%201796000000",
        "-1",
        "",
    ],
    ids=["superscript", "arabic", "5000-digits", "40-digits", "plus", "underscores", "space",
         "negative", "empty"],
)
def test_a_bad_expiry_in_a_file_url_is_403(sharing: Sharing, se: str) -> None:
    url = with_raw_query(first_file_url(sharing), "se", se)
    parts = urlsplit(url)
    status, body = raw(sharing, "GET", f"{parts.path}?{parts.query}")
    assert status == 403, (se[:20], status, body[:200])
    assert json.loads(body)["errorCode"] == "PERMISSION_DENIED"
    status, _ = raw(sharing, "HEAD", f"{parts.path}?{parts.query}")
    assert status == 403


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("startingVersion", "%C2%B2"),
        ("startingVersion", "%D9%A1"),
        ("startingVersion", "9" * 5000),
        ("startingVersion", "1_0"),
        ("startingVersion", "+1"),
        ("endingVersion", "9" * 30),
    ],
)
def test_odd_digits_in_numeric_parameters_are_400(
    sharing: Sharing, param: str, value: str
) -> None:
    query = f"startingVersion=0&{param}={value}" if param != "startingVersion" else (
        f"startingVersion={value}"
    )
    resp = call(sharing, "GET", f"{TABLE}/changes?{query}")
    body = assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
    assert param in body["message"]
    assert len(body["message"]) < 300  # a 5000-digit value is not echoed whole


def test_an_arabic_digit_is_not_a_version(sharing: Sharing) -> None:
    # int("\u0661") == 1: a lax parser would serve version 1 here
    resp = call(sharing, "GET", f"{TABLE}/metadata?version=%D9%A1")
    assert_error(resp, 400, "INVALID_PARAMETER_VALUE")


# -- item 15: JSON nesting is bounded ----------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000,
        b"[" * 100_000,
        b'{"a":' * 1000,
        b'{"futureField": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"version": 1, "x": ' + b'{"y":' * 3000 + b"1" + b"}" * 3000 + b"}",
    ],
    ids=["open-arrays", "many-open-arrays", "open-objects", "deep-balanced", "deep-objects"],
)
def test_deeply_nested_query_bodies_are_400(sharing: Sharing, body: bytes) -> None:
    resp = call(
        sharing, "POST", TABLE + "/query", content=body, headers={"Content-Type": "application/json"}
    )
    body_json = assert_error(resp, 400, "MALFORMED_REQUEST")
    assert "nest" in body_json["message"] or "JSON" in body_json["message"]


def test_moderate_nesting_in_unknown_fields_is_still_ignored(sharing: Sharing) -> None:
    body = b'{"futureField": ' + b"[" * 10 + b"]" * 10 + b', "s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[["}'
    resp = call(
        sharing, "POST", TABLE + "/query", content=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 200, resp.text


# -- item 18: maxResults -----------------------------------------------------------------------
def test_max_results_zero_is_refused_instead_of_paging_forever(sharing: Sharing) -> None:
    for path in ("/shares", "/shares/models/schemas", "/shares/models/all-tables"):
        resp = call(sharing, "GET", f"{path}?maxResults=0")
        body = assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
        assert "maxResults" in body["message"] and "1" in body["message"]


@pytest.mark.parametrize(
    "value", ["9223372036854775808", "99999999999999999999999", "9" * 5000, "%C2%B2", "%D9%A3"]
)
def test_max_results_beyond_int64_or_odd_digits_gets_a_clear_400(
    sharing: Sharing, value: str
) -> None:
    resp = call(sharing, "GET", f"/shares?maxResults={value}")
    body = assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
    assert "at least 0" not in body["message"]
    assert "500" in body["message"]
    assert len(body["message"]) < 300


def test_max_results_pages_end(sharing: Sharing) -> None:
    seen: list[str] = []
    token = ""
    for _ in range(10):
        suffix = f"&pageToken={token}" if token else ""
        page = call(sharing, "GET", f"/shares/models/all-tables?maxResults=1{suffix}").json()
        seen += [t["name"] for t in page["items"]]
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert not token and len(seen) == len(set(seen)) >= 4


# -- item 18: Range errors answer the protocol's JSON body -------------------------------------
@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bytes=5-2", 400),
        ("items=0-5", 400),
        ("bytes", 400),
        ("bytes=", 400),
        ("bytes=a-b", 400),
        ("bytes=\u00b2-", 400),
        ("bytes=0-1_0", 400),
        ("bytes=" + "9" * 5000 + "-", 400),
        ("bytes=" + "0-1," * 101 + "0-1", 400),
        ("bytes=99999999-", 416),
        ("bytes=-0", 416),
    ],
    ids=["reversed", "unit", "no-equals", "empty", "letters", "superscript", "underscore",
         "5000-digits", "too-many", "past-end", "empty-suffix"],
)
def test_range_errors_have_the_protocol_error_body(
    sharing: Sharing, header: str, status: int
) -> None:
    url = first_file_url(sharing)
    parts = urlsplit(url)
    target = f"{parts.path}?{parts.query}"
    got, body = raw(sharing, "GET", target, {"Range": header.encode("utf-8").decode("latin-1")})
    assert got == status, (header[:30], got, body[:200])
    doc = json.loads(body)
    assert set(doc) == {"errorCode", "message"}
    assert doc["errorCode"] == ("MALFORMED_REQUEST" if status == 400 else "INVALID_PARAMETER_VALUE")
    assert len(doc["message"]) < 300
    resp = httpx.get(url, headers={"Range": header.encode("utf-8")})
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/json")
    if status == 416:
        assert resp.headers["content-range"] == f"bytes */{len(httpx.get(url).content)}"


def test_good_ranges_still_work(sharing: Sharing) -> None:
    url = first_file_url(sharing, "experiment")
    whole = httpx.get(url).content
    for header, want in [
        ("bytes=0-0", whole[:1]),
        ("bytes=4-99", whole[4:100]),
        ("bytes=-8", whole[-8:]),
        (f"bytes={len(whole) - 3}-", whole[-3:]),
        ("bytes=0-99999999999", whole),
        ("BYTES = 1-2", whole[1:3]),
    ]:
        resp = httpx.get(url, headers={"Range": header})
        assert resp.status_code == 206, (header, resp.text[:200])
        assert resp.content == want
    multi = httpx.get(url, headers={"Range": "bytes=0-1, 10-11"})
    assert multi.status_code == 206
    assert multi.headers["content-type"].startswith("multipart/byteranges")


# -- item 18: a broken table is the provider's problem, said with the protocol's pair ----------
@pytest.fixture
def broken_table(sharing: Sharing, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    import pyarrow as pa
    from deltalake import write_deltalake

    location = tmp_path / "broken"
    write_deltalake(str(location), pa.table({"x": [1, 2]}), configuration={
        "delta.enableChangeDataFeed": "true"
    })
    write_deltalake(str(location), pa.table({"x": [3]}), mode="append")
    sharing.catalog.add_table("models", "broken", "t", str(location))
    try:
        yield "/shares/models/schemas/broken/tables/t", location
    finally:
        sharing.catalog.remove_table("models", "broken", "t")
        shutil.rmtree(location, ignore_errors=True)


@pytest.mark.parametrize(
    ("damage", "refused"),
    [
        (b"{not json at all\n", True),
        (b"\xff\xfe\x00garbage\n", True),
        (b'[1, 2, 3]\n{"add": 5}\n', True),
        (b'{"add": {"path": 7}}\n', True),
        (b"", False),  # delta-rs reads an empty commit as one without actions
    ],
    ids=["not-json", "not-utf8", "not-actions", "bad-add", "empty"],
)
def test_a_corrupt_delta_log_is_404_not_400_or_5xx(
    sharing: Sharing, broken_table: tuple[str, Path], damage: bytes, refused: bool
) -> None:
    path, location = broken_table
    assert call(sharing, "GET", path + "/metadata").status_code == 200
    (location / "_delta_log" / f"{1:020d}.json").write_bytes(damage)
    requests = [
        call(sharing, "GET", path + "/metadata"),
        call(sharing, "POST", path + "/query", json={}),
        call(sharing, "POST", path + "/query", json={"version": 1}),
        call(sharing, "GET", path + "/changes?startingVersion=0"),
        call(sharing, "GET", path + "/changes?startingVersion=1"),
        call(sharing, "GET", path + "/version?startingTimestamp=2000-01-01T00:00:00Z"),
        call(sharing, "GET", path + "/metadata?timestamp=2999-01-01T00:00:00Z"),
    ]
    for resp in requests:
        assert resp.status_code < 500, resp.text
        if resp.status_code != 200:
            body = assert_error(resp, 404, "RESOURCE_DOES_NOT_EXIST")
            assert "cannot be read" in body["message"] or "not available" in body["message"]
            assert_leaks_nothing(sharing, resp.text)
            assert str(location) not in resp.text
    assert any(r.status_code == 404 for r in requests) == refused


def test_a_missing_checkpoint_target_is_404(
    sharing: Sharing, broken_table: tuple[str, Path]
) -> None:
    path, location = broken_table
    log = location / "_delta_log"
    (log / f"{5:020d}.checkpoint.parquet").write_bytes(b"PAR1 not really")
    resp = call(sharing, "GET", path + "/metadata")
    assert resp.status_code < 500, resp.text
    if resp.status_code != 200:
        assert_error(resp, 404, "RESOURCE_DOES_NOT_EXIST")


# -- item 18: responses with signed URLs are not cached ----------------------------------------
def test_responses_carrying_signed_urls_say_no_store(sharing: Sharing) -> None:
    query = call(sharing, "POST", TABLE + "/query", json={})
    assert "sig=" in query.text
    assert "no-store" in query.headers["cache-control"]
    changes = call(sharing, "GET", TABLE + "/changes?startingVersion=0")
    assert changes.status_code == 200 and "sig=" in changes.text
    assert "no-store" in changes.headers["cache-control"]
    delta = call(
        sharing,
        "POST",
        TABLE + "/query",
        json={},
        headers={"delta-sharing-capabilities": "responseformat=delta"},
    )
    assert "no-store" in delta.headers["cache-control"]
    assert "no-store" in httpx.get(first_file_url(sharing)).headers["cache-control"]
    url = first_file_url_for(sharing, TABLE + "/query")
    assert "no-store" in httpx.head(url).headers["cache-control"]
