"""The OAuth 2.0 client-credentials grant (RFC 6749 section 4.4) for OAuth recipients, and
the access tokens it issues.

``POST <prefix>/oauth/token`` takes an ``application/x-www-form-urlencoded`` body with
``grant_type=client_credentials``; the client authenticates with HTTP Basic (what the
``delta_sharing`` client sends) or with ``client_id`` and ``client_secret`` form fields, never
both. The answer is ``{"access_token", "token_type": "Bearer", "expires_in"}``; errors are
RFC 6749's ``{"error", "error_description"}``. A ``scope`` is accepted and ignored: a token
reads what its recipient is granted.

An access token is sealed with the server key (:meth:`.signing.Signer.seal`, HMAC-SHA256). It
names the recipient, the id of the client secret it was issued for, and its expiry, and is
stored nowhere: each request checks the seal, the expiry and that the secret still works, so
dropping the recipient, or rotating its secret (once a grace window closes), stops every token
issued for it at once. A token never outlives the secret it came from.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import parse_qsl, unquote_plus

from starlette.requests import Request
from starlette.responses import Response

from arcuate.backends.sharing import credentials as creds
from arcuate.backends.sharing.credentials import iso
from arcuate.backends.sharing.server.signing import Signer
from arcuate.backends.sharing.server.state import CatalogView, Recipient
from arcuate.backends.sharing.server.wire import SharingError, dumps, echo

#: The seal's purpose label: an access token opens as nothing else (page tokens, ...).
ACCESS_PURPOSE: Final = "oauth-access"
#: What the token endpoint answers for a client its IP access list or rate limit refuses (the
#: protocol's 403 and 429, in RFC 6749's words).
_ADMISSION_ERRORS: Final = {403: "access_denied", 429: "temporarily_unavailable"}
#: A token request is three short fields; anything bigger is not a real client.
MAX_FORM_BYTES: Final = 4096
_FORM_TYPE: Final = "application/x-www-form-urlencoded"
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """A refused token request: status, RFC 6749 error code, description."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def _answer(status: int, body: Mapping[str, object], headers: Mapping[str, str]) -> Response:
    return Response(
        dumps(body) + "\n",
        status_code=status,
        media_type=None,
        headers={**headers, **_NO_STORE, "Content-Type": "application/json"},
    )


def _refusal(err: OAuthError) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="delta-sharing"'} if err.status == 401 else {}
    body = {"error": err.error, "error_description": err.description}
    return _answer(err.status, body, headers)


async def _form(request: Request) -> dict[str, str]:
    """The request's form fields; each at most once (RFC 6749 section 3.2)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != _FORM_TYPE:
        raise OAuthError(400, "invalid_request", f"the token request must be {_FORM_TYPE}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError(
                400, "invalid_request", f"the token request is over {MAX_FORM_BYTES} bytes"
            )
    try:
        pairs = parse_qsl(bytes(body).decode("ascii"), keep_blank_values=True, max_num_fields=16)
    except ValueError:  # non-ASCII, bad percent-encoding, too many fields
        raise OAuthError(400, "invalid_request", "the token request is not a valid form") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise OAuthError(400, "invalid_request", f"{echo(key)} is given more than once")
        form[key] = value
    return form


def _client(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """(client id, secret) from HTTP Basic or from the form, never both."""
    header = request.headers.get("authorization")
    if header is None:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if not client_id or not secret:
            raise OAuthError(
                401,
                "invalid_client",
                "no client credentials: send HTTP Basic, or client_id and client_secret",
            )
        return client_id, secret
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError(401, "invalid_client", "client authentication must be HTTP Basic")
    if "client_secret" in form:
        raise OAuthError(
            400,
            "invalid_request",
            "authenticate the client one way only: HTTP Basic or the form's client_secret",
        )
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(401, "invalid_client", "malformed HTTP Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id or not secret:
        raise OAuthError(401, "invalid_client", "malformed HTTP Basic credentials")
    # RFC 6749 section 2.3.1: form-encoded before Basic (ours need no encoding either way)
    return unquote_plus(client_id), unquote_plus(secret)


def _issue(
    signer: Signer, view: CatalogView, client_id: str, secret: str
) -> tuple[Recipient, str, int]:
    """(recipient, access token, seconds it lasts) for a client that authenticated."""
    found = creds.client_credential(view.doc, client_id, secret)
    if found is None:
        raise OAuthError(401, "invalid_client", "client authentication failed")
    r, entry = found
    holder = view.credential(str(r["name"]), str(entry.get("id", "")), creds.CLIENT_SECRET)
    problem = holder.refusal() if holder is not None else "is not valid"
    if holder is None or problem is not None:
        raise OAuthError(401, "invalid_client", f"the client secret {problem}")
    oauth = r.get("oauth") or {}
    now = time.time()
    ends = [now + int(oauth.get("access_token_seconds") or creds.DEFAULT_ACCESS_TOKEN_SECONDS)]
    ends += [t.timestamp() for t in (holder.expires_at, holder.revoked_at) if t is not None]
    expires_ms = int(min(ends) * 1000)
    payload = {"r": holder.name, "c": holder.token_id, "e": expires_ms, "n": secrets.token_hex(8)}
    return holder, signer.seal(ACCESS_PURPOSE, payload), int(expires_ms / 1000 - now)


async def token_endpoint(
    request: Request, view: CatalogView, signer: Signer, admit: Callable[[str], None]
) -> Response:
    """Answer one client-credentials token request; ``admit`` applies the recipient's IP access
    list and rate limit (raising :class:`SharingError`) before a token is handed out: a token
    minted outside the list could be used nowhere, and the attempt is worth refusing."""
    try:
        form = await _form(request)
        client_id, secret = _client(request, form)
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError(400, "invalid_request", "grant_type is missing")
        if grant != "client_credentials":
            raise OAuthError(
                400,
                "unsupported_grant_type",
                f"grant_type {echo(grant)} is not supported: use client_credentials",
            )
        holder, token, seconds = _issue(signer, view, client_id, secret)
    except OAuthError as err:
        request.scope.setdefault("state", {})["error_code"] = err.error
        return _refusal(err)
    state = request.scope.setdefault("state", {})
    state["recipient"] = holder.name
    try:
        admit(holder.name)
    except SharingError as refused:
        state["error_code"] = refused.code
        error = _ADMISSION_ERRORS.get(refused.status, "access_denied")
        refusal = {"error": error, "error_description": refused.message}
        return _answer(refused.status, refusal, refused.headers or {})
    body = {"access_token": token, "token_type": "Bearer", "expires_in": seconds}
    return _answer(200, body, {})


def is_access_token(token: str) -> bool:
    """Whether a bearer credential is one of our access tokens (bearer tokens have no dot)."""
    return "." in token


def access_token_holder(signer: Signer, view: CatalogView, token: str) -> Recipient:
    """The recipient an access token was issued to, as its client secret authenticates it.

    Raises:
        SharingError: 401 for a token that is forged, changed or expired, or whose recipient
            is gone or whose secret no longer works (rotated, past its window, or expired).
    """
    payload = signer.open(ACCESS_PURPOSE, token)
    name, cid, expires_ms = (payload or {}).get("r"), (payload or {}).get("c"), None
    if payload is not None and type(payload.get("e")) is int:
        expires_ms = payload["e"]
    if not isinstance(name, str) or not isinstance(cid, str) or expires_ms is None:
        raise SharingError(401, "UNAUTHENTICATED", "the access token is not valid")
    if expires_ms <= time.time() * 1000:
        moment = iso(datetime.datetime.fromtimestamp(expires_ms / 1000, datetime.UTC))
        raise SharingError(
            401,
            "UNAUTHENTICATED",
            f"the access token expired at {moment}; ask the token endpoint for a new one",
        )
    holder = view.credential(name, cid, creds.CLIENT_SECRET)
    if holder is None:
        raise SharingError(401, "UNAUTHENTICATED", "the access token is not valid")
    problem = holder.refusal()
    if problem is not None:
        raise SharingError(
            401, "UNAUTHENTICATED", f"the client secret this access token came from {problem}"
        )
    return holder
