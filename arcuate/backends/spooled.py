"""A shared file's bytes as an import hands them to a sink: where they are on local disk.

A file record (:mod:`arcuate.backends.protocols`, the sinks) names its bytes with ``local``, a
local path, and ``size``. With ``at`` too, they are the ``size`` bytes at that offset of
``local``: the import's spool keeps small inline files in one pack file rather than a file each
(creating a file is a system call that can cost more than the bytes it holds: about a
millisecond on a virtual machine's ext4, against microseconds to append to an open file).
A packed file is small (at most :data:`PACK_BYTES`), so it is read whole.
"""

from __future__ import annotations

import io
import os
import shutil
from typing import BinaryIO, Final

from arcuate.format.files import Record

#: The largest file a pack holds: a packed file is read whole into memory.
PACK_BYTES: Final = 1024 * 1024


def packed(f: Record) -> bool:
    """Whether the file's bytes sit in a pack (at an offset of ``local``)."""
    return f.get("at") is not None


def packed_bytes(f: Record) -> bytes:
    """A packed file's bytes: its slice of the pack.

    Raises:
        ValueError: the file is not packed, or claims more than :data:`PACK_BYTES`.
        OSError: the pack ends before the file does.
    """
    size = int(f["size"])
    if not packed(f) or not 0 <= size <= PACK_BYTES:
        raise ValueError(f"{f['path']!r} is not a packed file of at most {PACK_BYTES} bytes")
    with open(f["local"], "rb") as src:
        src.seek(int(f["at"]))
        data = src.read(size)
    if len(data) != size:
        raise OSError(f"the spool's pack {f['local']} ends before the file {f['path']!r}")
    return data


def open_bytes(f: Record) -> BinaryIO:
    """The file's bytes as a binary stream from position 0 (a packed file's in memory, any
    other opened), to be closed by the caller."""
    return io.BytesIO(packed_bytes(f)) if packed(f) else open(f["local"], "rb")


def copy_to(f: Record, dest: str, *, link: bool = False) -> None:
    """The file's bytes as a new file at ``dest`` (``link``: a hard link where it can be,
    for a file of its own; ``shutil.copy2`` otherwise, as MLflow's local repository copies)."""
    if packed(f):
        with open(dest, "wb") as out:
            out.write(packed_bytes(f))
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
