"""Hostile shares against every bound: counts, sizes, depth, version gaps, sources, markers.

Each case is a real Delta table (written with DeltaLakeTableStore, read back with delta-rs)
imported into a recipient store that already holds an imported experiment ``e`` and model
``m``. The import must raise :class:`ShareDataError` naming the row and the field, before
the sink is used at all, and leave the whole store byte-identical: everything MLflow's API
shows (deleted experiments and runs, metric histories, inputs, outputs, logged models,
registered models, versions, aliases, tags) and every file under the store's directory
(the sqlite database and the artifacts), compared by SHA-256.

Lists too long for their bound are built in Arrow (a million metric points are 40 MB of
Arrow, but a gigabyte as Python dicts), and the importer refuses them from Arrow's lengths,
before turning a row into Python values.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from arcuate.backends.deltalake.store import DeltaLakeTableStore
from arcuate.backends.mlflow.sink import MlflowSink
from arcuate.engine.imports import import_experiment, import_model
from arcuate.errors import ShareDataError
from arcuate.format import limits
from arcuate.format import validate as v
from arcuate.format.schema import SCHEMA
from tests.imports.import_helpers import (
    batches_of,
    chunk_rows,
    differences,
    file_entry,
    recipient_context,
    run_row,
    version_row,
    whole_store,
)

Rows = list[dict[str, Any]]
Built = Rows | pa.Table
RUN_A, RUN_B = "a" * 32, "b" * 32
MODEL_1 = "m-" + "1" * 32


# -- good content --------------------------------------------------------------------------------
def _logged_model(model_id: str, step: int | None = 1) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "name": "model",
        "model_type": None,
        "status": "READY",
        "status_message": None,
        "creation_time": None,
        "step": step,
        "tags": [{"key": "flavor", "value": "none"}],
        "params": [{"key": "alpha", "value": "1"}],
    }


def good_runs() -> Rows:
    """Two runs: a logged model, a dataset input, a model-history tag, a chunked file."""
    big = bytes(range(256)) * 5
    entry, chunks = chunk_rows(RUN_A, "big.bin", big, 512)
    first = run_row(
        RUN_A,
        tags={"team": "ml", "mlflow.log-model.history": json.dumps([{"run_id": RUN_A}])},
        files=[
            file_entry("notes/readme.txt", b"hello\n"),
            entry,
            file_entry("MLmodel", b"flavors: {}\n", owner=f"logged_models/{MODEL_1}"),
        ],
        logged_models=[_logged_model(MODEL_1)],
    )
    first["run"]["inputs"] = [
        {
            "name": "d",
            "digest": "1",
            "source_type": "local",
            "source": '{"uri": "/data/x.csv"}',
            "schema": None,
            "profile": None,
            "tags": [{"key": "mlflow.data.context", "value": "training"}],
        }
    ]
    second = run_row(RUN_B, name="second", files=[file_entry("x.txt", b"x")])
    return [first, *chunks, second]


def good_versions() -> Rows:
    one = version_row(1, aliases=["champion"])
    two = version_row(2)
    two["model_version"]["source"] = f"runs:/{RUN_A}/model/"
    return [one, two]


# -- Arrow surgery: lists longer than any Python-built table should hold ----------------------------
def _with_list(batch: pa.RecordBatch, path: str, row: int, n: int) -> pa.RecordBatch:
    """``batch`` whose list at ``path`` ('files', 'run.metrics') holds, in row ``row``, ``n``
    copies of its first item."""
    column, _, child = path.partition(".")
    parent = batch.column(column)
    lists = pc.struct_field(parent, [parent.type.get_field_index(child)]) if child else parent
    offsets = lists.offsets.to_numpy()
    values = lists.flatten()
    base = offsets[0]
    start, end = offsets[row] - base, offsets[row + 1] - base
    copies = values.take(pa.array(np.full(n, start, dtype=np.int64)))
    grown = pa.concat_arrays([values.slice(0, start), copies, values.slice(end)])
    shifted = np.concatenate([offsets[: row + 1] - base, offsets[row + 1 :] - base - (end - start) + n])
    new = pa.ListArray.from_arrays(
        pa.array(shifted, pa.int32()), grown, type=lists.type, mask=lists.is_null()
    )
    if child:
        kids = [new if f.name == child else pc.struct_field(parent, [i]) for i, f in enumerate(parent.type)]
        new = pa.StructArray.from_arrays(kids, fields=list(parent.type), mask=parent.is_null())
    return batch.set_column(batch.schema.get_field_index(column), batch.schema.field(column), new)


def long_list(path: str, n: int, row: int = 0) -> Callable[[Rows], pa.Table]:
    def grow(rows: Rows) -> pa.Table:
        batch = pa.RecordBatch.from_pylist(rows, schema=SCHEMA)
        return pa.Table.from_batches([_with_list(batch, path, row, n)])

    return grow


# -- row changes ---------------------------------------------------------------------------------
def mutate(path: str, value: Any, row: int = 0) -> Callable[[Rows], Rows]:
    def change(rows: Rows) -> Rows:
        *parents, last = path.split(".")
        node: Any = rows[row]
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(last) if last.isdigit() else last] = value
        return rows

    return change


def _nested_tags(rows: Rows) -> Rows:
    tags = [{"key": f"k{i}", "value": "v"} for i in range(limits.MAX_TAGS + 1)]
    rows[0]["run"]["logged_models"][0]["tags"] = tags
    return rows


def _input_tags(rows: Rows) -> Rows:
    tags = [{"key": f"k{i}", "value": "v"} for i in range(limits.MAX_INPUT_TAGS + 1)]
    rows[0]["run"]["inputs"][0]["tags"] = tags
    return rows


def _deep_history(rows: Rows) -> Rows:
    """A model history 3,000 levels deep (6,000 characters, a valid tag value): Python's JSON
    parser recursed on it and ended the import midway with a RecursionError."""
    deep = "[" * 3000 + "]" * 3000
    rows[0]["run"]["tags"] = [{"key": "mlflow.log-model.history", "value": deep}]
    return rows


def _declared_chunks(count: int, size: int) -> Callable[[Rows], Rows]:
    """Run A's chunked file declares ``count`` chunks of a ``size``-byte file; 3 are there."""

    def change(rows: Rows) -> Rows:
        rows[0]["files"][1].update(chunks=count, size=size)
        return rows

    return change


def _chunk_key(rows: Rows) -> Rows:
    rows[1]["key"] = "k" * 100_000
    return rows


def _far_chunk(rows: Rows) -> Rows:
    rows[1]["chunk"]["index"] = limits.MAX_CHUNKS_PER_FILE
    return rows


def _versions(*numbers: int) -> Callable[[Rows], Rows]:
    def change(rows: Rows) -> Rows:
        return [version_row(n) for n in numbers]

    return change


def _source(value: str) -> Callable[[Rows], Rows]:
    return mutate("model_version.source", value)


# (case, content, change, message, row of the original rows, field)
Case = tuple[str, str, Callable[[Rows], Built], str, int, str]
CASES: list[Case] = [
    # counts
    (
        "declared chunks",
        "experiment",
        _declared_chunks(10**9, 10**12),
        f"declares 1000000000 chunks; arcuate reads at most {limits.MAX_CHUNKS_PER_FILE}",
        0,
        "files[1].chunks",
    ),
    (
        "declared chunks under the bound",
        "experiment",
        _declared_chunks(limits.MAX_CHUNKS_PER_FILE, 10**12),
        f"lacks chunk(s) 3, 4, 5, 6, 7 of {limits.MAX_CHUNKS_PER_FILE}",
        0,
        "files",
    ),
    (
        "chunk index",
        "experiment",
        _far_chunk,
        f"must be between 0 and {limits.MAX_CHUNKS_PER_FILE - 1}",
        1,
        "chunk.index",
    ),
    (
        "metric points",
        "experiment",
        long_list("run.metrics", limits.MAX_METRIC_POINTS_PER_RUN + 1),
        f"holds {limits.MAX_METRIC_POINTS_PER_RUN + 1} items; arcuate reads at most "
        f"{limits.MAX_METRIC_POINTS_PER_RUN}",
        0,
        "run.metrics",
    ),
    (
        "params",
        "experiment",
        long_list("run.params", limits.MAX_PARAMS + 1, row=4),
        f"arcuate reads at most {limits.MAX_PARAMS}",
        4,
        "run.params",
    ),
    (
        "run tags",
        "experiment",
        long_list("run.tags", limits.MAX_TAGS + 1),
        f"arcuate reads at most {limits.MAX_TAGS}",
        0,
        "run.tags",
    ),
    (
        "files",
        "experiment",
        long_list("files", limits.MAX_FILES_PER_RECORD + 1, row=4),
        f"arcuate reads at most {limits.MAX_FILES_PER_RECORD}",
        4,
        "files",
    ),
    (
        "logged model tags",
        "experiment",
        _nested_tags,
        f"arcuate reads at most {limits.MAX_TAGS}",
        0,
        "run.logged_models[0].tags",
    ),
    (
        "dataset input tags",
        "experiment",
        _input_tags,
        f"arcuate reads at most {limits.MAX_INPUT_TAGS}",
        0,
        "run.inputs[0].tags",
    ),
    (
        "aliases",
        "model",
        long_list("model_version.aliases", limits.MAX_ALIASES + 1),
        f"arcuate reads at most {limits.MAX_ALIASES}",
        0,
        "model_version.aliases",
    ),
    # sizes and lengths
    (
        "file size",
        "experiment",
        _declared_chunks(3, limits.MAX_FILE_BYTES + 1),
        f"must be between 0 and {limits.MAX_FILE_BYTES}",
        0,
        "files[1].size",
    ),
    ("chunk key", "experiment", _chunk_key, "is not a valid id", 1, "key"),
    # depth
    (
        "model history depth",
        "experiment",
        _deep_history,
        f"nests deeper than {limits.MAX_JSON_DEPTH} levels (3000)",
        0,
        "run.tags[0].value",
    ),
    # version gaps
    (
        "version 10**9",
        "model",
        _versions(10**9),
        f"at most {limits.MAX_VERSION_PLACEHOLDERS}",
        0,
        "model_version.version",
    ),
    (
        "gaps add up",
        "model",
        _versions(1, 500, limits.MAX_VERSION_PLACEHOLDERS + 4),
        f"at most {limits.MAX_VERSION_PLACEHOLDERS}",
        2,
        "model_version.version",
    ),
    # sources
    (
        "runs source climbs",
        "model",
        _source(f"runs:/{RUN_A}/../../x"),
        "has a '..' segment",
        0,
        "model_version.source",
    ),
    (
        "runs source escapes encoded",
        "model",
        _source(f"runs:/{RUN_A}/%2E%2E/%2e%2e/x"),
        "has a '..' segment",
        0,
        "model_version.source",
    ),
    (
        "runs source backslash",
        "model",
        _source(f"runs:/{RUN_A}/model\\weights.bin"),
        "contains a backslash",
        0,
        "model_version.source",
    ),
    (
        "runs source with a host",
        "model",
        _source(f"runs://host/{RUN_A}/model"),
        "runs:/<run id>/<path>",
        0,
        "model_version.source",
    ),
    (
        "models source climbs",
        "model",
        _source("models:/../../x"),
        "has a '..' segment",
        0,
        "model_version.source",
    ),
    (
        "artifact path climbs",
        "model",
        _source(f"/srv/mlruns/1/{RUN_A}/artifacts/../../../../etc"),
        "has a '..' segment",
        0,
        "model_version.source",
    ),
    (
        "source control character",
        "model",
        _source(f"runs:/{RUN_A}/model\nX-Injected: 1"),
        "contains a control character",
        0,
        "model_version.source",
    ),
]


# -- the harness -------------------------------------------------------------------------------------
class Watched:
    """The real sink, recording each method the import reaches (a hostile share must be
    refused before any); ``create_version`` is never run (a version gap would loop)."""

    def __init__(self, real: MlflowSink) -> None:
        self.real = real
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        if name == "create_version":
            raise AssertionError("the import registered a version of a hostile share")
        return getattr(self.real, name)


def _idents(table: pa.Table) -> list[tuple[Any, ...]]:
    """(kind, key, chunk index) of each row, read without turning whole rows into Python."""
    index = pc.struct_field(table.column("chunk"), [SCHEMA.field("chunk").type.get_field_index("index")])
    return list(
        zip(table.column("kind").to_pylist(), table.column("key").to_pylist(), index.to_pylist(), strict=True)
    )


def _ident(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["kind"], row["key"], (row["chunk"] or {}).get("index"))


def write_table(
    workdir: Path, name: str, rows: Rows, built: Built, content: str, target: int
) -> tuple[list[pa.RecordBatch], int]:
    """``built`` as a Delta table read back, and where row ``target`` of ``rows`` now is (Delta
    keeps no row order)."""
    store = DeltaLakeTableStore(str(workdir / "warehouse"))
    table = ("hostile", name.replace(" ", "_").replace("*", ""))
    batches = built.to_batches() if isinstance(built, pa.Table) else batches_of(built)
    store.write(table, batches, content=content)  # type: ignore[arg-type]
    read = store.read(table)
    wanted = _ident(rows[target])
    nth = [_ident(r) for r in rows[: target + 1]].count(wanted)
    found = [i for i, x in enumerate(_idents(read)) if x == wanted][nth - 1]
    return read.to_batches(max_chunksize=2), found


def snapshot(store: Any) -> dict[str, Any]:
    return whole_store(store, store.root, Path.cwd() / "mlruns")


@pytest.fixture
def populated(recipient_store: Any, workdir: Path) -> Any:
    """The recipient store after importing the good experiment ``e`` and model ``m``."""
    ctx = recipient_context(recipient_store)
    import_experiment(batches_of(good_runs()), "e", ctx)
    import_model(batches_of(good_versions()), "m", ctx)
    return recipient_store


@pytest.mark.parametrize(
    ("case", "content", "change", "message", "row", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_hostile_share_is_refused_and_changes_nothing(
    case: str,
    content: str,
    change: Callable[[Rows], Built],
    message: str,
    row: int,
    field: str,
    populated: Any,
    workdir: Path,
) -> None:
    original = good_runs() if content == "experiment" else good_versions()
    built = change(copy.deepcopy(original))
    # the rows as built (a changed list of versions has rows of its own)
    rows = built if isinstance(built, list) else original
    batches, row = write_table(workdir, case, rows, built, content, row)
    before = snapshot(populated)
    ctx = recipient_context(populated)
    sink = Watched(MlflowSink(populated.tracking_uri, populated.registry_uri))
    ctx.model_sink = sink  # type: ignore[misc]
    run = import_experiment if content == "experiment" else import_model
    with pytest.raises(ShareDataError) as err:
        run(batches, "e" if content == "experiment" else "m", ctx)
    assert message in str(err.value), str(err.value)
    assert (err.value.row, err.value.field) == (row, field), str(err.value)
    assert str(err.value).startswith(f"row {row}, field {field!r}: ")
    assert sink.calls == [], f"the store was reached: {sink.calls}"
    diff = differences(snapshot(populated), before)
    assert not diff, "\n".join(diff[:20])


def test_good_tables_import(recipient_store: Any, workdir: Path) -> None:
    """The untouched tables of the cases import: each case fails for its one change."""
    for content, rows in (("experiment", good_runs()), ("model", good_versions())):
        batches, _ = write_table(workdir, f"good {content}", rows, rows, content, 0)
        ctx = recipient_context(recipient_store)
        if content == "experiment":
            assert import_experiment(batches, "e", ctx).summary["added"] == 2
        else:
            assert import_model(batches, "m", ctx).summary["added"] == 2


def test_limits_at_their_bound_import(recipient_store: Any, workdir: Path) -> None:
    """Exactly at the bound is allowed: the deepest model history, the largest version gap."""
    rows = _deep_history(good_runs())
    depth = limits.MAX_JSON_DEPTH
    rows[0]["run"]["tags"][0]["value"] = "[" * depth + "]" * depth
    ctx = recipient_context(recipient_store)
    assert import_experiment(batches_of(rows), "e", ctx).summary["added"] == 2
    # (importing the largest gap creates 1000 placeholder versions: the check alone here)
    top = limits.MAX_VERSION_PLACEHOLDERS + 2
    v.check_version_numbers([(0, 1), (1, top)])
    with pytest.raises(ShareDataError, match="version 1003 leaves 1001 numbers"):
        v.check_version_numbers([(0, 1), (1, top + 1)])


# -- item by item -----------------------------------------------------------------------------------
_CHILD = """
import json, sys
from arcuate.backends.deltalake.store import DeltaLakeTableStore
from arcuate.config import resolve_settings
from arcuate.engine.context import Context
from arcuate.engine.imports import import_experiment
from arcuate.errors import ShareDataError

warehouse, table, uri = sys.argv[1:]
batches = DeltaLakeTableStore(warehouse).read(("hostile", table)).to_batches()
# the settings as the edge resolves them (ARCUATE_IMPORT_PATH from the test)
ctx = Context(resolve_settings(tracking_uri=uri, registry_uri=uri, progress=False))
try:
    import_experiment(batches, "e", ctx)
    out = {"error": None}
except ShareDataError as exc:
    out = {"error": "ShareDataError", "row": exc.row, "field": exc.field, "message": str(exc)}
except MemoryError:
    out = {"error": "MemoryError"}
print(json.dumps(out))
"""
#: The address space of the importing process in the test below: ample for an import, far
#: below what a list of 10**9 chunk numbers takes (the box shares 24 GB between test runs).
_ADDRESS_SPACE = 3 * 1024**3


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE, _ADDRESS_SPACE))


def test_declared_chunk_count_allocates_nothing(populated: Any, workdir: Path) -> None:
    """Issue 10 item 1: a file row declaring 10**9 chunks (three chunk rows present) is
    refused from its declaration, in a process limited to 3 GiB of address space (the
    importer used to build a list of every chunk number and was OOM-killed at 22 GB)."""
    rows = _declared_chunks(10**9, 10**12)(good_runs())
    write_table(workdir, "chunks", rows, rows, "experiment", 0)
    before = snapshot(populated)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(workdir / "warehouse"), "chunks", populated.tracking_uri],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limit_memory,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["error"] == "ShareDataError", out
    assert out["field"] == "files[1].chunks" and "declares 1000000000 chunks" in out["message"]
    assert not differences(snapshot(populated), before)


def test_version_source_cannot_reach_outside_the_run(recipient_store: Any, workdir: Path) -> None:
    """Issue 10 item 4: a ``runs:/`` source climbing out of the run is refused up front; it
    used to place the version's files at the climbed path (outside every artifact root) and
    then fail in MLflow, after an experiment, a run and a registered model were created."""
    outside = workdir / "escaped"
    climb = "../" * 40 + str(outside).lstrip("/")
    rows = [version_row(1)]
    rows[0]["model_version"]["source"] = f"runs:/{RUN_A}/{climb}"
    before = snapshot(recipient_store)
    with pytest.raises(ShareDataError) as err:
        import_model(batches_of(rows), "m", recipient_context(recipient_store))
    assert (err.value.row, err.value.field) == (0, "model_version.source")
    assert "has a '..' segment" in str(err.value)
    assert not outside.exists()
    assert not differences(snapshot(recipient_store), before)


def _serve(workdir: Path, tables: dict[str, tuple[Rows, str]]) -> tuple[Any, Path]:
    """Write each table (rows, marked content) and serve them: the server, a profile."""
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    store = DeltaLakeTableStore(str(workdir / "warehouse"))
    catalog = LocalShareCatalog(workdir / "shares.yaml")
    for name, (rows, content) in tables.items():
        written = store.write(("hostile", name), batches_of(rows), content=content)  # type: ignore[arg-type]
        catalog.add_table("ml", "default", name, written.location)
    _record, token = catalog.create_recipient("ann")
    catalog.grant("ml", "ann")
    handle = serve_in_thread(str(workdir / "shares.yaml"))
    assert token is not None
    return handle, write_profile(workdir / "ann.share", handle.endpoint, token)


def test_rows_must_match_the_table_marker(recipient_store: Any, workdir: Path) -> None:
    """Issue 10 item 7: a table marked as a model table but holding run rows used to import as
    an experiment; a table is read only as what its marker says, and only if its rows are."""
    from arcuate.backends.sharing.reader import DeltaSharingReader

    handle, profile = _serve(
        workdir,
        {
            "runs_marked_model": (good_runs(), "model"),
            "versions_marked_experiment": (good_versions(), "experiment"),
            "runs": (good_runs(), "experiment"),
        },
    )
    try:
        reader = DeltaSharingReader()
        ctx = recipient_context(recipient_store)
        before = snapshot(recipient_store)
        coordinate = f"{profile}#ml.default.runs_marked_model"
        with pytest.raises(ShareDataError, match="is marked as a model table") as err:
            import_experiment(reader.batches(coordinate), "e", ctx)
        assert "CREATE MODEL" in str(err.value)
        with pytest.raises(ShareDataError, match="row 0, field 'kind': this row is a run row"):
            import_model(reader.batches(coordinate), "m", ctx)
        coordinate = f"{profile}#ml.default.versions_marked_experiment"
        with pytest.raises(ShareDataError, match="is marked as an experiment table"):
            import_model(reader.batches(coordinate), "m", ctx)
        assert not differences(snapshot(recipient_store), before)
        result = import_experiment(reader.batches(f"{profile}#ml.default.runs"), "e", ctx)
        assert result.summary["added"] == 2
    finally:
        handle.stop()


def test_describe_reports_what_it_cannot_read() -> None:
    """DESCRIBE reads the same hostile tables: an ``MLmodel`` nested 3,000 levels deep (YAML's
    loader recursed until a RecursionError ended DESCRIBE) lists no flavors; a list past its
    bound is the table's problem, reported, not raised."""
    from arcuate.engine.imports import describe_shared

    deep = b"[" * 3000 + b"]" * 3000
    rows = good_versions()
    rows[0]["files"] = [file_entry("MLmodel", deep, owner="model")]
    result = describe_shared(batches_of(rows), "deep")
    assert result.summary["valid"] is True
    assert result.rows[0]["flavors"] == "" and result.rows[1]["flavors"] == "python_function"
    table = long_list("model_version.aliases", limits.MAX_ALIASES + 1)(good_versions())
    result = describe_shared(table.to_batches(), "long")
    assert result.summary["valid"] is False
    assert result.summary["problem"] == (
        f"row 0, field 'model_version.aliases': holds {limits.MAX_ALIASES + 1} items; "
        f"arcuate reads at most {limits.MAX_ALIASES} here"
    )
