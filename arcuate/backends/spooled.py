"""A shared file's bytes as an import hands them to a sink: where they are on local disk.

A file record (:mod:`arcuate.backends.protocols`, the sinks) names its bytes with ``local``, a
local path, and ``size``. With ``at`` too, they are the ``size`` bytes at that offset of
``local``: the import's spool keeps small inline files in one pack file rather than a file each
(creating a file is a system call that can cost more than the bytes it holds: about a
millisecond on a virtual machine's ext4, against microseconds to append to an open file).
A packed file is small (the spool packs files up to a mebibyte), so it is read whole.
"""

from __future__ import annotations

import os
import shutil

from arcuate.format.files import Record


def packed(f: Record) -> bool:
    """Whether the file's bytes sit in a pack (at an offset of ``local``)."""
    return f.get("at") is not None


def read_bytes(f: Record) -> bytes:
    """The file's bytes (a packed file: its slice of the pack; else the whole file)."""
    with open(f["local"], "rb") as src:
        if not packed(f):
            return src.read()
        src.seek(int(f["at"]))
        data = src.read(int(f["size"]))
    if len(data) != int(f["size"]):
        raise OSError(f"the spool's pack {f['local']} ends before the file {f['path']!r}")
    return data


def copy_to(f: Record, dest: str, *, link: bool = False) -> None:
    """The file's bytes as a new file at ``dest`` (``link``: a hard link where it can be,
    for a file of its own; ``shutil.copy2`` otherwise, as MLflow's local repository copies)."""
    if packed(f):
        with open(dest, "wb") as out:
            out.write(read_bytes(f))
        return
    if link:
        try:
            os.link(f["local"], dest)
            return
        except OSError:
            pass
        shutil.copyfile(f["local"], dest)
        return
    shutil.copy2(f["local"], dest)
