"""Where import spools live, and how the spools of killed imports are removed.

An import spools a share's validated rows and file bytes to local disk (about the share's
size) and removes them when it ends, however it ends, except when it is killed (SIGKILL, OOM,
power loss). So spools live in one directory per user, ``<tmp>/arcuate-spool-<uid>/``, each
with an ``owner.json`` naming its process (:class:`arcuate.owners.Owner`), and every import
first removes the spools whose owner is provably gone. The spool of a live process (another
import running now) is never touched, nor one written from another host.

The per-user directory must be a real directory owned by this user and closed to others
(``/tmp`` is shared: anyone could have created that name first, or made it a link). When it
is not, spools go straight into the temporary directory, as before, and nothing is reclaimed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Final

from arcuate.owners import Owner

PREFIX: Final = "arcuate-import-"
OWNER_FILE: Final = "owner.json"
#: A spool without its owner file is being created (the file follows the directory at once),
#: or was left by a crash in between: it is removed only once it is this old (seconds).
UNOWNED_AGE: Final = 3600.0


def spool_parent() -> Path | None:
    """The per-user directory of spools, created if missing; None when it cannot be trusted."""
    getuid = getattr(os, "getuid", None)
    if getuid is None:
        return None
    uid = getuid()
    parent = Path(tempfile.gettempdir()) / f"arcuate-spool-{uid}"
    try:
        parent.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(parent)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        return None
    return parent


def new_spool_dir() -> Path:
    """A fresh spool directory owned by this process, after removing those of dead ones."""
    parent = spool_parent()
    if parent is None:
        return Path(tempfile.mkdtemp(prefix=PREFIX))
    reclaim(parent)
    root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    (root / OWNER_FILE).write_text(json.dumps(Owner.me().to_json()), encoding="utf-8")
    return root


def _owner(spool: Path) -> Owner | None:
    try:
        return Owner.from_json(json.loads((spool / OWNER_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def reclaim(parent: Path) -> list[Path]:
    """Remove the spools in ``parent`` whose owner is provably gone; the ones removed."""
    removed: list[Path] = []
    try:
        children = list(parent.iterdir())
    except OSError:
        return removed
    for child in children:
        if not child.name.startswith(PREFIX) or child.is_symlink() or not child.is_dir():
            continue
        owner = _owner(child)
        if owner is None:
            try:
                age = time.time() - child.stat().st_mtime
            except OSError:
                continue
            if age < UNOWNED_AGE:
                continue
        elif not owner.gone():
            continue
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
    return removed
