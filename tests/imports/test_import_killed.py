"""An import killed with SIGKILL midway leaves nothing behind once the statement runs again.

A real subprocess imports a real table into a real sqlite store and is killed by a signal at
a chosen moment: between a bulk batch's uploads and its commit (``auto`` path), or after the
first run is written (``api`` path). What it left is checked, then the same import runs again
here: the spool is gone, no artifact directory is left without its run, the experiment is
exactly what one import makes, and the dead import's lease does not hold anything up.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from arcuate import workers
from arcuate.engine.imports import import_experiment
from tests.conftest import make_store
from tests.export.export_helpers import Tricky
from tests.imports.import_helpers import (
    Share,
    assert_same,
    recipient_context,
    snapshot_experiment,
    table_batches,
)
from tests.imports.test_import_paths import table_counts

#: What the killed import runs: the real import, with one MLflow step replaced by SIGKILL.
DRIVER = """
import os, signal, sys
from deltalake import DeltaTable
from arcuate.config import resolve_settings
from arcuate.engine.context import Context
from arcuate.engine.imports import import_experiment

uri, location, point = sys.argv[1:4]

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "commit":  # a bulk batch: files uploaded, rows not committed
    from arcuate.backends.mlflow.bulk import BulkRunWriter
    BulkRunWriter._commit = die
elif point == "insert":  # a bulk batch mid-transaction: runs, tags, params, metrics sent
    from arcuate.backends.mlflow import bulk
    insert = bulk._insert
    def _insert(session, table, columns, rows):
        if table.name == "latest_metrics":
            die()
        insert(session, table, columns, rows)
    bulk._insert = _insert
else:  # the API path: the first run is written, not yet marked complete
    from arcuate.backends.mlflow.sink import MlflowSink
    MlflowSink.finish_run = die
batches = DeltaTable(location).to_pyarrow_table().to_batches(max_chunksize=7)
# the settings as the edge resolves them (ARCUATE_IMPORT_PATH from the test)
ctx = Context(resolve_settings(tracking_uri=uri, registry_uri=uri, progress=False))
import_experiment(batches, "e", ctx)
"""


def spools(tmp: Path) -> set[Path]:
    """Every import spool under ``tmp`` (directly, or in a per-user spool directory)."""
    return set(tmp.glob("arcuate-import-*")) | set(tmp.glob("arcuate-spool-*/arcuate-import-*"))


def run_dirs(store: Any, name: str) -> set[str]:
    """Run and logged-model artifact directories in experiment ``name``'s location."""
    client = store.client()
    root = Path(client.get_experiment_by_name(name).artifact_location)
    found = {p.name for p in root.iterdir() if p.is_dir() and p.name != "models"}
    if (root / "models").is_dir():
        found |= {p.name for p in (root / "models").iterdir()}
    return found


def known_ids(store: Any, name: str) -> set[str]:
    from mlflow.entities import ViewType

    client = store.client()
    eid = client.get_experiment_by_name(name).experiment_id
    runs = client.search_runs([eid], run_view_type=ViewType.ALL)
    models = client.search_logged_models(experiment_ids=[eid])
    return {r.info.run_id for r in runs} | {m.model_id for m in models}


def test_killed_import_leaves_nothing_after_a_rerun(
    provider: Tricky,
    share: Share,
    recipient_store: Any,
    mlflow_template: Path,
    workdir: Path,
    import_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tmp = workdir / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    point = "commit" if import_path == "auto" else "finish"
    env = {**workers.environment(), "TMPDIR": str(tmp)}
    killed = subprocess.run(
        [sys.executable, "-c", DRIVER, recipient_store.tracking_uri, share.experiment_table, point],
        env=env, cwd=workdir, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = spools(tmp)
    assert left, "the killed import's spool is still there"
    if point == "commit":
        assert run_dirs(recipient_store, "e") - known_ids(recipient_store, "e"), "orphans"

    result = import_experiment(
        table_batches(share.experiment_table), "e", recipient_context(recipient_store)
    )
    assert result.summary["runs"] == 3 and "waited" not in result.summary
    assert not spools(tmp) & left, "the killed import's spool was removed"
    assert run_dirs(recipient_store, "e") <= known_ids(recipient_store, "e")
    clean = make_store(mlflow_template, workdir / "clean")
    import_experiment(table_batches(share.experiment_table), "e", recipient_context(clean))
    assert_same(
        snapshot_experiment(recipient_store, "e", imported=True),
        snapshot_experiment(clean, "e", imported=True),
    )
    client = recipient_store.client()
    assert not [k for k in client.get_experiment_by_name("e").tags if k.startswith("arcuate.lock")]


@pytest.mark.postgres
def test_killed_import_into_postgres_leaves_nothing_after_a_rerun(
    share: Share, postgres: Any, workdir: Path, import_path: str
) -> None:
    """Into ``postgresql://``: the bulk path killed in the middle of a batch's transaction
    (its rows partly sent), the API path after its first run; the same import again here
    equals one clean import, and the store holds no run twice."""
    point = "insert" if import_path == "auto" else "finish"
    store, clean = (postgres.new_store(workdir / name) for name in ("killed", "clean"))
    for s in (store, clean):  # each its own artifact root
        s.client().create_experiment("e", artifact_location=str(s.root / "artifacts"))
    killed = subprocess.run(
        [sys.executable, "-c", DRIVER, store.tracking_uri, share.experiment_table, point],
        env=workers.environment(), cwd=workdir, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if point == "insert":  # the transaction died with its connection: no run is there
        assert known_ids(store, "e") == set()
        assert run_dirs(store, "e"), "the batch's files were uploaded before it was killed"

    result = import_experiment(table_batches(share.experiment_table), "e", recipient_context(store))
    assert result.summary["runs"] == 3 and "waited" not in result.summary
    assert run_dirs(store, "e") <= known_ids(store, "e")
    import_experiment(table_batches(share.experiment_table), "e", recipient_context(clean))
    assert_same(
        snapshot_experiment(store, "e", imported=True),
        snapshot_experiment(clean, "e", imported=True),
    )
    assert table_counts(store) == table_counts(clean)  # nothing twice, in any table
