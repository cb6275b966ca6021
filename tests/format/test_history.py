"""A metric history as columns: the spool's form of a validated history, and the rows the bulk
path makes of it without a Python object per point.

The content hash is defined on the JSON text of the history as dicts, so the columns' text
must be that text character for character; the bulk path's rows must be those MLflow keeps
(duplicates once, the latest point per key)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from typing import Any

import pytest

from arcuate.backends.mlflow.metric_rows import metric_block
from arcuate.backends.mlflow.points import sanitize
from arcuate.format.history import MetricColumns

TEXTS = [None, "k", 'quo"te', "back\\slash", "é/ü", "\x7f\x01\n\t", "😀", "m1", "m2"]
VALUES = [0.5, -2.5, 1e-300, 1e16, 1e-5, 123.0, -0.0, 0.0, 5e-324, 1.7976931348623157e308,
          float("nan"), float("inf"), float("-inf")]  # fmt: skip


def _points(rng: random.Random, n: int, *, plain: bool) -> list[dict[str, Any]]:
    """Points with few keys, steps and times, so duplicates and ties are common."""
    return [
        {
            "key": rng.choice(["loss", "acc", "tab\tkey", "ünï"]),
            "value": rng.choice([*VALUES, rng.random()]),
            "step": rng.choice([0, 1, -3, 2**62, rng.randint(-(2**63), 2**63 - 1)]),
            "timestamp": rng.choice([0, 1, 1_700_000_000_000, rng.randint(0, 2**40)]),
            "model_id": None if plain else rng.choice(TEXTS),
            "dataset_name": None if plain else rng.choice(TEXTS),
            "dataset_digest": None if plain else rng.choice(TEXTS),
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", range(40))
def test_the_columns_text_is_the_dicts_json_text(seed: int) -> None:
    rng = random.Random(seed)
    points = _points(rng, rng.randint(0, 60), plain=seed % 2 == 0)
    expected = json.dumps(points, sort_keys=True, separators=(",", ":"), allow_nan=True)
    assert MetricColumns.of(points).json_text() == expected


def test_other_types_get_no_text() -> None:
    """A value that is not a float (an int, a bool) or a step that is a bool is not what a
    validated history holds: the caller encodes the dicts instead."""
    point = _points(random.Random(1), 1, plain=True)[0]
    for field, value in (("value", 1), ("value", True), ("step", True), ("key", 3)):
        assert MetricColumns.of([{**point, field: value}]).json_text() is None


def test_the_columns_read_back_as_the_points() -> None:
    points = _points(random.Random(2), 50, plain=False) + _points(random.Random(3), 5, plain=True)
    doc = json.loads(json.dumps(MetricColumns.of(points).to_json(), allow_nan=True))
    back = MetricColumns.from_json(doc).points()
    assert json.dumps(back, allow_nan=True) == json.dumps(points, sort_keys=True, allow_nan=True)
    plain = MetricColumns.of(_points(random.Random(4), 3, plain=True)).to_json()
    assert plain["model_id"] is None and plain["dataset_digest"] is None  # a null per column
    with pytest.raises(ValueError, match="metric column step"):
        MetricColumns.from_json({**plain, "step": [1]})
    with pytest.raises(ValueError, match="without keys"):
        MetricColumns.from_json({"value": []})


def _reference(points: list[dict[str, Any]], run_id: str) -> tuple[list[Any], dict[str, Any]]:
    """The metric rows and latest rows as MLflow's store makes them, point by point."""
    seen: set[tuple[Any, ...]] = set()
    rows, latest = [], {}
    for m in points:
        is_nan, value = sanitize(m["value"])
        ident = (m["key"], m["timestamp"], m["step"], value, is_nan)
        if ident in seen:
            continue
        seen.add(ident)
        rows.append((m["key"], value, m["timestamp"], m["step"], is_nan, run_id))
        best = latest.get(m["key"])
        if best is None or (m["step"], m["timestamp"], value) > (
            best["step"],
            best["timestamp"],
            best["value"],
        ):
            latest[m["key"]] = {
                "key": m["key"],
                "value": value,
                "timestamp": m["timestamp"],
                "step": m["step"],
                "is_nan": is_nan,
                "run_uuid": run_id,
            }
    return rows, latest


def _same_rows(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a == b and [type(x) for x in a] == [type(x) for x in b]
        assert math.copysign(1, a[1]) == math.copysign(1, b[1])  # -0.0 kept as it came


@pytest.mark.parametrize("seed", range(40))
def test_the_block_holds_the_rows_mlflow_keeps(seed: int) -> None:
    rng = random.Random(seed)
    points = _points(rng, rng.randint(0, 80), plain=True)
    if points and seed % 3 == 0:
        points += [dict(p) for p in rng.sample(points, min(5, len(points)))]  # duplicates
    block, latest = metric_block(MetricColumns.of(points), "r" * 32)
    rows, expected_latest = _reference(points, "r" * 32)
    _same_rows(block.tuples(), rows)
    assert json.dumps(latest) == json.dumps(list(expected_latest.values()))
    # COPY's text reads back as the same rows
    text = block.copy_text()
    assert text is not None
    lines = text.decode().split("\n")
    assert lines.pop() == ""
    unescape = {"\\t": "\t", "\\n": "\n", "\\r": "\r", "\\\\": "\\"}
    parsed = []
    for line in lines:
        key, value, ts, step, nan, run = line.split("\t")
        for code, char in unescape.items():
            key = key.replace(code, char)
        parsed.append((key, float(value), int(ts), int(step), nan == "t", run))
    _same_rows(parsed, rows)


def test_an_empty_history_has_no_rows() -> None:
    block, latest = metric_block(MetricColumns.of([]), "r" * 32)
    assert block.tuples() == [] and block.copy_text() == b"" and latest == []


def test_a_step_beyond_64_bits_is_refused() -> None:
    """Validated steps are 64-bit (``validate.integer``); an unvalidated one is not cut short."""
    point = _points(random.Random(5), 1, plain=True)[0]
    with pytest.raises(OverflowError):
        metric_block(MetricColumns.of([{**point, "step": 2**64}]), "r" * 32)


def test_a_key_with_a_nul_has_no_copy_text() -> None:
    point = _points(random.Random(6), 1, plain=True)[0]
    block, _ = metric_block(MetricColumns.of([{**point, "key": "a\x00b"}]), "r" * 32)
    assert block.copy_text() is None


def test_the_rows_are_made_without_pandas() -> None:
    """pyarrow imports pandas (half a second) for ``pa.array`` and ``pa.scalar``: a tiny
    import command into PostgreSQL has no other use for it."""
    code = (
        "import sys\n"
        "from arcuate.backends.mlflow.metric_rows import metric_block\n"
        "from arcuate.format.history import MetricColumns\n"
        "p = {'key': 'k', 'value': 0.5, 'step': 1, 'timestamp': 2, 'model_id': None,\n"
        "     'dataset_name': None, 'dataset_digest': None}\n"
        "block, latest = metric_block(MetricColumns.of([p, {**p, 'step': 2}]), 'r')\n"
        "assert block.copy_text() == b'k\\t0.5\\t2\\t1\\tf\\tr\\nk\\t0.5\\t2\\t2\\tf\\tr\\n'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
