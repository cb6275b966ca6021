"""An experiment table's registered scorers and evaluation datasets: spooled, planned, written.

Pass 1 (:class:`GenAISpool`, fed by :class:`~arcuate.engine.imports.spool.Spool`) validates
each ``scorer`` and ``eval_record`` row (:mod:`arcuate.format.genai`) and the rows together
(each scorer version once, each dataset's inputs unique), and keeps them on local disk. Pass 2
plans against what the experiment holds (:func:`plan_genai`, before the import writes its
runs: a scorer version here that differs, or a number MLflow cannot give back, is refused
first) and writes last (:func:`write_genai`).

Scorer versions are immutable in arcuate's eyes: an equal one is left alone, a differing one
is refused (OVERWRITE too). Records are upserted by their inputs (MLflow's key): an equal one
is left alone, a new or changed one is written, so importing again writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from arcuate.backends.protocols import GenAISink, Record
from arcuate.errors import BackendUnavailableError, ConflictError
from arcuate.format.genai import (
    EvalRecords,
    Scorers,
    SharedScorer,
    inputs_hash,
    parse_eval_record_row,
    parse_scorer_row,
)
from arcuate.format.schema import SCORER

#: the record fields an import compares and writes (``inputs`` is the key)
_FIELDS = ("outputs", "expectations", "tags", "source")


class GenAISpool:
    """Validated scorer versions and eval records of one table, on local disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.scorers = Scorers()
        self.records = EvalRecords()
        self._files: dict[str, IO[str]] = {}

    @property
    def empty(self) -> bool:
        """Whether the table holds no scorer and no eval record."""
        return not self.scorers.items and not self.records.datasets

    def add(self, row: Mapping[str, Any], i: int) -> None:
        """Validate row ``i`` (a ``scorer`` or ``eval_record`` row) and keep it.

        Raises:
            ShareDataError: names row ``i`` and the field.
        """
        if row.get("kind") == SCORER:
            scorer = parse_scorer_row(row, i)
            self.scorers.add(scorer)
            folder = self.root / "scorers"
            folder.mkdir(exist_ok=True)
            (folder / f"{scorer.row}.json").write_text(scorer.serialized, encoding="utf-8")
            return
        record = parse_eval_record_row(row, i)
        self.records.add(record)
        out = self._files.get(record.dataset_id)
        if out is None:
            folder = self.root / "datasets"
            folder.mkdir(exist_ok=True)
            index = len(self._files)
            out = self._files[record.dataset_id] = open(  # noqa: SIM115 (closed in finish)
                folder / f"{index}.jsonl", "w", encoding="utf-8"
            )
        out.write(json.dumps(record.record) + "\n")

    def finish(self) -> None:
        """The checks over every row (scorer version gaps); record files closed."""
        for f in self._files.values():
            f.close()
        self.scorers.finish()

    def state(self) -> dict[str, Any]:
        """What a helper process hands back (the files stay in the spool directory)."""
        return {
            "scorers": [[s.row, s.name, s.version, s.kind] for s in self.scorers.items.values()],
            "datasets": [
                [src, d.row, d.name, d.tags, d.count, n]
                for n, (src, d) in enumerate(self.records.datasets.items())
            ],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """The index a helper process handed back (:meth:`state`)."""
        from arcuate.format.genai import _Dataset

        for row, name, version, kind in state.get("scorers") or ():
            text = (self.root / "scorers" / f"{row}.json").read_text(encoding="utf-8")
            self.scorers.items[(name, version)] = SharedScorer(row, name, version, kind, text)
        for src, row, name, tags, count, _ in state.get("datasets") or ():
            self.records.datasets[src] = _Dataset(row, name, tags, count)

    def dataset_records(self, index: int) -> Iterator[dict[str, Any]]:
        """The records of the ``index``-th dataset (in table order)."""
        with open(self.root / "datasets" / f"{index}.jsonl", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)


@dataclass
class GenAIPlan:
    """What pass 2 will write: scorer versions (with placeholders for gaps), datasets."""

    creates: list[tuple[str, int, str]] = field(default_factory=list)
    placeholders: list[tuple[str, int]] = field(default_factory=list)
    unchanged_scorers: int = 0
    #: datasets here imported from this table: provider id -> state
    here: dict[str, Record] = field(default_factory=dict)


def _same_json(a: str, b: str) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


def plan_genai(
    sink: object, experiment_id: str, genai: GenAISpool, origin: str, *, exact: bool = False
) -> GenAIPlan:
    """Match the shared scorer versions and datasets to what the experiment holds (with
    ``exact``, OVERWRITE: also the datasets this table imported before, to remove).

    Raises:
        ConflictError: a scorer version here differs from the shared one, or its number was
            used here (nothing of the import has been written yet).
        BackendUnavailableError: the sink cannot write scorers or datasets.
    """
    plan = GenAIPlan()
    if genai.empty:
        if exact and isinstance(sink, GenAISink):
            plan.here = sink.dataset_state(experiment_id, origin)
        return plan
    if not isinstance(sink, GenAISink):
        raise BackendUnavailableError(
            "the configured MLflow backend cannot import scorers or evaluation datasets"
        )
    here = sink.scorer_versions(experiment_id)
    by_name: dict[str, list[SharedScorer]] = {}
    for s in genai.scorers.items.values():
        by_name.setdefault(s.name, []).append(s)
    for name, shared in sorted(by_name.items()):
        versions = here.get(name, {})
        top = max(versions, default=0)
        for s in sorted(shared, key=lambda x: x.version):
            if s.version in versions:
                if not _same_json(versions[s.version], s.serialized):
                    raise ConflictError(
                        f"scorer {name!r} version {s.version} here differs from the shared one "
                        f"(row {s.row}); arcuate does not replace a scorer version",
                        hint="delete the scorer here (or import into another experiment)",
                    )
                plan.unchanged_scorers += 1
                continue
            if s.version <= top:
                raise ConflictError(
                    f"scorer {name!r}: version number {s.version} was already used here; "
                    "version numbers cannot be kept",
                    hint="delete the scorer here, then import again",
                )
            for gap in range(top + 1, s.version):
                plan.creates.append((name, gap, s.serialized))
                plan.placeholders.append((name, gap))
            plan.creates.append((name, s.version, s.serialized))
            top = s.version
    if genai.records.datasets or exact:
        plan.here = sink.dataset_state(experiment_id, origin)
    return plan


def _changed(records: Iterator[dict[str, Any]], here: Record | None) -> Iterator[dict[str, Any]]:
    """The records that are new here or differ (MLflow keys records by their inputs)."""
    existing = (here or {}).get("records") or {}
    for r in records:
        old = existing.get(inputs_hash(r["inputs"]))
        if old is None or any(old.get(f) != r.get(f) for f in _FIELDS):
            yield r


def write_genai(
    sink: object, experiment_id: str, genai: GenAISpool, plan: GenAIPlan, *, source: str,
    origin: str, exact: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Write what :func:`plan_genai` decided; the counters for the statement's summary."""
    if not isinstance(sink, GenAISink) or (genai.empty and not plan.here):
        return {}
    if plan.creates:
        sink.write_scorers(experiment_id, plan.creates, plan.placeholders)
    written = removed = 0
    for index, (src, ds) in enumerate(genai.records.datasets.items()):
        here = plan.here.get(src)
        if exact and here is not None:
            here, gone = _remove_unshared(sink, here, genai.dataset_records(index))
            removed += gone
        changes = _Counted(_changed(genai.dataset_records(index), here))
        wanted = {"name": ds.name, "tags": ds.tags, "source_id": src}
        tags_differ = here is not None and any(here["tags"].get(k) != v for k, v in ds.tags.items())
        first = None if here is None or tags_differ else next(iter(changes), None)
        if here is None or tags_differ or first is not None:
            items = changes if first is None else _chain(first, iter(changes))
            sink.write_dataset(
                experiment_id, wanted, items, here=here, source=source, origin=origin
            )
        written += changes.count
    doomed = [st for src, st in plan.here.items() if src not in genai.records.datasets]
    for state in doomed if exact else ():
        sink.delete_dataset(str(state["id"]))
    out = {
        "scorers": len(genai.scorers.items),
        "scorers_added": len(plan.creates) - len(plan.placeholders),
        "datasets": len(genai.records.datasets),
        "eval_records": sum(d.count for d in genai.records.datasets.values()),
        "eval_records_written": written,
    }
    if exact:
        out.update(eval_records_removed=removed, datasets_removed=len(doomed))
    return out


def _remove_unshared(
    sink: GenAISink, here: Record, shared: Iterator[dict[str, Any]]
) -> tuple[Record, int]:
    """OVERWRITE: the dataset's records here that the share lacks, or holds otherwise,
    deleted (a changed record is then written whole: an upsert would merge its
    expectations and tags); ``here`` without them, and how many went."""
    existing: dict[str, Record] = dict(here.get("records") or {})
    keep: set[str] = set()
    for r in shared:
        key = inputs_hash(r["inputs"])
        old = existing.get(key)
        if old is not None and all(old.get(f) == r.get(f) for f in _FIELDS):
            keep.add(key)
    doomed = [key for key in existing if key not in keep]
    if doomed:
        sink.delete_dataset_records(str(here["id"]), [str(existing[k]["id"]) for k in doomed])
    left = {k: v for k, v in existing.items() if k in keep}
    return {**here, "records": left}, len(doomed)


class _Counted:
    """An iterable that counts the items taken from it."""

    def __init__(self, items: Iterator[dict[str, Any]]) -> None:
        self.items = items
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for item in self.items:
            self.count += 1
            yield item


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest
