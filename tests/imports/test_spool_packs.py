"""Pass 1 keeps every record's document and the small inline files in two pack files of the
spool, not a file each (creating a file costs about a millisecond on a virtual machine's
ext4): the bytes read back are the shared bytes, and a larger file keeps a file of its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from arcuate.backends import spooled
from arcuate.engine.imports import Spool
from arcuate.engine.imports import spool as spool_module
from tests.imports.import_helpers import batches_of, file_entry, run_row


def test_records_and_small_files_are_packed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "PACK_BYTES", 100)
    runs = 30
    shared = {
        f"{i:032x}": {
            "a.txt": f"small {i}".encode(),
            "sub/b.bin": bytes([i]) * 7,
            "big.bin": os.urandom(101),  # past PACK_BYTES: a file of its own
        }
        for i in range(runs)
    }
    rows = [
        run_row(key, name=f"run-{key[-2:]}", files=[file_entry(p, d) for p, d in files.items()])
        for key, files in shared.items()
    ]
    with Spool.open("experiment") as spool:
        spool.ingest(batches_of(rows, size=7))
        made = sorted(p.relative_to(spool.root) for p in spool.root.rglob("*") if p.is_file())
        assert Path(spool_module.RECORDS_PACK) in made and Path(spool_module.BLOBS_PACK) in made
        assert len(made) <= 3 + runs, made  # the packs, the owner file, one file per big.bin
        for index, (key, files) in enumerate(shared.items()):
            assert spool.load(index)["run"]["run_name"] == f"run-{key[-2:]}"
            metas = {m["path"]: m for m in spool.entries[index].files}
            for p, data in files.items():
                with spooled.open_bytes(metas[p]) as stream:
                    assert stream.read() == data
            assert spooled.packed_bytes(metas["a.txt"]) == files["a.txt"]
            with pytest.raises(ValueError, match="not a packed file"):
                spooled.packed_bytes(metas["big.bin"])
            assert spooled.packed(metas["a.txt"]) and not spooled.packed(metas["big.bin"])
            copy = spool.root / f"copy-{index}"
            spooled.copy_to(metas["sub/b.bin"], str(copy))
            assert copy.read_bytes() == files["sub/b.bin"]
