"""Export operators: an experiment's runs or a model's versions as a stream of record batches.

What the statement names is resolved eagerly, so a missing experiment, model, version or
alias (or a filter MLflow rejects) raises before any table is touched; the rows themselves
are produced lazily while the table store consumes the batches, so memory stays bounded and
a failure midway aborts the single commit (the previous table version stays intact).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from arcuate.backends.protocols import (
    ChunkedFile,
    FileRef,
    FilesAhead,
    GenAISource,
    ModelSource,
    PromptSource,
    Record,
    TraceSource,
)
from arcuate.engine.progress import Progress
from arcuate.errors import BackendUnavailableError, ShareDataError
from arcuate.format.records import (
    PackStats,
    Row,
    eval_record_row,
    prompt_row,
    run_rows,
    scorer_row,
    to_stream,
    trace_row,
    version_rows,
)
from arcuate.format.redaction import Policy, Report, Rule, resolve_key
from arcuate.format.redactor import Marks, Redactor, mark
from arcuate.format.traces import parse_trace, root_count

if TYPE_CHECKING:
    from arcuate.engine.context import Context
    from arcuate.plan.ops import ExportExperiment, ExportModel, ExportPrompt


@dataclass
class ExportStream:
    """Lazy record batches of one export, and what they held so far.

    The counters grow while ``batches`` is consumed; read them after the table write.
    """

    content: Literal["experiment", "model", "prompt"]
    #: record batches, and the large files whose chunk rows the table store cuts itself
    batches: Iterator[pa.RecordBatch | ChunkedFile] = field(default_factory=lambda: iter(()))
    runs: int = 0
    versions: int = 0
    files: int = 0
    bytes: int = 0
    scorers: int = 0
    eval_records: int = 0
    #: a line for each scorer version left out because it carries code
    skipped: list[str] = field(default_factory=list)
    traces: int = 0
    #: a line for each trace left out (no root span, or a value a recipient would refuse)
    skipped_traces: list[str] = field(default_factory=list)
    #: what REDACT covered so far, by rule (None: no REDACT clause)
    redaction: Report | None = None

    def summary(self) -> dict[str, Any]:
        """The counters, for a statement result."""
        out: dict[str, Any] = {"files": self.files, "bytes": self.bytes}
        if self.redaction is not None:
            out["redacted"] = self.redaction.total()
        if self.content == "experiment":
            genai: dict[str, Any] = {}
            if self.scorers or self.eval_records or self.skipped:  # INCLUDING found some
                genai.update(scorers=self.scorers, eval_records=self.eval_records)
            if self.skipped:
                genai["skipped_scorers"] = list(self.skipped)
            if self.traces or self.skipped_traces:
                genai["traces"] = self.traces
            if self.skipped_traces:
                genai["skipped_traces"] = list(self.skipped_traces)
            return {"runs": self.runs, **out, **genai}
        return {"versions": self.versions, **out}


def _show(progress: Progress, task: Any, stream: ExportStream) -> None:
    """The records, files and bytes exported so far, on the bar."""
    done = stream.runs if stream.content == "experiment" else stream.versions
    progress.advance(task, completed=done, detail=f"{stream.files} files, {_human(stream.bytes)}")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _now() -> datetime:
    return datetime.now(UTC)


def export_experiment(op: ExportExperiment, ctx: Context) -> ExportStream:
    """The runs of ``op.experiment`` (matching ``op.filter``) as a lazy stream of batches.

    Raises:
        NotFoundError: the experiment does not exist (before anything is written).
        BackendError: MLflow rejected the filter or failed (before anything is written).
    """
    redactor = _redactor(op.redact, ctx)
    source = ctx.model_source
    experiment = source.get_experiment(op.experiment)
    runs = source.iter_runs(experiment["experiment_id"], filter=op.filter)
    first = next(runs, None)  # the first page: a rejected filter fails here, not mid-write
    pending: Iterator[Record] = itertools.chain([first], runs) if first is not None else iter(())
    stream = ExportStream("experiment", redaction=redactor.report if redactor else None)
    hidden: set[str] = set()
    if redactor is not None:
        experiment, hidden = redactor.experiment(experiment)
    chunk_bytes = ctx.settings.chunk_bytes
    progress = Progress(ctx.progress, detail=True)
    genai = source if isinstance(source, GenAISource) else None
    eid = str(experiment["experiment_id"])
    if (op.datasets or op.scorers) and genai is None:
        raise BackendUnavailableError(
            "the configured MLflow backend cannot export evaluation datasets or scorers"
        )
    # read (and classify) the scorers before any write: a failure aborts nothing half-done
    scorers, stream.skipped = genai.get_scorers(eid) if genai and op.scorers else ([], [])
    records = genai.iter_eval_records(eid) if genai and op.datasets else iter(())
    traces = _traces(op, source, eid)

    def rows() -> Iterator[Row | ChunkedFile]:
        exported_at = _now()
        stats = PackStats()
        for scorer in scorers:
            stream.scorers += 1
            yield scorer_row(scorer, exported_at)
        for record in records:
            stream.eval_records += 1
            yield eval_record_row(record, exported_at)
        for trace in _shareable(traces, stream):
            yield trace_row(trace, exported_at)
        with (
            progress.running(f"experiment {op.experiment}") as task,
            contextlib.closing(runs_with_files(source, pending)) as pairs,
        ):
            for run, files in pairs:
                if redactor is not None:  # before the row is built: nothing covered is packed
                    marks = Marks(experiment_tags=set(hidden))
                    run = redactor.run(run, marks)
                    files = redactor.files(files, run, marks)
                for row in run_rows(
                    experiment,
                    run,
                    files,
                    chunk_bytes=chunk_bytes,
                    exported_at=exported_at,
                    stats=stats,
                    defer=True,
                ):
                    stream.files, stream.bytes = stats.files, stats.bytes
                    _show(progress, task, stream)
                    yield row
                    del row  # a chunk's bytes must not outlive its batch
                stream.runs += 1
                _show(progress, task, stream)
            progress.complete(task)

    stream.batches = to_stream(rows())
    return stream


def runs_with_files(
    source: ModelSource, runs: Iterator[Record]
) -> Generator[tuple[Record, Iterator[FileRef]]]:
    """Each run with its files; read ahead of the run being written where the source can
    (:class:`~arcuate.backends.protocols.FilesAhead`). Close it when done."""
    if isinstance(source, FilesAhead):
        yield from source.iter_runs_files(runs)
        return
    for run in runs:
        yield run, source.iter_run_files(run)


def _traces(op: ExportExperiment, source: object, experiment_id: str) -> Iterator[Record]:
    """The experiment's traces (``INCLUDING TRACES``); the first page is read now, so a
    filter MLflow rejects fails before anything is written."""
    if not op.traces:
        return iter(())
    if not isinstance(source, TraceSource):
        raise BackendUnavailableError("the configured MLflow backend cannot export traces")
    traces = source.iter_traces(experiment_id, op.trace_filter)
    first = next(traces, None)
    return itertools.chain([first], traces) if first is not None else iter(())


def _shareable(traces: Iterator[Record], stream: ExportStream) -> Iterator[Record]:
    """The traces a recipient can import; a line in ``stream.skipped_traces`` for each other.

    A trace without exactly one root span (one still running, or one whose root span was never
    logged: MLflow's async logging drops spans when its queue is full) is left out rather than
    shared as a tree no importer can rebuild; so is a trace with a value the importer refuses
    (the same checks: :func:`arcuate.format.traces.parse_trace`).
    """
    for trace in traces:
        if trace.get("incomplete"):
            why = "MLflow holds it incomplete (no root span: still running, or its root was lost)"
            stream.skipped_traces.append(f"trace {trace.get('trace_id')} left out: {why}")
            continue
        try:
            parsed = parse_trace(trace, stream.traces)
        except ShareDataError as exc:
            spans = _spans(trace)
            roots = root_count(spans) if spans is not None else 1
            why = str(exc) if roots == 1 else f"it has {roots} root spans, not one"
            if roots == 0:
                why = f"it has no root span ({len(spans or [])} spans; still running, or lost)"
            stream.skipped_traces.append(f"trace {trace.get('trace_id')} left out: {why}")
            continue
        stream.traces += 1
        yield {**trace, "trace_id": parsed.trace_id}


def _spans(trace: Record) -> list[Record] | None:
    try:
        spans = json.loads(trace.get("spans") or "null")
    except ValueError:
        return None
    return spans if isinstance(spans, list) else None


def export_model(op: ExportModel, ctx: Context) -> ExportStream:
    """The versions of ``op.model`` (all, or those of ``op.versions``/``op.aliases``), lazily.

    Raises:
        NotFoundError: the model, a named version or an alias does not exist (before writing).
    """
    redactor = _redactor(op.redact, ctx)
    source = ctx.model_source
    versions = source.get_model_versions(op.model, versions=op.versions, aliases=op.aliases)
    stream = ExportStream("model", redaction=redactor.report if redactor else None)
    chunk_bytes = ctx.settings.chunk_bytes
    progress = Progress(ctx.progress, detail=True)

    def rows() -> Iterator[Row | ChunkedFile]:
        exported_at = _now()
        stats = PackStats()
        runs: dict[str, Any] = {}
        with progress.running(f"model {op.model}", len(versions)) as task:
            for version in versions:
                run_id = version.get("run_id")
                if run_id and run_id not in runs:
                    runs[run_id] = _origin(source.get_run(run_id), redactor)
                origin, run_marks = runs[run_id] if run_id else (None, None)
                files = source.iter_version_files(version)
                if redactor is not None:  # before the row is built: nothing covered is packed
                    marks = Marks().merge(run_marks)
                    version = redactor.version(version, marks)
                    files = redactor.files(files, version, marks)
                for row in version_rows(
                    version,
                    origin,
                    files,
                    chunk_bytes=chunk_bytes,
                    exported_at=exported_at,
                    stats=stats,
                    defer=True,
                ):
                    stream.files, stream.bytes = stats.files, stats.bytes
                    _show(progress, task, stream)
                    yield row
                    del row
                stream.versions += 1
                _show(progress, task, stream)

    stream.batches = to_stream(rows())
    return stream


def _redactor(rules: tuple[Rule, ...], ctx: Context) -> Redactor | None:
    """The export's redaction, its key from the settings; None without a REDACT clause.

    Raises:
        ConfigurationError: ``ARC320``, a HASH rule and no key (before anything is read).
    """
    if not rules:
        return None
    return Redactor(Policy(rules, key=resolve_key(ctx.settings.redaction_key)))


def _origin(
    found: tuple[Record, Record] | None, redactor: Redactor | None
) -> tuple[tuple[Record, Record] | None, Marks | None]:
    """A version's source (experiment, run), redacted and marked, with what was redacted."""
    if found is None or redactor is None:
        return found, None
    experiment, hidden = redactor.experiment(found[0])
    marks = Marks(experiment_tags=hidden)
    run = redactor.run(found[1], marks)
    mark(run, marks)
    return (experiment, run), marks


def export_prompt(op: ExportPrompt, ctx: Context) -> ExportStream:
    """The versions of prompt ``op.prompt`` (all, or those of ``op.versions``/``op.aliases``),
    one row each. A prompt is small (no files): its versions are read before anything is
    written, with ``get_prompt_version`` (never ``load_prompt``, which writes).

    Raises:
        NotFoundError: the prompt, a named version or an alias does not exist (before writing).
    """
    source = ctx.model_source
    if not isinstance(source, PromptSource):
        raise BackendUnavailableError("the configured MLflow backend cannot export prompts")
    versions = source.get_prompt_versions(op.prompt, versions=op.versions, aliases=op.aliases)
    stream = ExportStream("prompt")
    exported_at = _now()

    def rows() -> Iterator[Row | ChunkedFile]:
        for version in versions:
            stream.versions += 1
            yield prompt_row(version, exported_at)

    stream.batches = to_stream(rows())
    return stream
