"""The column-wise metric check reads numbers from Arrow buffers: a batch sliced out of a
larger one (its arrays start at an offset) gives the points of its own rows."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from arcuate.format.columns import batch_metrics
from arcuate.format.schema import METRIC

UTC = dt.UTC


def _point(key: str, value: float, step: int, ms: int, model: str | None = None) -> dict:
    stamp = dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=ms)
    return {"key": key, "value": value, "step": step, "timestamp": stamp, "model_id": model,
            "dataset_name": None, "dataset_digest": None}  # fmt: skip


def test_a_sliced_batch_gives_its_own_rows_points() -> None:
    runs = [
        {"metrics": [_point("a", 1.5, 0, 10), _point("b", -0.0, 2**40, 11)]},
        {"metrics": [_point("a", float("inf"), -1, 12, "m-1")]},
        None,
        {"metrics": [_point("c", 2.25, 3, 1_700_000_000_123), _point("a", 3.0, 4, 14)]},
    ]
    column = pa.array(runs, pa.struct([("metrics", pa.list_(METRIC))]))
    batch = pa.RecordBatch.from_arrays([column], names=["run"])
    whole = batch_metrics(batch)
    assert whole is not None
    assert whole[3] == [
        {"key": "c", "value": 2.25, "step": 3, "timestamp": 1_700_000_000_123, "model_id": None,
         "dataset_name": None, "dataset_digest": None},
        {"key": "a", "value": 3.0, "step": 4, "timestamp": 14, "model_id": None,
         "dataset_name": None, "dataset_digest": None},
    ]  # fmt: skip
    assert whole[2] is None
    assert [type(p["step"]) for p in whole[0]] == [int, int]
    for start in range(1, 4):
        part = batch_metrics(batch.slice(start))
        assert part == whole[start:], start
