"""MLflow traces: reading an experiment's traces for export, re-creating them with ids kept.

Reading is ``TracingClient.search_traces(include_spans=True)``; ``Trace.to_dict()`` is a
complete, JSON-safe row (research notes, issue 14, §2.1). Writing follows the one order that
keeps every value and id (§2.2): ``log_spans`` first, then ``start_trace(TraceInfo)`` (its
values win over what ``log_spans`` derived), then ``create_assessment`` one by one, overridden
ones before the ones that override them, skipping ids the trace already holds (a re-import
changes nothing). Links to runs (metadata ``mlflow.sourceRun``) and logged models
(``mlflow.modelId``) are mapped to the recipient's ids; a link to something not imported is
dropped rather than left pointing at a provider id.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
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
    from mlflow.entities import Assessment, Span, TraceInfo, TraceLocation

    info_dict = copy.deepcopy(trace.info)
    _mapped(info_dict, runs, models)
    info_dict["trace_location"] = TraceLocation.from_experiment_id(experiment_id).to_dict()
    assessments = [Assessment.from_dictionary(a) for a in info_dict.pop("assessments", None) or []]
    info = TraceInfo.from_dict({**info_dict, "assessments": []})
    client = _client(tracking_uri)
    with mlflow_errors(f"importing trace {trace.trace_id} (row {trace.row})"):
        if new is not False:
            client.log_spans(experiment_id, [Span.from_dict(s) for s in trace.spans])
            client.start_trace(info)  # with no assessment
        held: set[str] = set()  # new=True: the trace was not here, so it holds none yet
        if new is not True:
            held = {a.assessment_id for a in client.get_trace_info(trace.trace_id).assessments}
        added = 0
        for a in sorted(assessments, key=lambda a: a.overrides is not None):
            if a.assessment_id not in held:
                client.store.create_assessment(a)
                added += 1
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
