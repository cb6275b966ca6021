"""Applying a redaction policy to the records an export reads, before any row is built.

:mod:`arcuate.format.redaction` says what a rule covers; this module walks the records the
MLflow source gives (experiment, run, model version; :mod:`arcuate.format.schema` shapes)
and returns redacted copies, so the values the policy covers never reach a row, a batch or a
written file. What it covers:

* ``params`` rules: a run's params and its logged models' params;
* ``tags`` rules: experiment, run, dataset-input, logged-model, version and registered-model
  tags;
* ``DATASETS SOURCES``: each dataset input's source and digest (and the digest where a metric
  point names it, so a hashed digest still links the two);
* ``ARTIFACTS`` rules: a run's artifacts, a logged model's files and a version's files, by
  path relative to their root: a matching file is left out, its entry in the files list too.

Each redacted run or version says so in a tag, :data:`REDACTED_TAG`: a JSON object of the
param and tag keys whose values were dropped or hashed and how many dataset inputs and files
were (never a value, never a left-out file's path). The source's records are not changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa

from arcuate.format.files import FileRef, Record
from arcuate.format.limits import MAX_TAG_VALUE_LENGTH
from arcuate.format.records import ColumnarList
from arcuate.format.redaction import REDACTED_TAG, Policy, Report, Target

#: The marker tag's value stays under MLflow's run-tag limit (the smallest of the tags it
#: goes to); keys past it are counted, not listed.
_MARKER_LIMIT: Final = MAX_TAG_VALUE_LENGTH - 100


@dataclass
class Marks:
    """What was redacted in one record (the content of its :data:`REDACTED_TAG`)."""

    params: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    experiment_tags: set[str] = field(default_factory=set)
    datasets: int = 0
    artifacts: int = 0

    def __bool__(self) -> bool:
        return bool(self.params or self.tags or self.experiment_tags) or bool(
            self.datasets or self.artifacts
        )

    def merge(self, other: Marks | None) -> Marks:
        """These marks with ``other``'s added (a version's row also carries its source run)."""
        if other is not None:
            self.params |= other.params
            self.tags |= other.tags
            self.experiment_tags |= other.experiment_tags
            self.datasets += other.datasets
            self.artifacts += other.artifacts
        return self

    def text(self, earlier: str | None = None) -> str:
        """The tag's JSON value, merged with an ``earlier`` marker (a re-shared import)."""
        doc: dict[str, Any] = {}
        before = _parse(earlier)
        used = 0
        more = 0
        for name in ("params", "tags", "experiment_tags"):
            keys = sorted(set(getattr(self, name)) | set(before.get(name, ())))
            listed = []
            for key in keys:
                used += len(key) + 4
                if used > _MARKER_LIMIT:
                    more += 1
                else:
                    listed.append(key)
            if listed:
                doc[name] = listed
        for name in ("datasets", "artifacts"):
            count = getattr(self, name) + _count(before.get(name))
            if count:
                doc[name] = count
        if more:
            doc["more_keys"] = more
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _parse(text: str | None) -> dict[str, Any]:
    """An earlier marker as a dict of lists of keys and counts; anything else is ignored."""
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    out: dict[str, Any] = {}
    for name, value in doc.items():
        if isinstance(value, list):
            out[name] = [str(k) for k in value if isinstance(k, str)]
        elif isinstance(value, int) and not isinstance(value, bool):
            out[name] = value
    return out


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def marker_of(tags: Iterable[Record] | dict[str, str] | None) -> str | None:
    """The :data:`REDACTED_TAG` value among ``tags`` (key/value structs or a mapping)."""
    if not tags:
        return None
    if isinstance(tags, dict):
        return tags.get(REDACTED_TAG)
    return next((t.get("value") for t in tags if t.get("key") == REDACTED_TAG), None)


class Redactor:
    """One export's policy applied record by record; ``report`` counts by rule."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.report = Report(order=tuple(r.describe() for r in policy.rules))

    def _kv(self, target: Target, items: list[Record] | None, keys: set[str]) -> list[Record]:
        """Key/value structs with the covered ones dropped or hashed; their keys added."""
        if not items:
            return list(items or ())
        entries = {str(i["key"]): i.get("value") or "" for i in items}
        kept, redacted = self.policy.apply(target, entries, self.report)
        if not redacted:
            return list(items)
        keys.update(redacted)
        return [
            {**i, "value": kept[i["key"]] if i.get("value") is not None else None}
            for i in items
            if i["key"] in kept
        ]

    def experiment(self, experiment: Record) -> tuple[Record, set[str]]:
        """An experiment record (once per export) and the tag keys redacted from it."""
        keys: set[str] = set()
        return {**experiment, "tags": self._kv("tags", experiment.get("tags"), keys)}, keys

    def run(self, run: Record, marks: Marks) -> Record:
        """A run record with params, tags, dataset inputs, metric digests and logged models
        redacted (the marker tag is added by :meth:`files`, once the files are counted)."""
        out = {
            **run,
            "params": self._kv("params", run.get("params"), marks.params),
            "tags": self._kv("tags", run.get("tags"), marks.tags),
            "inputs": [self._input(d, marks) for d in run.get("inputs") or ()],
            "logged_models": [
                {
                    **m,
                    "params": self._kv("params", m.get("params"), marks.params),
                    "tags": self._kv("tags", m.get("tags"), marks.tags),
                }
                for m in run.get("logged_models") or ()
            ],
        }
        fix = self.policy.digest_fix()
        if fix is not None and run.get("metrics") is not None:
            out["metrics"] = _metric_digests(run["metrics"], fix)
        return out

    def _input(self, entry: Record, marks: Marks) -> Record:
        hidden = self.policy.dataset(entry, self.report)
        if hidden is not None:
            marks.datasets += 1
            entry = hidden
        return {**entry, "tags": self._kv("tags", entry.get("tags"), marks.tags)}

    def version(self, version: Record, marks: Marks) -> Record:
        """A model version record with its tags and its registered model's tags redacted."""
        return {
            **version,
            "tags": self._kv("tags", version.get("tags"), marks.tags),
            "model_tags": self._kv("tags", version.get("model_tags"), marks.tags),
        }

    def files(self, refs: Iterable[FileRef], record: Record, marks: Marks) -> Iterator[FileRef]:
        """``refs`` without the files an ARTIFACTS rule covers; once they are all seen, the
        marker tag goes into ``record``'s tags (the row is built after its files are read:
        :func:`arcuate.format.records.run_rows`)."""
        for ref in refs:
            if self.policy.keep_artifact(ref.path, self.report):
                yield ref
            else:
                marks.artifacts += 1
        mark(record, marks)


def mark(record: Record, marks: Marks) -> None:
    """Set :data:`REDACTED_TAG` in ``record``'s tags when anything of it was redacted."""
    if not marks:
        return
    tags = [t for t in record.get("tags") or () if t.get("key") != REDACTED_TAG]
    value = marks.text(marker_of(record.get("tags")))
    record["tags"] = [*tags, {"key": REDACTED_TAG, "value": value}]


def _metric_digests(
    metrics: list[Record] | ColumnarList, fix: Callable[[str | None], str | None]
) -> list[Record] | ColumnarList:
    """Metric points with the dataset digest they name rewritten as the inputs' are."""
    if not isinstance(metrics, ColumnarList):
        return [{**m, "dataset_digest": fix(m.get("dataset_digest"))} for m in metrics]
    array = metrics.array
    column = array.field("dataset_digest")
    if column.null_count == len(column):
        return metrics
    fixed = pa.array([fix(d) for d in column.to_pylist()], pa.string())
    kind = array.type
    children = [fixed if f.name == "dataset_digest" else array.field(i) for i, f in enumerate(kind)]
    mask = array.is_null() if array.null_count else None
    return ColumnarList(pa.StructArray.from_arrays(children, fields=list(kind), mask=mask))
