"""IP access lists, trusted proxies and rate limits, through the real server over HTTP.

Loopback gives a test several client addresses without a network: on Linux a client socket may
bind any address of 127.0.0.0/8, so requests from ``127.0.0.2`` and from ``127.0.0.1`` reach
the same server from different clients. Policies are set with statements
(``arcuate.execute``) and apply to the next request of the running server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import delta_sharing
import httpx
import pytest
from requests import HTTPError

import arcuate
from arcuate.backends.sharing.server import serve_in_thread
from arcuate.config import Settings
from arcuate.errors import ConfigurationError
from tests.server.conftest import Sharing

TABLE = "/shares/models/schemas/mlflow/tables/simple"


def run(sharing: Sharing, statement: str) -> Any:
    return arcuate.execute(statement, catalog=str(sharing.catalog_path))[0]


def get(
    endpoint: str,
    path: str,
    token: str | None,
    *,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    method: str = "GET",
    **kwargs: Any,
) -> httpx.Response:
    """A request from the client address ``source`` (bound on loopback)."""
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.request(method, endpoint + path, headers=h, **kwargs)


def error_code(resp: httpx.Response) -> str:
    body = resp.json()
    assert set(body) == {"errorCode", "message"}
    return str(body["errorCode"])


@pytest.fixture
def carol(sharing: Sharing) -> Iterator[str]:
    """A recipient of its own, granted ``models``, dropped afterwards."""
    _, token = sharing.new_recipient("carol", "models")
    yield token
    sharing.catalog.drop_recipient("carol", if_exists=True)


def test_an_ip_access_list_refuses_other_addresses_with_403(sharing: Sharing, carol: str) -> None:
    result = run(sharing, "ALTER RECIPIENT carol SET IP ACCESS LIST ('127.0.0.2', '10.0.0.0/8')")
    assert result.summary == {"recipient": "carol", "ip_access_list": ["127.0.0.2/32", "10.0.0.0/8"]}
    inside = get(sharing.endpoint, TABLE + "/metadata", carol, source="127.0.0.2")
    assert inside.status_code == 200
    outside = get(sharing.endpoint, TABLE + "/metadata", carol, source="127.0.0.1")
    assert outside.status_code == 403 and error_code(outside) == "PERMISSION_DENIED"
    assert "127.0.0.1" in outside.json()["message"]
    # the unmodified client, from this machine's default address, is refused too (no retry)
    profile = sharing.root / "carol.share"
    with pytest.raises(HTTPError, match="403"):
        delta_sharing.load_as_pandas(f"{profile}#models.mlflow.simple")
    assert run(sharing, "DESCRIBE RECIPIENT carol").summary["ip_access_list"] == [
        "127.0.0.2/32",
        "10.0.0.0/8",
    ]
    run(sharing, "ALTER RECIPIENT carol UNSET IP ACCESS LIST")
    assert len(delta_sharing.load_as_pandas(f"{profile}#models.mlflow.simple")) == 3


def test_inside_the_list_an_ungranted_share_is_404_and_outside_everything_is_403(
    sharing: Sharing, carol: str
) -> None:
    run(sharing, "ALTER RECIPIENT carol SET IP ACCESS LIST ('127.0.0.2')")
    for share in ("other", "nosuch"):  # other exists (bob's), nosuch does not
        inside = get(sharing.endpoint, f"/shares/{share}", carol, source="127.0.0.2")
        assert inside.status_code == 404 and error_code(inside) == "RESOURCE_DOES_NOT_EXIST"
        # from outside, the refusal comes first: it says nothing about what exists
        outside = get(sharing.endpoint, f"/shares/{share}", carol, source="127.0.0.1")
        assert outside.status_code == 403 and error_code(outside) == "PERMISSION_DENIED"
    assert get(sharing.endpoint, "/shares", "not-a-token", source="127.0.0.1").status_code == 401


def test_file_urls_issued_to_a_recipient_obey_its_list(sharing: Sharing, carol: str) -> None:
    run(sharing, "ALTER RECIPIENT carol SET IP ACCESS LIST ('127.0.0.2')")
    query = get(sharing.endpoint, TABLE + "/query", carol, source="127.0.0.2", method="POST", json={})
    assert query.status_code == 200
    url = json.loads(query.text.splitlines()[2])["file"]["url"]
    assert get(url, "", None, source="127.0.0.2").status_code == 200
    stolen = get(url, "", None, source="127.0.0.1")
    assert stolen.status_code == 403 and error_code(stolen) == "PERMISSION_DENIED"


def test_ipv6_and_ipv4_mapped_clients(sharing: Sharing, carol: str) -> None:
    with serve_in_thread(str(sharing.catalog_path), host="::", audit=False) as dual:
        port = dual.port
        v6 = f"http://[::1]:{port}/delta-sharing"
        v4 = f"http://127.0.0.1:{port}/delta-sharing"  # reaches the socket as ::ffff:127.0.0.1
        run(sharing, "ALTER RECIPIENT carol SET IP ACCESS LIST ('::1')")
        assert get(v6, "/shares", carol, source="::1").status_code == 200
        assert get(v4, "/shares", carol).status_code == 403
        run(sharing, "ALTER RECIPIENT carol SET IP ACCESS LIST ('127.0.0.0/8')")
        assert get(v4, "/shares", carol).status_code == 200  # the mapped address is IPv4's
        assert get(v6, "/shares", carol, source="::1").status_code == 403
        run(sharing, "ALTER RECIPIENT carol SET IP ACCESS LIST ('::ffff:127.0.0.0/104')")
        assert get(v4, "/shares", carol).status_code == 200  # stored as 127.0.0.0/8
        assert sharing.catalog.recipient("carol")["ip_access_list"] == ["127.0.0.0/8"]  # type: ignore[index]


def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(sharing: Sharing, carol: str) -> None:
    run(sharing, "ALTER RECIPIENT carol SET IP ACCESS LIST ('203.0.113.7')")
    spoofed = {"X-Forwarded-For": "203.0.113.7"}
    # the session server trusts no proxy: the header is the client's own claim
    resp = get(sharing.endpoint, "/shares", carol, headers=spoofed)
    assert resp.status_code == 403 and "127.0.0.1" in resp.json()["message"]
    with serve_in_thread(
        str(sharing.catalog_path), trusted_proxies=("127.0.0.1",), audit=False
    ) as proxied:
        # a peer that is not a trusted proxy is not believed either
        resp = get(proxied.endpoint, "/shares", carol, source="127.0.0.2", headers=spoofed)
        assert resp.status_code == 403 and "127.0.0.2" in resp.json()["message"]
        # the trusted proxy is
        assert get(proxied.endpoint, "/shares", carol, headers=spoofed).status_code == 200


def test_behind_trusted_proxies_the_right_most_untrusted_address_is_the_client(
    sharing: Sharing, carol: str
) -> None:
    run(sharing, "ALTER RECIPIENT carol SET IP ACCESS LIST ('198.51.100.0/24')")
    with serve_in_thread(
        str(sharing.catalog_path), trusted_proxies=("127.0.0.1", "10.0.0.0/8"), audit=False
    ) as proxied:

        def status(forwarded: str | list[str]) -> int:
            values = [forwarded] if isinstance(forwarded, str) else forwarded
            headers = [("X-Forwarded-For", v) for v in values]
            transport = httpx.HTTPTransport(local_address="127.0.0.1")
            with httpx.Client(transport=transport, timeout=10) as client:
                request = client.build_request(
                    "GET", proxied.endpoint + "/shares", headers=headers
                )
                request.headers["Authorization"] = f"Bearer {carol}"
                return client.send(request).status_code

        assert status("198.51.100.9") == 200
        assert status("198.51.100.9, 10.1.1.1") == 200  # through a second trusted proxy
        # the client wrote an address of the list itself; the proxy appended the real one
        assert status("198.51.100.9, 203.0.113.5") == 403
        assert status("198.51.100.9, 203.0.113.5, 10.1.1.1") == 403
        assert status(["198.51.100.9", "203.0.113.5"]) == 403  # two headers are one list
        assert status("198.51.100.9:4711") == 200  # a port some proxies add
        assert status("not an address") == 403  # garbled by a proxy: unknown, never listed
        assert status("10.1.1.1") == 403  # only trusted hops: the left-most is the client


def test_a_rate_limit_answers_429_with_retry_after_past_the_limit(
    sharing: Sharing, carol: str
) -> None:
    result = run(sharing, "ALTER RECIPIENT carol SET RATE LIMIT 3 REQUESTS PER MINUTE")
    assert result.summary == {"recipient": "carol", "rate_limit": "3 requests per minute"}
    codes = [get(sharing.endpoint, "/shares", carol).status_code for _ in range(3)]
    assert codes == [200, 200, 200]  # exactly the limit
    refused = get(sharing.endpoint, TABLE + "/metadata", carol)
    assert refused.status_code == 429 and error_code(refused) == "REQUEST_LIMIT_EXCEEDED"
    assert 1 <= int(refused.headers["retry-after"]) <= 20  # one token in 60 s / 3
    assert "3 requests per minute" in refused.json()["message"]
    # others are not limited, and lifting the limit lets carol in at once
    assert get(sharing.endpoint, "/shares", sharing.tokens["alice"]).status_code == 200
    run(sharing, "ALTER RECIPIENT carol UNSET RATE LIMIT")
    assert get(sharing.endpoint, "/shares", carol).status_code == 200
    assert run(sharing, "DESCRIBE RECIPIENT carol").summary["rate_limit"] is None


def test_the_bucket_refills_over_the_period(sharing: Sharing, carol: str) -> None:
    # a minute's period, so that a slow machine's five requests still fall within it
    run(sharing, "ALTER RECIPIENT carol SET RATE LIMIT 4 REQUESTS PER MINUTE")
    answers = [get(sharing.endpoint, "/shares", carol) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 15  # a token comes back every 15 s


def test_file_downloads_and_refusals_draw_no_tokens(sharing: Sharing, carol: str) -> None:
    run(sharing, "ALTER RECIPIENT carol SET RATE LIMIT 2 REQUESTS PER HOUR")
    run(sharing, "ALTER RECIPIENT carol SET IP ACCESS LIST ('127.0.0.2')")
    for _ in range(5):  # refused by the list before the bucket is asked
        assert get(sharing.endpoint, "/shares", carol).status_code == 403
    query = get(sharing.endpoint, TABLE + "/query", carol, source="127.0.0.2", method="POST", json={})
    url = json.loads(query.text.splitlines()[2])["file"]["url"]
    for _ in range(5):  # a query's files are the table's layout, not the recipient's choice
        assert get(url, "", None, source="127.0.0.2").status_code == 200
    assert get(sharing.endpoint, "/shares", carol, source="127.0.0.2").status_code == 200
    assert get(sharing.endpoint, "/shares", carol, source="127.0.0.2").status_code == 429


def test_the_catalog_keeps_checked_policies(sharing: Sharing, carol: str) -> None:
    catalog = sharing.catalog
    with pytest.raises(ConfigurationError, match=re.escape("did you mean '10.0.0.0/8'")):
        catalog.set_ip_access_list("carol", ["10.0.0.1/8"])
    with pytest.raises(ConfigurationError, match="at most 100 entries"):
        catalog.set_ip_access_list("carol", [f"10.0.{i}.0/24" for i in range(101)])
    with pytest.raises(ConfigurationError, match="1 to 1,000,000 requests"):
        catalog.set_rate_limit("carol", 0)
    assert catalog.set_ip_access_list("carol", ["10.0.0.0/8", "10.0.0.0/8", "::1"]) == [
        "10.0.0.0/8",
        "::1/128",
    ]
    with pytest.raises(arcuate.ArcuateError, match="recipient 'nobody' does not exist"):
        run(sharing, "ALTER RECIPIENT nobody SET RATE LIMIT 1 REQUESTS PER SECOND")


# -- the token endpoint and activation links obey the list too --------------------------------
def _token_request(sharing: Sharing, profile: dict[str, Any], source: str) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": profile["clientId"],
        "client_secret": profile["clientSecret"],
    }
    return get(sharing.endpoint, "/oauth/token", None, source=source, method="POST", data=form)


def test_an_oauth_client_outside_its_list_gets_no_access_token(
    sharing: Sharing, tmp_path: Any
) -> None:
    """A token the client could use nowhere must not be minted: 403 at the token endpoint,
    logged with its error code."""
    path = tmp_path / "olga.share"
    run(sharing, f"CREATE RECIPIENT olga USING OAUTH PROFILE '{path}'")
    try:
        profile = json.loads(path.read_text())
        run(sharing, "ALTER RECIPIENT olga SET IP ACCESS LIST ('127.0.0.2')")
        outside = _token_request(sharing, profile, "127.0.0.1")
        assert outside.status_code == 403, outside.text
        body = outside.json()
        assert body["error"] == "access_denied" and "IP access list" in body["error_description"]
        assert "access_token" not in body
        inside = _token_request(sharing, profile, "127.0.0.2")
        assert inside.status_code == 200 and inside.json()["access_token"]
        # a rate limit is drawn from at the token endpoint too
        run(sharing, "ALTER RECIPIENT olga SET RATE LIMIT 1 REQUESTS PER MINUTE")
        assert _token_request(sharing, profile, "127.0.0.2").status_code == 200
        limited = _token_request(sharing, profile, "127.0.0.2")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"] == "temporarily_unavailable"
    finally:
        sharing.catalog.drop_recipient("olga", if_exists=True)


def test_an_activation_link_cannot_be_used_from_outside_the_list(sharing: Sharing) -> None:
    """The profile carries the credential: outside the list the link shows nothing and stays
    unused, so the recipient can still activate it from inside."""
    settings = Settings(catalog=str(sharing.catalog_path), endpoint=sharing.endpoint)
    result = arcuate.execute("CREATE RECIPIENT pia ACTIVATION LINK", settings=settings)[0]
    link = str(result.summary["activation_link"])
    assert link.startswith(sharing.endpoint)
    path = link.removeprefix(sharing.endpoint)
    try:
        run(sharing, "ALTER RECIPIENT pia SET IP ACCESS LIST ('127.0.0.2')")
        for method in ("GET", "POST"):
            outside = get(sharing.endpoint, path, None, source="127.0.0.1", method=method)
            assert outside.status_code == 403 and error_code(outside) == "PERMISSION_DENIED"
        assert (sharing.catalog.recipient("pia") or {})["token_active"] is False
        inside = get(sharing.endpoint, path, None, source="127.0.0.2", method="POST")
        assert inside.status_code == 200 and inside.json()["bearerToken"]
    finally:
        sharing.catalog.drop_recipient("pia", if_exists=True)
