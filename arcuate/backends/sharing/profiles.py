"""Delta Sharing profile files: what a recipient opens with the ``delta_sharing`` client.

A bearer token goes into a version 1 profile (the only bearer profile the 1.4 client
accepts); an OAuth client-credentials recipient gets a version 2 profile of type
``oauth_client_credentials``, from which the client asks the token endpoint for short-lived
access tokens. Either holds a secret, so files are written with mode 0600.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

#: Where ``arcuate serve`` answers the OAuth client-credentials grant, under its endpoint.
TOKEN_PATH: Final = "/oauth/token"
#: Where ``arcuate serve`` answers one-time activation links, under its endpoint.
ACTIVATION_PATH: Final = "/activation"


def activation_url(endpoint: str, code: str) -> str:
    """The one-time link a recipient downloads its profile from. The code goes in the
    query string, which no request log of the server records."""
    return f"{endpoint.rstrip('/')}{ACTIVATION_PATH}?code={quote(code, safe='')}"


def profile_text(
    endpoint: str, token: str, expiration: datetime.datetime | str | None = None
) -> str:
    """A v1 Delta Sharing profile as JSON text.

    Version 1 is the only bearer-token profile the 1.4 client accepts; ``expiration`` is
    informational for the client (the server enforces it).
    """
    profile: dict[str, Any] = {
        "shareCredentialsVersion": 1,
        "endpoint": endpoint.rstrip("/"),
        "bearerToken": token,
    }
    if expiration is not None:
        if isinstance(expiration, datetime.datetime):
            moment = expiration.astimezone(datetime.UTC)
            expiration = (
                moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
            )
        profile["expirationTime"] = expiration
    return json.dumps(profile, indent=2) + "\n"


def oauth_profile_text(endpoint: str, client_id: str, client_secret: str) -> str:
    """A v2 ``oauth_client_credentials`` profile as JSON text: the client posts the id and
    secret to ``<endpoint>/oauth/token`` and sends the access token it gets back."""
    base = endpoint.rstrip("/")
    profile = {
        "shareCredentialsVersion": 2,
        "type": "oauth_client_credentials",
        "endpoint": base,
        "tokenEndpoint": base + TOKEN_PATH,
        "clientId": client_id,
        "clientSecret": client_secret,
    }
    return json.dumps(profile, indent=2) + "\n"


def write_profile(
    path: str | os.PathLike[str],
    endpoint: str,
    token: str,
    expiration: datetime.datetime | str | None = None,
) -> Path:
    """Write a v1 profile (:func:`profile_text`) readable by its owner only; return its path."""
    return write_private(path, profile_text(endpoint, token, expiration))


def write_private(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write ``text`` to ``path`` with mode 0600 (it holds a secret)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target
