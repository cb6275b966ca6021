"""Hostile or malformed shared tables are rejected before anything is written.

Each case is a real Delta table (written with DeltaLakeTableStore, read back with delta-rs)
or, where Arrow's types would not even hold the value, a record batch of another schema. The
error names the row and the field; the recipient store is exactly as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from arcuate.backends.deltalake.store import DeltaLakeTableStore
from arcuate.engine.imports import import_experiment, import_model
from arcuate.errors import ShareDataError
from tests.imports.import_helpers import (
    T0,
    batches_of,
    chunk_rows,
    file_entry,
    recipient_context,
    run_row,
    store_state,
    version_row,
)

Rows = list[dict[str, Any]]


def good_runs() -> Rows:
    big = bytes(range(256)) * 5
    entry, chunks = chunk_rows("b" * 32, "big.bin", big, 512)
    second = run_row("b" * 32, name="second", files=[file_entry("x.txt", b"x"), entry])
    return [run_row(), second, *chunks]


def set_in(row: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = row
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


def mutate(path: str, value: Any, row: int = 0) -> Callable[[Rows], Rows]:
    def change(rows: Rows) -> Rows:
        set_in(rows[row], path, value)
        return rows

    return change


def add_file(entry: dict[str, Any], row: int = 0) -> Callable[[Rows], Rows]:
    def change(rows: Rows) -> Rows:
        rows[row]["files"].append(entry)
        return rows

    return change


def _chunk(change: Callable[[dict[str, Any]], None], index: int = 2) -> Callable[[Rows], Rows]:
    def go(rows: Rows) -> Rows:
        change(rows[index]["chunk"])
        return rows

    return go


def _drop_chunk(rows: Rows) -> Rows:
    del rows[3]
    return rows


def _stray_chunk(rows: Rows) -> Rows:
    stray = copy.deepcopy(rows[2])
    stray["key"] = "c" * 32
    return [*rows, stray]


def _duplicate(rows: Rows) -> Rows:
    return [*rows, copy.deepcopy(rows[0])]


def _version_row(rows: Rows) -> Rows:
    return [*rows, version_row()]


def _shift_chunk_offsets(chunk: dict[str, Any]) -> None:
    chunk["offset"] = 7


def _flip_chunk_byte(chunk: dict[str, Any]) -> None:
    chunk["data"] = b"\xff" + chunk["data"][1:]


def _alias_twice(rows: Rows) -> Rows:
    rows[0]["model_version"]["aliases"] = ["champion"]
    return [rows[0], version_row(2, aliases=["champion"])]


BAD = b"evil"
CASES: list[tuple[str, Callable[[Rows], Rows], str, int, str]] = [
    (
        "format version",
        mutate("format_version", 3),
        "format version 3 is not supported",
        0,
        "format_version",
    ),
    ("unknown kind", mutate("kind", "script", 1), "unknown row kind 'script'", 1, "kind"),
    ("model row in experiment", _version_row, "this row is a model_version row", 5, "kind"),
    ("empty key", mutate("key", ""), "key must be a non-empty string", 0, "key"),
    ("duplicate key", _duplicate, "appears twice (first in row", 5, "key"),
    ("key is not the run id", mutate("key", "f" * 32), "differs from run.run_id", 0, "key"),
    (
        "path traversal",
        add_file(file_entry("../../.ssh/authorized_keys", BAD)),
        "has a '..' segment",
        0,
        "files[1].path",
    ),
    (
        "absolute path",
        add_file(file_entry("/etc/cron.d/evil", BAD)),
        "is absolute",
        0,
        "files[1].path",
    ),
    (
        "drive letter",
        add_file(file_entry("C:/Windows/evil.dll", BAD)),
        "starts with a drive letter",
        0,
        "files[1].path",
    ),
    (
        "backslash",
        add_file(file_entry("a\\..\\..\\evil", BAD)),
        "contains a backslash",
        0,
        "files[1].path",
    ),
    (
        "NUL in path",
        add_file(file_entry("evil\x00.txt", BAD)),
        "contains a NUL character",
        0,
        "files[1].path",
    ),
    (
        "empty segment",
        add_file(file_entry("a//b", BAD)),
        "has an empty segment",
        0,
        "files[1].path",
    ),
    (
        "file and directory",
        add_file(file_entry("notes/readme.txt/x", BAD)),
        "is both a file and a directory",
        0,
        "files[1].path",
    ),
    (
        "size lie",
        add_file(dict(file_entry("a.bin", BAD), size=3)),
        "declares 3 bytes but carries 4",
        0,
        "files[1].size",
    ),
    (
        "checksum lie",
        add_file(dict(file_entry("a.bin", BAD), sha256="0" * 64)),
        "does not match its SHA-256 checksum",
        0,
        "files[1].sha256",
    ),
    (
        "unknown owner",
        add_file(file_entry("MLmodel", BAD, owner="logged_models/m-nothere")),
        "is not one of this record's owners",
        0,
        "files[1].owner",
    ),
    ("missing chunk", _drop_chunk, "lacks chunk(s) 1 of 3", 1, "files"),
    (
        "chunk offset",
        _chunk(_shift_chunk_offsets),
        "starts at offset 7, expected 0",
        2,
        "chunk.offset",
    ),
    (
        "chunk bytes",
        _chunk(_flip_chunk_byte),
        "reassembled file artifacts/big.bin does not match",
        1,
        "files",
    ),
    ("stray chunk", _stray_chunk, "which has no record", 5, "chunk"),
    (
        "param too long",
        mutate("run.params.0.value", "x" * 6001),
        "is 6001 characters long; MLflow allows at most 6000",
        0,
        "run.params[0].value",
    ),
    (
        "tag too long",
        mutate("run.tags.0.value", "x" * 8001),
        "at most 8000",
        0,
        "run.tags[0].value",
    ),
    (
        "bad param key",
        mutate("run.params.0.key", "lr,rate"),
        "may only contain",
        0,
        "run.params[0].key",
    ),
    (
        "metric key path trick",
        mutate("run.metrics.0.key", "a/../b"),
        "is not a normalised relative name",
        0,
        "run.metrics[0].key",
    ),
    (
        "unknown status",
        mutate("run.status", "DONE"),
        "must be one of FAILED, FINISHED",
        0,
        "run.status",
    ),
    (
        "timestamp before 1970",
        mutate("run.start_time", T0.replace(year=1969)),
        "is outside 1970-01-01",
        0,
        "run.start_time",
    ),
    (
        "duplicate param",
        mutate("run.params", [{"key": "lr", "value": "0.1"}, {"key": "lr", "value": "0.2"}]),
        "duplicate key 'lr'",
        0,
        "run.params[1].key",
    ),
    (
        "logged model name",
        mutate(
            "run.logged_models",
            [
                {
                    "model_id": "m-1",
                    "name": "../model",
                    "model_type": None,
                    "status": "READY",
                    "status_message": None,
                    "creation_time": T0,
                    "step": 0,
                    "tags": [],
                    "params": [],
                }
            ],
        ),
        "cannot contain '/'",
        0,
        "run.logged_models[0].name",
    ),
    (
        "run name mismatch",
        mutate("run.tags.0", {"key": "mlflow.runName", "value": "other"}),
        "differs from its mlflow.runName tag",
        0,
        "run.run_name",
    ),
]


def _ident(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["kind"], row["key"], (row["chunk"] or {}).get("index"))


def _write(
    workdir: Path, name: str, rows: Rows, content: str, target: int
) -> tuple[list[pa.RecordBatch], int]:
    """The rows as a Delta table read back, and where row ``target`` of ``rows`` now is.

    Delta keeps no row order (delta-rs reorders rows within a file), and neither does the
    importer rely on one; the expected row number is looked up after reading.
    """
    store = DeltaLakeTableStore(str(workdir / "warehouse"))
    table = ("hostile", name.replace(" ", "_").replace("'", ""))
    store.write(table, batches_of(rows), content=content)  # type: ignore[arg-type]
    read = store.read(table)
    idents = [_ident(r) for r in read.to_pylist()]
    wanted = _ident(rows[target])
    # the n-th copy of an identity in ``rows`` is the n-th one read back
    nth = [_ident(r) for r in rows[: target + 1]].count(wanted)
    found = [i for i, x in enumerate(idents) if x == wanted][nth - 1]
    return read.to_batches(max_chunksize=2), found


@pytest.mark.parametrize(
    ("case", "change", "message", "row", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_hostile_experiment_table_is_rejected(
    case: str,
    change: Callable[[Rows], Rows],
    message: str,
    row: int,
    field: str,
    recipient_store: Any,
    workdir: Path,
) -> None:
    batches, row = _write(workdir, case, change(good_runs()), "experiment", row)
    before = store_state(recipient_store)
    with pytest.raises(ShareDataError) as err:
        import_experiment(batches, "e", recipient_context(recipient_store))
    assert message in str(err.value), str(err.value)
    assert (err.value.row, err.value.field) == (row, field), str(err.value)
    assert str(err.value).startswith(f"row {row}, field {field!r}: ")
    assert store_state(recipient_store) == before


def test_good_table_imports(recipient_store: Any, workdir: Path) -> None:
    """The untouched table of the cases above imports: the cases fail for their one change."""
    batches, _ = _write(workdir, "good", good_runs(), "experiment", 0)
    result = import_experiment(batches, "e", recipient_context(recipient_store))
    assert result.summary["added"] == 2 and result.summary["files"] == 3


MODEL_CASES: list[tuple[str, Callable[[Rows], Rows], str, int, str]] = [
    (
        "reserved alias",
        mutate("model_version.aliases", ["latest"]),
        "reserved by MLflow",
        0,
        "model_version.aliases[0]",
    ),
    (
        "alias twice",
        _alias_twice,
        "alias 'champion' is also on the version in row",
        1,
        "model_version.aliases",
    ),
    (
        "unknown stage",
        mutate("model_version.stage", "Prod"),
        "must be one of Archived",
        0,
        "model_version.stage",
    ),
    ("version key", mutate("key", "7"), "differs from model_version.version 1", 0, "key"),
    (
        "prompt",
        mutate("model_version.tags", [{"key": "mlflow.prompt.is_prompt", "value": "true"}]),
        "prompts cannot be imported",
        0,
        "model_version.tags",
    ),
    ("run row in model table", lambda rows: [*rows, run_row()], "this row is a run row", 1, "kind"),
    (
        "model file outside",
        mutate("files", [file_entry("../MLmodel", BAD, owner="model")]),
        "has a '..' segment",
        0,
        "files[0].path",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "message", "row", "field"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES]
)
def test_hostile_model_table_is_rejected(
    case: str,
    change: Callable[[Rows], Rows],
    message: str,
    row: int,
    field: str,
    recipient_store: Any,
    workdir: Path,
) -> None:
    batches, row = _write(workdir, case, change([version_row()]), "model", row)
    before = store_state(recipient_store)
    with pytest.raises(ShareDataError) as err:
        import_model(batches, "m", recipient_context(recipient_store))
    assert message in str(err.value), str(err.value)
    assert (err.value.row, err.value.field) == (row, field), str(err.value)
    assert store_state(recipient_store) == before


def test_values_arrow_types_cannot_hold(recipient_store: Any) -> None:
    """Batches of another schema (a string metric value, a missing column) are rejected too."""
    ctx = recipient_context(recipient_store)
    before = store_state(recipient_store)
    row = run_row()
    row["run"]["metrics"][0]["value"] = "0.5"
    with pytest.raises(ShareDataError, match="metric value must be a number"):
        import_experiment([pa.Table.from_pylist([row]).to_batches()[0]], "e", ctx)
    lacking = pa.Table.from_pylist([run_row()]).drop_columns(["files"])
    with pytest.raises(ShareDataError, match=r"lacks column\(s\) files") as err:
        import_experiment(lacking.to_batches(), "e", ctx)
    assert err.value.field == "files"
    with pytest.raises(ShareDataError, match="experiment"):
        import_experiment(batches_of([run_row()]), "x" * 501, ctx)
    assert store_state(recipient_store) == before
