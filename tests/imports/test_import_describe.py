"""The sharing path: frames to batches exactly, DESCRIBE without writing, hostile shares."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from arcuate.backends.deltalake.store import DeltaLakeTableStore
from arcuate.backends.sharing.catalog import LocalShareCatalog
from arcuate.backends.sharing.reader import DeltaSharingReader, frame_to_batches
from arcuate.engine.imports import describe_shared, import_experiment
from arcuate.errors import NotFoundError, ShareDataError
from tests.export.export_helpers import Tricky
from tests.imports.import_helpers import (
    Share,
    batches_of,
    file_entry,
    recipient_context,
    run_row,
    store_state,
    version_row,
)


def test_frame_to_batches_keeps_nan_bytes_and_nesting() -> None:
    row = run_row(
        metrics=[
            ("loss", float("nan"), 1, 1_700_000_000_000),
            ("loss", float("inf"), 2, 1_700_000_000_001),
        ],
        files=[file_entry("a.bin", b"\x00\xff\n")],
    )
    table = pa.Table.from_batches(batches_of([row, run_row("b" * 32)]))
    frame = table.to_pandas(date_as_object=True, split_blocks=False)  # as load_as_pandas does
    (back,) = list(frame_to_batches(frame, batch_rows=10))
    got = back.to_pylist()
    values = [m["value"] for m in got[0]["run"]["metrics"]]
    assert math.isnan(values[0]) and values[1] == math.inf
    assert got[0]["files"][0]["data"] == b"\x00\xff\n"
    want = table.to_pylist()
    assert got[1] == want[1]
    for row in (got[0], want[0]):
        row["run"].pop("metrics")
    assert got[0] == want[0]
    assert back.schema.names == table.schema.names


def test_frame_with_a_value_of_the_wrong_type_names_row_and_column() -> None:
    frame = pa.Table.from_batches(batches_of([run_row(), run_row("b" * 32)])).to_pandas()
    frame["format_version"] = frame["format_version"].astype(object)
    frame.loc[1, "format_version"] = "one"
    with pytest.raises(ShareDataError) as err:
        list(frame_to_batches(frame))
    assert (err.value.row, err.value.field) == (1, "format_version")


def test_describe_a_share_writes_nothing(
    provider: Tricky, share: Share, recipient_store: Any
) -> None:
    before = store_state(recipient_store)
    reader = DeltaSharingReader()
    exp = describe_shared(reader.batches(share.experiment), share.experiment)
    model = describe_shared(reader.batches(share.model), share.model)
    assert store_state(recipient_store) == before
    assert exp.summary["kind"] == "experiment" and exp.summary["runs"] == 3
    assert exp.summary["metric_points"] > 10 and exp.summary["files"] > 8
    assert exp.summary["valid"] is True
    assert "sklearn" in exp.summary["flavors"] and "python_function" in exp.summary["flavors"]
    assert "scikit-learn" in exp.summary["requirements"]
    assert model.summary["kind"] == "model" and model.summary["versions"] == 4
    v1 = next(r for r in model.rows if r["version"] == 1)
    assert "sklearn" in v1["flavors"] and "mlflow" in v1["requirements"]
    assert {r["version"] for r in model.rows} == {1, 2, 3, 5}
    assert reader.check(share.model)["content"] == "model"


def test_describe_reports_a_problem_instead_of_raising() -> None:
    bad = run_row()
    bad["files"].append(file_entry("../x", b"x"))
    result = describe_shared(batches_of([bad, version_row()]), "local")
    assert result.summary["valid"] is False
    assert "row 0, field 'files[1].path'" in result.summary["problem"]


def _shared(workdir: Path, share: Share, name: str, rows: list[dict[str, Any]]) -> str:
    """A table of ``rows`` added to the session's share; its coordinate."""
    store = DeltaLakeTableStore(str(workdir / "warehouse"))
    location = store.write(("hostile", name), batches_of(rows), content="experiment").location
    LocalShareCatalog(share.catalog).add_table("ml", "default", name, location)
    return f"{share.profile}#ml.default.{name}"


def test_hostile_share_over_the_protocol(share: Share, recipient_store: Any, workdir: Path) -> None:
    """A path traversal read through the server and the delta_sharing client: rejected."""
    bad = run_row()
    bad["files"].append(file_entry("../../outside.txt", b"evil"))
    coordinate = _shared(workdir, share, f"traversal_{workdir.name[-8:]}", [bad])
    before = store_state(recipient_store)
    with pytest.raises(ShareDataError, match=r"has a '\.\.' segment"):
        import_experiment(
            DeltaSharingReader().batches(coordinate),
            "e",
            recipient_context(recipient_store),
            source=coordinate,
        )
    assert store_state(recipient_store) == before
    assert not (workdir / "outside.txt").exists()


def test_not_shared_and_malformed_coordinates(share: Share) -> None:
    reader = DeltaSharingReader()
    with pytest.raises(NotFoundError, match="not a shared table coordinate"):
        reader.batches("no-fragment")
    with pytest.raises(NotFoundError):
        list(reader.batches(f"{share.profile}#ml.default.nope"))
