"""The trace part of the issue 14 torture fixture, alone and small, round-tripped through
sqlite: the full size (200 traces, a trace of 1,000 spans) goes through
tests/genai/test_torture_all.py with every other kind."""

from __future__ import annotations

from typing import Any

from tests.traces.test_trace_round_trip import _import
from tests.traces.trace_helpers import build_traces, snapshot

TRACES = 12
WIDE = 100


def test_torture_traces_round_trip(mlflow_store: Any, recipient_store: Any) -> None:
    """Agent traces nested 6 deep (a 1 MiB attribute, events on inner spans, human and LLM
    feedback and expectations on traces and spans, run and model links) and a wide trace:
    deep-equal after import, ids kept."""
    built = build_traces(mlflow_store.tracking_uri, traces=TRACES, wide=WIDE)
    eid, mapping, added = _import(mlflow_store, recipient_store, built)
    assert added == 4
    source = snapshot(mlflow_store.tracking_uri, built["experiment_id"])
    copied = snapshot(recipient_store.tracking_uri, eid, mapping, mapping)
    assert len(copied) == TRACES + 1
    assert copied == source
    assert max(len(t["data"]["spans"]) for t in copied.values()) == WIDE
