"""Validation of the GenAI rows of an experiment table (format 2): scorers and eval records.

A ``scorer`` row is one version of a scorer registered in the experiment, as MLflow serializes
it (JSON text). Only declarative scorers travel: a built-in scorer whose class is in
:data:`BUILTIN_SCORERS` (compared as a string, never imported) or an instruction judge
(``make_judge``). A serialization that carries code (``call_source`` anywhere, or a kind that
imports a module or nests other scorers) is refused. The JSON is parsed with ``json`` after its
depth is counted; nothing in it is ever imported, deserialized into a scorer or executed.

An ``eval_record`` row is one record of an evaluation dataset linked to the experiment; the
dataset's provider id, name and tags ride on every record. MLflow merges records with equal
inputs silently, so a dataset whose records repeat inputs is refused (:class:`EvalRecords`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from arcuate.errors import ShareDataError
from arcuate.format import limits
from arcuate.format import validate as v

#: Built-in scorer classes of ``mlflow.genai.scorers.builtin_scorers`` (MLflow 3.17) that hold
#: configuration only. A class outside this list is refused: MLflow would import it by name.
BUILTIN_SCORERS: Final = frozenset(
    {
        "Completeness", "ConversationCompleteness", "ConversationalGuidelines",
        "ConversationalRoleAdherence", "ConversationalSafety", "ConversationalToolCallEfficiency",
        "Correctness", "Equivalence", "ExpectationsGuidelines", "Fluency", "Guidelines",
        "KnowledgeRetention", "PIIDetection", "RegexMatch", "RelevanceToQuery", "ResponseLength",
        "RetrievalGroundedness", "RetrievalRelevance", "RetrievalSufficiency", "Safety",
        "Summarization", "ToolCallCorrectness", "ToolCallEfficiency", "UserFrustration",
    }
)  # fmt: skip
#: Keys of a serialization that carry code or make MLflow import or rebuild other scorers:
#: refused wherever they appear.
CODE_KEYS: Final = (
    "call_source",
    "call_signature",
    "original_func_name",
    "memory_augmented_judge_data",
    "third_party_scorer_data",
    "ensemble_scorer_data",
)
SCORER_KINDS: Final = frozenset({"builtin", "instructions"})
#: the error code of a scorer refused for what it would run or import (docs/errors.md)
CODE_SCORER: Final = "ARC611"
SOURCE_TYPES: Final = frozenset({"HUMAN", "DOCUMENT", "TRACE", "CODE", "UNSPECIFIED"})
_ID: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_SCORER_NAME: Final = re.compile(r"^[^\x00-\x1f/]+$")


@dataclass(frozen=True)
class SharedScorer:
    """A validated ``scorer`` row: one version of a declarative scorer."""

    row: int
    name: str
    version: int
    kind: str
    serialized: str


@dataclass(frozen=True)
class SharedEvalRecord:
    """A validated ``eval_record`` row (the record's dict fields parsed)."""

    row: int
    dataset_id: str
    dataset_name: str
    dataset_tags: dict[str, str]
    record_id: str
    record: dict[str, Any]



def _code_key(doc: Any, path: str = "") -> str | None:
    """The path of the first key of :data:`CODE_KEYS` holding a value, anywhere in ``doc``."""
    stack: list[tuple[Any, str]] = [(doc, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in CODE_KEYS and value is not None:
                    return f"{where}.{key}" if where else str(key)
                stack.append((value, f"{where}.{key}" if where else str(key)))
        elif isinstance(node, list):
            stack.extend((item, f"{where}[{j}]") for j, item in enumerate(node))
    return None


def classify_scorer(serialized: str, row: int | None, name: str = "scorer.serialized") -> str:
    """``builtin`` or ``instructions``: the kind of a declarative scorer's serialization.

    Raises:
        ShareDataError: the JSON is too large or deep, carries code, or is of no allowed kind.
    """
    if len(serialized.encode("utf-8", "surrogatepass")) > limits.MAX_SCORER_BYTES:
        raise v._fail(f"is larger than {limits.MAX_SCORER_BYTES} bytes", row, name)
    doc = v.parse_json(serialized, row, name, limits.MAX_SCORER_JSON_DEPTH)
    if not isinstance(doc, dict):
        raise v._fail("must be a JSON object (MLflow's serialized scorer)", row, name)
    found = _code_key(doc)
    if found is not None:
        raise ShareDataError(
            f"carries code or a scorer MLflow would import or rebuild ({found}); only "
            "declarative scorers (built-in scorers, instruction judges) are shared, and arcuate "
            "never runs, imports or deserializes a scorer",
            row=row,
            field=name,
            code=CODE_SCORER,
        )
    builtin = doc.get("builtin_scorer_class")
    judge = doc.get("instructions_judge_pydantic_data")
    if (builtin is None) == (judge is None):
        raise v._fail(
            "must be exactly one of a built-in scorer (builtin_scorer_class) or an "
            "instruction judge (instructions_judge_pydantic_data)",
            row,
            name,
        )
    if judge is not None:
        if not isinstance(judge, dict) or not isinstance(judge.get("instructions"), str):
            raise v._fail("instructions_judge_pydantic_data needs text instructions", row, name)
        return "instructions"
    if not isinstance(builtin, str) or builtin not in BUILTIN_SCORERS:
        raise ShareDataError(
            f"builtin_scorer_class {v._show(builtin)} is not a built-in scorer arcuate allows "
            f"(allowed: {', '.join(sorted(BUILTIN_SCORERS))})",
            row=row,
            field=name,
            code=CODE_SCORER,
        )
    return "builtin"


def check_scorer_name(value: Any, row: int | None, name: str) -> str:
    """A scorer name: non-empty text without control characters or '/' (arcuate's keys)."""
    out = v.required_text(value, row, name, limit=limits.MAX_SCORER_NAME_LENGTH)
    if not _SCORER_NAME.match(out) or out.strip() != out:
        raise v._fail(
            f"scorer name {v._show(out)} has a control character, '/' or edge spaces", row, name
        )
    return out


def parse_scorer_row(row: Mapping[str, Any], i: int) -> SharedScorer:
    """Validate a ``scorer`` row (key ``"<name>/<version>"``).

    Raises:
        ShareDataError: names row ``i`` and the field.
    """
    _only(row, i, "scorer")
    s = v._struct(row.get("scorer"), i, "scorer")
    name = check_scorer_name(s.get("name"), i, "scorer.name")
    version = v.integer(s.get("version"), i, "scorer.version", low=1, high=limits.MAX_VERSION)
    serialized = v.required_text(
        s.get("serialized"), i, "scorer.serialized", limit=limits.MAX_SCORER_BYTES
    )
    kind = classify_scorer(serialized, i)
    declared = v.choice(s.get("kind"), i, "scorer.kind", SCORER_KINDS)
    if declared != kind:
        raise v._fail(f"says {declared!r} but the serialization is {kind!r}", i, "scorer.kind")
    inner = json.loads(serialized).get("name")
    if inner is not None and inner != name:
        raise v._fail(f"names scorer {v._show(inner)}, the row {name!r}", i, "scorer.serialized")
    if row.get("key") != f"{name}/{version}":
        raise v._fail(f"key {v._show(row.get('key'))} is not '{name}/{version}'", i, "key")
    return SharedScorer(i, name, version, kind, serialized)


def _only(row: Mapping[str, Any], i: int, column: str) -> None:
    """A GenAI row carries its own column and no run, version, prompt or files."""
    for other in ("run", "model_version", "chunk", "prompt_version", "scorer", "eval_record"):
        if other != column and not v._is_missing(row.get(other)):
            raise v._fail(f"a {row.get('kind')} row carries no {other}", i, other)
    if v._sequence(row.get("files"), i, "files", limit=0):
        raise v._fail(f"a {row.get('kind')} row carries no files", i, "files")


def _id(value: Any, row: int, name: str) -> str:
    out = v.required_text(value, row, name, limit=64)
    if not _ID.match(out):
        raise v._fail(f"{v._show(out)} is not an MLflow id", row, name)
    return out


def _object(value: Any, row: int, name: str, *, required: bool = False) -> dict[str, Any] | None:
    raw = v.text(value, row, name, limit=limits.MAX_EVAL_RECORD_BYTES, required=required)
    if raw is None:
        return None
    parsed = v.parse_json(raw, row, name, limits.MAX_JSON_DEPTH)
    if not isinstance(parsed, dict):
        raise v._fail(f"must be a JSON object, got {type(parsed).__name__}", row, name)
    return parsed


def _record(e: Mapping[str, Any], i: int) -> dict[str, Any]:
    size = sum(
        len(x) for f in ("inputs", "outputs", "expectations", "tags", "source")
        if isinstance(x := e.get(f), str)
    )  # fmt: skip
    if size > limits.MAX_EVAL_RECORD_BYTES:
        raise v._fail(
            f"the record's JSON fields hold {size} characters; arcuate reads at most "
            f"{limits.MAX_EVAL_RECORD_BYTES} per record",
            i,
            "eval_record.inputs",
        )
    inputs = _object(e.get("inputs"), i, "eval_record.inputs", required=True)
    if not inputs:
        raise v._fail("must be a non-empty JSON object", i, "eval_record.inputs")
    record: dict[str, Any] = {"inputs": inputs}
    outputs_raw = v.text(
        e.get("outputs"), i, "eval_record.outputs", limit=limits.MAX_EVAL_RECORD_BYTES
    )
    if outputs_raw is not None:
        record["outputs"] = v.parse_json(outputs_raw, i, "eval_record.outputs")
    for field in ("expectations", "tags", "source"):
        value = _object(e.get(field), i, f"eval_record.{field}")
        if value is not None:
            record[field] = value
    for k, val in (record.get("tags") or {}).items():
        if not isinstance(val, str) or len(k) > limits.MAX_EVAL_TAG_KEY_LENGTH:
            raise v._fail(
                f"tag {v._show(k)} must be a string of bounded size", i, "eval_record.tags"
            )
    source = record.get("source")
    if source is not None:
        v.choice(source.get("source_type"), i, "eval_record.source.source_type", SOURCE_TYPES)
        if not isinstance(source.get("source_data", {}), dict):
            raise v._fail("source_data must be a JSON object", i, "eval_record.source")
    return record


def parse_eval_record_row(row: Mapping[str, Any], i: int) -> SharedEvalRecord:
    """Validate an ``eval_record`` row (key ``"<dataset id>/<record id>"``).

    Raises:
        ShareDataError: names row ``i`` and the field.
    """
    _only(row, i, "eval_record")
    e = v._struct(row.get("eval_record"), i, "eval_record")
    dataset_id = _id(e.get("dataset_id"), i, "eval_record.dataset_id")
    record_id = _id(e.get("record_id"), i, "eval_record.record_id")
    if row.get("key") != f"{dataset_id}/{record_id}":
        raise v._fail(f"key {v._show(row.get('key'))} is not '{dataset_id}/{record_id}'", i, "key")
    return SharedEvalRecord(
        row=i,
        dataset_id=dataset_id,
        dataset_name=v.required_text(
            e.get("dataset_name"),
            i,
            "eval_record.dataset_name",
            limit=limits.MAX_EVAL_DATASET_NAME_LENGTH,
        ),
        dataset_tags=v.key_values(
            e.get("dataset_tags"),
            i,
            "eval_record.dataset_tags",
            value_limit=limits.MAX_EVAL_TAG_VALUE_LENGTH,
            key_limit=limits.MAX_EVAL_TAG_KEY_LENGTH,
        ),
        record_id=record_id,
        record=_record(e, i),
    )


def inputs_hash(inputs: Mapping[str, Any]) -> str:
    """MLflow's identity of a record within a dataset (``sha256`` of the sorted JSON)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass
class _Dataset:
    row: int
    name: str
    tags: dict[str, str]
    count: int = 0


class EvalRecords:
    """The eval records of a table checked together, one at a time (memory: one hash per
    record): each dataset's name and tags equal on every row, its inputs unique, its record
    count and the number of datasets bounded."""

    def __init__(self) -> None:
        self.datasets: dict[str, _Dataset] = {}
        self._inputs: dict[tuple[str, str], int] = {}

    def add(self, r: SharedEvalRecord) -> None:
        """Check ``r`` against the records seen before it.

        Raises:
            ShareDataError: names the row and field of the problem.
        """
        ds = self.datasets.get(r.dataset_id)
        if ds is None:
            if len(self.datasets) >= limits.MAX_EVAL_DATASETS:
                raise v.too_many(
                    len(self.datasets) + 1,
                    limits.MAX_EVAL_DATASETS,
                    r.row,
                    "eval_record.dataset_id",
                )
            ds = self.datasets[r.dataset_id] = _Dataset(r.row, r.dataset_name, r.dataset_tags)
        for field, here, there in (
            ("dataset_name", r.dataset_name, ds.name),
            ("dataset_tags", r.dataset_tags, ds.tags),
        ):
            if here != there:
                raise v._fail(
                    f"differs from row {ds.row}'s for dataset {r.dataset_id!r}",
                    r.row,
                    f"eval_record.{field}",
                )
        ds.count += 1
        if ds.count > limits.MAX_EVAL_RECORDS:
            raise v.too_many(ds.count, limits.MAX_EVAL_RECORDS, r.row, "eval_record.dataset_id")
        ident = (r.dataset_id, inputs_hash(r.record["inputs"]))
        first = self._inputs.setdefault(ident, r.row)
        if first != r.row:
            raise ShareDataError(
                f"the record's inputs equal those of row {first} in dataset {r.dataset_id!r}: "
                "MLflow would merge the two silently",
                row=r.row,
                field="eval_record.inputs",
            )


class Scorers:
    """The scorer rows of a table checked together: each (name, version) once, a bounded
    count, at most MAX_VERSION_PLACEHOLDERS missing numbers per scorer."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, int], SharedScorer] = {}

    def add(self, s: SharedScorer) -> None:
        """Raises ShareDataError (row and field) for a repeated version or too many."""
        other = self.items.get((s.name, s.version))
        if other is not None:
            raise v._fail(
                f"scorer {s.name!r} version {s.version} is also in row {other.row}",
                s.row,
                "scorer.version",
            )
        if len(self.items) >= limits.MAX_SCORER_VERSIONS:
            raise v.too_many(len(self.items) + 1, limits.MAX_SCORER_VERSIONS, s.row, "scorer")
        self.items[(s.name, s.version)] = s

    def finish(self) -> None:
        """The gaps of each scorer's numbers (each is a placeholder version on import)."""
        by_name: dict[str, list[SharedScorer]] = {}
        for s in self.items.values():
            by_name.setdefault(s.name, []).append(s)
        for versions in by_name.values():
            missing = previous = 0
            for s in sorted(versions, key=lambda x: x.version):
                missing += s.version - previous - 1
                previous = s.version
                if missing > limits.MAX_VERSION_PLACEHOLDERS:
                    raise v._fail(
                        f"version {s.version} leaves {missing} numbers below it unused; each "
                        f"is a placeholder on import, at most {limits.MAX_VERSION_PLACEHOLDERS}",
                        s.row,
                        "scorer.version",
                    )
