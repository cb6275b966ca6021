"""Imports into a real ``mlflow server``: the caller's streams, concurrent imports, stress.

The server is the session's (``mlflow_server``); the share is a table of many small runs built
by hand, written with arcuate's table store and served by arcuate's sharing server.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.sharing.reader import DeltaSharingReader
from arcuate.engine.imports import import_experiment
from tests.conftest import make_store
from tests.export.export_helpers import Tricky
from tests.imports.concurrency_helpers import both_at_once, concurrent_imports_equal_one
from tests.imports.import_helpers import Share, batches_of, file_entry, recipient_context, run_row

pytestmark = pytest.mark.server

ARCUATE = str(Path(sys.executable).parent / "arcuate")
RUNS = 24


def many_runs(runs: int, tag: str) -> list[dict[str, Any]]:
    """``runs`` finished runs of two small files each (run ids unique per ``tag``)."""
    rows = []
    for i in range(runs):
        files = [
            file_entry("a.txt", f"{tag} {i} a\n".encode()),
            file_entry("dir/b.bin", bytes([i % 256]) * (100 + i)),
        ]
        rows.append(run_row(f"{tag}{i:030x}"[-32:], name=f"r{i}", files=files))
    return rows


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The coordinate of a shared experiment table of :data:`RUNS` runs."""
    from arcuate.backends.deltalake.store import DeltaLakeTableStore
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    root = tmp_path_factory.mktemp("served")
    store = DeltaLakeTableStore(str(root / "warehouse"))
    rows = batches_of(many_runs(RUNS, "ab"), 5)
    written = store.write(("ml", "many"), rows, content="experiment")
    catalog = LocalShareCatalog(root / "shares.yaml")
    catalog.add_table("ml", "default", "many", written.location)
    _record, token = catalog.create_recipient("bob")
    catalog.grant("ml", "bob")
    handle = serve_in_thread(str(root / "shares.yaml"))
    try:
        assert token is not None
        profile = write_profile(root / "bob.share", handle.endpoint, token)
        yield f"{profile}#ml.default.many"
    finally:
        handle.stop()


def test_import_leaves_the_callers_stdout_alone(
    served: str, mlflow_server: Any, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow prints a "View run" link whenever a run is terminated against a server; the
    import silences it without swapping sys.stdout (which its writer threads share)."""
    before = sys.stdout
    ctx = recipient_context(mlflow_server)
    result = import_experiment(DeltaSharingReader().batches(served), "stdout", ctx)
    assert result.summary["added"] == RUNS
    assert sys.stdout is before
    print("after the import")
    out = capsys.readouterr().out
    assert "after the import" in out
    assert "View run" not in out


def test_cli_run_into_a_server_prints_its_results(
    served: str, mlflow_server: Any, workdir: Path
) -> None:
    script = workdir / "import.arcsql"
    script.write_text(f"CREATE EXPERIMENT `cli-import` AS PANDAS '{served}';\n")
    out = subprocess.run(
        [ARCUATE, "run", str(script), "--tracking-uri", mlflow_server.tracking_uri],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert f"added={RUNS}" in out.stdout.replace(" ", ""), out.stdout
    assert "View run" not in out.stdout


def test_two_imports_at_once_into_the_server(
    provider: Tricky, share: Share, mlflow_server: Any, mlflow_template: Path, workdir: Path
) -> None:
    """Item 6 against a tracking server: the lease works over REST as on sqlite."""
    reference = make_store(mlflow_template, workdir / "reference")
    concurrent_imports_equal_one(mlflow_server, share, reference, e="conc-e", m="conc-m")


def test_interrupted_import_stops_its_writers_before_the_spool_goes(
    mlflow_server: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl+C while runs are being written: the spool (the files being uploaded) is removed
    only after every writer thread has stopped; nothing writes after the statement ended."""
    from arcuate.engine.progress import Progress

    calls = {"n": 0}
    real = Progress.advance

    def advance(self: Any, task: Any, completed: int | None = None, **fields: Any) -> None:
        if completed is None:  # a run written: the second one is interrupted
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        real(self, task, completed, **fields)

    monkeypatch.setattr(Progress, "advance", advance)
    monkeypatch.setattr(tempfile, "tempdir", str(workdir))
    ctx = recipient_context(mlflow_server)
    with pytest.raises(KeyboardInterrupt):
        import_experiment(batches_of(many_runs(16, "cc"), 4), "interrupted", ctx)
    writers = [t.name for t in threading.enumerate() if t.name.startswith("arcuate-import")]
    assert writers == [], "writer threads still running after the statement ended"
    assert not list(workdir.glob("**/arcuate-import-*")), "the spool is removed"


def test_stress_many_small_imports_into_the_server(
    mlflow_server: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 13: 20 imports of a small share into the server, every third one twice at once
    into the same experiment; each ends complete (every file, no duplicate), and no spool
    is left."""
    monkeypatch.setattr(tempfile, "tempdir", str(workdir))
    for attempt in range(20):
        rows = many_runs(2, f"{attempt:02d}")
        name = f"stress-{attempt}"

        def one(rows: list[dict[str, Any]] = rows, name: str = name) -> Any:
            ctx = recipient_context(mlflow_server)
            return import_experiment(batches_of(rows, 3), name, ctx)

        results = both_at_once([one, one] if attempt % 3 == 0 else [one])
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert sum(r.summary["added"] for r in results) == 2
        assert sum(r.summary["files"] for r in results) == 4
        client = mlflow_server.client()
        runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
        assert len(runs) == 2
        for run in runs:
            assert {f.path for f in client.list_artifacts(run.info.run_id)} == {"a.txt", "dir"}
    assert not list(workdir.glob("**/arcuate-import-*"))
