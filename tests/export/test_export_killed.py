"""An export killed with SIGKILL before its commit leaves Parquet files that no table version
names; the next export of the table removes them, and never the files of a writer that runs.

A real subprocess exports the tricky experiment into a real Delta table and kills itself at
a chosen moment: in place of the commit (its own data files written), or while its chunk
helper process waits for the commit line (the helper then removes its own files).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from arcuate import workers
from arcuate.backends.deltalake.writers import WriterLock, logged_files
from arcuate.engine.export import export_experiment
from arcuate.plan.ops import ExportExperiment
from tests.export.export_helpers import EXPERIMENT, Tricky

DRIVER = """
import os, signal, sys
from arcuate.backends.deltalake import chunk_worker, store
from arcuate.config import Settings
from arcuate.engine.context import Context
from arcuate.engine.export import export_experiment
from arcuate.plan.ops import ExportExperiment

uri, warehouse, experiment, point = sys.argv[1:5]

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "commit":
    store.commit = die
else:  # every chunked file goes to the helper; this process dies before the commit line
    chunk_worker.WORKER_BYTES = 1
    chunk_worker.ChunkWorker.finish = die
settings = Settings(
    tracking_uri=uri, registry_uri=uri, warehouse=warehouse, chunk_bytes=4096, progress=False
)
ctx = Context(settings)
stream = export_experiment(ExportExperiment(experiment), ctx)
ctx.table_store.write(("ml", "t"), stream.batches, content=stream.content)
"""


def unnamed(location: Path) -> list[str]:
    """Data files in the table directory that no version of the table names."""
    named = logged_files(location) if (location / "_delta_log").is_dir() else set()
    return sorted(p.name for p in location.glob("*.parquet") if p.name not in named)


def export(tricky: Tricky, warehouse: Path) -> int:
    ctx = tricky.context(warehouse)
    stream = export_experiment(ExportExperiment(EXPERIMENT), ctx)
    return ctx.table_store.write(("ml", "t"), stream.batches, content=stream.content).version


@pytest.mark.parametrize("point", ["commit", "helper"])
@pytest.mark.parametrize("table", ["new", "existing"])
def test_killed_export_leaves_nothing_after_the_next(
    tricky: Tricky, workdir: Path, point: str, table: str
) -> None:
    warehouse = workdir / "warehouse"
    location = warehouse / "ml" / "t"
    if table == "existing":
        assert export(tricky, warehouse) == 0
    killed = subprocess.run(
        [sys.executable, "-c", DRIVER, tricky.store.tracking_uri, str(warehouse), EXPERIMENT,
         point],
        env=workers.environment(), cwd=workdir, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert unnamed(location), "the killed export left its files"

    version = export(tricky, warehouse)
    assert version == (1 if table == "existing" else 0)
    assert unnamed(location) == []
    if table == "existing":  # the first version is still readable
        assert DeltaTable(str(location), version=0).to_pyarrow_table().num_rows > 0
    assert not list((location / "_arcuate_writers").iterdir())


def test_files_of_a_running_writer_are_kept(tricky: Tricky, workdir: Path) -> None:
    """A writer that runs (it holds its lock) keeps its uncommitted files; files named by
    another tool are never touched; once the writer is gone, its files go."""
    warehouse = workdir / "warehouse"
    location = warehouse / "ml" / "t"
    export(tricky, warehouse)
    running = WriterLock(location)
    theirs = location / f"part-{running.id}-00000-pending-c000.zstd.parquet"
    theirs.write_bytes(b"not committed yet")
    foreign = location / "part-00000-3f2a-c000.snappy.parquet"
    foreign.write_bytes(b"someone else's")
    export(tricky, warehouse)
    assert theirs.exists() and foreign.exists()
    running.release()
    export(tricky, warehouse)
    assert not theirs.exists() and foreign.exists()
