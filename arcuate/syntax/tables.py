"""The parser's LALR tables, kept between processes as JSON in the user's cache directory.

Building the LALR tables from the grammar takes ~0.2 s, most of a short command's start-up;
loading them takes ~0.03 s. The file is plain JSON (never pickle, which is what lark's own
cache uses), named by a digest of the grammar, lark's version and the parser options, so a
changed grammar or lark never loads stale tables. Any problem reading or writing the cache
means the tables are built from the grammar, as without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: Bumped when the layout of what is saved changes.
LAYOUT = "1"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/arcuate`` (``~/.cache/arcuate`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "arcuate"


def key(grammar: str, lark_version: str, options: dict[str, Any]) -> str:
    """What the tables depend on, as a short digest."""
    parts = [LAYOUT, lark_version, json.dumps(options, sort_keys=True), grammar]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _path(digest: str) -> Path:
    return cache_dir() / f"grammar-{digest}.json"


def _int_keys(pairs: list[tuple[str, Any]]) -> dict[Any, Any]:
    # JSON object keys are strings; lark's parse states and memo ids are ints
    return {int(k) if k.isdigit() else k: v for k, v in pairs}


def load(digest: str) -> dict[str, Any] | None:
    """The saved tables for ``digest``, or None (none saved, or unreadable)."""
    try:
        text = _path(digest).read_text(encoding="utf-8")
        saved = json.loads(text, object_pairs_hook=_int_keys)
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("key") != digest:
        return None
    return saved


def save(digest: str, data: Any, memo: Any) -> None:
    """Write the tables atomically; a read-only or missing home is not an error."""
    folder = cache_dir()
    with contextlib.suppress(OSError, TypeError, ValueError):
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".grammar-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"key": digest, "data": data, "memo": memo}, fh)
            os.replace(tmp, _path(digest))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
