"""The bulk SQL read of runs gives exactly what the public API gives, down to the packed rows."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from arcuate.backends.mlflow.source import MlflowSource
from arcuate.format.files import FileRef
from arcuate.format.records import ColumnarList, run_rows, to_batches
from arcuate.format.schema import METRIC, SCHEMA
from tests.export.export_helpers import CHUNK, EXPERIMENT, Tricky

WHEN = datetime(2024, 5, 1, tzinfo=UTC)


def plain(value: Any) -> Any:
    """Comparable form: datetimes as epoch ms (tz objects differ by origin), NaN as text."""
    if isinstance(value, datetime):
        return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | ColumnarList):
        return [plain(v) for v in value]
    return value


def packed(source: MlflowSource, experiment: dict[str, Any]) -> tuple[list[Any], pa.Table]:
    runs = list(source.iter_runs(experiment["experiment_id"]))
    rows = [
        row
        for run in runs
        for row in run_rows(
            experiment, run, source.iter_run_files(run), chunk_bytes=CHUNK, exported_at=WHEN
        )
    ]
    table = pa.Table.from_batches(list(to_batches(rows)), schema=SCHEMA)
    return runs, table


def test_bulk_path_records_and_rows_equal_the_public_api(tricky: Tricky) -> None:
    uri = tricky.store.tracking_uri
    bulk, api = MlflowSource(uri, uri), MlflowSource(uri, uri, bulk=False)
    experiment = api.get_experiment(EXPERIMENT)
    fast_runs, fast = packed(bulk, experiment)
    slow_runs, slow = packed(api, experiment)

    assert any(isinstance(r["metrics"], ColumnarList) for r in fast_runs), "bulk path not taken"
    # the public API's points are Arrow columns too (dicts only where a logged model shares
    # them): the records are compared below, the packed rows after
    assert [r["run_id"] for r in fast_runs] == [r["run_id"] for r in slow_runs]
    assert len(fast_runs) >= 3
    for got, want in zip(fast_runs, slow_runs, strict=True):
        assert plain(got) == plain(want), got["run_id"]
    fast.validate(full=True)
    assert fast.num_rows == slow.num_rows
    assert repr(fast.to_pylist()) == repr(slow.to_pylist())  # repr: NaN != NaN


def test_filtered_iteration_takes_the_public_api_path(tricky: Tricky) -> None:
    uri = tricky.store.tracking_uri
    source = MlflowSource(uri, uri)
    experiment = source.get_experiment(EXPERIMENT)
    everything = list(source.iter_runs(experiment["experiment_id"]))
    wanted = everything[0]["run_id"]
    found = list(
        source.iter_runs(experiment["experiment_id"], filter=f"attributes.run_id = '{wanted}'")
    )
    assert [r["run_id"] for r in found] == [wanted]
    assert plain(found[0]) == plain(everything[0])


def test_columnar_metrics_and_lone_chunks_pack_like_plain_rows() -> None:
    points = [
        {
            "key": "loss",
            "value": v,
            "step": i,
            "timestamp": WHEN + timedelta(milliseconds=i),
            "model_id": None,
            "dataset_name": None,
            "dataset_digest": None,
        }
        for i, v in enumerate([0.5, math.nan, -math.inf])
    ]
    exp = {"experiment_id": "1", "name": "e", "lifecycle_stage": "active", "tags": []}
    big = bytes(range(256)) * 20

    def rows(columnar: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for n, metrics in enumerate([points, [], points[:1]]):
            held: Any = ColumnarList(pa.array(metrics, type=METRIC)) if columnar else metrics
            if columnar and n == 2:
                held = metrics  # a plain list among columnar ones
            run = {"run_id": f"r{n}", "params": [], "tags": [], "metrics": held}
            files = [FileRef("artifacts", "big.bin", len(big), lambda: io.BytesIO(big))]
            out.extend(run_rows(exp, run, files, chunk_bytes=1000, exported_at=WHEN))
        return out

    want = pa.Table.from_pylist(rows(False), schema=SCHEMA)
    for max_chunk_bytes in (1, 10_000):  # each chunk alone (not copied), or several together
        batches = list(to_batches(rows(True), max_chunk_bytes=max_chunk_bytes))
        for batch in batches:
            batch.validate(full=True)
            assert batch.schema.equals(SCHEMA)
        got = pa.Table.from_batches(batches, schema=SCHEMA)
        assert repr(got.to_pylist()) == repr(want.to_pylist())
    lone = list(to_batches(rows(True), max_chunk_bytes=1))
    assert all(b.num_rows == 1 for b in lone if b.column("kind")[0].as_py() == "chunk")
    columnar = ColumnarList(pa.array(points, type=METRIC))
    assert len(columnar) == 3 and plain(columnar[-1]) == plain(points[-1])
    assert plain(list(columnar[1:])) == plain(points[1:])


def mlflow_listing(root: str) -> list[str]:
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    repo = LocalArtifactRepository(root)
    found, pending = [], [None]
    while pending:
        for info in repo.list_artifacts(pending.pop()):
            (pending if info.is_dir else found).append(info.path)
    return sorted(found)


def test_local_listing_matches_mlflows_and_refuses_escaping_links(tmp_path: Path) -> None:
    import pytest
    from mlflow.exceptions import MlflowException

    from arcuate.backends.mlflow.source import OutsideLinkError, _list_local

    root = tmp_path / "artifacts"
    (root / "model" / "data" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    for rel in ["a.txt", "model/MLmodel", "model/data/w.bin", "model/data/deep/x y.json"]:
        (root / rel).write_bytes(rel.encode())
    (root / "model" / ".artifact.uploading.tmp").write_bytes(b"partial")
    (root / "link.txt").symlink_to(root / "a.txt")
    (root / "linked_dir").symlink_to(root / "model" / "data")
    listed = _list_local(str(root))
    assert [p for p, _ in listed] == mlflow_listing(str(root))
    assert "linked_dir/deep/x y.json" in [p for p, _ in listed]

    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key").write_bytes(b"no")
    (root / "escape").symlink_to(outside)
    with pytest.raises(MlflowException) as theirs:
        mlflow_listing(str(root))
    with pytest.raises(OutsideLinkError) as ours:
        _list_local(str(root))
    assert (ours.value.path, ours.value.kind) == ("escape", "directory")
    assert "outside the artifact directory" in theirs.value.message
