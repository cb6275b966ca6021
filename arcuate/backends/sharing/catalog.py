"""The local share catalog: a YAML file in the Delta Sharing reference server's layout.

``shares -> schemas -> tables (name, location, id, historyShared, startVersion)``. Every change
is made under an exclusive file lock and written with an atomic rename, so a running server
or a concurrent ``CREATE SHARE`` never sees half a file.

Recipients and grants live in two extra top-level keys, ``recipients`` and ``grants``, which
the reference server ignores. A recipient's bearer token is stored only as a salted SHA-256
hash; the token itself is shown once, when it is created or rotated. OAuth client secrets,
grace windows, activation links and the history of each are kept by :mod:`.credentials`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import os
import secrets
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, NoReturn

import yaml

from arcuate.backends.protocols import AddResult
from arcuate.backends.sharing import credentials as creds
from arcuate.backends.sharing.credentials import iso as _iso
from arcuate.backends.sharing.credentials import now as _now
from arcuate.backends.sharing.credentials import parse_time
from arcuate.errors import ConfigurationError, ConflictError, NotFoundError
from arcuate.format import access as rules
from arcuate.format.names import is_share_name

#: libyaml's safe loader and dumper where PyYAML has them (the same documents, about ten times
#: faster than the pure-Python ones: a catalog is read and written by every export)
_LOADER: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER: Final[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where (line, column), without the line itself: the catalog holds
    credential hashes and storage settings, which PyYAML's own message would quote."""
    problem = getattr(exc, "problem", None) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{str(problem)[:200]}{where}"


def check_share_name(kind: str, name: str) -> str:
    """Validate a share, schema or table name against the protocol's rules."""
    if not is_share_name(name):
        raise ConfigurationError(
            f"invalid {kind} name {name!r}: Delta Sharing names are 1-255 characters with no "
            "dot, space, '/' or control character"
        )
    return name


def _same(a: str, b: str) -> bool:
    # Delta Sharing names are case-insensitive.
    return a.lower() == b.lower()


class LocalShareCatalog:
    """Shares, schemas and tables kept in one YAML file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # -- file handling -------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """The catalog document, or an empty one if the file does not exist yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"version": 1, "shares": []}
        try:
            doc = yaml.load(text, Loader=_LOADER) or {}  # a safe loader (libyaml or PyYAML)
        except yaml.YAMLError as exc:  # a Python tag included: the safe loader builds none
            raise ConfigurationError(
                f"share catalog {self.path} is not valid YAML: {_yaml_problem(exc)}"
            ) from None
        if not isinstance(doc, dict):
            raise ConfigurationError(f"share catalog {self.path} is not a YAML mapping")
        for key in ("shares", "recipients", "grants"):  # `key:` with nothing after it
            if key in doc and doc[key] is None:
                del doc[key]
        doc.setdefault("version", 1)
        doc.setdefault("shares", [])
        check_catalog(doc, str(self.path))
        return doc

    @contextlib.contextmanager
    def editing(self) -> Iterator[dict[str, Any]]:
        """Load, let the caller change, and atomically save the catalog under a lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                doc = self.load()
                _prune(doc, _now())  # hashes whose grace window has closed go at any change
                yield doc
                self._save(doc)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self, doc: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".shares-", suffix=".yaml")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                yaml.dump(doc, fh, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # -- lookups ---------------------------------------------------------------------------
    @staticmethod
    def find(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
        """The item named ``name`` (case-insensitively) in a list of named items."""
        return next((i for i in items if _same(str(i.get("name", "")), name)), None)

    def shares(self) -> list[dict[str, Any]]:
        """Every share with its schemas and tables."""
        return list(self.load()["shares"])

    def table(self, share: str, schema: str, table: str) -> dict[str, Any] | None:
        """A table's entry, or None."""
        s = self.find(self.load()["shares"], share)
        sc = self.find(s.get("schemas", []), schema) if s else None
        return self.find(sc.get("tables", []), table) if sc else None

    # -- changes ---------------------------------------------------------------------------
    def add_table(
        self, share: str, schema: str, table: str, location: str, *, if_not_exists: bool = True
    ) -> AddResult:
        """Add ``table`` at ``location`` to ``share.schema``, creating share and schema.

        The same definition again is a no-op (``exists``); the same name at another location
        is a :class:`ConflictError`, since silently re-pointing a shared table would change
        what recipients read.
        """
        for kind, name in (("share", share), ("schema", schema), ("table", table)):
            check_share_name(kind, name)
        with self.editing() as doc:
            s = self.find(doc["shares"], share)
            if s is None:
                s = {"name": share, "schemas": []}
                doc["shares"].append(s)
            sc = self.find(s.setdefault("schemas", []), schema)
            if sc is None:
                sc = {"name": schema, "tables": []}
                s["schemas"].append(sc)
            t = self.find(sc.setdefault("tables", []), table)
            if t is not None:
                if t.get("location") != location:
                    raise ConflictError(
                        f"share {share!r} already has table {schema}.{table} at "
                        f"{t.get('location')!r}, not {location!r}",
                        hint=f"ALTER SHARE {share} REMOVE TABLE {schema}.{table} first, "
                        "or use another table name",
                    )
                return "exists"
            sc["tables"].append(
                {
                    "name": table,
                    "location": location,
                    "id": str(uuid.uuid4()),
                    "historyShared": True,
                    "startVersion": 0,
                }
            )
            return "added"

    # -- shares: removal ---------------------------------------------------------------------
    def remove_table(self, share: str, schema: str, table: str) -> None:
        """Take ``schema.table`` out of ``share`` (the Delta table itself is left alone).

        An emptied schema goes too: schemas exist only to hold tables.

        Raises:
            NotFoundError: the share, schema or table is not in the catalog.
        """
        with self.editing() as doc:
            s = self.find(doc["shares"], share)
            if s is None:
                raise NotFoundError(f"share {share!r} does not exist in {self.path}")
            sc = self.find(s.get("schemas", []), schema)
            t = self.find(sc.get("tables", []), table) if sc else None
            if sc is None or t is None:
                raise NotFoundError(
                    f"share {s['name']!r} has no table {schema}.{table}",
                    hint=f"SHOW ALL IN SHARE {s['name']} lists its tables",
                )
            sc["tables"].remove(t)
            if not sc["tables"]:
                s["schemas"].remove(sc)

    def drop_share(self, name: str, *, if_exists: bool = False) -> bool:
        """Delete a share and its grants; True if it existed.

        Raises:
            NotFoundError: no such share and ``if_exists`` is false.
        """
        with self.editing() as doc:
            s = self.find(doc["shares"], name)
            if s is None:
                if if_exists:
                    return False
                raise NotFoundError(f"share {name!r} does not exist in {self.path}")
            doc["shares"].remove(s)
            grants = _grants(doc)
            for key in [k for k in grants if _same(k, str(s["name"]))]:
                del grants[key]
            return True

    # -- recipients ----------------------------------------------------------------------------
    def recipients(self) -> list[dict[str, Any]]:
        """Every recipient as a public record (no token material), with its granted shares."""
        doc = self.load()
        return [public_recipient(doc, r) for r in _recipients(doc)]

    def recipient(self, name: str) -> dict[str, Any] | None:
        """One recipient's public record with its ``credentials`` history, or None."""
        doc = self.load()
        r = self.find(_recipients(doc), name)
        return public_recipient(doc, r, history=True) if r else None

    def create_recipient(
        self,
        name: str,
        *,
        if_not_exists: bool = False,
        comment: str | None = None,
        expires_in_seconds: int | None = None,
        endpoint: str | None = None,
        oauth: bool = False,
        access_token_seconds: int | None = None,
        activation_seconds: int | None = None,
    ) -> tuple[dict[str, Any], str | None]:
        """Create a recipient and its credential; return (public record, secret).

        The secret is the bearer token, or with ``oauth`` the client secret of an OAuth
        client-credentials recipient (its public ``client_id`` is in the record; access tokens
        last ``access_token_seconds``). With ``activation_seconds`` no credential is made yet:
        the secret is the code of a one-time activation link valid that long, and the
        credential is minted when the link is used (:meth:`activate`). Each is returned here
        once and stored only as a salted SHA-256 hash. With ``if_not_exists`` an existing
        recipient is left as it is and the secret is None. ``endpoint`` is the server URL the
        recipient's profile names: ``arcuate serve`` warns when it is not where the server is
        reached.

        Raises:
            ConflictError: the recipient exists and ``if_not_exists`` is false.
        """
        check_share_name("recipient", name)
        if access_token_seconds is not None and not oauth:
            raise ConfigurationError("an access token lifetime is for OAuth recipients only")
        with self.editing() as doc:
            recipients = _recipients(doc)
            existing = self.find(recipients, name)
            if existing is not None:
                if if_not_exists:
                    return public_recipient(doc, existing), None
                raise ConflictError(
                    f"recipient {existing['name']!r} already exists",
                    hint=f"ALTER RECIPIENT {existing['name']} ROTATE TOKEN issues a new token",
                )
            moment = _now()
            record: dict[str, Any] = {"name": name, "comment": comment, "created_at": _iso(moment)}
            if oauth:
                record["authentication_type"] = creds.OAUTH
                record["oauth"] = creds.new_oauth(access_token_seconds)
            secret = _issue(record, moment, expires_in_seconds, endpoint, activation_seconds)
            recipients.append(record)
            return public_recipient(doc, record), secret

    def rotate_token(
        self,
        name: str,
        *,
        expires_in_seconds: int | None = None,
        endpoint: str | None = None,
        keep_old_seconds: int | None = None,
        activation_seconds: int | None = None,
    ) -> str:
        """Replace a recipient's credential (its bearer token or OAuth client secret).

        The old one, the file URLs and access tokens issued for it, stop at once, or with
        ``keep_old_seconds`` when that window closes (never later than they would have
        expired); it stays in the history. A pending activation link is withdrawn. Returns
        the new secret, or with ``activation_seconds`` the code of a new activation link (as
        for :meth:`create_recipient`).

        Raises:
            NotFoundError: no such recipient.
        """
        with self.editing() as doc:
            r = self.find(_recipients(doc), name)
            if r is None:
                raise NotFoundError(f"recipient {name!r} does not exist in {self.path}")
            moment = _now()
            creds.cancel_activation(r, moment)
            creds.retire_current(r, moment, keep_old_seconds)
            return _issue(r, moment, expires_in_seconds, endpoint, activation_seconds)

    def activate(self, code: str, *, endpoint: str) -> Activated:
        """Use a one-time activation link: mint the recipient's credential, store its hash,
        and return it (once). Under the catalog lock, so of concurrent clicks one wins.

        Raises:
            ActivationRefused: the code was never issued (404), or its link was used,
                withdrawn or has expired (410).
        """
        with self.editing() as doc:
            moment = _now()
            r, secret = creds.activate(doc, code, moment, endpoint)
            oauth = r.get("oauth") if creds.authentication_type(r) == creds.OAUTH else None
            return Activated(
                recipient=str(r["name"]),
                secret=secret,
                client_id=str(oauth["client_id"]) if isinstance(oauth, dict) else None,
                expires_at=r["token"].get("expires_at"),
            )

    def activation(self, code: str) -> str:
        """The recipient a pending activation link is for (nothing changes).

        Raises:
            ActivationRefused: as for :meth:`activate`.
        """
        r, _ = creds.pending_link(self.load(), code, _now())
        return str(r["name"])

    def drop_recipient(self, name: str, *, if_exists: bool = False) -> bool:
        """Delete a recipient and its grants; True if it existed.

        Raises:
            NotFoundError: no such recipient and ``if_exists`` is false.
        """
        with self.editing() as doc:
            recipients = _recipients(doc)
            r = self.find(recipients, name)
            if r is None:
                if if_exists:
                    return False
                raise NotFoundError(f"recipient {name!r} does not exist in {self.path}")
            recipients.remove(r)
            grants = _grants(doc)
            for share, names in list(grants.items()):
                grants[share] = [n for n in names if not _same(n, str(r["name"]))]
                if not grants[share]:
                    del grants[share]
            return True

    # -- access policies: IP access lists and rate limits (issue 15) ---------------------------
    def set_ip_access_list(self, name: str, entries: list[str] | None) -> list[str] | None:
        """Let ``name`` reach the server only from these addresses and CIDR ranges (None: from
        anywhere again); return the list as stored (canonical, without duplicates).

        Raises:
            ConfigurationError: an entry that is not an address or range, or too many.
            NotFoundError: no such recipient.
        """
        stored = None
        if entries is not None:
            try:
                stored = rules.access_list(entries)
            except ValueError as exc:
                raise ConfigurationError(f"IP access list of recipient {name!r}: {exc}") from None
        with self.editing() as doc:
            r = self._recipient_entry(doc, name)
            if stored is None:
                r.pop("ip_access_list", None)
            else:
                r["ip_access_list"] = stored
        return stored

    def set_rate_limit(self, name: str, requests: int | None, per_seconds: int = 60) -> None:
        """Allow ``name`` at most ``requests`` protocol requests per ``per_seconds`` (a token
        bucket in the server); ``requests`` None removes the limit.

        Raises:
            ConfigurationError: the limit is out of range or not per a unit.
            NotFoundError: no such recipient.
        """
        if requests is not None:
            try:
                rules.rate_limit(requests, per_seconds)
            except ValueError as exc:
                raise ConfigurationError(f"rate limit of recipient {name!r}: {exc}") from None
        with self.editing() as doc:
            r = self._recipient_entry(doc, name)
            if requests is None:
                r.pop("rate_limit", None)
            else:
                r["rate_limit"] = {"requests": requests, "per_seconds": per_seconds}

    def access_log(
        self,
        *,
        recipient: str | None = None,
        share: str | None = None,
        since: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` requests ``arcuate serve`` answered for this catalog, newest
        first (its access log, :mod:`.audit`); ``since``: ISO-8601 with an offset."""
        from arcuate.backends.sharing.audit import log_location, read_log

        location = log_location(self.path)
        return read_log(location, recipient=recipient, share=share, since=since, limit=limit)

    def usage(
        self, *, recipient: str | None = None, share: str | None = None, since: str | None = None
    ) -> list[dict[str, Any]]:
        """Requests, refusals, bytes sent, first and last access per recipient (every
        recipient of the catalog, and any other the access log names)."""
        from arcuate.backends.sharing.audit import log_location, usage

        names = [str(r["name"]) for r in _recipients(self.load())]
        location = log_location(self.path)
        return usage(location, names, recipient=recipient, share=share, since=since)

    def _recipient_entry(self, doc: dict[str, Any], name: str) -> dict[str, Any]:
        r = self.find(_recipients(doc), name)
        if r is None:
            raise NotFoundError(
                f"recipient {name!r} does not exist in {self.path}",
                hint="SHOW RECIPIENTS lists the recipients",
            )
        return r

    def grant(self, share: str, recipient: str) -> bool:
        """Let ``recipient`` read ``share``; False if it already could.

        Raises:
            NotFoundError: the share or the recipient does not exist.
        """
        with self.editing() as doc:
            s, r = self._share_and_recipient(doc, share, recipient)
            names = _grants(doc).setdefault(str(s["name"]), [])
            if any(_same(n, str(r["name"])) for n in names):
                return False
            names.append(str(r["name"]))
            return True

    def revoke(self, share: str, recipient: str) -> bool:
        """Stop ``recipient`` reading ``share`` (at once, on a running server); False if it
        could not.

        Raises:
            NotFoundError: the share or the recipient does not exist.
        """
        with self.editing() as doc:
            s, r = self._share_and_recipient(doc, share, recipient)
            grants = _grants(doc)
            key = next((k for k in grants if _same(k, str(s["name"]))), None)
            if key is None:
                return False
            before = len(grants[key])
            grants[key] = [n for n in grants[key] if not _same(n, str(r["name"]))]
            if not grants[key]:
                del grants[key]
            return before != len(grants.get(key, []))

    def _share_and_recipient(
        self, doc: dict[str, Any], share: str, recipient: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        s = self.find(doc["shares"], share)
        if s is None:
            raise NotFoundError(f"share {share!r} does not exist in {self.path}")
        r = self.find(_recipients(doc), recipient)
        if r is None:
            raise NotFoundError(
                f"recipient {recipient!r} does not exist in {self.path}",
                hint=f"CREATE RECIPIENT {recipient} first",
            )
        return s, r

    # -- reference server export ---------------------------------------------------------------
    def export_reference_yaml(
        self,
        *,
        bearer_token: str | None = None,
        shares: list[str] | None = None,
        host: str = "localhost",
        port: int = 8080,
        endpoint: str = "/delta-sharing",
        url_ttl_seconds: int = 3600,
        include_local: bool = False,
    ) -> ReferenceExport:
        """A config the Delta Sharing reference server can load, with one bearer token.

        The reference server has no recipients: one token opens every share in the file, and
        it serves only tables in object storage (s3a, abfss, wasbs, gs). Tables elsewhere are
        left out (and listed in ``skipped``) unless ``include_local``. Our tokens are stored
        hashed, so the export carries a new token (or the one given).
        """
        doc = self.load()
        token = bearer_token or secrets.token_urlsafe(32)
        skipped: list[str] = []
        out_shares: list[dict[str, Any]] = []
        wanted = [w.lower() for w in shares] if shares else None
        for s in doc["shares"]:
            if wanted is not None and str(s["name"]).lower() not in wanted:
                continue
            schemas = []
            for sc in s.get("schemas", []):
                tables = []
                for t in sc.get("tables", []):
                    location = _reference_location(str(t.get("location", "")))
                    if location is None and not include_local:
                        skipped.append(f"{s['name']}.{sc['name']}.{t['name']}")
                        continue
                    tables.append(
                        {
                            "name": t["name"],
                            "location": location or str(t.get("location", "")),
                            "id": str(t.get("id", "")),
                            "historyShared": bool(t.get("historyShared", False)),
                            "startVersion": int(t.get("startVersion", 0)),
                        }
                    )
                if tables:
                    schemas.append({"name": sc["name"], "tables": tables})
            if schemas:
                out_shares.append({"name": s["name"], "schemas": schemas})
        if wanted is not None:
            found = {str(s["name"]).lower() for s in doc["shares"]}
            missing = [w for w in shares or [] if w.lower() not in found]
            if missing:
                raise NotFoundError(f"share {missing[0]!r} does not exist in {self.path}")
        config = {
            "version": 1,
            "shares": out_shares,
            "authorization": {"bearerToken": token},
            "host": host,
            "port": port,
            "endpoint": endpoint,
            "preSignedUrlTimeoutSeconds": url_ttl_seconds,
            "evaluatePredicateHints": False,
        }
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        return ReferenceExport(yaml=text, bearer_token=token, skipped=skipped)


@dataclasses.dataclass(frozen=True)
class ReferenceExport:
    """A reference-server config: its YAML text, the one bearer token in it, tables left out."""

    yaml: str
    bearer_token: str
    skipped: list[str]


@dataclasses.dataclass(frozen=True)
class Activated:
    """The credential an activation link gave: shown once, in the profile it goes into."""

    recipient: str
    secret: str = dataclasses.field(repr=False)
    client_id: str | None  # an OAuth recipient's; None for a bearer token
    expires_at: str | None


#: Object-store schemes the reference server reads, and how it spells them.
_REFERENCE_SCHEMES: Final = {
    "s3": "s3a",
    "s3a": "s3a",
    "abfss": "abfss",
    "abfs": "abfs",
    "wasbs": "wasbs",
    "wasb": "wasb",
    "gs": "gs",
}


def _reference_location(location: str) -> str | None:
    """The location as the reference server wants it, or None if it cannot read it."""
    scheme, sep, rest = location.partition("://")
    if not sep or scheme.lower() not in _REFERENCE_SCHEMES:
        return None
    return f"{_REFERENCE_SCHEMES[scheme.lower()]}://{rest}"


# -- the catalog's shape -------------------------------------------------------------------------
class _Shape:
    """Checks one catalog document, naming the first field that has the wrong shape."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, wanted: str, value: Any) -> NoReturn:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:80] + "..."
        raise ConfigurationError(
            f"share catalog {self.where}: {field} must be {wanted}, got {shown}",
            hint="fix the file (a running server keeps serving the last good version)",
        )

    def mapping(self, field: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field, "a mapping", value)
        return value

    def items(self, field: str, value: Any) -> list[Any]:
        """A list, or nothing (``key:`` left empty)."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(field, "a list", value)
        return value

    def text(self, field: str, value: Any, *, optional: bool = False) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or not value:
            self.fail(field, "a non-empty string (quote it in YAML)", value)

    def hex_text(self, field: str, value: Any) -> None:
        self.text(field, value)
        try:
            bytes.fromhex(value)
        except ValueError:
            self.fail(field, "hexadecimal text", value)

    def moment(self, field: str, value: Any) -> None:
        try:
            parse_time(value)
        except (ValueError, TypeError):
            self.fail(field, "an ISO-8601 timestamp such as 2026-01-31T12:00:00.000Z", value)

    def table(self, field: str, t: Any) -> None:
        t = self.mapping(field, t)
        self.text(f"{field}.name", t.get("name"))
        self.text(f"{field}.location", t.get("location"))
        self.text(f"{field}.id", t.get("id"), optional=True)
        if t.get("historyShared") is not None and not isinstance(t["historyShared"], bool):
            self.fail(f"{field}.historyShared", "true or false", t["historyShared"])
        start = t.get("startVersion")
        if start is not None and (type(start) is not int or start < 0):  # bool is not a version
            self.fail(f"{field}.startVersion", "a whole number from 0", start)

    def share(self, field: str, s: Any) -> None:
        s = self.mapping(field, s)
        self.text(f"{field}.name", s.get("name"))
        for i, sc in enumerate(self.items(f"{field}.schemas", s.get("schemas"))):
            sc = self.mapping(f"{field}.schemas[{i}]", sc)
            self.text(f"{field}.schemas[{i}].name", sc.get("name"))
            for j, t in enumerate(self.items(f"{field}.schemas[{i}].tables", sc.get("tables"))):
                self.table(f"{field}.schemas[{i}].tables[{j}]", t)

    def recipient(self, field: str, r: Any) -> None:
        r = self.mapping(field, r)
        self.text(f"{field}.name", r.get("name"))
        self.text(f"{field}.comment", r.get("comment"), optional=True)
        self.moment(f"{field}.created_at", r.get("created_at"))
        self.credentials(field, r)
        self.access(field, r)
        token = r.get("token")
        if token is None:
            return
        token = self.mapping(f"{field}.token", token)
        self.text(f"{field}.token.id", token.get("id"))
        self.hex_text(f"{field}.token.salt", token.get("salt"))
        self.hex_text(f"{field}.token.sha256", token.get("sha256"))
        self.moment(f"{field}.token.created_at", token.get("created_at"))
        self.moment(f"{field}.token.expires_at", token.get("expires_at"))
        self.text(f"{field}.token.endpoint", token.get("endpoint"), optional=True)

    # -- credentials: OAuth recipients, grace windows, activation links (issue 15) --------------
    def seconds(self, field: str, value: Any) -> None:
        if value is not None and (type(value) is not int or value <= 0):
            self.fail(field, "a whole number of seconds from 1", value)

    def hashed(self, field: str, entry: dict[str, Any], *, optional: bool = False) -> None:
        """``salt`` and ``sha256``: both hex, or (``optional``) both absent."""
        if optional and entry.get("salt") is None and entry.get("sha256") is None:
            return
        self.hex_text(f"{field}.salt", entry.get("salt"))
        self.hex_text(f"{field}.sha256", entry.get("sha256"))

    def stamp(self, field: str, value: Any) -> None:
        """A timestamp that must be there."""
        if value is None:
            self.fail(field, "an ISO-8601 timestamp such as 2026-01-31T12:00:00.000Z", value)
        self.moment(field, value)

    def credentials(self, field: str, r: dict[str, Any]) -> None:
        kind = r.get("authentication_type")
        if kind is not None and kind not in creds.AUTHENTICATION_TYPES:
            self.fail(f"{field}.authentication_type", " or ".join(creds.AUTHENTICATION_TYPES), kind)
        if kind == creds.OAUTH:
            oauth = self.mapping(f"{field}.oauth", r.get("oauth"))
            self.text(f"{field}.oauth.client_id", oauth.get("client_id"))
            self.seconds(f"{field}.oauth.access_token_seconds", oauth.get("access_token_seconds"))
        if r.get("activation") is not None:
            link = self.mapping(f"{field}.activation", r["activation"])
            self.text(f"{field}.activation.id", link.get("id"))
            self.hashed(f"{field}.activation", link)
            self.stamp(f"{field}.activation.created_at", link.get("created_at"))
            self.stamp(f"{field}.activation.expires_at", link.get("expires_at"))
            self.seconds(f"{field}.activation.token_seconds", link.get("token_seconds"))
        for i, entry in enumerate(self.items(f"{field}.history", r.get("history"))):
            self.past(f"{field}.history[{i}]", entry)

    def past(self, field: str, entry: Any) -> None:
        """One superseded credential: its hash is kept only while it may still be used."""
        entry = self.mapping(field, entry)
        self.text(f"{field}.id", entry.get("id"))
        if entry.get("kind") not in creds.KINDS:
            self.fail(f"{field}.kind", " or ".join(creds.KINDS), entry.get("kind"))
        self.hashed(field, entry, optional=True)
        self.moment(f"{field}.created_at", entry.get("created_at"))
        self.moment(f"{field}.expires_at", entry.get("expires_at"))
        self.stamp(f"{field}.revoked_at", entry.get("revoked_at"))
        self.moment(f"{field}.used_at", entry.get("used_at"))

    def client_ids(self, recipients: list[Any]) -> None:
        """OAuth client ids name one recipient each: the token endpoint looks them up."""
        seen: dict[str, int] = {}
        for i, r in enumerate(recipients):
            oauth = r.get("oauth") if r.get("authentication_type") == creds.OAUTH else None
            client_id = oauth.get("client_id") if isinstance(oauth, dict) else None
            if client_id is None:
                continue
            if client_id in seen:
                self.fail(
                    f"recipients[{i}].oauth.client_id",
                    f"unique (recipients[{seen[client_id]}] has the same)",
                    client_id,
                )
            seen[client_id] = i

    # -- access policies (issue 15) ------------------------------------------------------------
    def access(self, field: str, r: dict[str, Any]) -> None:
        """``ip_access_list`` (addresses and CIDR ranges) and ``rate_limit``, when present."""
        entries = r.get("ip_access_list")
        if entries is not None:
            entries = self.items(f"{field}.ip_access_list", entries)
            if not 1 <= len(entries) <= rules.MAX_ACCESS_LIST:
                wanted = f"a list of 1 to {rules.MAX_ACCESS_LIST} entries"
                self.fail(f"{field}.ip_access_list", wanted, entries)
            for i, entry in enumerate(entries):
                self.text(f"{field}.ip_access_list[{i}]", entry)
                try:
                    rules.network(entry)
                except ValueError:
                    wanted = "an IP address or CIDR range such as 10.0.0.0/8 (prefix bits only)"
                    self.fail(f"{field}.ip_access_list[{i}]", wanted, entry)
        limit = r.get("rate_limit")
        if limit is not None:
            limit = self.mapping(f"{field}.rate_limit", limit)
            try:
                rules.rate_limit(limit.get("requests"), limit.get("per_seconds"))  # type: ignore[arg-type]
            except ValueError as exc:
                self.fail(f"{field}.rate_limit", f"requests and per_seconds: {exc}", limit)

    def grants(self, value: Any) -> None:
        for share, names in self.mapping("grants", value).items():
            self.text(f"grants key {share!r}", share)
            for i, name in enumerate(self.items(f"grants.{share}", names)):
                self.text(f"grants.{share}[{i}]", name)


def check_catalog(doc: dict[str, Any], where: str) -> None:
    """Check a catalog document's shape (the layout above); ``where`` names the file.

    The server and every statement read the catalog through this, so a hand edit of the
    wrong shape is one clear error naming the field, never a crash in some later lookup.

    Raises:
        ConfigurationError: names the first field of the wrong shape.
    """
    shape = _Shape(where)
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        shape.fail("version", "a whole number", version)
    for i, s in enumerate(shape.items("shares", doc.get("shares"))):
        shape.share(f"shares[{i}]", s)
    for i, r in enumerate(shape.items("recipients", doc.get("recipients"))):
        shape.recipient(f"recipients[{i}]", r)
    shape.client_ids(shape.items("recipients", doc.get("recipients")))
    if "grants" in doc:
        shape.grants(doc["grants"])


# -- recipients and grants: extra top-level keys the reference server ignores ---------------------
def _recipients(doc: dict[str, Any]) -> list[dict[str, Any]]:
    value = doc.setdefault("recipients", [])
    if not isinstance(value, list):
        raise ConfigurationError("share catalog: 'recipients' must be a list")
    return value


def _grants(doc: dict[str, Any]) -> dict[str, list[str]]:
    value = doc.setdefault("grants", {})
    if not isinstance(value, dict):
        raise ConfigurationError("share catalog: 'grants' must map share names to recipients")
    return value


def _issue(
    r: dict[str, Any],
    moment: datetime.datetime,
    expires_in_seconds: int | None,
    endpoint: str | None,
    activation_seconds: int | None,
) -> str:
    """Give ``r`` a new credential, or a pending activation link; return its secret."""
    if activation_seconds is not None:
        secret = creds.new_activation(r, moment, activation_seconds, expires_in_seconds)
    else:
        secret, r["token"] = creds.new_credential(expires_in_seconds, endpoint)
    if "history" in r:  # keep the file readable: the current credential before the past ones
        r["history"] = r.pop("history")
    return secret


def _prune(doc: dict[str, Any], moment: datetime.datetime) -> None:
    """Forget the hashes of every credential whose grace window has closed."""
    for r in _recipients(doc):
        if isinstance(r, dict):
            creds.prune(r, moment)


def public_recipient(
    doc: dict[str, Any], r: dict[str, Any], *, history: bool = False
) -> dict[str, Any]:
    """What may be shown about a recipient: never a salt or a hash.

    With ``history``, ``credentials`` lists its credentials, current and past (DESCRIBE).
    """
    token = r.get("token") or {}
    expires = parse_time(token.get("expires_at"))
    moment = _now()
    record = {
        "name": r["name"],
        "comment": r.get("comment"),
        "created_at": r.get("created_at"),
        "token_created_at": token.get("created_at"),
        "token_expires_at": token.get("expires_at"),
        "token_active": bool(token.get("sha256")) and (expires is None or expires > moment),
        "profile_endpoint": token.get("endpoint"),
        "shares": shares_for_doc(doc, str(r["name"])),
        **creds.public_fields(r, moment),
        **_access_fields(r),
    }
    if history:
        record["credentials"] = creds.credential_rows(r, moment)
    return record


def _access_fields(r: dict[str, Any]) -> dict[str, Any]:
    """A recipient's access policy as shown (issue 15): its IP access list and rate limit."""
    limit = r.get("rate_limit")
    return {
        "ip_access_list": list(r["ip_access_list"]) if r.get("ip_access_list") else None,
        "rate_limit": rules.rate_text(limit["requests"], limit["per_seconds"]) if limit else None,
    }


def recipient_for_token(doc: dict[str, Any], token: str) -> dict[str, Any] | None:
    """The recipient whose bearer token (current, or rotated and in its grace window) the
    token is, expired or not (None if none is)."""
    found = creds.credential_for_token(doc, token)
    return found[0] if found else None


def shares_for_doc(doc: dict[str, Any], recipient: str) -> list[str]:
    """Names (as the catalog spells them) of existing shares granted to ``recipient``."""
    grants = doc.get("grants") or {}
    granted = {
        str(share).lower()
        for share, names in grants.items()
        if any(_same(str(n), recipient) for n in names or [])
    }
    return [str(s["name"]) for s in doc["shares"] if str(s["name"]).lower() in granted]
