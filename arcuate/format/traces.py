"""Validation of a shared MLflow trace (format 2, the ``trace`` column of an experiment table).

A trace row carries ``TraceInfo.to_dict()`` (assessments inside) and its spans'
``Span.to_dict()`` list as JSON text. :func:`parse_trace` checks the whole trace before the
import writes anything: the id rule that keeps ids over REST (``tr-`` + the spans' OTel trace id,
research NOTES §2.2), one tree of spans (one root, every parent present, no cycle, span ids
unique), bounded sizes, and assessments that name spans and assessments of this trace only.
Values MLflow's REST layer would truncate are refused rather than cut.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from arcuate.format import limits
from arcuate.format import validate as v

_TRACE_ID: Final = re.compile(r"^tr-[0-9a-f]{32}$")
_ASSESSMENT_ID: Final = re.compile(r"^a-[0-9a-f]{32}$")
STATES: Final = frozenset({"OK", "ERROR", "IN_PROGRESS", "STATE_UNSPECIFIED"})


@dataclass
class SharedTrace:
    """A validated trace: the parsed dicts, ready for ``TraceInfo.from_dict``/``Span.from_dict``."""

    row: int
    experiment_key: str | None
    trace_id: str
    info: dict[str, Any]
    spans: list[dict[str, Any]]



def _otel_id(value: Any, size: int, row: int, name: str) -> str:
    """An OTel id as MLflow writes it in span dicts (base64 of ``size`` bytes), as hex."""
    if not isinstance(value, str) or len(value) > 64:
        raise v._fail(f"must be a base64 id of {size} bytes, got {v._show(value)}", row, name)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise v._fail(f"must be a base64 id of {size} bytes, got {v._show(value)}", row, name)
    return raw.hex()


def _str_map(value: Any, row: int, name: str, *, key_limit: int, value_limit: int,
             count_limit: int = limits.MAX_TAGS) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise v._fail(f"must be an object, got {type(value).__name__}", row, name)
    if len(value) > count_limit:
        raise v.too_many(len(value), count_limit, row, name)
    for key, val in value.items():
        if not isinstance(key, str) or not isinstance(val, str):
            raise v._fail(f"key {v._show(key)} must map a string to a string", row, name)
        if len(key) > key_limit:
            raise v._fail(f"key {v._show(key)} is longer than {key_limit} characters", row, name)
        if len(val) > value_limit:
            raise v._fail(
                f"value of {v._show(key)} is longer than {value_limit} characters", row, name
            )
    return dict(value)


def _attributes(value: Any, row: int, name: str) -> None:
    attrs = _str_map(value, row, name, key_limit=limits.MAX_KEY_LENGTH,
                     value_limit=limits.MAX_SPAN_ATTRIBUTE_LENGTH,
                     count_limit=limits.MAX_SPAN_ATTRIBUTES)
    for key, raw in attrs.items():
        v.parse_json(raw, row, f"{name}[{key!r}]")  # every value is JSON text (NOTES §2.1)


_PRIMITIVE: Final = (str, int, float, bool)


def _event_attributes(value: Any, row: int, name: str) -> None:
    """OTel event attributes: plain values (strings, numbers, booleans, lists of them)."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise v._fail(f"must be an object, got {type(value).__name__}", row, name)
    if len(value) > limits.MAX_SPAN_ATTRIBUTES:
        raise v.too_many(len(value), limits.MAX_SPAN_ATTRIBUTES, row, name)
    for key, val in value.items():
        items = val if isinstance(val, list) else [val]
        if not isinstance(key, str) or not all(isinstance(x, _PRIMITIVE) for x in items):
            raise v._fail(f"{v._show(key)} must hold a string, number, boolean or a list of"
                          " them", row, name)
        if sum(len(x) for x in items if isinstance(x, str)) > limits.MAX_SPAN_ATTRIBUTE_LENGTH:
            raise v._fail(f"{v._show(key)} is longer than"
                          f" {limits.MAX_SPAN_ATTRIBUTE_LENGTH} characters", row, name)


def _span(span: Any, j: int, otel_hex: str, row: int) -> tuple[str, str | None]:
    where = f"trace.spans[{j}]"
    if not isinstance(span, Mapping):
        raise v._fail("must be an object", row, where)
    if _otel_id(span.get("trace_id"), 16, row, f"{where}.trace_id") != otel_hex:
        raise v._fail("belongs to another trace (its trace_id is not the trace's)", row,
                      f"{where}.trace_id")
    span_id = _otel_id(span.get("span_id"), 8, row, f"{where}.span_id")
    parent = span.get("parent_span_id")
    parent_hex = None if parent is None else _otel_id(parent, 8, row, f"{where}.parent_span_id")
    v.text(span.get("name"), row, f"{where}.name", limit=limits.MAX_KEY_LENGTH)
    for field in ("start_time_unix_nano", "end_time_unix_nano"):
        if span.get(field) is not None and not isinstance(span.get(field), int):
            raise v._fail("must be an integer", row, f"{where}.{field}")
    _attributes(span.get("attributes"), row, f"{where}.attributes")
    events = span.get("events") or []
    if not isinstance(events, list):
        raise v._fail("must be a list", row, f"{where}.events")
    if len(events) > limits.MAX_SPAN_EVENTS:
        raise v.too_many(len(events), limits.MAX_SPAN_EVENTS, row, f"{where}.events")
    for k, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise v._fail("must be an object", row, f"{where}.events[{k}]")
        _event_attributes(event.get("attributes"), row, f"{where}.events[{k}].attributes")
    return span_id, parent_hex


def _tree(spans: list[Any], otel_hex: str, row: int) -> None:
    """One root, span ids unique, every parent present, every span reachable from the root
    (so no cycle)."""
    parents: dict[str, str | None] = {}
    for j, span in enumerate(spans):
        span_id, parent = _span(span, j, otel_hex, row)
        if span_id in parents:
            raise v._fail(f"span id {span_id} appears twice", row, f"trace.spans[{j}].span_id")
        parents[span_id] = parent
    roots = [s for s, p in parents.items() if p is None]
    if len(roots) != 1:
        raise v._fail(f"must have exactly one root span, has {len(roots)}", row, "trace.spans")
    children: dict[str, list[str]] = {}
    for j, (span_id, parent) in enumerate(parents.items()):
        if parent is not None and parent not in parents:
            raise v._fail(f"parent span {parent} is not in the trace", row,
                          f"trace.spans[{j}].parent_span_id")
        if parent is not None:
            children.setdefault(parent, []).append(span_id)
    seen, todo = {roots[0]}, [roots[0]]
    while todo:
        for child in children.get(todo.pop(), []):
            seen.add(child)
            todo.append(child)
    if len(seen) != len(parents):
        raise v._fail("spans form a cycle (not reachable from the root)", row, "trace.spans")


def _assessments(value: Any, trace_id: str, span_ids: set[str], row: int) -> None:
    items = value or []
    if not isinstance(items, list):
        raise v._fail("must be a list", row, "trace.info.assessments")
    if len(items) > limits.MAX_TRACE_ASSESSMENTS:
        raise v.too_many(len(items), limits.MAX_TRACE_ASSESSMENTS, row, "trace.info.assessments")
    ids: set[str] = set()
    for j, a in enumerate(items):
        where = f"trace.info.assessments[{j}]"
        if not isinstance(a, Mapping):
            raise v._fail("must be an object", row, where)
        aid = a.get("assessment_id")
        if not isinstance(aid, str) or not _ASSESSMENT_ID.match(aid) or aid in ids:
            raise v._fail(f"id {v._show(aid)} is not a-<32 hex> or appears twice", row,
                          f"{where}.assessment_id")
        ids.add(aid)
        if a.get("trace_id") not in (None, trace_id):
            raise v._fail("names another trace", row, f"{where}.trace_id")
        if sum(k in a for k in ("feedback", "expectation")) != 1:
            raise v._fail("must hold exactly one of feedback or expectation", row, where)
        span = a.get("span_id")
        if span is not None and (not isinstance(span, str) or span not in span_ids):
            raise v._fail(f"span {v._show(span)} is not in the trace", row, f"{where}.span_id")
        _str_map(a.get("metadata"), row, f"{where}.metadata", key_limit=limits.MAX_KEY_LENGTH,
                 value_limit=limits.MAX_TAG_VALUE_LENGTH)
    for j, a in enumerate(items):
        if a.get("overrides") is not None and a.get("overrides") not in ids:
            raise v._fail(f"overrides {v._show(a.get('overrides'))}, not an assessment of this"
                          " trace", row, f"trace.info.assessments[{j}].overrides")


def _info(raw: str, trace_id: str, row: int) -> dict[str, Any]:
    info = v.parse_json(raw, row, "trace.info")
    if not isinstance(info, dict):
        raise v._fail("must be a JSON object", row, "trace.info")
    if info.get("trace_id") != trace_id:
        raise v._fail(f"trace_id {v._show(info.get('trace_id'))} is not the row's", row,
                      "trace.info.trace_id")
    v.choice(info.get("state"), row, "trace.info.state", STATES)
    for field in ("request_preview", "response_preview"):
        v.text(info.get(field), row, f"trace.info.{field}", limit=limits.MAX_TRACE_PREVIEW_LENGTH)
    v.text(info.get("client_request_id"), row, "trace.info.client_request_id",
           limit=limits.MAX_KEY_LENGTH)
    n = limits.MAX_TRACE_METADATA_LENGTH
    _str_map(info.get("trace_metadata"), row, "trace.info.trace_metadata", key_limit=n,
             value_limit=n)
    _str_map(info.get("tags"), row, "trace.info.tags", key_limit=limits.MAX_KEY_LENGTH,
             value_limit=limits.MAX_TRACE_TAG_VALUE_LENGTH)
    return info


def parse_trace(value: Any, row: int) -> SharedTrace:
    """The ``trace`` column of row ``row``, checked whole (see the module docstring)."""
    t = v._struct(value, row, "trace")
    trace_id = v.required_text(t.get("trace_id"), row, "trace.trace_id", limit=64)
    if not _TRACE_ID.match(trace_id):
        raise v._fail(f"{v._show(trace_id)} is not tr-<32 lowercase hex> (MLflow derives it"
                      " from the spans' OTel id)", row, "trace.trace_id")
    budget = limits.MAX_TRACE_JSON_LENGTH
    info_raw = v.required_text(t.get("info"), row, "trace.info", limit=budget)
    spans_raw = v.required_text(t.get("spans"), row, "trace.spans", limit=budget)
    info = _info(info_raw, trace_id, row)
    spans = v.parse_json(spans_raw, row, "trace.spans")
    if not isinstance(spans, list) or not spans:
        raise v._fail("must be a non-empty JSON list of spans", row, "trace.spans")
    if len(spans) > limits.MAX_TRACE_SPANS:
        raise v.too_many(len(spans), limits.MAX_TRACE_SPANS, row, "trace.spans")
    _tree(spans, trace_id[3:], row)
    _assessments(info.get("assessments"), trace_id,
                 {s["span_id"] for s in spans} | {_b64_hex(s["span_id"]) for s in spans}, row)
    key = v.text(t.get("experiment_key"), row, "trace.experiment_key", limit=limits.MAX_KEY_LENGTH)
    return SharedTrace(row=row, experiment_key=key, trace_id=trace_id, info=info, spans=spans)


def _b64_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def parse_trace_row(row: Mapping[str, Any], i: int) -> SharedTrace:
    """A whole ``trace`` row of an experiment table: its key is the trace id, it carries no
    other content column, and its ``trace`` passes :func:`parse_trace`."""
    for column in ("run", "model_version", "chunk", "prompt_version", "scorer", "eval_record"):
        if not v._is_missing(row.get(column)):
            raise v._fail(f"a trace row carries no {column}", i, column)
    if row.get("files"):
        raise v._fail("a trace row carries no files", i, "files")
    trace = parse_trace(row.get("trace"), i)
    if row.get("key") != trace.trace_id:
        raise v._fail(f"key {v._show(row.get('key'))} is not the trace id {trace.trace_id}", i,
                      "key")
    return trace


class Traces:
    """The checks across a table's trace rows: each trace id once, and each assessment id once
    (MLflow keys assessments by id across every trace: a repeat would fail halfway)."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self._assessments: dict[str, int] = {}

    def add(self, trace: SharedTrace) -> None:
        """Count ``trace`` in, refusing a repeated trace or assessment id (naming the row)."""
        first = self.rows.setdefault(trace.trace_id, trace.row)
        if first != trace.row:
            raise v._fail(f"trace {trace.trace_id} is also row {first}", trace.row,
                          "trace.trace_id")
        for j, a in enumerate(trace.info.get("assessments") or []):
            aid = a["assessment_id"]
            seen = self._assessments.setdefault(aid, trace.row)
            if seen != trace.row:
                raise v._fail(f"assessment {aid} is also in row {seen}", trace.row,
                              f"trace.info.assessments[{j}].assessment_id")


def root_count(spans: list[Any]) -> int:
    """How many spans have no parent (a well-formed trace has exactly one)."""
    return sum(1 for s in spans if isinstance(s, Mapping) and s.get("parent_span_id") is None)
