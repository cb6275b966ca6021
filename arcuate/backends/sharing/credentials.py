"""Recipient credentials in the share catalog: bearer tokens, OAuth client secrets, rotation
with a grace window, one-time activation links, and the history of each.

A recipient has at most one current credential (``token``: its bearer token, or the client
secret of an OAuth recipient), credentials that keep working for a grace window after a
rotation, and at most one pending activation link (``activation``). Each is 256 random bits
stored only as a salted SHA-256 hash. Superseded credentials stay in ``history`` (id, kind and
times; the hash only while a grace window lasts, so a link that was used can still be told
apart from one that never existed), which ``DESCRIBE RECIPIENT`` shows.

The functions here work on the catalog document's plain dicts; :mod:`.catalog` calls them
under its file lock, and the server reads through them.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from typing import Any, Final

from arcuate.errors import ConfigurationError

#: A recipient's ``authentication_type`` (Databricks' names); absent means TOKEN.
TOKEN: Final = "TOKEN"
OAUTH: Final = "OAUTH_CLIENT_CREDENTIALS"
AUTHENTICATION_TYPES: Final = (TOKEN, OAUTH)
#: The ``kind`` of a credential in a recipient's history.
BEARER_TOKEN: Final = "bearer_token"
CLIENT_SECRET: Final = "client_secret"
ACTIVATION_LINK: Final = "activation_link"
KINDS: Final = (BEARER_TOKEN, CLIENT_SECRET, ACTIVATION_LINK)
#: Lifetime of an OAuth access token unless ``ACCESS TOKEN LIFETIME`` says otherwise. The
#: 1.4 client asks for a new token once fewer than 600 s are left, so shorter lifetimes cost
#: one token request per protocol request.
DEFAULT_ACCESS_TOKEN_SECONDS: Final = 3600
#: How long an activation link can be used unless ``VALID FOR`` says otherwise.
DEFAULT_ACTIVATION_SECONDS: Final = 7 * 86400
#: The longest secret that is hashed at all: ours are 43 characters.
MAX_SECRET_CHARS: Final = 512


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def iso(moment: datetime.datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix: the profile file's expirationTime style."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def parse_time(value: Any) -> datetime.datetime | None:
    """A catalog timestamp (ISO-8601 text or a YAML datetime) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, (str, datetime.date)):
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    else:
        raise TypeError(f"a timestamp must be text, not {type(value).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment


def token_hash(salt: str, token: str) -> str:
    """The stored form of a secret: hex SHA-256 over the salt and the secret."""
    return hashlib.sha256(bytes.fromhex(salt) + token.encode("utf-8")).hexdigest()


def check_seconds(what: str, seconds: int | None) -> None:
    """Refuse a lifetime or window of zero or less (None means the default)."""
    if seconds is not None and seconds <= 0:
        raise ConfigurationError(f"{what} must be a positive number of seconds, got {seconds}")


def _hashed(secret: str) -> dict[str, str]:
    salt = secrets.token_hex(16)
    return {"salt": salt, "sha256": token_hash(salt, secret)}


def _matches(entry: dict[str, Any], secret: str) -> bool:
    """Whether ``secret`` hashes to the entry's hash (constant time; False for no hash)."""
    salt, digest = entry.get("salt"), entry.get("sha256")
    if not isinstance(salt, str) or not isinstance(digest, str) or not secret:
        return False
    if len(secret) > MAX_SECRET_CHARS:
        return False
    try:
        return hmac.compare_digest(token_hash(salt, secret), digest)
    except ValueError:
        return False


def new_credential(
    expires_in_seconds: int | None, endpoint: str | None = None
) -> tuple[str, dict[str, Any]]:
    """A new secret and its catalog entry (id, salt, hash, times, the profile's endpoint)."""
    check_seconds("a token lifetime", expires_in_seconds)
    token = secrets.token_urlsafe(32)
    created = now()
    expires = (
        None
        if expires_in_seconds is None
        else iso(created + datetime.timedelta(seconds=expires_in_seconds))
    )
    entry: dict[str, Any] = {
        "id": secrets.token_hex(8),
        **_hashed(token),
        "created_at": iso(created),
        "expires_at": expires,
    }
    if endpoint is not None:
        entry["endpoint"] = endpoint.rstrip("/")  # what the profile names, never the token
    return token, entry


# -- one recipient -----------------------------------------------------------------------------
def authentication_type(r: dict[str, Any]) -> str:
    return str(r.get("authentication_type") or TOKEN)


def credential_kind(r: dict[str, Any]) -> str:
    """What the recipient's ``token`` entry holds the hash of."""
    return CLIENT_SECRET if authentication_type(r) == OAUTH else BEARER_TOKEN


def new_oauth(access_token_seconds: int | None) -> dict[str, Any]:
    """The OAuth settings of a new client-credentials recipient: a public client id."""
    check_seconds("an access token lifetime", access_token_seconds)
    return {
        "client_id": secrets.token_hex(16),
        "access_token_seconds": access_token_seconds or DEFAULT_ACCESS_TOKEN_SECONDS,
    }


def history(r: dict[str, Any]) -> list[dict[str, Any]]:
    value = r.setdefault("history", [])
    if not isinstance(value, list):
        raise ConfigurationError("share catalog: a recipient's 'history' must be a list")
    return value


def retire_current(r: dict[str, Any], moment: datetime.datetime, keep_seconds: int | None) -> None:
    """Move the current credential to the history; it keeps working ``keep_seconds`` more.

    The window can only shorten a credential's life, never extend it past its own expiry.
    """
    check_seconds("a grace window", keep_seconds)
    entry = r.pop("token", None)
    if not isinstance(entry, dict):
        return
    end = moment + datetime.timedelta(seconds=keep_seconds or 0)
    expires = parse_time(entry.get("expires_at"))
    if expires is not None:
        end = max(min(end, expires), moment)
    old: dict[str, Any] = {
        "id": entry.get("id"),
        "kind": credential_kind(r),
        "created_at": entry.get("created_at"),
        "expires_at": entry.get("expires_at"),
        "revoked_at": iso(end),
    }
    if end > moment:  # the hash stays only while the window is open
        old.update(salt=entry.get("salt"), sha256=entry.get("sha256"))
    history(r).append(old)


def new_activation(
    r: dict[str, Any], moment: datetime.datetime, valid_seconds: int, token_seconds: int | None
) -> str:
    """A pending one-time activation link for ``r``; returns its code (stored hashed).

    ``token_seconds``: the lifetime of the credential minted when the link is used.
    """
    check_seconds("an activation link's validity", valid_seconds)
    check_seconds("a token lifetime", token_seconds)
    code = secrets.token_urlsafe(32)
    link: dict[str, Any] = {
        "id": secrets.token_hex(8),
        **_hashed(code),
        "created_at": iso(moment),
        "expires_at": iso(moment + datetime.timedelta(seconds=valid_seconds)),
    }
    if token_seconds is not None:
        link["token_seconds"] = token_seconds
    r["activation"] = link
    return code


def _link_history(link: dict[str, Any], moment: datetime.datetime, used: bool) -> dict[str, Any]:
    # the hash stays, so a second click is told "already used", not "no such link"
    out = {k: link.get(k) for k in ("id", "created_at", "expires_at", "salt", "sha256")}
    out.update(kind=ACTIVATION_LINK, revoked_at=iso(moment))
    if used:
        out["used_at"] = iso(moment)
    return out


def cancel_activation(r: dict[str, Any], moment: datetime.datetime) -> None:
    """Withdraw a pending activation link (a rotation replaces it)."""
    link = r.pop("activation", None)
    if isinstance(link, dict):
        history(r).append(_link_history(link, moment, used=False))


def prune(r: dict[str, Any], moment: datetime.datetime) -> None:
    """Forget the hashes of credentials whose grace window has closed (the entries stay)."""
    for entry in r.get("history") or []:
        if entry.get("kind") == ACTIVATION_LINK or "sha256" not in entry:
            continue
        end = parse_time(entry.get("revoked_at"))
        if end is None or end <= moment:
            entry.pop("salt", None)
            entry.pop("sha256", None)


def working(r: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The credential entries that may still authenticate: the current one, then any in a
    grace window (the caller checks their times)."""
    current = r.get("token")
    if isinstance(current, dict):
        yield current
    for entry in r.get("history") or []:
        if isinstance(entry, dict) and entry.get("kind") != ACTIVATION_LINK and "sha256" in entry:
            yield entry


def credential_by_id(r: dict[str, Any], credential_id: str) -> dict[str, Any] | None:
    """The current or a past credential of ``r`` with this id (links excluded)."""
    current = r.get("token")
    if isinstance(current, dict) and current.get("id") == credential_id:
        return current
    for entry in r.get("history") or []:
        if entry.get("id") == credential_id and entry.get("kind") != ACTIVATION_LINK:
            return dict(entry)
    return None


# -- lookups across recipients -----------------------------------------------------------------
def _recipients(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for r in doc.get("recipients") or []:
        if isinstance(r, dict):
            yield r


def credential_for_token(
    doc: dict[str, Any], token: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(recipient, credential entry) whose hash ``token`` matches, expired or not.

    Only TOKEN recipients: an OAuth recipient's client secret is never a bearer token.
    Every entry is hashed, so the time taken does not depend on which one matches.
    """
    found = None
    for r in _recipients(doc):
        if authentication_type(r) != TOKEN:
            continue
        for entry in working(r):
            if _matches(entry, token) and found is None:
                found = (r, entry)
    return found


def client_credential(
    doc: dict[str, Any], client_id: str, secret: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(recipient, credential entry) of the OAuth client ``client_id`` whose secret matches."""
    for r in _recipients(doc):
        oauth = r.get("oauth")
        if authentication_type(r) != OAUTH or not isinstance(oauth, dict):
            continue
        if hmac.compare_digest(str(oauth.get("client_id", "")), client_id):
            found = [e for e in working(r) if _matches(e, secret)]
            return (r, found[0]) if found else None
    return None


class ActivationRefused(Exception):
    """An activation link that cannot give a profile: ``status`` and ``code`` for the answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _link_for(doc: dict[str, Any], code: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(recipient, link entry) a code belongs to: pending, used, withdrawn or expired."""
    for r in _recipients(doc):
        pending = r.get("activation")
        links = [pending] if isinstance(pending, dict) else []
        links += [e for e in r.get("history") or [] if e.get("kind") == ACTIVATION_LINK]
        for link in links:
            if _matches(link, code):
                return r, link
    return None


def pending_link(
    doc: dict[str, Any], code: str, moment: datetime.datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The recipient and pending link of ``code``.

    Raises:
        ActivationRefused: 404 for a code that was never issued, 410 for a link already used,
            withdrawn by a rotation, or expired.
    """
    found = _link_for(doc, code)
    if found is None:
        raise ActivationRefused(
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "this activation link is not valid: check that the whole link was copied",
        )
    r, link = found
    if link is not r.get("activation"):
        if link.get("used_at"):
            raise ActivationRefused(
                410,
                "ACTIVATION_LINK_USED",
                f"this activation link was already used, at {link['used_at']}: a link gives "
                "the profile once. Ask the provider for a new link, and tell them if it was "
                "not you who used it",
            )
        raise ActivationRefused(
            410,
            "ACTIVATION_LINK_REVOKED",
            f"this activation link was withdrawn at {link.get('revoked_at')} (the provider "
            "rotated the credential); ask the provider for a new link",
        )
    expires = parse_time(link.get("expires_at"))
    if expires is not None and expires <= moment:
        raise ActivationRefused(
            410,
            "ACTIVATION_LINK_EXPIRED",
            f"this activation link expired at {link['expires_at']}; ask the provider for a "
            "new link",
        )
    return r, link


def activate(
    doc: dict[str, Any], code: str, moment: datetime.datetime, endpoint: str
) -> tuple[dict[str, Any], str]:
    """Use a pending link: mint the recipient's credential (stored hashed) and return
    (recipient, secret). The caller holds the catalog lock, so one click wins.

    Raises:
        ActivationRefused: see :func:`pending_link`.
    """
    r, link = pending_link(doc, code, moment)
    retire_current(r, moment, None)  # a hand edit may have left one: it must not outlive this
    secret, entry = new_credential(link.get("token_seconds"), endpoint)
    r["token"] = entry
    del r["activation"]
    history(r).append(_link_history(link, moment, used=True))
    r["history"] = r.pop("history")  # the current credential first in the file
    return r, secret


# -- what may be shown -------------------------------------------------------------------------
def _state(entry: dict[str, Any], kind: str, moment: datetime.datetime, current: bool) -> str:
    expires = parse_time(entry.get("expires_at"))
    revoked = parse_time(entry.get("revoked_at"))
    if kind == ACTIVATION_LINK and entry.get("used_at"):
        return "used"
    if expires is not None and expires <= moment and (revoked is None or expires <= revoked):
        return "expired"
    if current:
        return "pending" if kind == ACTIVATION_LINK else "active"
    return "grace" if revoked is not None and revoked > moment else "revoked"


def credential_rows(r: dict[str, Any], moment: datetime.datetime) -> list[dict[str, Any]]:
    """The recipient's credentials, newest first: kind, id, state and times; never a hash."""
    listed: list[tuple[dict[str, Any], str, bool]] = []
    if isinstance(r.get("token"), dict):
        listed.append((r["token"], credential_kind(r), True))
    if isinstance(r.get("activation"), dict):
        listed.append((r["activation"], ACTIVATION_LINK, True))
    for entry in reversed(r.get("history") or []):
        listed.append((entry, str(entry.get("kind")), False))
    return [
        {
            "kind": kind,
            "id": entry.get("id"),
            "state": _state(entry, kind, moment, current),
            "created_at": entry.get("created_at"),
            "expires_at": entry.get("expires_at"),
            "revoked_at": entry.get("used_at") or entry.get("revoked_at"),
        }
        for entry, kind, current in listed
    ]


def public_fields(r: dict[str, Any], moment: datetime.datetime) -> dict[str, Any]:
    """The credential fields of a recipient's public record (SHOW RECIPIENTS)."""
    oauth = r.get("oauth") if authentication_type(r) == OAUTH else None
    grace = [
        parse_time(e.get("revoked_at"))
        for e in r.get("history") or []
        if e.get("kind") != ACTIVATION_LINK and "sha256" in e
    ]
    open_until = max((g for g in grace if g is not None and g > moment), default=None)
    link = r.get("activation")
    return {
        "authentication_type": authentication_type(r),
        "client_id": oauth.get("client_id") if isinstance(oauth, dict) else None,
        "rotated_token_expires_at": iso(open_until) if open_until else None,
        "activation_link_expires_at": link.get("expires_at") if isinstance(link, dict) else None,
    }
