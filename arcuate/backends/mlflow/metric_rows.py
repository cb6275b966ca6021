"""A run's validated metric history, as columns, turned into the rows MLflow keeps of it
without a Python object per point: exact duplicates once, the latest point of each key, and
for PostgreSQL the rows' ``COPY`` text made by Arrow.

The rules are ``SqlAlchemyStore``'s, column-wise (:func:`~.points.sanitize` for one value): a
NaN stored as 0 with ``is_nan``, ±inf as ±1.7976931348623157e308, a point equal to an earlier
one in key, time, step and stored value dropped, and the latest point the greatest (step,
time, value), the first of equals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arcuate.backends.mlflow.points import MAX_FLOAT
from arcuate.format.history import MetricColumns

#: What COPY's text format escapes in a value.
COPY_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass(frozen=True)
class MetricBlock:
    """The distinct metric points of one run, in their shared order, as stored."""

    run_id: str
    #: the run's metric keys; ``codes`` holds each point's index in it
    keys: list[str]
    codes: np.ndarray
    value: np.ndarray
    timestamp: np.ndarray
    step: np.ndarray
    is_nan: np.ndarray

    def __len__(self) -> int:
        return len(self.codes)

    def tuples(self) -> list[tuple[Any, ...]]:
        """The rows as (key, value, timestamp, step, is_nan, run_uuid)."""
        return list(
            zip(
                map(self.keys.__getitem__, self.codes.tolist()),
                self.value.tolist(),
                self.timestamp.tolist(),
                self.step.tolist(),
                self.is_nan.tolist(),
                itertools.repeat(self.run_id, len(self)),
                strict=False,
            )
        )

    def copy_text(self) -> bytes | None:
        """The rows in COPY's text format (columns as :meth:`tuples`); a float in digits
        that read back as the same double. None when a key holds a NUL (COPY refuses it)."""
        if any("\x00" in k for k in self.keys):
            return None
        if not len(self):
            return b""
        escaped = _strings([k.translate(COPY_ESCAPES) for k in self.keys])
        lines = pc.binary_join_element_wise(
            pc.take(escaped, _numbers(self.codes)),
            pc.cast(_numbers(self.value), pa.string()),
            pc.cast(_numbers(self.timestamp), pa.string()),
            pc.cast(_numbers(self.step), pa.string()),
            pc.take(_strings(["f", "t"]), _numbers(self.is_nan.astype(np.int64))),
            _repeat(f"{self.run_id}\n", len(self)),
            _repeat("\t", len(self)),  # the separator
        )
        offsets = np.frombuffer(lines.buffers()[1], np.int32)
        start, end = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
        data: bytes = lines.buffers()[2].to_pybytes()
        return data[start:end]


def metric_block(history: MetricColumns, run_id: str) -> tuple[MetricBlock, list[dict[str, Any]]]:
    """(the run's metric rows, its latest-metric rows). Steps and times are validated 64-bit
    integers (:func:`arcuate.format.validate.integer`).

    Raises:
        OverflowError: a step or time beyond 64 bits (a history that was not validated).
    """
    n = len(history)
    value = np.array(history.value, dtype=np.float64)
    timestamp = np.array(history.timestamp, dtype=np.int64)
    step = np.array(history.step, dtype=np.int64)
    if not n:
        nothing = np.zeros(0, dtype=np.int64)
        return MetricBlock(run_id, [], nothing, value, timestamp, step, value > 0), []
    index: dict[str, int] = {}
    codes = np.array([index.setdefault(k, len(index)) for k in history.key], dtype=np.int64)
    keys = list(index)
    is_nan = np.isnan(value)
    stored = np.clip(np.where(is_nan, 0.0, value), -MAX_FLOAT, MAX_FLOAT)
    columns: list[np.ndarray] = [codes, timestamp, step, stored, is_nan]
    order = np.lexsort([np.arange(n), *reversed(columns)])
    same = np.ones(max(n - 1, 0), dtype=bool)
    for col in columns:
        ordered = col[order]
        same &= ordered[1:] == ordered[:-1]
    if same.any():  # an exact duplicate: the first of equals kept
        keep = np.ones(n, dtype=bool)
        keep[order[1:][same]] = False
        codes, timestamp, step, stored, is_nan = (col[keep] for col in columns)
    block = MetricBlock(run_id, keys, codes, stored, timestamp, step, is_nan)
    # the latest point of a key: the greatest (step, time, value), the first of equals
    order = np.lexsort([-np.arange(len(codes)), stored, timestamp, step, codes])
    last = order[np.flatnonzero(np.append(codes[order[1:]] != codes[order[:-1]], True))]
    latest = [
        {
            "key": keys[int(codes[j])],
            "value": float(stored[j]),
            "timestamp": int(timestamp[j]),
            "step": int(step[j]),
            "is_nan": bool(is_nan[j]),
            "run_uuid": run_id,
        }
        for j in last
    ]
    return block, latest


# Arrow arrays made from their buffers: ``pa.array`` of a list or an ndarray, and
# ``pa.scalar`` even of a given type, make pyarrow import pandas (half a second) in a command
# that has no other use for it.
def _numbers(values: np.ndarray) -> pa.Array:
    """An int64 or float64 ndarray as an Arrow array (its buffer shared)."""
    kind = pa.float64() if values.dtype == np.float64 else pa.int64()
    data = np.ascontiguousarray(values, dtype=values.dtype)
    return pa.Array.from_buffers(kind, len(data), [None, pa.py_buffer(data)])


def _strings(texts: list[str]) -> pa.Array:
    """Texts as an Arrow string array."""
    data = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    return pa.Array.from_buffers(pa.string(), len(data), buffers)


def _repeat(text: str, n: int) -> pa.Array:
    """``text`` ``n`` times, as an Arrow string array (in place of a scalar)."""
    return pc.take(_strings([text]), _numbers(np.zeros(n, dtype=np.int64)))
