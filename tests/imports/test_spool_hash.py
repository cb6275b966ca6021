"""The content hash of a spooled record is what it was before the spool kept the run's text:
a re-import compares it with the hash stored on the runs an earlier import wrote."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from arcuate.engine.imports.spool import _hash_record, _run_text
from arcuate.format.history import MetricColumns
from arcuate.format.validate import CheckedMetrics, SharedFile, SharedRecord


def _reference(record: SharedRecord) -> str:
    """The hash as arcuate has always computed it: the whole body encoded at once."""
    body: dict[str, Any] = {"kind": record.kind, "key": record.key}
    if record.run is not None:
        body["run"] = record.run
    if record.model_version is not None:
        mv = dict(record.model_version)
        for skip in ("name", "model_description", "model_tags", "aliases", "creation_time",
                     "last_updated_time"):  # fmt: skip
            mv.pop(skip, None)
        body["model_version"] = mv
    body["files"] = sorted(
        ((f.owner, f.path, f.size, f.sha256) for f in record.files), key=lambda t: (t[0], t[1])
    )
    text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


RUN: dict[str, Any] = {
    "run_id": "r1",
    "name": "ünïcode \"quoted\" \\ tab\t",
    "params": {"z": "1", "a": "2", "é": "3"},
    "tags": {"mlflow.note": "x" * 300},
    "metrics": [
        {"key": "loss", "value": float("nan"), "step": 0, "timestamp": 1, "model_id": None,
         "dataset_name": None, "dataset_digest": None},
        {"key": "loss", "value": float("-inf"), "step": -3, "timestamp": 2, "model_id": "m-1",
         "dataset_name": "d", "dataset_digest": "abc"},
        {"key": "acc", "value": -0.0, "step": 2**62, "timestamp": 3, "model_id": None,
         "dataset_name": None, "dataset_digest": None},
    ],
    "inputs": [{"tags": {"b": "1", "a": "2"}, "nested": [{"y": 1, "x": [1.5, None]}]}],
    "logged_models": [{"model_id": "m-1", "metrics": []}],
    "start_time": 1_700_000_000_000,
    "end_time": None,
}  # fmt: skip
FILES = [
    SharedFile("artifacts", "b.txt", 3, "00", b"abc", 0),
    SharedFile("artifacts", "a.txt", 0, "11", b"", 0),
]


@pytest.mark.parametrize(
    "record",
    [
        SharedRecord(0, "run", "r1", {"name": "e"}, RUN, None, FILES),
        SharedRecord(1, "run", "r2", None, {}, None),
        SharedRecord(
            2,
            "model_version",
            "m/1",
            None,
            RUN,
            {"version": 1, "name": "m", "aliases": ["a"], "source": "runs:/r1/x"},
            FILES,
        ),
        SharedRecord(3, "model_version", "m/2", None, None, {"version": 2}),
        SharedRecord(
            4, "run", "r3", None, {**RUN, "metrics": CheckedMetrics(RUN["metrics"])}, None, FILES
        ),
        SharedRecord(5, "run", "r4", None, {**RUN, "metrics": CheckedMetrics()}, None),
    ],
    ids=["run", "empty-run", "version-with-run", "version", "checked-history", "no-history"],
)
def test_the_hash_is_unchanged_when_the_run_is_encoded_once(record: SharedRecord) -> None:
    expected = _reference(record)
    assert _hash_record(record) == expected
    if record.run is not None:
        assert _hash_record(record, _run_text(record.run)) == expected
    if record.run is not None and type(record.run.get("metrics")) is CheckedMetrics:
        # the spool makes the history's text from its columns: the same hash
        history = MetricColumns.of(record.run["metrics"])
        assert _hash_record(record, _run_text(record.run, history)) == expected
