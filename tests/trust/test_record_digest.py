"""A record's signed digest (issue 16): every value the import writes changes it.

The digest hashes a run's metric history as fixed-width binary and its params and tags as
sorted length-prefixed UTF-8 (docs/trust.md); these cases flip one field of a validated record
at a time and check that the digest notices, and that equal records hash equally.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from arcuate.format import validate as v
from arcuate.format.manifest import shared_digest

AT = "2026-12-01T05:00:00+00:00"


def _point(key: str, value: float, step: int, timestamp: int) -> dict[str, Any]:
    return {"key": key, "value": value, "step": step, "timestamp": timestamp,
            "model_id": None, "dataset_name": None, "dataset_digest": None}  # fmt: skip


def _record() -> v.SharedRecord:
    """A validated run record, shaped as :func:`arcuate.format.validate.parse_row` returns it."""
    run = {
        "run_id": "a" * 32, "run_name": "r", "status": "FINISHED", "start_time": 1000,
        "end_time": 2000, "user_id": "u", "lifecycle_stage": "active", "parent_run_id": None,
        "params": {"alpha": "0.5", "depth": "3"},
        "tags": {"mlflow.runName": "r", "team": "x"},
        "metrics": [_point("loss", 1.5, 0, 1000), _point("loss", 1.25, 1, 1001),
                    _point("acc", 0.5, 0, 1000)],
        "inputs": [], "model_inputs": [], "logged_models": [],
    }  # fmt: skip
    experiment = {"experiment_id": "1", "name": "e", "lifecycle_stage": "active", "tags": {}}
    files = [v.SharedFile("run", "model/MLmodel", 3, "ab" * 32, None, 1)]
    return v.SharedRecord(0, "run", "a" * 32, experiment, run, None, files)


def _metric(field: str, value: Any) -> Callable[[v.SharedRecord], None]:
    def change(r: v.SharedRecord) -> None:
        assert r.run is not None
        r.run["metrics"][1][field] = value

    return change


def _run(field: str, value: Any) -> Callable[[v.SharedRecord], None]:
    def change(r: v.SharedRecord) -> None:
        assert r.run is not None
        r.run[field] = value

    return change


def _rename_series(r: v.SharedRecord) -> None:
    """A metric renamed in every point: the points' series indexes stay as they were."""
    assert r.run is not None
    r.run["metrics"][2]["key"] = "accuracy"


def _swap_points(r: v.SharedRecord) -> None:
    assert r.run is not None
    points = r.run["metrics"]
    points[0], points[1] = points[1], points[0]


def _param_to_tag(r: v.SharedRecord) -> None:
    """The same key and value, moved from params to tags: the frames keep them apart."""
    assert r.run is not None
    r.run["tags"]["alpha"] = r.run["params"].pop("alpha")


def _file_sha(r: v.SharedRecord) -> None:
    r.files[0] = v.SharedFile("run", "model/MLmodel", 3, "cd" * 32, None, 1)


CHANGES: dict[str, Callable[[v.SharedRecord], None]] = {
    "metric value": _metric("value", 1.2500000000000002),
    "metric value sign of zero": _metric("value", -0.0),
    "metric step": _metric("step", 2),
    "metric timestamp": _metric("timestamp", 1002),
    "metric key": _metric("key", "loss2"),
    "metric model_id": _metric("model_id", "m-1"),
    "metric dataset_name": _metric("dataset_name", "train"),
    "metric dataset_digest": _metric("dataset_digest", "d1"),
    "metric renamed in every point": _rename_series,
    "metric point order": _swap_points,
    "metric point removed": lambda r: r.run["metrics"].pop() if r.run else None,
    "param value": lambda r: r.run["params"].update(depth="4") if r.run else None,
    "param key": lambda r: r.run["params"].update(depth2=r.run["params"].pop("depth")) if r.run else None,
    "param added": lambda r: r.run["params"].update(extra="") if r.run else None,
    "tag value": lambda r: r.run["tags"].update(team="y") if r.run else None,
    "tag key": lambda r: r.run["tags"].update(team2=r.run["tags"].pop("team")) if r.run else None,
    "param moved to tags": _param_to_tag,
    "run status": _run("status", "FAILED"),
    "run end_time": _run("end_time", 2001),
    "experiment name": lambda r: r.experiment.update(name="e2") if r.experiment else None,
    "file sha256": _file_sha,
    "record key": lambda r: setattr(r, "key", "b" * 32),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_each_changed_field_changes_the_digest(name: str) -> None:
    record = _record()
    honest = shared_digest(record, AT)
    CHANGES[name](record)
    assert shared_digest(record, AT) != honest


def test_exported_at_is_digested() -> None:
    assert shared_digest(_record(), AT) != shared_digest(_record(), "2026-12-01T05:00:01+00:00")


def test_equal_records_hash_equally_whatever_the_map_order() -> None:
    record, again = _record(), copy.deepcopy(_record())
    assert again.run is not None
    again.run["params"] = dict(reversed(list(again.run["params"].items())))
    again.run["tags"] = dict(reversed(list(again.run["tags"].items())))
    assert shared_digest(again, AT) == shared_digest(record, AT)


def test_a_model_version_record_without_a_run() -> None:
    version = {"name": "m", "version": 1, "tags": {"a": "1"}}
    record = v.SharedRecord(0, "model_version", "m/1", None, None, version, [])
    honest = shared_digest(record, AT)
    version["tags"] = {"a": "2"}
    assert shared_digest(record, AT) != honest
