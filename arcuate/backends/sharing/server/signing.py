"""Signed, expiring data-file URLs and tamper-proof page tokens, under one server key.

A file URL names the table (by its catalog id), the file's path inside the table, the
recipient it was issued to and its expiry; the HMAC also covers the recipient's current token
id, so rotating or dropping a recipient, or revoking its grant, stops its URLs at once. The
query carries ``sp=r`` because the Rust kernel treats a URL as pre-signed only when it sees
one of a few storage-style keys.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from arcuate.errors import ConfigurationError

KEY_SUFFIX: Final = ".signing-key"


def key_path_for(catalog_path: str | os.PathLike[str]) -> Path:
    """Where the server keeps its signing key: next to the catalog file."""
    p = Path(catalog_path)
    return p.with_name(p.name + KEY_SUFFIX)


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """The signing key at ``path``, created (0600, atomically) on first use.

    Raises:
        ConfigurationError: the key file is readable by others, or not a key.
    """
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            with contextlib.suppress(FileExistsError):  # another worker won the race
                os.link(tmp, p)
        finally:
            os.unlink(tmp)
    mode = p.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"signing key {p} is readable by other users (mode {stat.filemode(mode)})",
            hint=_permission_hint(p),
        )
    try:
        key = bytes.fromhex(p.read_text().strip())
    except ValueError:
        raise ConfigurationError(f"signing key {p} does not hold a hex key") from None
    if len(key) < 16:
        raise ConfigurationError(f"signing key {p} is too short (need at least 16 bytes)")
    return key


def _permission_hint(p: Path) -> str:
    """Suggest ``chmod 600`` only for a key file of the user's own: never for a file that is
    not a key (``--key-file /etc/passwd``) or that belongs to somebody else."""
    own = (
        "use a key file of your own: give --key-file a new path (the key is created there"
        " with mode 0600)"
    )
    try:
        with p.open("rb") as fh:
            head = fh.read(4096)
        mine = p.stat().st_uid == os.geteuid()
    except OSError:
        return own
    if mine and re.fullmatch(rb"[0-9a-fA-F]{32,}\s*", head):
        return f"chmod 600 {p}, or use a key file of your own (a new --key-file path)"
    return own


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class FileClaim:
    """What a file URL grants: one file of one table, to one recipient, until ``expires``."""

    table_id: str
    path: str
    recipient: str
    expires: int


class Signer:
    """HMAC-SHA256 signatures under the server key, one purpose label per use."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: str, *parts: str) -> bytes:
        message = "\n".join((purpose, *parts)).encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    # -- file URLs -------------------------------------------------------------------------
    def file_query(self, claim: FileClaim, token_id: str) -> str:
        """The query string of a file URL."""
        sig = self._mac(
            "file", claim.table_id, claim.path, claim.recipient, token_id, str(claim.expires)
        )
        return f"sp=r&se={claim.expires}&rc={quote(claim.recipient, safe='')}&sig={_b64(sig)}"

    def file_url(self, base: str, claim: FileClaim, token_id: str) -> str:
        """``<base>/files/<table id>/<path>?sp=r&se=..&rc=..&sig=..``."""
        path = quote(claim.path, safe="/")
        return f"{base}/files/{claim.table_id}/{path}?{self.file_query(claim, token_id)}"

    def check_file(self, claim: FileClaim, token_id: str, signature: str) -> bool:
        """True if ``signature`` is this server's for the claim and the recipient's token."""
        expected = self._mac(
            "file", claim.table_id, claim.path, claim.recipient, token_id, str(claim.expires)
        )
        try:
            given = _unb64(signature)
        except ValueError:
            return False
        return hmac.compare_digest(expected, given)

    # -- opaque tokens (pages, refresh) ------------------------------------------------------
    def seal(self, purpose: str, payload: dict[str, Any]) -> str:
        """A tamper-proof token carrying ``payload`` for one purpose."""
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return body + "." + _b64(self._mac(purpose, body)[:18])

    def open(self, purpose: str, token: str) -> dict[str, Any] | None:
        """The payload of a token sealed for ``purpose``, or None if it is not one."""
        body, sep, sig = token.partition(".")
        if not sep or len(token) > 4096:
            return None
        try:
            ok = hmac.compare_digest(self._mac(purpose, body)[:18], _unb64(sig))
            payload = json.loads(_unb64(body)) if ok else None
        except (ValueError, UnicodeDecodeError):
            return None
        return payload if isinstance(payload, dict) else None


def expiry(ttl_seconds: int) -> int:
    """Epoch seconds ``ttl_seconds`` from now."""
    return int(time.time()) + ttl_seconds
