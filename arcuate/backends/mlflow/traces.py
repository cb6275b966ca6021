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


def read_traces(
    tracking_uri: str, experiment_id: str, experiment_key: str, filter_string: str | None = None
) -> list[dict[str, Any]]:
    """Every trace of ``experiment_id`` (those ``filter_string`` selects) as values of the
    ``trace`` column (JSON texts)."""
    return list(iter_traces(tracking_uri, experiment_id, experiment_key, filter_string))


def iter_traces(
    tracking_uri: str, experiment_id: str, experiment_key: str, filter_string: str | None = None
) -> Iterator[dict[str, Any]]:
    """:func:`read_traces` a page at a time (a page of 100 traces is held, not all).

    MLflow's span read returns complete traces only: one without a root span (still running,
    or its root never logged) is silently absent from it. Such a trace is yielded as
    ``{"trace_id": …, "incomplete": True}`` so the export can say it left it out.
    """
    client, token = _client(tracking_uri), None
    while True:
        with mlflow_errors(f"reading the traces of experiment {experiment_id}"):
            page = client.search_traces(
                locations=[experiment_id], filter_string=filter_string, max_results=PAGE,
                page_token=token, include_spans=False,
            )  # fmt: skip
            ids = [t.info.trace_id for t in page]
            full = {t.info.trace_id: t for t in client.batch_get_traces(ids)} if ids else {}
        for trace_id in ids:
            if trace_id in full:
                yield _row(full[trace_id].to_dict(), experiment_key)
            else:
                yield {"trace_id": trace_id, "incomplete": True}
        token = page.token
        if not token:
            return


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
    *,
    new: bool | None = None,
) -> int:
    """Re-create ``trace`` in ``experiment_id`` with its ids; the number of assessments added.
    ``new=True``: the trace is not here (nothing to compare); ``False``: it is, only the
    assessments it lacks are added; None: not known (written, then its assessments compared)."""
    return write_traces(tracking_uri, experiment_id, [trace], runs, models, new=[new])[0]


def write_traces(
    tracking_uri: str,
    experiment_id: str,
    traces: Sequence[SharedTrace],
    runs: Mapping[str, str],
    models: Mapping[str, str],
    *,
    new: Sequence[bool | None] | None = None,
) -> list[int]:
    """Re-create ``traces`` in ``experiment_id`` with their ids, in batches; the number of
    assessments added to each (in order). ``new`` says of each trace what :func:`write_trace`'s
    ``new`` says (None for all: not known).

    The store takes the spans of many traces in one ``log_spans`` call (one session, grouped
    by trace id: sqlite and the OTLP endpoint of an `mlflow server` alike), so a batch pays one
    span write instead of one per trace. ``start_trace`` stays one call per trace: the store has
    no batch form. The assessments a batch already holds are read in one
    ``batch_get_trace_infos`` call, and only for traces that carry assessments."""
    client = _client(tracking_uri)
    flags = list(new) if new is not None else [None] * len(traces)
    if len(flags) != len(traces):
        raise ValueError("write_traces: one new flag per trace")
    added: list[int] = []
    done = 0
    for batch in _batches(traces):
        known = flags[done : done + len(batch)]
        added.extend(_write_batch(client, experiment_id, batch, known, runs, models))
        done += len(batch)
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
    known: Sequence[bool | None],
    runs: Mapping[str, str],
    models: Mapping[str, str],
) -> list[int]:
    """Spans first, then each info (its values win), then the missing assessments. A trace
    known to be here (``known`` False) is not written again, only its missing assessments; one
    known to be new (True) holds none yet, so its assessments are not read back."""
    prepared = [_prepared(t, experiment_id, runs, models) for t in batch]
    write = [p for p, k in zip(prepared, known, strict=True) if k is not False]
    with mlflow_errors(_what(batch)):
        if write:
            client.log_spans(experiment_id, [s for _, spans, _ in write for s in spans])
        for info, _, _ in write:
            client.start_trace(info)
        with_assessments = [
            info.trace_id
            for (info, _, found), k in zip(prepared, known, strict=True)
            if found and k is not True
        ]
        held = {
            a.assessment_id
            for info in (
                client.store.batch_get_trace_infos(with_assessments) if with_assessments else []
            )
            for a in info.assessments
        }
        added = []
        for _, _, assessments in prepared:
            new = [a for a in assessments if a.assessment_id not in held]
            for a in new:
                client.store.create_assessment(a)
            added.append(len(new))
    return added


def trace_experiments(tracking_uri: str, trace_ids: list[str]) -> dict[str, str]:
    """Of ``trace_ids``, those the store holds (in any experiment): id -> experiment id."""
    from mlflow.exceptions import MlflowException

    client, out = _client(tracking_uri), {}
    for trace_id in trace_ids:
        try:
            info = client.get_trace_info(trace_id)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                raise
            continue
        out[trace_id] = str(info.experiment_id)
    return out


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
