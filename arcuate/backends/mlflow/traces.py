"""MLflow traces: reading an experiment's traces for export, re-creating them with ids kept.

Reading is ``TracingClient.search_traces(include_spans=True)``; ``Trace.to_dict()`` is a
complete, JSON-safe row (research notes, issue 14, §2.1). Writing follows the one order that
keeps every value and id (§2.2): ``log_spans`` first, then ``start_trace(TraceInfo)`` (its
values win over what ``log_spans`` derived), then ``create_assessment`` one by one, overridden
ones before the ones that override them, skipping ids the trace already holds (a re-import
changes nothing). :func:`write_traces` does this a batch of traces at a time, with one
``log_spans`` call for all their spans. Links to runs (metadata ``mlflow.sourceRun``) and
logged models (``mlflow.modelId``) are mapped to the recipient's ids; a link to something not
imported is dropped rather than left pointing at a provider id.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from arcuate.backends.mlflow.connect import mlflow_errors

if TYPE_CHECKING:
    from arcuate.format.traces import SharedTrace

SOURCE_RUN: Final = "mlflow.sourceRun"
MODEL_ID: Final = "mlflow.modelId"
#: The store writes its own artifact location: a provider's path means nothing here.
ARTIFACT_LOCATION: Final = "mlflow.artifactLocation"
#: A page of traces (an `mlflow server` refused 1,000).
PAGE: Final = 100
#: Traces, and spans about, per batch of the import: one ``log_spans`` call each.
BATCH_TRACES: Final = 100
BATCH_SPANS: Final = 2_000


def _client(tracking_uri: str) -> Any:
    from mlflow.tracing.client import TracingClient

    return TracingClient(tracking_uri)


def read_traces(tracking_uri: str, experiment_id: str, experiment_key: str) -> list[dict[str, Any]]:
    """Every trace of ``experiment_id`` as values of the ``trace`` column (JSON texts)."""
    client, token = _client(tracking_uri), None
    out: list[dict[str, Any]] = []
    with mlflow_errors(f"reading the traces of experiment {experiment_id}"):
        while True:
            page = client.search_traces(
                locations=[experiment_id], max_results=PAGE, page_token=token, include_spans=True
            )
            out.extend(_row(t.to_dict(), experiment_key) for t in page)
            token = page.token
            if not token:
                return out


def _row(trace: Mapping[str, Any], experiment_key: str) -> dict[str, Any]:
    info = dict(trace["info"])
    info.pop("trace_location", None)  # the recipient's experiment, set on import
    return {
        "experiment_key": experiment_key,
        "trace_id": info["trace_id"],
        "info": json.dumps(info, ensure_ascii=False),
        "spans": json.dumps(trace["data"]["spans"], ensure_ascii=False),
    }


def _mapped(info: dict[str, Any], runs: Mapping[str, str], models: Mapping[str, str]) -> None:
    meta = info.setdefault("trace_metadata", {})
    for key, ids in ((SOURCE_RUN, runs), (MODEL_ID, models)):
        if meta.get(key) is not None:
            if meta[key] in ids:
                meta[key] = ids[meta[key]]
            else:
                del meta[key]
    (info.get("tags") or {}).pop(ARTIFACT_LOCATION, None)


def write_trace(
    tracking_uri: str,
    experiment_id: str,
    trace: SharedTrace,
    runs: Mapping[str, str],
    models: Mapping[str, str],
) -> int:
    """Re-create ``trace`` in ``experiment_id`` with its ids; the number of assessments added."""
    return write_traces(tracking_uri, experiment_id, [trace], runs, models)[0]


def write_traces(
    tracking_uri: str,
    experiment_id: str,
    traces: Sequence[SharedTrace],
    runs: Mapping[str, str],
    models: Mapping[str, str],
) -> list[int]:
    """Re-create ``traces`` in ``experiment_id`` with their ids, in batches; the number of
    assessments added to each (in order).

    The store takes the spans of many traces in one ``log_spans`` call (one session, grouped
    by trace id: sqlite and the OTLP endpoint of an `mlflow server` alike), so a batch pays one
    span write instead of one per trace. ``start_trace`` stays one call per trace: the store has
    no batch form. The assessments a batch already holds are read in one
    ``batch_get_trace_infos`` call, and only for traces that carry assessments."""
    client = _client(tracking_uri)
    added: list[int] = []
    for batch in _batches(traces):
        added.extend(_write_batch(client, experiment_id, batch, runs, models))
    return added


def _batches(traces: Sequence[SharedTrace]) -> Iterator[list[SharedTrace]]:
    """Runs of at most ``BATCH_TRACES`` traces and about ``BATCH_SPANS`` spans (a bigger trace
    goes alone), so one ``log_spans`` request stays bounded."""
    batch: list[SharedTrace] = []
    spans = 0
    for trace in traces:
        if batch and (len(batch) >= BATCH_TRACES or spans + len(trace.spans) > BATCH_SPANS):
            yield batch
            batch, spans = [], 0
        batch.append(trace)
        spans += len(trace.spans)
    if batch:
        yield batch


def _prepared(
    trace: SharedTrace, experiment_id: str, runs: Mapping[str, str], models: Mapping[str, str]
) -> tuple[Any, list[Any], list[Any]]:
    """The recipient's ``TraceInfo`` (links mapped, no assessments), spans and assessments
    (overridden ones before those that override them)."""
    from mlflow.entities import Assessment, Span, TraceInfo, TraceLocation

    info_dict = copy.deepcopy(trace.info)
    _mapped(info_dict, runs, models)
    info_dict["trace_location"] = TraceLocation.from_experiment_id(experiment_id).to_dict()
    assessments = [Assessment.from_dictionary(a) for a in info_dict.pop("assessments", None) or []]
    info = TraceInfo.from_dict({**info_dict, "assessments": []})
    spans = [Span.from_dict(s) for s in trace.spans]
    return info, spans, sorted(assessments, key=lambda a: a.overrides is not None)


def _what(batch: Sequence[SharedTrace]) -> str:
    first, last = batch[0], batch[-1]
    if len(batch) == 1:
        return f"importing trace {first.trace_id} (row {first.row})"
    return f"importing traces {first.trace_id}..{last.trace_id} (rows {first.row}-{last.row})"


def _write_batch(
    client: Any,
    experiment_id: str,
    batch: Sequence[SharedTrace],
    runs: Mapping[str, str],
    models: Mapping[str, str],
) -> list[int]:
    """Spans first, then each info (its values win), then the missing assessments."""
    prepared = [_prepared(t, experiment_id, runs, models) for t in batch]
    with mlflow_errors(_what(batch)):
        client.log_spans(experiment_id, [s for _, spans, _ in prepared for s in spans])
        for info, _, _ in prepared:
            client.start_trace(info)
        with_assessments = [info.trace_id for info, _, found in prepared if found]
        held = {
            a.assessment_id
            for info in (client.store.batch_get_trace_infos(with_assessments)
                         if with_assessments else [])
            for a in info.assessments
        }
        added = []
        for _, _, assessments in prepared:
            new = [a for a in assessments if a.assessment_id not in held]
            for a in new:
                client.store.create_assessment(a)
            added.append(len(new))
    return added


def trace_ids(tracking_uri: str, experiment_id: str) -> set[str]:
    """The ids of the traces ``experiment_id`` holds (to import only the new ones)."""
    client, token = _client(tracking_uri), None
    out: set[str] = set()
    with mlflow_errors(f"listing the traces of experiment {experiment_id}"):
        while True:
            page = client.search_traces(
                locations=[experiment_id], max_results=PAGE, page_token=token, include_spans=False
            )
            out.update(t.info.trace_id for t in page)
            token = page.token
            if not token:
                return out
