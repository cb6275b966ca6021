"""Issue 15's credentials against the real server over HTTP, with the unmodified
``delta_sharing`` client: rotation with a grace window, OAuth client-credentials recipients,
one-time activation links, and no secret anywhere but the profile.

| case                                                         | answer                       |
|--------------------------------------------------------------|------------------------------|
| old token (and its file URLs) before / after the grace window | 200 / 401 (403 for URLs)     |
| access token expired, tampered, of a dropped or rotated secret | 401 UNAUTHENTICATED          |
| wrong or missing client credentials at the token endpoint    | 401 invalid_client           |
| client secret used as a bearer token                         | 401 UNAUTHENTICATED          |
| activation link used, concurrently or later; withdrawn; expired | 410 (one 200 among racers) |
| activation code that was never issued                        | 404 RESOURCE_DOES_NOT_EXIST  |
"""

from __future__ import annotations

import base64
import json
import stat
import threading
import time
from pathlib import Path
from typing import Any

import delta_sharing
import httpx

import arcuate
from arcuate.backends.sharing.credentials import parse_time
from arcuate.config import Settings
from tests.server.conftest import Sharing
from tests.server.test_request_log import AccessLog, access_log  # noqa: F401 (a fixture)
from tests.server.test_security import assert_error, call, first_file_url

SIMPLE = "models.mlflow.simple"


def sql(sharing: Sharing, text: str) -> arcuate.Results:
    """Statements as a provider runs them, against the session server's catalog."""
    settings = Settings(catalog=str(sharing.catalog_path), endpoint=sharing.endpoint)
    return arcuate.execute(text, settings=settings)


def profile(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def token_request(
    sharing: Sharing,
    client_id: str | None,
    secret: str | None,
    *,
    basic: bool = True,
    form: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    data = {"grant_type": "client_credentials", **(form or {})}
    auth = (client_id or "", secret or "") if basic and client_id is not None else None
    if not basic:
        data.update(client_id=client_id or "", client_secret=secret or "")
    return httpx.post(
        sharing.endpoint + "/oauth/token", auth=auth, data=data, timeout=10, **kwargs
    )


def access_token(sharing: Sharing, oauth_profile: dict[str, Any]) -> str:
    resp = token_request(sharing, oauth_profile["clientId"], oauth_profile["clientSecret"])
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def oauth_recipient(sharing: Sharing, name: str, tmp_path: Path, options: str = "") -> Path:
    path = tmp_path / f"{name}.share"
    sql(
        sharing,
        f"CREATE RECIPIENT {name} USING OAUTH {options} PROFILE '{path}';"
        f"GRANT SELECT ON SHARE models TO RECIPIENT {name}",
    )
    return path


def until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


# -- rotation with a grace window --------------------------------------------------------------
def test_the_old_token_and_its_urls_work_exactly_until_the_window_closes(
    sharing: Sharing, tmp_path: Path
) -> None:
    old_profile, old = sharing.new_recipient("gwen", "models")
    url_before = first_file_url(sharing, token=old)
    new_path = tmp_path / "gwen.share"
    sql(sharing, f"ALTER RECIPIENT gwen ROTATE TOKEN KEEP OLD FOR 3 SECONDS PROFILE '{new_path}'")
    new = profile(new_path)["bearerToken"]
    record = sharing.catalog.recipient("gwen")
    assert record is not None
    ends = parse_time(record["rotated_token_expires_at"])
    assert ends is not None
    url_during = first_file_url(sharing, token=old)  # minted by the old token in its window
    assert delta_sharing.get_table_version(f"{old_profile}#{SIMPLE}") == 2
    for url in (url_before, url_during):
        assert httpx.get(url).status_code == 200

    answered: list[tuple[float, float, int]] = []
    while time.time() < ends.timestamp() + 1.5:
        sent = time.time()
        status = call(sharing, "GET", "/shares", token=old).status_code
        answered.append((sent, time.time(), status))
        time.sleep(0.05)
    ok = [sent for sent, _, status in answered if status == 200]
    refused = [(done, status) for _, done, status in answered if status != 200]
    assert ok and refused and {status for _, status in refused} == {401}
    # no 200 for a request sent after the boundary, no 401 answered before it
    assert max(ok) < ends.timestamp() <= min(done for done, _ in refused)
    body = assert_error(call(sharing, "GET", "/shares", token=old), 401, "UNAUTHENTICATED")
    assert "rotated" in body["message"]
    for url in (url_before, url_during):
        assert_error(httpx.get(url), 403, "PERMISSION_DENIED")
    assert call(sharing, "GET", "/shares", token=new).status_code == 200
    described = sql(sharing, "DESCRIBE RECIPIENT gwen")[0]
    assert [(r["kind"], r["state"]) for r in described.rows] == [
        ("bearer_token", "active"),
        ("bearer_token", "revoked"),
    ]
    assert all(set(r) == {"kind", "id", "state", "created_at", "expires_at", "revoked_at"}
               for r in described.rows)
    sharing.catalog.drop_recipient("gwen")


def test_a_rotation_without_a_window_still_stops_the_old_token_at_once(
    sharing: Sharing, tmp_path: Path
) -> None:
    _, old = sharing.new_recipient("hank", "models")
    url = first_file_url(sharing, token=old)
    sql(sharing, f"ALTER RECIPIENT hank ROTATE TOKEN PROFILE '{tmp_path / 'h.share'}'")
    assert_error(call(sharing, "GET", "/shares", token=old), 401, "UNAUTHENTICATED")
    assert_error(httpx.get(url), 403, "PERMISSION_DENIED")
    sharing.catalog.drop_recipient("hank")


def test_dropping_a_recipient_ends_its_grace_window_at_once(sharing: Sharing) -> None:
    _, old = sharing.new_recipient("ivy", "models")
    sharing.catalog.rotate_token("ivy", keep_old_seconds=3600)
    url = first_file_url(sharing, token=old)
    assert call(sharing, "GET", "/shares", token=old).status_code == 200
    sharing.catalog.drop_recipient("ivy")
    assert_error(call(sharing, "GET", "/shares", token=old), 401, "UNAUTHENTICATED")
    assert_error(httpx.get(url), 403, "PERMISSION_DENIED")


# -- OAuth client-credentials recipients -------------------------------------------------------
def test_the_client_reads_a_share_with_an_oauth_profile(
    sharing: Sharing, tmp_path: Path
) -> None:
    path = oauth_recipient(sharing, "oscar", tmp_path)
    written = profile(path)
    assert written["shareCredentialsVersion"] == 2
    assert written["type"] == "oauth_client_credentials"
    assert written["tokenEndpoint"] == sharing.endpoint + "/oauth/token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    frame = delta_sharing.load_as_pandas(f"{path}#{SIMPLE}")
    assert sorted(frame["id"]) == [1, 3, 4]
    tables = delta_sharing.SharingClient(str(path)).list_all_tables()
    assert {t.name for t in tables} >= {"simple", "experiment"}
    record = sharing.catalog.recipient("oscar")
    assert record is not None and record["authentication_type"] == "OAUTH_CLIENT_CREDENTIALS"
    assert record["client_id"] == written["clientId"]
    sharing.catalog.drop_recipient("oscar")


def test_the_token_endpoint_takes_basic_or_form_credentials(
    sharing: Sharing, tmp_path: Path
) -> None:
    p = profile(oauth_recipient(sharing, "olga", tmp_path))
    cid, secret = p["clientId"], p["clientSecret"]
    for basic in (True, False):
        resp = token_request(sharing, cid, secret, basic=basic)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"access_token", "token_type", "expires_in"}
        assert body["token_type"] == "Bearer" and 3590 <= body["expires_in"] <= 3600
        assert resp.headers["cache-control"] == "no-store"
        assert call(sharing, "GET", "/shares", token=body["access_token"]).json() == {
            "items": [{"name": "models"}]
        }
    sharing.catalog.drop_recipient("olga")


def _refused(resp: httpx.Response, status: int, error: str, *secrets: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "error_description"} and body["error"] == error
    assert resp.headers["cache-control"] == "no-store"
    for secret in secrets:
        assert secret not in resp.text
    return str(body["error_description"])


def test_bad_token_requests_are_refused_in_rfc_6749_terms(
    sharing: Sharing, tmp_path: Path
) -> None:
    p = profile(oauth_recipient(sharing, "otto", tmp_path))
    cid, secret = p["clientId"], p["clientSecret"]
    url = sharing.endpoint + "/oauth/token"
    wrong = token_request(sharing, cid, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert _refused(wrong, 401, "invalid_client", secret) == "client authentication failed"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    _refused(token_request(sharing, "no-such-client", secret), 401, "invalid_client", secret)
    _refused(token_request(sharing, cid, sharing.tokens["alice"]), 401, "invalid_client")
    _refused(token_request(sharing, None, None), 401, "invalid_client")
    both = httpx.post(url, auth=(cid, secret), data={
        "grant_type": "client_credentials", "client_id": cid, "client_secret": secret})
    _refused(both, 400, "invalid_request", secret)
    grant = token_request(sharing, cid, secret, form={"grant_type": "password"})
    _refused(grant, 400, "unsupported_grant_type", secret)
    no_grant = httpx.post(url, auth=(cid, secret), data={"scope": "x"})
    assert "grant_type is missing" in _refused(no_grant, 400, "invalid_request")
    as_json = httpx.post(url, auth=(cid, secret), json={"grant_type": "client_credentials"})
    _refused(as_json, 400, "invalid_request", secret)
    twice = httpx.post(url, auth=(cid, secret), content=b"grant_type=client_credentials" * 2
                       + b"&grant_type=client_credentials",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    _refused(twice, 400, "invalid_request")
    huge = token_request(sharing, cid, secret, form={"scope": "s" * 5000})
    _refused(huge, 400, "invalid_request", secret)
    bad_basic = httpx.post(url, data={"grant_type": "client_credentials"},
                           headers={"Authorization": "Basic !!!not-base64"})
    _refused(bad_basic, 401, "invalid_client")
    assert httpx.get(url).status_code == 405
    sharing.catalog.drop_recipient("otto")


def test_a_client_secret_is_not_a_bearer_token(sharing: Sharing, tmp_path: Path) -> None:
    p = profile(oauth_recipient(sharing, "omar", tmp_path))
    resp = call(sharing, "GET", "/shares", token=p["clientSecret"])
    assert_error(resp, 401, "UNAUTHENTICATED")
    sharing.catalog.drop_recipient("omar")


def test_an_access_token_expires_and_the_client_gets_a_new_one(
    sharing: Sharing, tmp_path: Path
) -> None:
    path = oauth_recipient(sharing, "olly", tmp_path, "ACCESS TOKEN LIFETIME 2 SECONDS")
    started = time.time()
    resp = token_request(sharing, profile(path)["clientId"], profile(path)["clientSecret"])
    token, lasts = resp.json()["access_token"], resp.json()["expires_in"]
    assert lasts in (1, 2)
    assert call(sharing, "GET", "/shares", token=token).status_code == 200
    until(started + 2.5)
    body = assert_error(call(sharing, "GET", "/shares", token=token), 401, "UNAUTHENTICATED")
    assert "access token expired" in body["message"]
    # the client asks for a new token whenever fewer than 600 s are left
    assert delta_sharing.get_table_version(f"{path}#{SIMPLE}") == 2
    sharing.catalog.drop_recipient("olly")


def _flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


def test_a_tampered_or_foreign_access_token_is_refused(sharing: Sharing, tmp_path: Path) -> None:
    from arcuate.backends.sharing.server.signing import Signer

    token = access_token(sharing, profile(oauth_recipient(sharing, "opal", tmp_path)))
    body, _, sig = token.partition(".")
    signer = sharing.handle.sharing.signer
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = [
        _flip(token, 3),  # a byte of the claims
        _flip(token, len(body) + 3),  # a byte of the seal
        token + "x",
        body + ".",
        Signer(b"k" * 32).seal("oauth-access", payload),  # another key
        signer.seal("page", payload),  # this key, another purpose
        signer.seal("oauth-access", {**payload, "r": "alice"}),  # another recipient's name
        signer.seal("oauth-access", {**payload, "e": str(payload["e"])}),
    ]
    for bad in forged:
        resp = call(sharing, "GET", "/shares", token=bad)
        assert_error(resp, 401, "UNAUTHENTICATED")
        assert "models" not in resp.text and sig not in resp.text
    assert call(sharing, "GET", "/shares", token=token).status_code == 200
    sharing.catalog.drop_recipient("opal")


def test_access_tokens_die_with_a_rotated_secret_after_its_window_and_with_drop(
    sharing: Sharing, tmp_path: Path
) -> None:
    first = profile(oauth_recipient(sharing, "olive", tmp_path))
    token = access_token(sharing, first)
    url = first_file_url(sharing, token=token)
    second_path = tmp_path / "olive2.share"
    sql(sharing, f"ALTER RECIPIENT olive ROTATE TOKEN KEEP OLD FOR 2 SECONDS PROFILE '{second_path}'")
    second = profile(second_path)
    assert second["clientId"] == first["clientId"] and second["clientSecret"] != first["clientSecret"]
    record = sharing.catalog.recipient("olive")
    assert record is not None
    ends = parse_time(record["rotated_token_expires_at"])
    assert ends is not None
    late = token_request(sharing, first["clientId"], first["clientSecret"])  # in the window
    assert late.status_code == 200 and late.json()["expires_in"] <= 2  # never past the secret
    for t in (token, late.json()["access_token"]):
        assert call(sharing, "GET", "/shares", token=t).status_code == 200
    assert httpx.get(url).status_code == 200
    until(ends.timestamp() + 0.2)
    for t in (token, late.json()["access_token"]):
        assert_error(call(sharing, "GET", "/shares", token=t), 401, "UNAUTHENTICATED")
    assert_error(httpx.get(url), 403, "PERMISSION_DENIED")
    stale = token_request(sharing, first["clientId"], first["clientSecret"])
    assert "rotated" in _refused(stale, 401, "invalid_client", first["clientSecret"])
    fresh = access_token(sharing, second)
    assert call(sharing, "GET", "/shares", token=fresh).status_code == 200
    sql(sharing, "DROP RECIPIENT olive")
    assert_error(call(sharing, "GET", "/shares", token=fresh), 401, "UNAUTHENTICATED")
    _refused(token_request(sharing, second["clientId"], second["clientSecret"]), 401,
             "invalid_client")


# -- activation links --------------------------------------------------------------------------
def create_with_link(sharing: Sharing, name: str, options: str = "") -> str:
    result = sql(
        sharing,
        f"CREATE RECIPIENT {name} {options} ACTIVATION LINK;"
        f"GRANT SELECT ON SHARE models TO RECIPIENT {name}",
    )[0]
    link = str(result.summary["activation_link"])
    assert link.startswith(sharing.endpoint + "/activation?code=")
    assert "profile_path" not in result.summary
    return link


def test_an_activation_link_gives_the_profile_once(sharing: Sharing, tmp_path: Path) -> None:
    link = create_with_link(sharing, "paula", "EXPIRES IN 1 DAYS")
    for _ in range(2):  # a preview (a chat app, a mail scanner) uses nothing up
        page = httpx.get(link)
        assert page.status_code == 200 and "paula" in page.text and 'method="post"' in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
    assert (sharing.catalog.recipient("paula") or {})["token_active"] is False
    got = httpx.post(link)
    assert got.status_code == 200, got.text
    assert got.headers["content-disposition"] == 'attachment; filename="config.share"'
    written = got.json()
    assert written["endpoint"] == sharing.endpoint and written["expirationTime"].endswith("Z")
    assert written["bearerToken"] not in sharing.catalog_path.read_text()
    path = tmp_path / "paula.share"
    path.write_text(got.text)
    assert sorted(delta_sharing.load_as_pandas(f"{path}#{SIMPLE}")["id"]) == [1, 3, 4]
    for again in (httpx.post(link), httpx.get(link)):
        body = assert_error(again, 410, "ACTIVATION_LINK_USED")
        assert "already used" in body["message"] and written["bearerToken"] not in again.text
    sql(sharing, "DROP RECIPIENT paula")


def test_concurrent_clicks_on_an_activation_link_give_one_profile(sharing: Sharing) -> None:
    link = create_with_link(sharing, "quinn")
    clicks = 12
    start = threading.Barrier(clicks)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def click() -> None:
        start.wait()
        resp = httpx.post(link, timeout=30)
        with lock:
            answers.append(resp)

    threads = [threading.Thread(target=click) for _ in range(clicks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [410] * (clicks - 1)
    assert {a.json()["errorCode"] for a in answers if a.status_code == 410} == {
        "ACTIVATION_LINK_USED"
    }
    (winner,) = [a for a in answers if a.status_code == 200]
    token = winner.json()["bearerToken"]
    assert call(sharing, "GET", "/shares", token=token).status_code == 200
    record = sharing.catalog.recipient("quinn")
    assert record is not None
    assert [c["kind"] for c in record["credentials"]] == ["bearer_token", "activation_link"]
    sharing.catalog.drop_recipient("quinn")


def test_withdrawn_expired_and_unknown_activation_links(sharing: Sharing) -> None:
    first = create_with_link(sharing, "rita")
    second = str(sql(sharing, "ALTER RECIPIENT rita ROTATE TOKEN ACTIVATION LINK")[0]
                 .summary["activation_link"])
    assert "withdrawn" in assert_error(httpx.post(first), 410, "ACTIVATION_LINK_REVOKED")["message"]
    with sharing.catalog.editing() as doc:  # a week passes
        rita = next(r for r in doc["recipients"] if r["name"] == "rita")
        rita["activation"]["expires_at"] = "2020-01-01T00:00:00.000Z"
    for resp in (httpx.get(second), httpx.post(second)):
        assert "expired" in assert_error(resp, 410, "ACTIVATION_LINK_EXPIRED")["message"]
    base = sharing.endpoint + "/activation"
    for url in (base, base + "?code=", base + "?code=nope", base + "?code=" + "x" * 5000,
                second.replace("code=", "code=x")):
        assert_error(httpx.post(url), 404, "RESOURCE_DOES_NOT_EXIST")
    assert httpx.put(second).status_code == 405
    sharing.catalog.drop_recipient("rita")


def test_an_oauth_recipient_by_activation_link_reads_with_the_client(
    sharing: Sharing, tmp_path: Path
) -> None:
    link = create_with_link(sharing, "sam", "USING OAUTH")
    got = httpx.post(link)
    assert got.status_code == 200
    written = got.json()
    assert written["type"] == "oauth_client_credentials"
    assert written["tokenEndpoint"] == sharing.endpoint + "/oauth/token"
    path = tmp_path / "sam.share"
    path.write_text(got.text)
    assert delta_sharing.get_table_version(f"{path}#{SIMPLE}") == 2
    sharing.catalog.drop_recipient("sam")


# -- no secret anywhere but the profile --------------------------------------------------------
def test_no_secret_in_the_catalog_the_logs_or_the_results(
    sharing: Sharing, tmp_path: Path, access_log: AccessLog  # noqa: F811
) -> None:
    results: list[Any] = []
    shown: list[str] = []
    secrets: list[str] = []
    bearer, oauth = tmp_path / "tina.share", tmp_path / "uma.share"
    results += sql(sharing, f"CREATE RECIPIENT tina EXPIRES IN 1 DAYS PROFILE '{bearer}'")
    results += sql(sharing, f"CREATE RECIPIENT uma USING OAUTH PROFILE '{oauth}'")
    results += sql(sharing, "GRANT SELECT ON SHARE models TO RECIPIENT uma")
    secrets += [profile(bearer)["bearerToken"], profile(oauth)["clientSecret"]]
    results += sql(sharing, f"ALTER RECIPIENT tina ROTATE TOKEN KEEP OLD FOR 1 HOURS "
                            f"PROFILE '{tmp_path / 'tina2.share'}'")
    secrets.append(profile(tmp_path / "tina2.share")["bearerToken"])
    link = create_with_link(sharing, "vera", "USING OAUTH")
    code = link.split("code=", 1)[1]
    got = httpx.post(link)
    secrets.append(got.json()["clientSecret"])
    token = access_token(sharing, profile(oauth))
    secrets.append(token)
    assert delta_sharing.get_table_version(f"{oauth}#{SIMPLE}") == 2
    first_file_url(sharing, token=token)
    results += sql(sharing, "SHOW RECIPIENTS; DESCRIBE RECIPIENT tina; DESCRIBE RECIPIENT vera")
    shown += [str(r) for r in results] + [r._repr_html_() for r in results]
    logged = "\n".join(access_log.wait_for(4))
    assert "/oauth/token" in logged and "/activation" in logged

    for secret in [*secrets, code]:
        assert secret not in sharing.catalog_path.read_text()
        assert secret not in logged
        for f in sharing.root.rglob("*"):
            if f.is_file():
                assert secret.encode() not in f.read_bytes(), f
    for secret in secrets:  # the link itself is what CREATE ... ACTIVATION LINK returns
        assert all(secret not in text for text in shown)
    profiles = {f for f in tmp_path.iterdir() if f.suffix == ".share"}
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in profiles)
    for name in ("tina", "uma", "vera"):
        sharing.catalog.drop_recipient(name)
