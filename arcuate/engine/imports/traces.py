"""An experiment table's traces (format 2): spooled, planned, written after the runs.

Pass 1 (:class:`TraceSpool`, fed by :class:`~arcuate.engine.imports.spool.Spool`) checks
each ``trace`` row whole (:func:`arcuate.format.traces.parse_trace_row`: one tree of spans,
ids, bounds) and the rows together (each trace id and assessment id once), and keeps the
parsed traces on local disk. Before the import takes its lease, :func:`check_traces` refuses a
shared trace id that lives in another experiment here (MLflow's trace ids are unique in a
store). The traces are written once the runs and logged models exist (:func:`write_traces`),
so a trace's links are mapped to them.

A trace the experiment already holds is not written again: only the assessments it lacks are
added (so importing again changes nothing, and a new feedback arrives alone). Traces carry no
provenance mark, so OVERWRITE neither rewrites nor deletes a trace here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from arcuate.backends.protocols import RunSink, TraceSink
from arcuate.errors import BackendUnavailableError, ConflictError
from arcuate.format.traces import SharedTrace, Traces, parse_trace_row

#: Traces handed to the sink at a time (it writes their spans in one call).
_BATCH: Final = 100


class TraceSpool:
    """The validated traces of one table, on local disk (one JSON line each)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "traces.jsonl"
        self.traces = Traces()
        self._out: IO[str] | None = None

    @property
    def empty(self) -> bool:
        """Whether the table holds no trace."""
        return not self.traces.rows

    def add(self, row: Mapping[str, Any], i: int) -> None:
        """Validate row ``i`` (a ``trace`` row) and keep it.

        Raises:
            ShareDataError: names row ``i`` and the field.
        """
        trace = parse_trace_row(row, i)
        self.traces.add(trace)
        if self._out is None:
            self._out = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed in finish)
        line = [trace.row, trace.experiment_key, trace.trace_id, trace.info, trace.spans]
        self._out.write(json.dumps(line) + "\n")

    def finish(self) -> None:
        """The spool file closed (pass 1 is over)."""
        if self._out is not None:
            self._out.close()
            self._out = None

    def state(self) -> dict[str, Any]:
        """What a helper process hands back (the file stays in the spool directory)."""
        return {"rows": self.traces.rows}

    def restore(self, state: Mapping[str, Any]) -> None:
        """The index a helper process handed back (:meth:`state`)."""
        self.traces.rows = {str(k): int(v) for k, v in (state.get("rows") or {}).items()}

    def __iter__(self) -> Iterator[SharedTrace]:
        if self.empty:
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                row, key, trace_id, info, spans = json.loads(line)
                yield SharedTrace(row, key, trace_id, info, spans)


@dataclass
class TracePlan:
    """The trace ids the experiment here already holds."""

    here: set[str] = field(default_factory=set)


def check_traces(sink: object, experiment: str, traces: TraceSpool) -> TracePlan | None:
    """The traces experiment ``experiment`` (a name) holds here (None: the table holds no
    trace); refused when a shared trace id lives in another experiment here. It only reads:
    it runs before the import takes its lease or writes anything.

    Raises:
        ConflictError: a shared trace id belongs to another experiment of this store.
        BackendUnavailableError: the sink cannot write traces.
    """
    if traces.empty:
        return None
    if not isinstance(sink, TraceSink):
        raise BackendUnavailableError("the configured MLflow backend cannot import traces")
    state = sink.experiment_state(experiment) if isinstance(sink, RunSink) else None
    here = sink.trace_ids(str(state["experiment_id"])) if state else set()
    elsewhere = sink.trace_experiments([t for t in traces.traces.rows if t not in here])
    for trace_id, other in sorted(elsewhere.items()):
        raise ConflictError(
            f"trace {trace_id} (row {traces.traces.rows[trace_id]}) already exists here in "
            f"experiment {other}: MLflow trace ids are unique in a store",
            hint="import into that experiment, or delete the trace there first",
        )
    return TracePlan(here)


def traces_here(sink: object, experiment_id: str) -> TracePlan:
    """The traces experiment ``experiment_id`` holds now (inside the import's lease)."""
    return TracePlan(sink.trace_ids(experiment_id) if isinstance(sink, TraceSink) else set())


def write_traces(
    sink: object,
    experiment_id: str,
    traces: TraceSpool,
    plan: TracePlan,
    runs: Mapping[str, str],
    models: Mapping[str, str],
) -> dict[str, Any]:
    """Write the traces :func:`plan_traces` matched; the counters for the summary."""
    if traces.empty or not isinstance(sink, TraceSink):
        return {}
    added = assessments = 0
    batch: list[SharedTrace] = []

    def flush() -> None:
        nonlocal assessments
        new = [t.trace_id not in plan.here for t in batch]
        assessments += sum(sink.write_traces(experiment_id, batch, runs, models, new=new))
        batch.clear()

    for trace in traces:  # in batches: the store writes the spans of many traces at once
        batch.append(trace)
        added += trace.trace_id not in plan.here
        if len(batch) >= _BATCH:
            flush()
    if batch:
        flush()
    return {
        "traces": len(traces.traces.rows),
        "traces_added": added,
        "assessments_added": assessments,
    }
