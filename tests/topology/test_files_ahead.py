"""Issue 13: an export reads the files of later runs while earlier ones are written.

Runs with files behind the PostgreSQL-backed ``mlflow server`` (artifacts proxied to S3) and in
a PostgreSQL store read directly with ``s3://`` artifacts. The table is the same with the
look-ahead as without it (``rest_concurrency`` 1), row for row and byte for byte; a file that
cannot be downloaded in a later run fails the export naming that run, with no downloaded copy
left behind; and the look-ahead stays within its bounds.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import arcuate
from arcuate.backends.mlflow.ahead import FILES_PER_THREAD, Prefetcher
from arcuate.backends.mlflow.source import MlflowSource
from arcuate.errors import BackendError
from arcuate.format.schema import RUN
from tests.export.export_helpers import reassemble, rows_deltalake

pytestmark = [pytest.mark.postgres, pytest.mark.s3]

RUNS = 6
#: a name no local filesystem takes (255 bytes at most): listed by S3 and the server, but its
#: download cannot be written
_LONG = "x" * 300 + ".bin"


@dataclass
class Runs:
    """An experiment of ``RUNS`` runs with files, and what each file holds."""

    store: Any
    experiment: str
    run_ids: list[str]
    files: dict[tuple[str, str], bytes]


def _content(run: int, name: str) -> bytes:
    return f"run {run} file {name}\n".encode() * (run + 1) + os.urandom(64)


def _make_runs(store: Any, root: Path, location: str | None) -> Runs:
    """``RUNS`` runs, oldest first, each with three files (one in a folder)."""
    client = store.client()
    name = f"ahead-{uuid.uuid4().hex[:8]}"
    eid = client.create_experiment(name, artifact_location=location)
    run_ids: list[str] = []
    files: dict[tuple[str, str], bytes] = {}
    for i in range(RUNS):
        run = client.create_run(eid, start_time=1_700_000_000_000 + i * 1000, run_name=f"r{i}")
        rid = run.info.run_id
        client.log_param(rid, "i", str(i))
        here = root / name / str(i)
        (here / "sub").mkdir(parents=True)
        for rel in ("a.txt", "b.json", "sub/c.bin"):
            data = _content(i, rel)
            (here / rel).write_bytes(data)
            files[(rid, rel)] = data
        client.log_artifact(rid, str(here / "a.txt"))
        client.log_artifact(rid, str(here / "b.json"))
        client.log_artifact(rid, str(here / "sub" / "c.bin"), artifact_path="sub")
        client.set_terminated(rid)
        run_ids.append(rid)
    return Runs(store, name, run_ids, files)


@pytest.fixture(scope="module")
def server_runs(mlflow_server_pg: Any, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return _make_runs(mlflow_server_pg, tmp_path_factory.mktemp("ahead-server"), None)


@pytest.fixture(scope="module")
def s3_runs(postgres: Any, s3: Any, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("ahead-pg")
    store = postgres.new_store(root / "store")
    return _make_runs(store, root, f"s3://{s3.bucket}/ahead/{uuid.uuid4().hex[:8]}")


@pytest.fixture
def tmp_downloads(mlflow_server_pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory of this test: every ``arcuate-download-*`` copy lands here
    (the session's servers are started first, in the usual one)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def _downloads(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.glob("arcuate-download-*"))


def _export(runs: Runs, warehouse: Path, concurrency: int) -> list[dict[str, Any]]:
    table = f"s.t{uuid.uuid4().hex[:8]}"
    (result,) = arcuate.execute(
        f"CREATE SHARE ahead WITH TABLE {table} FROM EXPERIMENT '{runs.experiment}'",
        tracking_uri=runs.store.tracking_uri,
        registry_uri=runs.store.registry_uri,
        warehouse=str(warehouse),
        catalog=str(warehouse / "shares.yaml"),
        rest_concurrency=concurrency,
        progress=False,
    )
    assert result.summary["runs"] == RUNS
    return rows_deltalake(result.summary["location"])


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "exported_at"} for row in rows]


@pytest.mark.parametrize("kind", ["server", "s3"])
def test_same_table_with_and_without_look_ahead(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, tmp_downloads: Path
) -> None:
    """Every run's files byte for byte, the rows in the same order as one file at a time."""
    runs: Runs = request.getfixturevalue(f"{kind}_runs")
    ahead = _export(runs, tmp_path / "ahead", concurrency=4)
    single = _export(runs, tmp_path / "single", concurrency=1)
    assert _comparable(ahead) == _comparable(single)
    records, data = reassemble(ahead)
    assert set(records) == set(runs.run_ids)
    assert {(key, path): b for (key, _, path), b in data.items()} == runs.files
    assert [r["key"] for r in ahead if r["kind"] == RUN] == runs.run_ids  # oldest first
    assert _downloads(tmp_downloads) == []


def _break_run(runs: Runs, s3: Any, index: int) -> str:
    """A file in run ``index`` that lists but cannot be downloaded; the run's id."""
    rid = runs.run_ids[index]
    uri = runs.store.client().get_run(rid).info.artifact_uri
    if uri.startswith("mlflow-artifacts:"):
        prefix = runs.store.artifacts.removeprefix(f"s3://{s3.bucket}/").rstrip("/")
        key = f"{prefix}/{uri.split(':', 1)[1].lstrip('/')}/{_LONG}"
    else:
        key = f"{uri.removeprefix(f's3://{s3.bucket}/')}/{_LONG}"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"unreachable")
    return rid


@pytest.mark.parametrize("kind", ["server", "s3"])
def test_download_failure_in_a_later_run_names_it(
    kind: str,
    request: pytest.FixtureRequest,
    s3: Any,
    tmp_path: Path,
    tmp_downloads: Path,
) -> None:
    """The export fails on that run's file, names the run, commits nothing, leaves no copy."""
    good: Runs = request.getfixturevalue(f"{kind}_runs")
    client = good.store.client()
    root = tmp_path / "content"
    runs = _make_runs(good.store, root, _location_like(client, good, s3))
    broken = _break_run(runs, s3, RUNS - 2)
    with pytest.raises(BackendError) as info:
        _export(runs, tmp_path / "wh", concurrency=4)
    message = str(info.value)
    assert broken in message and _LONG in message
    assert not any(rid in message for rid in runs.run_ids if rid != broken)
    assert _downloads(tmp_downloads) == []
    assert not list((tmp_path / "wh").rglob("_delta_log"))  # nothing committed


def _location_like(client: Any, runs: Runs, s3: Any) -> str | None:
    """An artifact location of the same kind as ``runs``' experiment's (None: the server's)."""
    exp = client.get_experiment_by_name(runs.experiment)
    if exp.artifact_location.startswith("s3://"):
        return f"s3://{s3.bucket}/ahead/{uuid.uuid4().hex[:8]}"
    return None


def _settled(tmp: Path, seconds: float = 30) -> list[str]:
    """The downloads in ``tmp`` once their number stops changing."""
    last: list[str] = []
    deadline = time.monotonic() + seconds
    stable = 0
    while time.monotonic() < deadline and stable < 5:
        time.sleep(0.2)
        now = _downloads(tmp)
        stable = stable + 1 if now == last else 0
        last = now
    return last


def test_look_ahead_is_bounded_and_cleaned_up(server_runs: Runs, tmp_downloads: Path) -> None:
    """Before the first run is read, at most the budget's files are downloaded (two threads:
    eight files of four runs, not all eighteen); closing the generator removes them all."""
    store = server_runs.store
    source = MlflowSource(store.tracking_uri, store.registry_uri, concurrency=2)
    eid = store.client().get_experiment_by_name(server_runs.experiment).experiment_id
    pairs = source.iter_runs_files(source.iter_runs(eid))
    run, files = next(pairs)
    assert run["run_id"] == server_runs.run_ids[0]
    started = _settled(tmp_downloads)
    assert 3 <= len(started) <= FILES_PER_THREAD * 2 < 3 * RUNS
    first = [(ref.path, ref.open().read()) for ref in files]
    assert first == [
        (p, server_runs.files[(run["run_id"], p)]) for p in ("a.txt", "b.json", "sub/c.bin")
    ]
    pairs.close()
    assert _downloads(tmp_downloads) == []


def test_bytes_bound(server_runs: Runs, tmp_downloads: Path) -> None:
    """Files are reserved in order while they fit: the one that does not stops the rest."""
    store = server_runs.store
    source = MlflowSource(store.tracking_uri, store.registry_uri)
    rid = server_runs.run_ids[0]
    listing = source._list_files(source.client.get_run(rid).info.artifact_uri, "artifacts")
    assert listing.repo is not None
    sizes = [r.size for r in listing.refs]
    prefetcher = Prefetcher(2, files=10, total=sizes[0] + sizes[1] - 1)
    try:
        refs = prefetcher.reserve(listing.repo, listing.refs)
        assert prefetcher.started == 1
        assert [r.open().read() for r in refs] == [
            server_runs.files[(rid, p)] for p in ("a.txt", "b.json", "sub/c.bin")
        ]
    finally:
        prefetcher.close()
    assert _downloads(tmp_downloads) == []
