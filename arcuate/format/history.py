"""A run's metric history as columns: how an import's spool keeps a validated history.

A history is most of a run's record (thousands of points of seven fields). As a list of
dicts it costs a JSON encoding for the content hash, another to spool it, a decoding to read
it back and a loop per point to write it. As columns it is read back at a tenth of the cost,
and the bulk path writes it without a Python object per point. The content hash is still
defined on the list of dicts' JSON text: :meth:`MetricColumns.json_text` gives that text,
character for character, without building the dicts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final, cast

from arcuate.format.validate import CheckedMetrics

#: The fields of a point, as :func:`arcuate.format.columns.batch_metrics` makes them.
FIELDS: Final = ("key", "value", "step", "timestamp", "model_id", "dataset_name", "dataset_digest")
#: A point's JSON text with its keys sorted and no spaces (``json.dumps(..., sort_keys=True,
#: separators=(",", ":"))``): dataset_digest, dataset_name, key, model_id, step, timestamp, value.
_POINT: Final = (
    '{{"dataset_digest":{},"dataset_name":{},"key":{},"model_id":{},'
    '"step":{},"timestamp":{},"value":{}}}'
)
#: ... when its model id and dataset are null.
_PLAIN_POINT: Final = (
    '{{"dataset_digest":null,"dataset_name":null,"key":{},"model_id":null,'
    '"step":{},"timestamp":{},"value":{}}}'
)
#: ``json.dumps``' spelling of the floats ``repr`` spells otherwise (``allow_nan=True``).
_NOT_FINITE: Final = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


@dataclass(frozen=True)
class MetricColumns:
    """A validated metric history, a point per index of seven equally long columns."""

    key: list[str]
    value: list[float]
    step: list[int]
    timestamp: list[int]
    model_id: list[str | None]
    dataset_name: list[str | None]
    dataset_digest: list[str | None]

    @classmethod
    def of(cls, points: Sequence[Mapping[str, Any]]) -> MetricColumns:
        """The columns of ``points`` (dicts with :data:`FIELDS`)."""
        return cls(*([p[name] for p in points] for name in FIELDS))

    def __len__(self) -> int:
        return len(self.key)

    def points(self) -> CheckedMetrics:
        """The history as dicts, their keys in order (as the spool's JSON text had them)."""
        return CheckedMetrics(
            {
                "dataset_digest": d,
                "dataset_name": n,
                "key": k,
                "model_id": m,
                "step": s,
                "timestamp": t,
                "value": v,
            }
            for k, v, s, t, m, n, d in zip(*self._columns(), strict=True)
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON document of the columns (a column of nulls only is one null)."""
        return {
            name: None if name in _NULLABLE and _all_null(col) else col
            for name, col in zip(FIELDS, self._columns(), strict=True)
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> MetricColumns:
        """The columns :meth:`to_json` wrote.

        Raises:
            ValueError: ``doc`` is not such a document (columns missing or of unequal length).
        """
        keys = doc.get("key")
        if not isinstance(keys, list):
            raise ValueError("metric columns without keys")
        n = len(keys)
        columns = []
        for name in FIELDS:
            col = doc.get(name)
            if col is None and name in _NULLABLE:
                col = [None] * n
            if not isinstance(col, list) or len(col) != n:
                raise ValueError(f"metric column {name} is missing or not {n} long")
            columns.append(col)
        return cls(*columns)

    def json_text(self) -> str | None:
        """``json.dumps(self.points(), sort_keys=True, separators=(",", ":"),
        allow_nan=True)``, the same characters, or None when a value is not of the types a
        validated history holds (str or None texts, int steps and times, float values)."""
        keys_or_none = cast(list[str | None], self.key)
        texts = [keys_or_none, self.model_id, self.dataset_name, self.dataset_digest]
        if not all(set(map(type, col)) <= _TEXT_TYPES for col in texts):
            return None
        if not (
            set(map(type, self.step)) <= _INT
            and set(map(type, self.timestamp)) <= _INT
            and set(map(type, self.value)) <= _FLOAT
        ):
            return None
        if not self.key:
            return "[]"
        values = list(map(float.__repr__, self.value))
        if not _NOT_FINITE.keys().isdisjoint(values):
            values = [_NOT_FINITE.get(v, v) for v in values]
        digests, names, keys, models = (
            _encoded(col)
            for col in (self.dataset_digest, self.dataset_name, keys_or_none, self.model_id)
        )
        body: str
        if digests is None and names is None and models is None:  # the usual history
            body = ",".join(map(_PLAIN_POINT.format, keys or (), self.step, self.timestamp, values))
        else:
            n = len(self)
            json_texts = [
                c if c is not None else ["null"] * n for c in (digests, names, keys, models)
            ]
            args: list[list[Any]] = [*json_texts, self.step, self.timestamp, values]
            body = ",".join(map(_POINT.format, *args))
        return f"[{body}]"

    def _columns(self) -> list[list[Any]]:
        return [getattr(self, f.name) for f in fields(self)]


#: What ``json.dumps`` uses for a str with ``ensure_ascii`` (its default).
_encode: Final = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_NULLABLE: Final = frozenset({"model_id", "dataset_name", "dataset_digest"})
_TEXT_TYPES: Final = frozenset({str, type(None)})
_INT: Final = frozenset({int})
_FLOAT: Final = frozenset({float})


def _encoded(column: list[str | None]) -> list[str] | None:
    """Each text of ``column`` as a JSON string (null for None), each distinct one encoded
    once; None when every one is None."""
    if _all_null(column):
        return None
    texts = {t: "null" if t is None else _encode(t) for t in set(column)}
    return list(map(texts.__getitem__, column))


def _all_null(column: list[Any]) -> bool:
    return column.count(None) == len(column)
