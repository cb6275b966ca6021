"""DESCRIBE of a shared table: what it holds, read once, nothing written anywhere.

Every row is validated as an import would; problems are reported, not raised. For each model
the flavors and Python requirements are read from ``MLmodel`` / ``requirements.txt`` as text
(YAML with the safe loader), and every file's serialization format is detected from its bytes
(:mod:`arcuate.format.serialization`: parsed, never unpickled): nothing is loaded or executed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import pyarrow as pa

from arcuate.backends.protocols import Record
from arcuate.engine import signing
from arcuate.engine.result import StatementResult
from arcuate.errors import ShareDataError
from arcuate.format import validate as v
from arcuate.format.columns import check_list_bounds
from arcuate.format.genai import EvalRecords, Scorers, parse_eval_record_row, parse_scorer_row
from arcuate.format.manifest import (
    MODEL_SIGNATURE_KIND,
    SIGNATURE_KIND,
    UNSIGNED_KINDS,
    VALIDATED_KINDS,
    Carried,
    add_digest,
    carried,
    model_signatures,
    record_resource,
    row_digest,
    shared_digest,
)
from arcuate.format.prompts import SharedPrompt, check_prompt_rows, parse_prompt_row
from arcuate.format.redactor import marker_of
from arcuate.format.schema import (
    EVAL_RECORD,
    MODEL_VERSION,
    PROMPT_VERSION,
    RUN,
    SCORER,
    TRACE,
    Content,
)
from arcuate.format.serialization import PICKLE_FORMATS, classify
from arcuate.format.traces import Traces, parse_trace_row

#: An MLmodel or requirements file larger than this is not read.
_MAX_MLMODEL_BYTES = 1 << 20


def _mlmodel_info(text: str) -> tuple[list[str], dict[str, str]]:
    """Flavors and their versions from an MLmodel file, read as data (YAML, safe loader)."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):  # the loader recurses: deep nesting ends it
        return [], {}
    if not isinstance(doc, dict) or not isinstance(doc.get("flavors"), dict):
        return [], {}
    flavors = [str(k) for k in doc["flavors"]]
    versions: dict[str, str] = {}
    for name, conf in doc["flavors"].items():
        if isinstance(conf, dict):
            for key, val in conf.items():
                if str(key).endswith("_version") and isinstance(val, (str, int, float)):
                    versions[f"{name}.{key}"] = str(val)
    return flavors, versions


def _requirements(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(line)
    return out


def _model_files(item: v.SharedRecord) -> tuple[list[str], list[str]]:
    """The flavors and requirements a record's files name."""
    flavors: list[str] = []
    reqs: list[str] = []
    for f in item.files:
        if f.data is None or f.size > _MAX_MLMODEL_BYTES:
            continue
        base = f.path.rsplit("/", 1)[-1]
        if base == "MLmodel":
            fl, _versions = _mlmodel_info(f.data.decode("utf-8", "replace"))
            flavors += [x for x in fl if x not in flavors]
        elif base == "requirements.txt":
            text = f.data.decode("utf-8", "replace")
            reqs += [r for r in _requirements(text) if r not in reqs]
    return flavors, reqs


#: Tag keys and file names (lower case) that carry a licence or a model card.
_LICENCE_TAGS: Final = ("license", "licence")
_LICENCE_FILES: Final = frozenset({"license", "license.txt", "license.md", "licence", "copying"})
_CARD_FILES: Final = frozenset({"readme.md", "readme.txt", "model_card.md", "modelcard.md"})
#: How much of a licence or model card a row shows.
_SHOWN_CHARS: Final = 120
#: How much of a redaction marker a row shows (the imported run keeps it whole).
_SHOWN_MARKER: Final = 300


def _first_line(text: str) -> str:
    """The first non-empty line, without Markdown heading marks or control characters
    (shared text reaches a terminal)."""
    for line in text.splitlines():
        line = "".join(ch for ch in line if ch.isprintable()).strip().lstrip("#").strip()
        if line:
            return line[:_SHOWN_CHARS]
    return ""


def _licence_and_card(item: v.SharedRecord) -> tuple[str, str]:
    """A record's licence (a ``license`` tag of the version, its model or its run, else a
    LICENSE file) and model card (a README or model card file), each as one short line."""
    mv = item.model_version or {}
    licence = ""
    for tags in (mv.get("tags"), mv.get("model_tags"), (item.run or {}).get("tags")):
        for key, value in (tags or {}).items():
            if not licence and str(key).lower() in _LICENCE_TAGS:
                licence = _first_line(str(value))
    card = ""
    for f in item.files:
        base = f.path.rsplit("/", 1)[-1].lower()
        if f.data is None or f.size > _MAX_MLMODEL_BYTES:
            continue
        text = f.data.decode("utf-8", "replace")
        if not licence and base in _LICENCE_FILES:
            licence = f"{f.owner}/{f.path}: {_first_line(text)}"
        if not card and base in _CARD_FILES:
            card = f"{f.owner}/{f.path}: {_first_line(text)}"
    return licence, card


def _formats(item: v.SharedRecord) -> dict[str, str]:
    """The serialization format of each inline file (chunked ones come with their chunks)."""
    return {
        f"{f.owner}/{f.path}": classify(f.path, f.data).format
        for f in item.files
        if f.data is not None
    }


def _format_text(formats: dict[str, str]) -> str:
    """What a row shows: the files that are not plain data, with their formats."""
    return "; ".join(f"{path}: {fmt}" for path, fmt in sorted(formats.items()) if fmt != "data")


def _detail(item: v.SharedRecord, points: int, flavors: list[str], reqs: list[str]) -> Record:
    """The row DESCRIBE shows for one run or version."""
    detail: dict[str, Any] = {"kind": item.kind, "key": item.key}
    if item.kind == RUN and item.run is not None:
        detail.update(
            name=item.run["run_name"],
            status=item.run["status"],
            params=len(item.run["params"]),
            metric_points=points,
            logged_models=len(item.run["logged_models"]),
        )
    elif item.model_version is not None:
        mv = item.model_version
        detail.update(
            name=mv["name"],
            version=mv["version"],
            stage=mv["stage"],
            aliases=",".join(mv["aliases"]),
            source=mv["source"],
        )
    detail.update(
        files=len(item.files),
        bytes=sum(f.size for f in item.files),
        flavors=",".join(flavors),
        requirements="; ".join(reqs),
        serialization="",
    )
    detail["license"], detail["model_card"] = _licence_and_card(item)
    detail["redacted"] = _redacted(item)
    return detail


def _redacted(item: v.SharedRecord) -> str:
    """What the provider redacted before export (the ``arcuate.redacted`` tag of the version
    or its run: keys and counts, never values), shortened for a row; empty: nothing said."""
    mv = item.model_version or {}
    marker = marker_of(mv.get("tags")) or marker_of((item.run or {}).get("tags"))
    if not marker:
        return ""
    return marker if len(marker) <= _SHOWN_MARKER else marker[: _SHOWN_MARKER - 1] + "…"


@dataclass
class _Description:
    """What DESCRIBE has read so far."""

    problem: str | None = None
    content: Content | None = None
    rows: list[Record] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("rows", "records", "chunks", "metric_points", "files", "bytes", "redacted"), 0
        )
    )
    flavors: set[str] = field(default_factory=set)
    requirements: set[str] = field(default_factory=set)
    #: each record's files and their formats (its row shows them), by record key
    formats: dict[str, dict[str, str]] = field(default_factory=dict)
    by_key: dict[str, Record] = field(default_factory=dict)
    prompts: list[SharedPrompt] = field(default_factory=list)
    #: an experiment table's scorer versions and evaluation records (format 2)
    scorers: Scorers = field(default_factory=Scorers)
    records: EvalRecords = field(default_factory=EvalRecords)
    #: a signed table's signature, each record's digest and the exported_at values seen
    signature: Carried | None = None
    digests: dict[str, str] = field(default_factory=dict)
    exported_at: set[str] = field(default_factory=set)
    #: an experiment table's traces (format 2): ids checked once each; spans and assessments
    traces: Traces = field(default_factory=Traces)
    spans: int = 0
    assessments: int = 0
    #: a record named twice (the signature cannot cover both rows)
    twice: str | None = None

    def read(self, batch: pa.RecordBatch) -> None:
        """One batch: each row validated, counted and described."""
        first = self.counts["rows"]
        try:
            v.check_columns(batch.schema.names, first)
            check_list_bounds(batch, first)
            pylist = batch.to_pylist()
        except (ShareDataError, pa.ArrowException, ValueError, OverflowError) as exc:
            self.problem = self.problem or str(exc)
            pylist = []
        for j, raw in enumerate(pylist):
            self._row(raw, first + j)
        self.counts["rows"] += batch.num_rows

    def _row(self, raw: Record, i: int) -> None:
        kind = raw.get("kind")
        if kind == SIGNATURE_KIND:
            try:
                self.signature = carried(raw, i, self.signature)
            except ShareDataError as exc:
                self.problem = self.problem or str(exc)
            return
        if kind not in VALIDATED_KINDS | UNSIGNED_KINDS:  # prompts, scorers, records, traces
            self._digest(raw, i, row_digest(raw))
        if kind == MODEL_SIGNATURE_KIND:  # model.sig files: checked, written by an import
            try:
                model_signatures(raw, i)
            except ShareDataError as exc:
                self.problem = self.problem or str(exc)
            return
        if self.content is None and kind in (RUN, MODEL_VERSION, PROMPT_VERSION):
            self.content = (
                "experiment" if kind == RUN else "model" if kind == MODEL_VERSION else "prompt"
            )
        if self.content == "prompt":
            self._prompt_row(raw, i)
            return
        if kind in (SCORER, EVAL_RECORD) and self.content in (None, "experiment"):
            self.content = "experiment"
            self._genai_row(raw, i)
            return
        if kind == TRACE and self.content in (None, "experiment"):
            self.content = "experiment"
            self._trace_row(raw, i)
            return
        try:
            item = v.parse_row(raw, i, self.content or "experiment")
        except ShareDataError as exc:
            self.problem = self.problem or str(exc)
            return
        if isinstance(item, v.SharedChunk):
            self.counts["chunks"] += 1
            if item.index == 0:  # the file's first bytes: a prefix of a longer file
                found = classify(item.path, item.data, size=len(item.data) + 1)
                self.formats.setdefault(item.key, {})[f"{item.owner}/{item.path}"] = found.format
            return
        at = raw.get("exported_at")
        at = at.isoformat() if isinstance(at, datetime) else str(at)
        self._digest(raw, i, shared_digest(item, at))
        points = len((item.run or {}).get("metrics") or ())
        self.counts["records"] += 1
        self.counts["files"] += len(item.files)
        self.counts["bytes"] += sum(f.size for f in item.files)
        self.counts["metric_points"] += points
        flavors, reqs = _model_files(item)
        self.flavors.update(flavors)
        self.requirements.update(reqs)
        self.formats.setdefault(item.key, {}).update(_formats(item))
        row = _detail(item, points, flavors, reqs)
        self.counts["redacted"] += bool(row["redacted"])
        self.by_key[item.key] = row
        self.rows.append(row)

    def _digest(self, raw: Record, i: int, digest: str) -> None:
        """Keep row ``i``'s signed digest and export time; a record named twice is a problem."""
        try:
            add_digest(self.digests, record_resource(raw), digest, i)
        except ShareDataError as exc:
            self.problem = self.problem or str(exc)
            self.twice = self.twice or str(exc)
        at = raw.get("exported_at")
        self.exported_at.add(at.isoformat() if isinstance(at, datetime) else str(at))

    def serialization(self) -> dict[str, Any]:
        """Each row's non-data files with their formats; the table's count per format."""
        totals: dict[str, int] = {}
        pickles = 0
        for key, formats in self.formats.items():
            if key in self.by_key:
                self.by_key[key]["serialization"] = _format_text(formats)
            for fmt in formats.values():
                totals[fmt] = totals.get(fmt, 0) + 1
                pickles += fmt in PICKLE_FORMATS
        return {
            "serialization": ", ".join(f"{k}: {n}" for k, n in sorted(totals.items())),
            "pickle_files": pickles,
        }

    def _prompt_row(self, raw: Record, i: int) -> None:
        """A prompt version: its number, template kind and size, aliases and tags."""
        try:
            item = parse_prompt_row(raw, i)
        except ShareDataError as exc:
            self.problem = self.problem or str(exc)
            return
        self.counts["records"] += 1
        self.prompts.append(item)
        template = item.template if isinstance(item.template, str) else str(item.template)
        self.rows.append(
            {
                "kind": PROMPT_VERSION,
                "key": str(item.version),
                "name": item.name,
                "version": item.version,
                "template_type": "text" if isinstance(item.template, str) else "chat",
                "template_chars": len(template),
                "aliases": ",".join(item.aliases),
                "tags": len(item.tags),
                "response_format": item.response_format is not None,
                "model_config": item.model_config is not None,
            }
        )

    def _genai_row(self, raw: Record, i: int) -> None:
        """A scorer version (a row of its own) or an eval record (counted per dataset)."""
        try:
            if raw.get("kind") == SCORER:
                scorer = parse_scorer_row(raw, i)
                self.scorers.add(scorer)
                self.rows.append(
                    {"kind": SCORER, "key": f"{scorer.name}/{scorer.version}",
                     "name": scorer.name, "version": scorer.version, "scorer_kind": scorer.kind}
                )  # fmt: skip
            else:
                self.records.add(parse_eval_record_row(raw, i))
        except ShareDataError as exc:
            self.problem = self.problem or str(exc)

    def _trace_row(self, raw: Record, i: int) -> None:
        """A trace: counted (with its spans and assessments), not listed row by row."""
        try:
            trace = parse_trace_row(raw, i)
            self.traces.add(trace)
        except ShareDataError as exc:
            self.problem = self.problem or str(exc)
            return
        self.spans += len(trace.spans)
        self.assessments += len(trace.info.get("assessments") or [])

    def _genai_summary(self) -> dict[str, Any]:
        """The scorer, dataset and trace counts, and a row per dataset, when the table has any."""
        traces: dict[str, Any] = {}
        if self.traces.rows:
            traces = {"traces": len(self.traces.rows), "spans": self.spans,
                      "assessments": self.assessments}  # fmt: skip
        if not self.scorers.items and not self.records.datasets:
            return traces
        try:
            self.scorers.finish()
        except ShareDataError as exc:
            self.problem = self.problem or str(exc)
        for src, ds in self.records.datasets.items():
            self.rows.append(
                {"kind": "eval_dataset", "key": src, "name": ds.name, "records": ds.count}
            )
        return {
            "scorers": len(self.scorers.items),
            "datasets": len(self.records.datasets),
            "eval_records": sum(d.count for d in self.records.datasets.values()),
            **traces,
        }

    def signed(self, source: str, key: signing.Pin | None) -> dict[str, Any]:
        """Who signed the table (the key fingerprint its bundle names) and whether the
        signature verifies with the pinned key."""
        sig = self.signature
        if sig is None:
            return {"signed_by": "unsigned", "signature": "none"}
        out = {"signed_by": sig.signer()}
        if key is None:
            return out | {"signature": "not checked (name the key with VERIFIED BY)"}
        try:
            signing.verify(sig, self.digests, self.exported_at, key, source)
            if self.twice:
                raise ShareDataError(self.twice)
        except ShareDataError as exc:
            return out | {"signature": f"does not verify: {exc}"}
        return out | {"signature": "verifies"}

    def summary(self, source: str, started: float) -> dict[str, Any]:
        if self.prompts and self.problem is None:
            try:
                check_prompt_rows(sorted(self.prompts, key=lambda r: r.version))
            except ShareDataError as exc:
                self.problem = str(exc)
        counts = self.counts
        out: dict[str, Any] = {
            "source": source,
            "kind": self.content or "empty",
            ("runs" if self.content not in ("model", "prompt") else "versions"): counts["records"],
            "metric_points": counts["metric_points"],
            "files": counts["files"],
            "bytes": counts["bytes"],
            "chunk_rows": counts["chunks"],
            "flavors": ", ".join(sorted(self.flavors)),
            "requirements": "; ".join(sorted(self.requirements)),
            **self.serialization(),
            **self._genai_summary(),
            "redacted_records": counts["redacted"],
            "valid": self.problem is None,
            "seconds": round(time.monotonic() - started, 3),
        }
        if self.problem is not None:
            out["problem"] = self.problem
        return out


def describe_shared(
    batches: Iterable[pa.RecordBatch],
    source: str,
    verify_key: str | None = None,
    verify_ca: bool = False,
) -> StatementResult:
    """What a shared table holds, without writing anything to MLflow.

    Reads every row once: kind, runs or versions, metric points, files and bytes, and for each
    model its flavors and Python requirements, read from ``MLmodel`` / ``requirements.txt`` as
    text (nothing is loaded or executed), and the signer, checked with ``verify_key`` when
    given (``verify_ca``: a CA the signer's certificate chains to). Validation problems are
    reported, not raised.
    """
    started = time.monotonic()
    key = signing.pinned_key(verify_key, False, verify_ca)
    found = _Description()
    for batch in batches:
        found.read(batch)
    summary = found.summary(source, started)
    seconds = summary.pop("seconds")
    summary |= found.signed(source, key) | {"seconds": seconds}
    return StatementResult(
        statement=f"DESCRIBE '{source}'",
        action="describe_shared",
        summary=summary,
        rows=found.rows,
    )
