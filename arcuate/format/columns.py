"""Column-wise validation of the metric history in an Arrow batch of shared rows.

A run carries its full metric history, often thousands of points; checking them one Python
dict at a time is most of an import's validation time. Here the points of a whole batch are
checked as Arrow columns, with exactly the rules of :func:`arcuate.format.validate.parse_row`
(keys by MLflow's rules, a number for every value, an integer step, a timestamp between 1970
and 2500, a valid model id, dataset name and digest within MLflow's limits). Distinct keys,
model ids and dataset names are few, so each is checked once with the row validator's own
functions.

This is only a fast path: when anything in the batch does not pass (or does not have the
format's types), it answers None and the caller validates row by row, which names the row
and field of the first problem. It never accepts what the row validator would refuse.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arcuate.errors import ShareDataError
from arcuate.format import limits
from arcuate.format import validate as v
from arcuate.format.schema import METRIC
from arcuate.format.validate import CheckedMetrics

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_US: Final = (limits.MAX_TIMESTAMP - _EPOCH) // timedelta(microseconds=1)


def _all(values: pa.Array, check: Any) -> bool:
    """Each distinct non-null value passes ``check`` (a validator raising ShareDataError)."""
    for value in pc.unique(values.drop_null()).to_pylist():
        try:
            check(value)
        except ShareDataError:
            return False
    return True


def batch_metrics(batch: pa.RecordBatch) -> list[CheckedMetrics | None] | None:
    """The normalised metric points of each row's ``run`` (None for rows without a run).

    None when the batch has no ``run`` column of the format's type or a point does not pass;
    the caller then validates those rows one by one.
    """
    if "run" not in batch.schema.names:
        return None
    run = batch.column("run")
    if not isinstance(run.type, pa.StructType) or run.type.get_field_index("metrics") < 0:
        return None
    metrics = run.flatten()[run.type.get_field_index("metrics")]
    if not metrics.type.equals(pa.list_(METRIC)):
        return None
    points = metrics.flatten()
    if points.null_count:
        return None
    cols = dict(zip([f.name for f in METRIC], points.flatten(), strict=True))
    for name in ("key", "value", "step", "timestamp"):
        if cols[name].null_count:
            return None
    us = cols["timestamp"].cast(pa.int64())
    if len(us):
        low, high = pc.min_max(us).values()
        if low.as_py() < 0 or high.as_py() >= _MAX_US:
            return None
    if not (
        _all(cols["key"], lambda k: v.entity_key(k, None, "key"))
        and _all(cols["model_id"], lambda m: v.identifier(m, None, "model_id"))
        and _all(
            cols["dataset_name"],
            lambda d: v.text(d, None, "dataset_name", limit=limits.MAX_DATASET_NAME_LENGTH),
        )
        and _all(
            cols["dataset_digest"],
            lambda d: v.text(d, None, "dataset_digest", limit=limits.MAX_DATASET_DIGEST_LENGTH),
        )
    ):
        return None
    keys = _texts(cols["key"])
    values = _numbers(cols["value"])
    steps = _numbers(cols["step"])
    # integer division: exact, timestamps are >= 0; a typed scalar: an untyped Python one
    # makes pyarrow import pandas to infer its type
    millis = _numbers(pc.divide(us, pa.scalar(1000, pa.int64())))
    points_of = zip(
        keys,
        values,
        steps,
        millis,
        _texts(cols["model_id"]),
        _texts(cols["dataset_name"]),
        _texts(cols["dataset_digest"]),
        strict=True,
    )
    out: list[CheckedMetrics | None] = []
    lengths = metrics.value_lengths().to_pylist()
    runs_present = run.is_valid().to_pylist()
    for length, present in zip(lengths, runs_present, strict=True):
        n = length or 0
        if not present:
            out.append(None)
            continue
        out.append(
            CheckedMetrics(
                {
                    "key": key,
                    "value": value,
                    "step": step,
                    "timestamp": ms,
                    "model_id": model_id,
                    "dataset_name": name,
                    "dataset_digest": digest,
                }
                for key, value, step, ms, model_id, name, digest in islice(points_of, n)
            )
        )
    return out


def _numbers(values: pa.Array) -> list[Any]:
    """A column of fixed-width numbers as Python ints or floats, read from its data buffer
    (an Arrow ``to_pylist`` costs about forty times more for the same exact values, and
    ``to_numpy`` makes pyarrow import pandas)."""
    code = _BUFFER_CODES.get(values.type)
    if code is None or values.null_count:
        plain: list[Any] = values.to_pylist()
        return plain
    data: Any = memoryview(values.buffers()[1]).cast(code)  # type: ignore[call-overload]
    numbers: list[Any] = data[values.offset : values.offset + len(values)].tolist()
    return numbers


#: memoryview codes of the Arrow types :func:`_numbers` reads from their buffers.
_BUFFER_CODES: Final = {pa.float64(): "d", pa.int64(): "q", pa.int32(): "i"}


def _texts(values: pa.Array) -> list[str | None]:
    """A string column as Python values, each distinct string made once (a metric key
    repeats thousands of times in a run's history)."""
    if values.null_count == len(values):
        return [None] * len(values)
    encoded = pc.dictionary_encode(values)
    words: list[str | None] = [*encoded.dictionary.to_pylist(), None]  # index -1: a null
    indices = _numbers(encoded.indices.fill_null(pa.scalar(-1, encoded.indices.type)))
    return [words[i] for i in indices]


def check_list_bounds(data: pa.RecordBatch | pa.Table, first: int) -> None:
    """Every list of the format in ``data`` holds at most its bound (``LIST_LIMITS``), read
    from Arrow's list lengths before any row becomes Python values (a list item costs ~10x
    more as a Python value). Lists of types other than the format's are left to the row
    validator, which checks the same bounds.

    Raises:
        ShareDataError: the first list over its bound, by row (``first`` is the row number
            of ``data``'s first row) and field, e.g. ``run.logged_models[2].tags``.
    """
    for batch in data.to_batches() if isinstance(data, pa.Table) else [data]:
        found = [
            hit
            for path, limit in limits.LIST_LIMITS.items()
            if (hit := _over(batch, path, limit)) is not None
        ]
        if found:
            row, name, count, limit = min(found)
            raise v.too_many(count, limit, first + row, name)
        first += batch.num_rows


def _over(batch: pa.RecordBatch, path: str, limit: int) -> tuple[int, str, int, int] | None:
    """(row, field, length, limit) of the first list at ``path`` longer than ``limit``; None
    when there is none, or the batch does not have the format's types along ``path``."""
    column, *steps = path.split(".")
    if column not in batch.schema.names:
        return None
    values: pa.Array = batch.column(column)
    rows = np.arange(len(values))  # the row of each item at the current level
    positions: list[np.ndarray] = []  # ... and its position in each list it is inside
    try:
        for step in steps:
            name = step.removesuffix("[]")
            if not pa.types.is_struct(values.type) or values.type.get_field_index(name) < 0:
                return None
            values = pc.struct_field(values, [values.type.get_field_index(name)])
            if step.endswith("[]"):
                if not pa.types.is_list(values.type):
                    return None
                parents = _int_numpy(pc.list_parent_indices(values))
                first_of = np.searchsorted(parents, parents)  # parents never decrease
                positions = [p[parents] for p in positions] + [np.arange(len(parents)) - first_of]
                rows = rows[parents]
                values = pc.list_flatten(values)
        if not pa.types.is_list(values.type):
            return None
        lengths = pc.list_value_length(values)
        # the longest first, with no Python value made into an Arrow one: that would make
        # pyarrow import pandas (half a second) in a command that has no other use for it
        longest = pc.max(lengths).as_py()
        if longest is None or longest <= limit:
            return None
        lengths = pc.fill_null(lengths, 0)
        k = pc.index(pc.greater(lengths, limit), True).as_py()
    except pa.ArrowException:
        return None
    field = path.replace("[]", "[{}]").format(*(int(p[k]) for p in positions))
    return int(rows[k]), field, int(lengths[k].as_py()), limit


def _int_numpy(array: pa.Array) -> np.ndarray:
    """An integer array without nulls as a NumPy view of its buffer (``Array.to_numpy`` goes
    through pyarrow's pandas conversion, which imports pandas)."""
    width = array.type.bit_width // 8
    data = array.buffers()[1]
    return np.frombuffer(data, dtype=f"<i{width}", count=len(array), offset=array.offset * width)


def without_metrics(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with ``run.metrics`` left out (what :func:`batch_metrics` already holds)."""
    return _drop(batch, "run", "metrics")[0]


def chunk_data(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[memoryview | None]] | None:
    """The batch without ``chunk.data``, and each row's chunk bytes as a view of the Arrow
    buffer (no copy: a chunk is megabytes); None when the column is not of the format's type."""
    if "chunk" not in batch.schema.names:
        return None
    chunk = batch.column("chunk")
    if not isinstance(chunk.type, pa.StructType) or chunk.type.get_field_index("data") < 0:
        return None
    slim, data = _drop(batch, "chunk", "data")
    if not pa.types.is_binary(data.type):
        return None
    views: list[memoryview | None] = [
        memoryview(data[j].as_buffer()) if data[j].is_valid else None for j in range(len(data))
    ]
    return slim, views


def _drop(batch: pa.RecordBatch, column: str, name: str) -> tuple[pa.RecordBatch, pa.Array]:
    """The batch with field ``name`` of struct ``column`` left out, and that field's values."""
    struct = batch.column(column)
    index = struct.type.get_field_index(name)
    children = struct.flatten()
    fields = [struct.type.field(i) for i in range(struct.type.num_fields) if i != index]
    slim = pa.StructArray.from_arrays(
        [c for i, c in enumerate(children) if i != index], fields=fields, mask=struct.is_null()
    )
    position = batch.schema.get_field_index(column)
    return batch.set_column(position, pa.field(column, slim.type), slim), children[index]
