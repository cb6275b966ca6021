"""The local share catalog: a YAML file in the Delta Sharing reference server's layout.

``shares -> schemas -> tables (name, location, id, historyShared, startVersion)``. Every change
is made under an exclusive file lock and written with an atomic rename, so a running server
or a concurrent ``CREATE SHARE`` never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from arcuate.backends.protocols import AddResult
from arcuate.errors import ConfigurationError, ConflictError

#: Delta Sharing names: no dot (coordinates split on it), space, slash or control characters.
_NAME = re.compile(r"^[^.\s/\x00-\x1f\x7f]{1,255}$")


def check_share_name(kind: str, name: str) -> str:
    """Validate a share, schema or table name against the protocol's rules."""
    if not _NAME.match(name):
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
        doc = yaml.safe_load(text) or {}
        if not isinstance(doc, dict):
            raise ConfigurationError(f"share catalog {self.path} is not a YAML mapping")
        doc.setdefault("version", 1)
        doc.setdefault("shares", [])
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
                yield doc
                self._save(doc)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self, doc: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".shares-", suffix=".yaml")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                yaml.safe_dump(doc, fh, sort_keys=False, allow_unicode=True)
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
