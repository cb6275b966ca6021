"""The fast paths of the import are exactly as faithful and as safe as the plain ones.

* New runs written by the bulk SQL path read back through MLflow's API exactly like runs
  written through the public API, edge cases included (NaN/inf points, ties in the latest
  value, duplicates, shared datasets, logged models, cross-run model links, deleted runs);
  a failing batch leaves nothing behind; an ineligible store falls back to the API.
* Metric histories checked column-wise accept exactly what the row-by-row checks accept, and
  refuse the rest with the same error (message, row, field).
* The reader streams a shared table file by file in batches bounded by bytes, and checks the
  format version from the same listing.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from arcuate.backends.mlflow import bulk
from arcuate.backends.mlflow.sink import MlflowSink
from arcuate.backends.sharing.catalog import LocalShareCatalog
from arcuate.backends.sharing.reader import DeltaSharingReader
from arcuate.engine.imports import Spool, import_experiment
from arcuate.errors import ConfigurationError, ShareDataError
from arcuate.format.schema import SCHEMA
from tests.imports.import_helpers import (
    Share,
    assert_same,
    batches_of,
    chunk_rows,
    file_entry,
    recipient_context,
    run_row,
    snapshot_experiment,
    table_batches,
)

T = 1_700_000_000_000
NAN, INF = float("nan"), float("inf")


@pytest.fixture(autouse=True)
def import_path() -> str:
    """These tests choose their paths themselves (overrides the conftest's parametrisation)."""
    return "explicit"


def _model(model_id: str, step: int | None = 1, status: str = "READY") -> dict[str, Any]:
    return {
        "model_id": model_id,
        "name": "model",
        "model_type": None,
        "status": status,
        "status_message": None,
        "creation_time": None,
        "step": step,
        "tags": [{"key": "flavor", "value": "none"}],
        "params": [{"key": "alpha", "value": "1"}],
    }


def _dataset(name: str, digest: str, context: str) -> dict[str, Any]:
    return {
        "name": name,
        "digest": digest,
        "source_type": "local",
        "source": '{"uri": "/data/x.csv"}',
        "schema": None,
        "profile": '{"rows": 3}',
        "tags": [{"key": "mlflow.data.context", "value": context}],
    }


def _link(row: dict[str, Any], index: int, model_id: str) -> None:
    row["run"]["metrics"][index].update(model_id=model_id, dataset_name="d", dataset_digest="1")


def edge_rows() -> list[dict[str, Any]]:
    """Runs that exercise what the bulk path must get exactly like MLflow."""
    m1, m2, m3 = ("m-" + c * 32 for c in "123")
    r1 = run_row(
        "a" * 32,
        name="ties",
        metrics=[
            ("loss", NAN, 1, T),  # NaN first, then 0.0 at the same step and time: NaN stays
            ("loss", 0.0, 1, T),
            ("loss", 0.0, 1, T),  # an exact duplicate: stored once
            ("loss", NAN, 1, T),
            ("acc", INF, 0, T),
            ("acc", -INF, 1, T),
            ("acc", 0.5, 1, T),  # beats -inf at the same step and time
            ("acc", 0.25, 1, T),  # same step and time, smaller: both kept, 0.5 is latest
            ("neg", 1.0, -5, T + 1),
        ],
        files=[
            file_entry("plots/a.txt", b"a"),
            file_entry("model/MLmodel", b"m", f"logged_models/{m1}"),
        ],
        logged_models=[_model(m1)],
        parent="d" * 32,  # shared later in the table
    )
    _link(r1, 6, m1)
    r1["run"]["inputs"] = [_dataset("d", "1", "training"), _dataset("d", "1", "eval")]
    r1["run"]["model_inputs"] = [m2]  # another run's model
    r2 = run_row(
        "b" * 32,
        name="running",
        status="RUNNING",
        metrics=[("loss", 2.0, 0, T)],
        files=[],
        logged_models=[_model(m2, step=None, status="PENDING")],
    )
    r2["run"]["inputs"] = [_dataset("d", "1", "eval"), _dataset("e", "2", "training")]
    r3 = run_row("c" * 32, name="scheduled", status="SCHEDULED", end=None, files=[])
    r3["run"]["user_id"] = None
    r3["run"]["tags"] = [{"key": "mlflow.user", "value": "bob"}]
    r3["run"]["model_inputs"] = [m3]
    r3["run"]["logged_models"] = [_model(m3, status="FAILED")]
    _link(r3, 0, m3)
    r4 = run_row("d" * 32, name="parent", status="FAILED")
    r4["run"]["run_name"] = None
    r4["run"]["tags"].append({"key": "mlflow.runName", "value": "named by tag"})
    r5 = run_row("e" * 32, name="gone", files=[])
    r5["run"]["lifecycle_stage"] = "deleted"
    entry, chunks = chunk_rows("f" * 32, "big.bin", bytes(range(256)) * 7, 500)
    r6 = run_row("f" * 32, name="chunked", files=[entry, file_entry("small.txt", b"s")])
    return [r1, r2, r3, r4, r5, *chunks, r6]


class CountingSink:
    """The real sink, counting the calls the bulk path makes."""

    def __init__(self, real: MlflowSink) -> None:
        self.real = real
        self.bulk_runs_written = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def write_new_runs(self, experiment_id: str, runs: list[Any], **kw: Any) -> Any:
        self.bulk_runs_written += len(runs)
        return self.real.write_new_runs(experiment_id, runs, **kw)


def _import(store: Any, path: str, rows: list[dict[str, Any]], **kw: Any) -> CountingSink:
    ctx = recipient_context(store)
    sink = CountingSink(MlflowSink(store.tracking_uri, store.registry_uri, import_path=path))
    ctx.model_sink = sink  # type: ignore[misc]
    import_experiment(batches_of(rows, size=3), "e", ctx, **kw)
    return sink


class _Store:
    """A copy of the session's migrated sqlite template at ``root/mlflow.db``."""

    def __init__(self, template: Path, root: Path) -> None:
        root.mkdir(parents=True)
        shutil.copyfile(template, root / "mlflow.db")
        self.tracking_uri = self.registry_uri = f"sqlite:///{root / 'mlflow.db'}"

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri, self.registry_uri)


def _store(mlflow_template: Path, root: Path) -> Any:
    return _Store(mlflow_template, root)


#: The SQL stores the bulk path writes to: sqlite, and PostgreSQL (a throwaway cluster).
DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture
def new_store(request: pytest.FixtureRequest, mlflow_template: Path) -> Any:
    """A factory of fresh, empty stores of the test's dialect (``dialect`` parameter)."""

    def make(root: Path) -> Any:
        if request.param == "sqlite":
            return _Store(mlflow_template, root)
        store = request.getfixturevalue("postgres").new_store(root)
        # its own artifact root (the default, ./mlruns, would be shared by the test's stores)
        store.client().create_experiment("e", artifact_location=str(root / "artifacts"))
        return store

    return make


def table_counts(store: Any) -> dict[str, int]:
    """How many rows each of MLflow's tracking tables holds (the derived ones included)."""
    import sqlalchemy as sa

    engine = sa.create_engine(store.tracking_uri)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return {
                name: conn.execute(sa.text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one()
                for name in sorted(names)
            }
    finally:
        engine.dispose()


def _deleted(store: Any) -> list[tuple[Any, ...]]:
    from mlflow.entities import ViewType

    client = store.client()
    eid = client.get_experiment_by_name("e").experiment_id
    return sorted(
        (
            r.data.tags["arcuate.source_run_id"],
            r.info.run_name,
            r.info.status,
            r.info.start_time,
            r.info.end_time,
            r.data.params,
            r.data.metrics,
        )
        for r in client.search_runs([eid], run_view_type=ViewType.DELETED_ONLY)
    )


@pytest.mark.parametrize("new_store", DIALECTS, indirect=True)
def test_bulk_and_api_read_back_the_same(
    new_store: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arcuate.backends.mlflow import bulk

    blocks: list[str] = []

    def counted(history: Any, run_id: str) -> Any:
        blocks.append(run_id)
        return block_of(history, run_id)

    block_of = bulk.metric_block
    monkeypatch.setattr(bulk, "metric_block", counted)
    via_api = new_store(workdir / "api")
    via_bulk = new_store(workdir / "bulk")
    assert _import(via_api, "api", edge_rows()).bulk_runs_written == 0
    # r1 points at r2's model: it goes through the API, after the bulk runs
    assert _import(via_bulk, "bulk", edge_rows()).bulk_runs_written == 5
    # the bulk runs without a logged model's metrics wrote their histories as columns
    assert len(blocks) >= 3, blocks
    assert table_counts(via_bulk) == table_counts(via_api)  # latest_metrics, inputs too
    expected = snapshot_experiment(via_api, "e", imported=True)
    got = snapshot_experiment(via_bulk, "e", imported=True)
    assert_same(got, expected)
    ties = got["runs"]["a" * 32]
    assert ties["latest"]["loss"] == "nan"
    assert ties["latest"]["acc"] == 0.5
    assert got["runs"]["d" * 32]["run_name"] == "named by tag"
    assert got["runs"]["a" * 32]["tags"]["mlflow.parentRunId"] == "d" * 32
    assert _deleted(via_bulk) == _deleted(via_api) != []
    # a run without any name gets one of MLflow's random names on both paths
    nameless = run_row("9" * 32, files=[])
    nameless["run"]["run_name"] = None
    for store, path in ((via_api, "api"), (via_bulk, "bulk")):
        _import(store, path, [nameless])
        client = store.client()
        eid = client.get_experiment_by_name("e").experiment_id
        (run,) = client.search_runs([eid], "tags.`arcuate.source_run_id` = '" + "9" * 32 + "'")
        assert run.info.run_name and run.data.tags["mlflow.runName"] == run.info.run_name
    # running the import again finds everything in place, whichever path wrote it
    for store, path in ((via_api, "api"), (via_bulk, "bulk")):
        ctx = recipient_context(store)
        sink = MlflowSink(store.tracking_uri, store.registry_uri, import_path=path)
        ctx.model_sink = sink  # type: ignore[misc]
        result = import_experiment(batches_of(edge_rows()), "e", ctx)
        assert result.summary["unchanged"] == 6, result.summary


@pytest.mark.parametrize("new_store", DIALECTS, indirect=True)
def test_the_sql_client_writes_what_mlflows_client_writes(
    new_store: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same import through arcuate's SQL client (experiment, lease, lookups and the bulk
    path on its own engine) and through MLflow's client leaves the same content."""
    from arcuate.backends.mlflow.connect import is_sql

    mine, theirs = new_store(workdir / "sql"), new_store(workdir / "mlflow")
    sink = _import(mine, "bulk", edge_rows())
    assert is_sql(sink.real.client) and sink.bulk_runs_written == 5
    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", "mlflow")
    other = _import(theirs, "bulk", edge_rows())
    assert not is_sql(other.real.client) and other.bulk_runs_written == 5
    monkeypatch.delenv("ARCUATE_MLFLOW_CLIENT")
    assert table_counts(mine) == table_counts(theirs)
    assert_same(
        snapshot_experiment(mine, "e", imported=True),
        snapshot_experiment(theirs, "e", imported=True),
    )
    assert _deleted(mine) == _deleted(theirs) != []
    # a second import finds everything in place through either client
    for store in (mine, theirs):
        ctx = recipient_context(store)
        ctx.model_sink = MlflowSink(store.tracking_uri, store.registry_uri)  # type: ignore[misc]
        result = import_experiment(batches_of(edge_rows()), "e", ctx)
        assert result.summary["unchanged"] == 6, result.summary


@pytest.mark.parametrize("new_store", DIALECTS, indirect=True)
def test_a_failing_bulk_batch_leaves_nothing(
    new_store: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last insert of the transaction fails: no run, model, dataset or file of the batch
    stays; the same import then succeeds and matches a clean one."""
    store = new_store(workdir / "failing")
    clean = new_store(workdir / "clean")
    _import(clean, "api", edge_rows())
    real = bulk.BulkRunWriter._commit

    def broken(self: Any, experiment_id: int, rows: Any, datasets: Any, **kw: Any) -> None:
        rows.input_tags.append(dict(rows.input_tags[0]))  # a duplicate key: the last insert fails
        real(self, experiment_id, rows, datasets, **kw)

    monkeypatch.setattr(bulk.BulkRunWriter, "_commit", broken)
    with pytest.raises(Exception, match="could not write 5 new runs"):
        _import(store, "bulk", edge_rows())
    from mlflow.entities import ViewType

    client = store.client()
    exp = client.get_experiment_by_name("e")
    # only the run that goes through the API was created (before the bulk runs), unfinished
    (left,) = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)
    assert left.data.tags["arcuate.source_run_id"] == "a" * 32
    assert "arcuate.content_hash" not in left.data.tags
    models = client.search_logged_models(experiment_ids=[exp.experiment_id])
    assert [m.source_run_id for m in models] == [left.info.run_id]
    root = Path(exp.artifact_location)
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))
    monkeypatch.setattr(bulk.BulkRunWriter, "_commit", real)
    assert _import(store, "bulk", edge_rows()).bulk_runs_written == 5
    assert_same(
        snapshot_experiment(store, "e", imported=True),
        snapshot_experiment(clean, "e", imported=True),
    )


def test_uncovered_schema_falls_back_to_the_api(
    recipient_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "COVERED_REVISIONS", frozenset({"not-this-one"}))
    sink = _import(recipient_store, "auto", edge_rows())
    assert sink.bulk_runs_written == 0
    assert len(snapshot_experiment(recipient_store, "e", imported=True)["runs"]) == 5
    with pytest.raises(ConfigurationError, match=r"schema revision \S+ is not one"):
        MlflowSink(recipient_store.tracking_uri, import_path="bulk").bulk_runs("0")
    with pytest.raises(
        ConfigurationError,
        match=r"import_path 'fast' is not one of auto, api, bulk \(ARCUATE_IMPORT_PATH\)",
    ):
        MlflowSink(recipient_store.tracking_uri, import_path="fast")


# -- column-wise metric checks -------------------------------------------------------------------
def _spooled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with Spool.open("experiment") as spool:
        spool.ingest(batches_of(rows, size=4))
        return [spool.load(i) for i in range(len(spool.entries))]


def _row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    import arcuate.engine.imports.spool as spool

    monkeypatch.setattr(spool, "batch_metrics", lambda batch: None)


def test_column_checks_normalise_like_row_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = edge_rows()
    fast = _spooled(rows)
    with monkeypatch.context() as m:
        _row_by_row(m)
        slow = _spooled(rows)
    assert repr(fast) == repr(slow)  # repr: NaN == NaN here
    assert len(fast[0]["run"]["metrics"]) == 9


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
BAD_POINTS: list[tuple[str, str, Any]] = [
    ("key", "key", "a/../b"),
    ("key", "comma", "a,b"),
    ("key", "too long", "k" * 251),
    ("key", "missing", None),
    ("value", "missing", None),
    ("step", "missing", None),
    ("timestamp", "before 1970", EPOCH - dt.timedelta(milliseconds=1)),
    ("timestamp", "after 2500", dt.datetime(2500, 1, 1, tzinfo=dt.UTC)),
    ("timestamp", "missing", None),
    ("model_id", "not an id", "m/../x"),
    ("dataset_name", "too long", "d" * 501),
    ("dataset_name", "NUL", "a\x00b"),
    ("dataset_digest", "too long", "0" * 37),
]


@pytest.mark.parametrize(
    ("column", "case", "value"), BAD_POINTS, ids=[f"{c}-{k}" for c, k, _ in BAD_POINTS]
)
def test_column_checks_refuse_like_row_checks(
    column: str, case: str, value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [run_row("a" * 32), run_row("b" * 32, metrics=[("x", 1.0, 0, T)] * 3)]
    rows[1]["run"]["metrics"][2][column] = value
    with pytest.raises(ShareDataError) as fast:
        _spooled(rows)
    _row_by_row(monkeypatch)
    with pytest.raises(ShareDataError) as slow:
        _spooled(rows)
    assert str(fast.value) == str(slow.value)
    assert (fast.value.row, fast.value.field) == (1, f"run.metrics[2].{column}")


def test_a_null_point_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [run_row("a" * 32, metrics=[("x", 1.0, 0, T)] * 2)]
    rows[0]["run"]["metrics"][1] = None
    with pytest.raises(ShareDataError, match=r"row 0, field 'run.metrics\[1\]'"):
        _spooled(rows)


# -- the reader -----------------------------------------------------------------------------------
def _shared(workdir: Path, share: Share, name: str, rows: list[dict[str, Any]]) -> str:
    from arcuate.backends.deltalake.store import DeltaLakeTableStore

    store = DeltaLakeTableStore(str(workdir / "warehouse"))
    location = store.write(("paths", name), batches_of(rows), content="experiment").location
    LocalShareCatalog(share.catalog).add_table("ml", "default", name, location)
    return f"{share.profile}#ml.default.{name}"


def test_reader_streams_bounded_batches(share: Share, workdir: Path) -> None:
    """Chunk rows of 8 KiB with a 16 KiB batch budget: every batch is small, all rows arrive,
    in the same order as the table read directly."""
    data = bytes(range(256)) * 160  # 40 KiB in 5 chunks
    entry, chunks = chunk_rows("a" * 32, "weights.bin", data, 8192)
    rows = [run_row("a" * 32, files=[entry]), *chunks, run_row("b" * 32)]
    coordinate = _shared(workdir, share, f"bounded_{workdir.name[-8:]}", rows)
    reader = DeltaSharingReader(batch_bytes=16 * 1024)
    batches = list(reader.batches(coordinate))
    assert len(batches) >= 3
    assert all(b.num_rows <= 2 for b in batches)
    streamed = pa.Table.from_batches(batches)
    assert streamed.schema.equals(SCHEMA)
    keys = [(r["kind"], r["key"]) for r in streamed.select(["kind", "key"]).to_pylist()]
    assert sorted(keys) == sorted((r["kind"], r["key"]) for r in rows)


def test_reader_refuses_a_newer_format_over_the_protocol(share: Share, workdir: Path) -> None:
    import deltalake

    path = workdir / "future"
    deltalake.write_deltalake(
        str(path),
        pa.table({"format_version": pa.array([3], pa.int32())}),
        description='{"arcuate": {"format_version": 3, "content": "experiment"}}',
    )
    name = f"future_{workdir.name[-8:]}"
    LocalShareCatalog(share.catalog).add_table("ml", "default", name, str(path))
    with pytest.raises(ShareDataError, match="format version 3; this arcuate reads 1, 2"):
        DeltaSharingReader().batches(f"{share.profile}#ml.default.{name}")


def test_round_trip_through_the_reader_matches_direct_read(
    share: Share, recipient_store: Any, mlflow_template: Path, workdir: Path
) -> None:
    """The table streamed over the protocol imports exactly like the table read directly."""
    direct = _store(mlflow_template, workdir / "direct")
    import_experiment(table_batches(share.experiment_table), "e", recipient_context(direct))
    import_experiment(
        DeltaSharingReader(batch_bytes=64 * 1024).batches(share.experiment),
        "e",
        recipient_context(recipient_store),
    )
    assert_same(
        snapshot_experiment(recipient_store, "e", imported=True),
        snapshot_experiment(direct, "e", imported=True),
    )


def test_large_tables_are_read_by_a_helper_process(
    share: Share,
    recipient_store: Any,
    mlflow_template: Path,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above the size threshold pass 1 runs in ``arcuate.engine.imports.worker``: the import is
    the same, and a bad row is reported with the same row and field."""
    import arcuate.engine.imports.worker as worker

    started: list[int] = []
    real = worker.run_worker

    def counting(request: dict[str, Any], tick: Any = None) -> dict[str, Any]:
        started.append(1)
        return real(request, tick)

    monkeypatch.setattr(worker, "WORKER_BYTES", 1)
    monkeypatch.setattr(worker, "run_worker", counting)
    here = _store(mlflow_template, workdir / "in-process")
    import_experiment(table_batches(share.experiment_table), "e", recipient_context(here))
    result = import_experiment(
        DeltaSharingReader().batches(share.experiment), "e", recipient_context(recipient_store)
    )
    assert started == [1]
    assert result.summary["helper_peak_rss"] > 0  # the helper's own peak, reported
    assert_same(
        snapshot_experiment(recipient_store, "e", imported=True),
        snapshot_experiment(here, "e", imported=True),
    )
    bad = run_row()
    bad["files"].append(file_entry("../../outside.txt", b"evil"))
    coordinate = _shared(
        workdir, share, f"worker_bad_{workdir.name[-8:]}", [run_row("b" * 32), bad]
    )
    with pytest.raises(ShareDataError) as err:
        import_experiment(
            DeltaSharingReader().batches(coordinate), "bad", recipient_context(recipient_store)
        )
    assert started == [1, 1]
    assert err.value.field == "files[1].path" and err.value.row in (0, 1)
    assert "has a '..' segment" in str(err.value)
    assert str(err.value).startswith(f"row {err.value.row}, field 'files[1].path': path")
    assert recipient_store.client().get_experiment_by_name("bad") is None


@pytest.mark.postgres
def test_cleaning_up_never_removes_another_stores_files(postgres: Any, workdir: Path) -> None:
    """Two PostgreSQL stores used from one directory share MLflow's default ``./mlruns/<id>``:
    removing what killed bulk batches of one left never touches the other's run files."""
    a, b = (postgres.new_store(workdir / name) for name in ("a", "b"))
    _import(a, "bulk", edge_rows())
    before = snapshot_experiment(a, "e", imported=True)
    _import(b, "bulk", edge_rows())
    locations = {s.client().get_experiment_by_name("e").artifact_location for s in (a, b)}
    assert len(locations) == 1  # the very situation
    assert_same(snapshot_experiment(a, "e", imported=True), before)
