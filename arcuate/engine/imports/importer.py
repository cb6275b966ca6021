"""What an experiment or a model import works with, and the result it reports.

Pass 2 of an import matches the spooled records to what the target holds and writes through
a :class:`~arcuate.backends.protocols.ModelSink`; the counters it keeps become the
statement's summary here, in one shape for both imports and for the one spread over Spark
tasks (:mod:`arcuate.engine.distributed`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from arcuate.backends.protocols import ModelSink, Record
from arcuate.engine import provenance as prov
from arcuate.engine.imports.spool import Spool
from arcuate.engine.progress import Progress
from arcuate.engine.result import StatementResult


@dataclass
class ImportReport:
    """What pass 2 did: counters, and a row per shared run or version."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    #: runs OVERWRITE did not delete because a model version uses them
    kept: int = 0
    #: versions whose files another import owns and the share changed (left as they are)
    stale: int = 0
    files: int = 0
    bytes: int = 0
    metric_points: int = 0
    unlinked: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: scorers and evaluation datasets (format 2): their counters, when the table held any
    genai: dict[str, Any] = field(default_factory=dict)

    def count(self, action: str) -> None:
        """One more run or version that was ``action``."""
        setattr(self, action, getattr(self, action) + 1)

    def add_files(self, stats: Record) -> None:
        """The files and bytes a sink call wrote."""
        self.files += int(stats.get("files", 0))
        self.bytes += int(stats.get("bytes", 0))


class Importer:
    """An import's pass 2: the sink written to, the validated spool, the report."""

    def __init__(
        self,
        sink: ModelSink,
        spool: Spool,
        name: str,
        overwrite: bool,
        source: str,
        progress: Progress,
        origin: prov.Origin | None = None,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.name = name
        self.exact = overwrite
        self.source = source
        self.progress = progress
        self.report = ImportReport()
        self.origin = origin if origin is not None else prov.origin_of(source)


def statement(kind: str, name: str, overwrite: bool, source: str, flavor: str = "PANDAS") -> str:
    """The statement an import result names (``CREATE EXPERIMENT OVERWRITE e AS ...``)."""
    over = " OVERWRITE" if overwrite else ""
    src = f" AS {flavor} '{source}'" if source else ""
    return f"CREATE {kind}{over} {name}{src}"


def lease_notes(waited: float, helper_peak_rss: int) -> dict[str, Any]:
    """What a summary adds when the import waited for another one, or used a helper process."""
    out: dict[str, Any] = {}
    if waited >= 1:
        out["waited"] = round(waited, 1)
    if helper_peak_rss:
        out["helper_peak_rss"] = helper_peak_rss
    return out


def experiment_result(
    report: ImportReport,
    name: str,
    *,
    started: float,
    shared_bytes: int,
    statement: str,
    notes: dict[str, Any],
) -> StatementResult:
    """The result of an experiment import: its counters, then ``notes`` (waited, a helper's
    memory, Spark partitions); its rows map each source run to the run here."""
    summary: dict[str, Any] = {
        "experiment": name,
        "runs": len([r for r in report.rows if r["action"] != "kept"]),
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "kept": report.kept,
        "files": report.files,
        "bytes": report.bytes,
        "metric_points": report.metric_points,
        "shared_bytes": shared_bytes,
        "seconds": round(time.monotonic() - started, 3),
    }
    if report.unlinked:
        summary["unlinked"] = report.unlinked
    summary.update(report.genai)
    summary.update(notes)
    return StatementResult(
        statement=statement, action="import_experiment", summary=summary, rows=report.rows
    )


def model_result(
    report: ImportReport, name: str, *, started: float, statement: str, notes: dict[str, Any]
) -> StatementResult:
    """The result of a model import: its counters, ``notes``, and the numbers that changed
    (``version_map``); its rows map each source version to the version here."""
    summary: dict[str, Any] = {
        "model": name,
        "versions": len(report.rows),
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "files": report.files,
        "bytes": report.bytes,
        "seconds": round(time.monotonic() - started, 3),
    }
    if report.stale:
        summary["stale"] = report.stale
    summary.update(notes)
    moved = {
        r["source_version"]: r["version"]
        for r in report.rows
        if r["source_version"] != r["version"]
    }
    if moved:
        summary["version_map"] = moved
    return StatementResult(
        statement=statement, action="import_model", summary=summary, rows=report.rows
    )
