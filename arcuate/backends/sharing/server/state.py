"""The server's view of the share catalog, re-read whenever the file changes.

Each request stats the catalog file; a changed (mtime, size, inode) triggers a reload, so
grants, revocations, rotated tokens and new tables apply to the very next request. A file
that cannot be parsed keeps the last good view (and is logged) rather than failing requests.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcuate.backends.sharing import credentials as creds
from arcuate.backends.sharing.catalog import LocalShareCatalog, shares_for_doc
from arcuate.backends.sharing.credentials import parse_time
from arcuate.backends.sharing.server.logline import log_field

log = logging.getLogger("arcuate.server")


@dataclass(frozen=True)
class TableEntry:
    share: str
    schema: str
    name: str
    location: str
    id: str
    history_shared: bool
    start_version: int


@dataclass(frozen=True)
class Recipient:
    """A recipient as one of its credentials authenticates it: ``token_id`` is that
    credential's id (file URLs are signed for it), ``revoked_at`` the end of its grace window
    once it was rotated."""

    name: str
    token_id: str
    expires_at: datetime.datetime | None
    revoked_at: datetime.datetime | None = None

    def expired(self, now: datetime.datetime | None = None) -> bool:
        return self.refusal(now) is not None

    def refusal(self, now: datetime.datetime | None = None) -> str | None:
        """Why this credential no longer works (to follow "the bearer token "), or None."""
        moment = now or datetime.datetime.now(datetime.UTC)
        if self.revoked_at is not None and self.revoked_at <= moment:
            return (
                f"was rotated and stopped working at {self.revoked_at.isoformat()}; "
                "use the new profile"
            )
        if self.expires_at is not None and self.expires_at <= moment:
            return f"expired at {self.expires_at.isoformat()}; ask the provider for a new profile"
        return None


@dataclass
class CatalogView:
    """One parsed version of the catalog, indexed for lookups by name and id."""

    doc: dict[str, Any] = field(default_factory=lambda: {"version": 1, "shares": []})

    def __post_init__(self) -> None:
        self.shares: dict[str, dict[str, Any]] = {}
        self.tables_by_id: dict[str, TableEntry] = {}
        for s in self.doc.get("shares") or []:
            if not isinstance(s, dict) or "name" not in s:
                continue
            self.shares.setdefault(str(s["name"]).lower(), s)
            for sc in s.get("schemas") or []:
                for t in sc.get("tables") or []:
                    entry = self._entry(s, sc, t)
                    if entry.id:
                        self.tables_by_id.setdefault(entry.id, entry)

    @staticmethod
    def _entry(s: dict[str, Any], sc: dict[str, Any], t: dict[str, Any]) -> TableEntry:
        return TableEntry(
            share=str(s["name"]),
            schema=str(sc["name"]),
            name=str(t["name"]),
            location=str(t.get("location", "")),
            id=str(t.get("id", "")),
            history_shared=bool(t.get("historyShared", False)),
            start_version=int(t.get("startVersion", 0) or 0),
        )

    def recipient_by_token(self, token: str) -> tuple[Recipient | None, bool]:
        """(recipient, matched): the bearer token's holder, expired or not (a rotated token
        in its grace window too); matched False if none."""
        found = creds.credential_for_token(self.doc, token)
        if found is None:
            return None, False
        return self._recipient(*found), True

    def _entry_of(self, name: str) -> dict[str, Any] | None:
        for r in self.doc.get("recipients") or []:
            if str(r.get("name", "")).lower() == name.lower():
                return dict(r)
        return None

    def recipient(self, name: str) -> Recipient | None:
        """A recipient as its current credential authenticates it."""
        r = self._entry_of(name)
        return self._recipient(r, r.get("token") or {}) if r is not None else None

    def credentials(self, name: str) -> list[Recipient]:
        """The recipient as each credential that may sign file URLs authenticates it: the
        current one and those in a grace window (the caller checks their times)."""
        r = self._entry_of(name)
        if r is None:
            return []
        return [self._recipient(r, entry) for entry in creds.working(r)]

    def credential(self, name: str, credential_id: str, kind: str) -> Recipient | None:
        """The recipient as the credential ``credential_id`` of ``kind`` authenticates it
        (current or past), or None: an OAuth access token names the secret it came from."""
        r = self._entry_of(name)
        if r is None or creds.credential_kind(r) != kind:
            return None
        entry = creds.credential_by_id(r, credential_id)
        return self._recipient(r, entry) if entry is not None else None

    @staticmethod
    def _recipient(r: dict[str, Any], entry: dict[str, Any]) -> Recipient:
        return Recipient(
            name=str(r["name"]),
            token_id=str(entry.get("id", "")),
            expires_at=parse_time(entry.get("expires_at")),
            revoked_at=parse_time(entry.get("revoked_at")),
        )

    def granted_shares(self, recipient: str) -> list[dict[str, Any]]:
        """The share entries ``recipient`` may read, in catalog order."""
        names = {n.lower() for n in shares_for_doc(self.doc, recipient)}
        return [s for key, s in self.shares.items() if key in names]

    def share(self, recipient: str, name: str) -> dict[str, Any] | None:
        """A share the recipient may read; None when missing *or* not granted (same answer)."""
        s = self.shares.get(name.lower())
        if s is None:
            return None
        if str(s["name"]).lower() not in {n.lower() for n in shares_for_doc(self.doc, recipient)}:
            return None
        return s

    def table(self, recipient: str, share: str, schema: str, table: str) -> TableEntry | None:
        s = self.share(recipient, share)
        if s is None:
            return None
        for sc in s.get("schemas") or []:
            if str(sc["name"]).lower() != schema.lower():
                continue
            for t in sc.get("tables") or []:
                if str(t["name"]).lower() == table.lower():
                    return self._entry(s, sc, t)
        return None

    def readable_table(self, recipient: str, table_id: str) -> TableEntry | None:
        """The table with catalog id ``table_id`` if it sits in a share granted to recipient."""
        entry = self.tables_by_id.get(table_id)
        if entry is None:
            return None
        for s in self.granted_shares(recipient):
            for sc in s.get("schemas") or []:
                for t in sc.get("tables") or []:
                    if str(t.get("id", "")) == table_id:
                        return self._entry(s, sc, t)
        return None


class CatalogWatcher:
    """Hands out the current :class:`CatalogView`, reloading when the file changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.catalog = LocalShareCatalog(path)
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._view = CatalogView()
        self.reloads = 0

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def view(self) -> CatalogView:
        """The catalog as it is on disk now (one stat per call)."""
        stamp = self._stat()
        if stamp == self._stamp and self.reloads:
            return self._view
        with self._lock:
            stamp = self._stat()
            if stamp == self._stamp and self.reloads:
                return self._view
            try:
                doc = self.catalog.load() if stamp is not None else {"version": 1, "shares": []}
                view = CatalogView(doc)
            except Exception as exc:  # a hand-edit gone wrong must not take the server down
                log.error(
                    "cannot read share catalog %s, keeping the last good one: %s",
                    log_field(self.path),
                    log_field(exc, limit=2048, spaces=True),
                )
                self._stamp = stamp
                self.reloads += 1
                return self._view
            self._view, self._stamp = view, stamp
            self.reloads += 1
            return view
