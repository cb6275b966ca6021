"""Large local files cut by the chunk-writing helper process: same table, one commit, no leftovers.

``chunk_worker.WORKER_BYTES`` is lowered so the tricky experiment's chunked files (a few KiB)
go to the helper; everything else is real: the MLflow store, the helper process, the Delta
commit it makes.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from arcuate.backends.deltalake import chunk_worker
from arcuate.backends.mlflow.source import MlflowSource
from arcuate.engine.context import Context
from arcuate.engine.export import export_experiment
from arcuate.errors import BackendError
from arcuate.format.files import FileRef, Record
from arcuate.plan.ops import ExportExperiment
from tests.export.export_helpers import CHUNK, EXPERIMENT, Tricky, reassemble, rows_deltalake


@pytest.fixture
def helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every chunked local file goes to the helper process."""
    monkeypatch.setattr(chunk_worker, "WORKER_BYTES", 1)


def _export(tricky: Tricky, warehouse: Path) -> dict[str, Any]:
    """``CREATE SHARE`` of the tricky experiment into ``warehouse``; the statement's summary."""
    import arcuate

    results = arcuate.execute(
        f"CREATE SHARE s WITH TABLE ml.t FROM EXPERIMENT '{EXPERIMENT}'",
        settings=tricky.context(warehouse, catalog=str(warehouse / "shares.yaml")).settings,
    )
    return dict(results[0].summary)


def _data_files(location: str, prefix: str) -> list[Path]:
    return sorted(Path(location).glob(f"{prefix}*.parquet"))


def _comparable(rows: list[dict[str, Any]]) -> Any:
    records, files = reassemble(rows)
    skip = ("exported_at", "files")
    kept = {k: {c: v for c, v in r.items() if c not in skip} for k, r in records.items()}
    return repr(kept), files


def test_helper_writes_the_same_table_in_one_commit(
    tricky: Tricky, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _export(tricky, workdir / "plain")
    assert "helper_peak_rss" not in plain  # files of a few KiB stay in this process

    monkeypatch.setattr(chunk_worker, "WORKER_BYTES", 1)
    summary = _export(tricky, workdir / "helped")
    assert summary["helper_peak_rss"] > 0
    assert summary["table_version"] == 0
    location = summary["location"]
    assert _data_files(location, "part-chunks-"), "the helper wrote the chunk rows' files"
    own = [f for f in _data_files(location, "part-") if not f.name.startswith("part-chunks-")]
    assert own and not any(
        r["kind"] == "chunk" for f in own for r in _rows_of(f)
    ), "no chunk row was cut in the MLflow process"

    rows = rows_deltalake(location)
    assert _comparable(rows) == _comparable(rows_deltalake(plain["location"]))
    _records, files = reassemble(rows)
    big = files[(tricky.parent_id, "artifacts", "big/blob.bin")]
    assert big == tricky.artifacts[tricky.parent_id]["big/blob.bin"]
    assert len(big) > 3 * CHUNK

    again = _export(tricky, workdir / "helped")  # over an existing table: its next version
    assert again["table_version"] == 1 and again["helper_peak_rss"] > 0
    assert _comparable(rows_deltalake(location)) == _comparable(rows)


def _rows_of(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["kind"]).to_pylist()


class _Source(MlflowSource):
    """The real source, plus one extra local file that misbehaves as the test asks."""

    def __init__(self, tracking_uri: str, extra: Path, hashed: bytes | None, fail: bool) -> None:
        super().__init__(tracking_uri, tracking_uri)
        self.extra, self.hashed, self.fail = extra, hashed, fail

    def iter_run_files(self, run: Record) -> Iterator[FileRef]:
        yield from super().iter_run_files(run)
        path = str(self.extra)

        def open_() -> IO[bytes]:  # what this process hashes
            return io.BytesIO(self.hashed) if self.hashed is not None else open(path, "rb")

        yield FileRef("artifacts", "extra.bin", self.extra.stat().st_size, open_, path)
        if self.fail:

            def broken() -> IO[bytes]:
                raise OSError("disk went away")

            yield FileRef("artifacts", "after.bin", 10, broken)


def _children() -> list[psutil.Process]:
    return [p for p in psutil.Process(os.getpid()).children(recursive=True) if p.is_running()]


@pytest.mark.parametrize("case", ["changed", "producer fails"])
def test_a_failure_leaves_the_previous_version_and_no_files(
    tricky: Tricky, workdir: Path, helper: None, case: str
) -> None:
    warehouse = workdir / "warehouse"
    first = _export(tricky, warehouse)
    location = first["location"]
    before = sorted(p.name for p in Path(location).iterdir())
    running = {p.pid for p in _children()}  # session servers started by other tests stay

    extra = workdir / "extra.bin"
    extra.write_bytes(os.urandom(5 * CHUNK))
    changed = os.urandom(5 * CHUNK) if case == "changed" else None
    ctx = Context(
        tricky.context(warehouse).settings,
        model_source=_Source(tricky.store.tracking_uri, extra, changed, fail=case == "producer fails"),
    )
    stream = export_experiment(ExportExperiment(EXPERIMENT), ctx)
    with pytest.raises(BackendError) as info:
        ctx.table_store.write(("ml", "t"), stream.batches, content=stream.content)
    if case == "changed":  # the helper read other bytes than this process hashed
        assert "file artifacts/extra.bin of record" in str(info.value)
        assert "changed while it was exported" in str(info.value)
    else:
        assert "could not read file artifacts/after.bin" in str(info.value)
        assert "disk went away" in str(info.value)

    from deltalake import DeltaTable

    assert DeltaTable(location).version() == 0
    assert sorted(p.name for p in Path(location).iterdir()) == before  # nothing left behind
    assert not [p for p in _children() if p.pid not in running], "the helper process is gone"
    assert hashlib.sha256(extra.read_bytes()).hexdigest()  # the source file is untouched
