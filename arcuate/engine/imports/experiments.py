"""Experiment imports: shared runs into one experiment, validated first, re-runnable.

Pass 2 in phases (:meth:`_ExperimentImport.run`): every shared run is matched to a run here
by provenance and content hash, and the missing ones are created (or given ids, for the bulk
path); their logged models are found or created; then each run gets what it lacks and is
marked complete (new runs in bulk transactions first), and last, what was replaced (with
OVERWRITE: everything not shared) is deleted, except runs a model version uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from arcuate.backends.protocols import BulkRunSink, ModelSink, Provenance, Record
from arcuate.engine import provenance as prov
from arcuate.engine import signing
from arcuate.engine.imports.genai import plan_genai, write_genai
from arcuate.engine.imports.importer import (
    Importer,
    ImportReport,
    experiment_result,
    lease_notes,
    statement,
)
from arcuate.engine.imports.ingest import ingest
from arcuate.engine.imports.policy import refuse_pickles
from arcuate.engine.imports.spool import Entry, Spool
from arcuate.engine.imports.traces import TracePlan, check_traces, traces_here, write_traces
from arcuate.engine.progress import Progress
from arcuate.engine.result import StatementResult
from arcuate.format import validate as v
from arcuate.format.schema import OWNER_ARTIFACTS, OWNER_LOGGED_MODEL_PREFIX

if TYPE_CHECKING:
    from arcuate.engine.context import Context

_T = TypeVar("_T")
_R = TypeVar("_R")

#: A bulk transaction holds at most this many runs, or this many metric points.
BULK_RUNS = 100
BULK_POINTS = 25_000


def import_experiment(
    batches: Iterable[pa.RecordBatch],
    experiment: str,
    ctx: Context,
    *,
    overwrite: bool = False,
    source: str = "",
    origin: str | None = None,
    refuse_pickle: bool = False,
    verify_key: str | None = None,
    verify_ca: bool = False,
) -> StatementResult:
    """Import shared runs into ``experiment``: validated first, re-runnable, exact on OVERWRITE.

    Args:
        batches: record batches of an experiment table (any order of rows).
        experiment: the target experiment name (created if missing).
        ctx: the engine context; its ``model_sink`` is written to.
        overwrite: make the experiment hold exactly the shared runs (old ones deleted last;
            runs a model version uses are kept).
        source: the share coordinate, recorded with each run.
        origin: the provider, share and table when the caller resolved them already (a Spark
            task cannot read the driver's profile file); by default read from ``source``.

    Returns:
        A result whose summary counts added/updated/unchanged/removed/kept runs, files, bytes,
        metric points and seconds; its rows map each source run to the run here.

    Raises:
        ShareDataError: a row is malformed or hostile (nothing has been written).
        ConflictError: the experiment exists but is deleted (without OVERWRITE).
        BackendError: MLflow failed midway; running the statement again finishes the import.
    """
    return import_runs(
        ctx.model_sink, batches, experiment, progress=ctx.progress, overwrite=overwrite,
        source=source, origin=origin,
        refuse_pickle=refuse_pickle or ctx.settings.refuse_pickle,
        key=signing.pinned_key(verify_key, ctx.settings.require_signature, verify_ca),
    )  # fmt: skip


def import_runs(
    sink: ModelSink,
    batches: Iterable[pa.RecordBatch],
    experiment: str,
    *,
    progress: bool,
    overwrite: bool = False,
    source: str = "",
    origin: str | None = None,
    refuse_pickle: bool = False,
    key: signing.Pin | None = None,
) -> StatementResult:
    """:func:`import_experiment` into ``sink`` (``progress``: show bars; ``refuse_pickle``:
    the serialization policy, checked once every row is spooled; ``key``: the signature is
    verified with it before anything is written)."""
    started = time.monotonic()
    name = v.check_experiment_name(experiment)
    bars = Progress(progress)
    with Spool.open("experiment") as spool, bars.running():
        reading = bars.task("validating shared rows", None)
        if key is not None:
            spool.digest_records()
        ingest(spool, batches, lambda n: bars.advance(reading, n))
        seen = signing.check_spool(spool, key, source)
        if refuse_pickle:
            refuse_pickles(spool)
        found = prov.origin_of(source) if origin is None else prov.Origin(source, origin)
        # a shared trace id living in another experiment here is refused before any write
        traces = check_traces(sink, name, spool.traces)
        # one import per target at a time: a second one waits, then finds the runs in place
        with sink.lock("experiment", name, restore=overwrite) as lease:
            job = _ExperimentImport(sink, spool, name, overwrite, source, bars, found)
            job.trace_plan = traces
            report = job.run()
    return experiment_result(
        report,
        name,
        started=started,
        shared_bytes=spool.bytes,
        statement=statement("EXPERIMENT", name, overwrite, source),
        notes=lease_notes(lease.waited, spool.helper_peak_rss) | signing.signature_note(seen),
    )


@dataclass(frozen=True)
class _Step:
    """A shared run's place in the import: its spool entry, its run here, what is done."""

    index: int
    run_id: str
    action: str
    #: the run here was created by this import (nothing to compare with)
    fresh: bool


@dataclass
class _Plan:
    """What the phases before writing decided."""

    #: the sink that writes new runs whole, when it does (None: every run through the API)
    bulk: BulkRunSink | None
    #: source run id -> run id here (runs this table no longer lists still resolve parents)
    run_ids: dict[str, str]
    steps: list[_Step] = field(default_factory=list)
    #: spool entries of the new runs the bulk path writes (ids chosen, nothing written yet)
    in_bulk: set[int] = field(default_factory=set)
    #: runs to delete at the end, and among them older copies of shared runs (not "removed")
    doomed: list[str] = field(default_factory=list)
    replaced: set[str] = field(default_factory=set)
    #: source logged model id -> logged model here
    model_ids: dict[str, str] = field(default_factory=dict)
    #: logged models here by (source model id, run id), and the pairs the share has
    by_model: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    shared_models: set[tuple[str, str]] = field(default_factory=set)
    stray_models: list[str] = field(default_factory=list)


class _ExperimentImport(Importer):
    #: artifact locations of the experiment's logged models (model id -> location)
    _locations: dict[str, str]
    #: set when the table holds traces (checked against the store before the lease)
    trace_plan: TracePlan | None = None

    def run(self) -> ImportReport:
        self._locations = {}
        tags = (self.spool.experiment or {}).get("tags") or {}
        eid = self.sink.prepare_experiment(self.name, tags, exact=self.exact, restore=self.exact)
        # the traces here now (another import may have written some while this one waited)
        traces = traces_here(self.sink, eid) if self.trace_plan else TracePlan()
        # scorers and datasets are matched before any run is written: a conflict stops here
        genai = plan_genai(self.sink, eid, self.spool.genai, self.origin.tag, exact=self.exact)
        self.sink.remove_orphan_files(eid)  # of an import of it that was killed midway
        states = self.sink.list_runs(eid)
        plan = self._match(eid, states)
        self._route_bulk(eid, plan)
        self._logged_models(eid, plan)
        self._write(eid, plan, states)
        self._remove(eid, plan, states)
        # traces after the runs and logged models: their links are mapped to these
        self.report.genai = write_traces(
            self.sink, eid, self.spool.traces, traces, plan.run_ids, plan.model_ids
        )
        self.report.genai |= write_genai(
            self.sink, eid, self.spool.genai, genai, source=self.source, origin=self.origin.tag,
            exact=self.exact,
        )  # fmt: skip
        return self.report

    @property
    def _provenance(self) -> Provenance:
        return self.origin.stamp(prov.EXPERIMENT_OWNER)

    def _owns(self, found: Provenance) -> bool:
        """Whether a run here was imported from this table by an experiment import."""
        owner = found.owner if found.owner is not None else prov.EXPERIMENT_OWNER
        return owner == prov.EXPERIMENT_OWNER and self.origin.matches(found)

    # -- phase 1: a run here for every shared run -----------------------------------------
    def _match(self, eid: str, states: list[Record]) -> _Plan:
        """Every shared run matched to a run here (by provenance and content hash); the
        missing ones created, or given an id when the bulk path writes them."""
        by_source: dict[str, list[Record]] = defaultdict(list)
        for s in states:
            # only runs this table imported are matched: never another share's or a model
            # import's run that happens to carry the same source run id
            if s["source_run_id"] and self._owns(s["provenance"]):
                by_source[s["source_run_id"]].append(s)
        sink = self.sink
        bulk = sink if isinstance(sink, BulkRunSink) and sink.bulk_runs(eid) else None
        plan = _Plan(bulk=bulk, run_ids={})
        for src, found in by_source.items():
            live = [s for s in found if s["lifecycle_stage"] == "active"] or found
            plan.run_ids[src] = live[0]["run_id"]
        to_create: list[int] = []
        for index, entry in enumerate(self.spool.entries):
            # live runs first: a run deleted here is only the fallback
            candidates = sorted(
                by_source.get(entry.key, []), key=lambda c: c["lifecycle_stage"] != "active"
            )
            chosen, action = self._choose(index, entry, candidates, plan)
            if chosen is not None:
                run_id = chosen["run_id"]
            elif plan.bulk is not None:
                run_id = plan.bulk.new_run_id()
                plan.in_bulk.add(index)
            else:
                run_id = ""  # created below, with the others
                to_create.append(len(plan.steps))
            if run_id:
                plan.run_ids[entry.key] = run_id
            plan.steps.append(_Step(index, run_id, action, fresh=chosen is None))
        self._create_all(eid, plan, to_create)
        return plan

    def _create_all(self, eid: str, plan: _Plan, positions: list[int]) -> None:
        """The new runs of the steps at ``positions`` created, as many at once as the sink
        writes (each is one request to a tracking server)."""
        workers = max(1, min(self.sink.write_concurrency(), len(positions)))

        def create(position: int) -> str:
            return self._create(eid, plan.steps[position].index)

        if workers == 1:
            created = [create(p) for p in positions]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="arcuate-create") as pool:
                created = list(pool.map(create, positions))
        for position, run_id in zip(positions, created, strict=True):
            step = plan.steps[position]
            plan.run_ids[self.spool.entries[step.index].key] = run_id
            plan.steps[position] = dataclasses.replace(step, run_id=run_id)

    def _choose(
        self, index: int, entry: Entry, candidates: list[Record], plan: _Plan
    ) -> tuple[Record | None, str]:
        """The run here that becomes shared run ``entry`` (None: a new one) and the action;
        the other candidates are to be deleted."""
        chosen, action = _pick(entry, candidates)
        others = [c["run_id"] for c in candidates if c is not chosen]
        plan.doomed += others
        plan.replaced.update(others)
        if chosen is None:
            return None, action
        restored = chosen["lifecycle_stage"] == "deleted" and entry.lifecycle_stage == "active"
        if self.exact and restored:
            # deleted here, live in the share: OVERWRITE restores it (without, it stays
            # deleted: that was someone's decision here)
            action = "updated"
        # with OVERWRITE even an unchanged run is checked for what was added here
        if (action != "unchanged" or self.exact) and self._cannot_update(index, entry, chosen):
            plan.doomed.append(chosen["run_id"])
            plan.replaced.add(chosen["run_id"])
            return None, "updated"
        return chosen, action

    def _cannot_update(self, index: int, entry: Entry, chosen: Record) -> bool:
        """Whether the run here must be rebuilt to become the shared one."""
        reason = self.sink.rebuild_reason(
            chosen["run_id"],
            self.spool.load(index)["run"],
            exact=self.exact,
            artifact_paths=[f["path"] for f in entry.files if f["owner"] == OWNER_ARTIFACTS],
        )
        return reason is not None

    def _route_bulk(self, eid: str, plan: _Plan) -> None:
        """A bulk run's metrics and inputs may point only at logged models that exist before
        its transaction: its own, or those of runs written through the API; a run pointing
        at the models of another bulk run goes through the API (after the bulk runs)."""
        entries = self.spool.entries
        owners = {m: i for i in plan.in_bulk for m in entries[i].models}
        for position, step in enumerate(plan.steps):
            index = step.index
            if index in plan.in_bulk and any(
                owners.get(ref, index) != index for ref in entries[index].model_refs
            ):
                plan.in_bulk.discard(index)
                run_id = self._create(eid, index)
                plan.run_ids[entries[index].key] = run_id
                plan.steps[position] = dataclasses.replace(step, run_id=run_id)

    def _logged_models(self, eid: str, plan: _Plan) -> None:
        """One logged model per shared model per run: found by provenance, or created (a
        bulk run's are created in its own transaction: they only get ids now)."""
        for found in self.sink.list_logged_models(eid):
            if found["source_model_id"]:
                pair = (found["source_model_id"], found["run_id"])
                plan.by_model[pair].append(found["model_id"])
                self._locations[found["model_id"]] = found["artifact_location"]
        for step in plan.steps:
            entry = self.spool.entries[step.index]
            if plan.bulk is not None and step.index in plan.in_bulk:
                for src in entry.models:
                    plan.shared_models.add((src, step.run_id))
                    plan.model_ids[src] = plan.bulk.new_model_id()
                continue
            if not entry.models:
                continue
            for lm in self.spool.load(step.index)["run"]["logged_models"]:
                plan.shared_models.add((lm["model_id"], step.run_id))
                same = plan.by_model.get((lm["model_id"], step.run_id), [])
                if same:
                    plan.model_ids[lm["model_id"]] = same[0]
                    plan.stray_models += same[1:]
                else:
                    created = self.sink.create_logged_model(eid, step.run_id, lm)
                    plan.model_ids[lm["model_id"]] = created

    def _create(self, eid: str, index: int) -> str:
        record = self.spool.load(index)
        key = self.spool.entries[index].key
        return self.sink.create_run(
            eid, record["run"], source_run_id=key, provenance=self._provenance
        )

    # -- phase 2: every run written --------------------------------------------------------
    def _write(self, eid: str, plan: _Plan, states: list[Record]) -> None:
        """What each run lacks written, and each marked complete: new runs in bulk first, the
        others on as many writers as the sink takes; the report's rows in the share's order."""
        writing = self.progress.task(f"importing runs into {self.name}", len(plan.steps))
        done: dict[int, dict[str, Any]] = {}
        if plan.bulk is not None and plan.in_bulk:
            self._write_bulk(plan.bulk, eid, plan, done, writing)
        rest = [s for s in plan.steps if s.index not in plan.in_bulk]
        state_of = {s["run_id"]: s for s in states}

        def one(step: _Step) -> dict[str, Any]:
            return self._write_one(step, state_of.get(step.run_id), plan)

        workers = max(1, min(self.sink.write_concurrency(), len(rest)))
        if workers == 1:
            for step in rest:
                done[step.index] = one(step)
                self.progress.advance(writing)
        else:
            # closed on every way out (Ctrl+C in this loop too): the writers are stopped and
            # waited for before the spool whose files they upload is removed
            with contextlib.closing(_bounded_map(one, rest, workers)) as rows:
                for step, row in zip(rest, rows, strict=True):
                    done[step.index] = row
                    self.progress.advance(writing)
        for step in plan.steps:
            row = done[step.index]
            self.report.count(row["action"])
            self.report.rows.append(row)

    def _count(self, stats: Record) -> None:
        self.report.files += stats["files"]
        self.report.bytes += stats["bytes"]
        self.report.metric_points += stats["metric_points"]
        self.report.unlinked += stats["unlinked"]

    def _write_bulk(
        self,
        bulk: BulkRunSink,
        eid: str,
        plan: _Plan,
        done: dict[int, dict[str, Any]],
        writing: Any,
    ) -> None:
        """New runs in transactions of at most BULK_RUNS runs or BULK_POINTS metric points,
        as many at once as the sink takes (each batch is all or nothing on its own); a run's
        record is read from the spool only while its batch is written."""
        groups: list[list[_Step]] = []
        points = 0
        for step in plan.steps:
            if step.index not in plan.in_bulk:
                continue
            weight = self.spool.entries[step.index].metric_points
            if not groups or len(groups[-1]) >= BULK_RUNS or points + weight > BULK_POINTS:
                groups.append([])
                points = 0
            groups[-1].append(step)
            points += weight

        def write(group: list[_Step]) -> tuple[list[_Step], list[dict[str, Any]], Record]:
            batch, rows = [], []
            for step in group:
                entry = self.spool.entries[step.index]
                run = self.spool.load(step.index, columns=True)["run"]
                batch.append(
                    {
                        "run_id": step.run_id,
                        "source_run_id": entry.key,
                        "run": run,
                        "files": entry.files,
                        "content_hash": entry.content_hash,
                        "deleted": entry.lifecycle_stage == "deleted",
                    }
                )
                rows.append(_row(entry, step.run_id, run, step.action))
            stats = bulk.write_new_runs(
                eid,
                batch,
                run_ids=plan.run_ids,
                model_ids=plan.model_ids,
                exact=self.exact,
                provenance=self._provenance,
            )
            return group, rows, stats

        workers = max(1, min(bulk.bulk_concurrency(), len(groups)))
        results: Iterable[tuple[list[_Step], list[dict[str, Any]], Record]]
        with contextlib.ExitStack() as stack:
            if workers == 1:
                results = map(write, groups)
            else:  # closed on every way out: no batch is left running behind an error
                results = stack.enter_context(
                    contextlib.closing(_bounded_map(write, groups, workers))
                )
            for group, rows, stats in results:
                self._count(stats)
                for step, row in zip(group, rows, strict=True):
                    done[step.index] = row
                    self.progress.advance(writing)

    def _write_one(self, step: _Step, state: Record | None, plan: _Plan) -> dict[str, Any]:
        """One run through the public API: filled and finished, or (unchanged) reconciled."""
        sink, action = self.sink, step.action
        entry = self.spool.entries[step.index]
        record = self.spool.load(step.index)
        if action == "unchanged":
            assert state is not None
            if sink.reconcile_run(state, record["run"], run_ids=plan.run_ids, exact=self.exact):
                action = "updated"
            if state["lifecycle_stage"] == "active" and self._repair(state, entry, plan):
                action = "updated"
            return _row(entry, step.run_id, record["run"], action)
        stats = sink.fill_run(
            step.run_id,
            record["run"],
            entry.files,
            run_ids=plan.run_ids,
            model_ids=plan.model_ids,
            fresh=step.fresh,
            exact=self.exact,
        )
        self._count(stats)
        sink.finish_run(
            step.run_id,
            content_hash=entry.content_hash,
            deleted=entry.lifecycle_stage == "deleted",
            provenance=self._provenance,
        )
        return _row(entry, step.run_id, record["run"], action)

    def _repair(self, state: Record, entry: Entry, plan: _Plan) -> bool:
        """Write again the files of an unchanged run that are missing here or altered (the
        content hash says what was shared, not what the store still holds); whether any was."""
        models = {
            OWNER_LOGGED_MODEL_PREFIX + src: self._locations[plan.model_ids[src]]
            for src in entry.models
            if plan.model_ids.get(src) in self._locations
        }
        stats = self.sink.repair_run_files(state["artifact_uri"], entry.files, models)
        self.report.add_files(stats)
        return bool(stats["files"])

    # -- last: what is no longer shared -----------------------------------------------------
    def _remove(self, eid: str, plan: _Plan, states: list[Record]) -> None:
        """Delete what was replaced (and, with OVERWRITE, everything not shared), except what
        a model version uses (reported as kept)."""
        keep = {step.run_id for step in plan.steps}
        doomed, stray = plan.doomed, plan.stray_models
        if self.exact:
            doomed += [
                s["run_id"]
                for s in states
                if s["run_id"] not in keep and s["lifecycle_stage"] == "active"
            ]
            stray += [
                mid
                for (src, rid), mids in plan.by_model.items()
                if rid in keep and (src, rid) not in plan.shared_models
                for mid in mids
            ]
        doomed = sorted(set(doomed) - keep)
        doomed, stray, kept = keep_used(self.sink, doomed, sorted(set(stray)), states)
        active = {s["run_id"] for s in states if s["lifecycle_stage"] == "active"}
        self.sink.delete_logged_models(stray)
        self.sink.delete_runs(eid, doomed)
        self.report.removed = len([r for r in doomed if r in active and r not in plan.replaced])
        self.report.kept = len(kept)
        self.report.rows += kept


def _pick(entry: Entry, candidates: list[Record]) -> tuple[Record | None, str]:
    """The best of the runs here imported from ``entry``'s run: a complete copy of it
    (unchanged), else an incomplete one (an interrupted import), else an older complete one
    (updated); None when there is none (added)."""
    complete = [c for c in candidates if c["content_hash"] == entry.content_hash]
    incomplete = [c for c in candidates if not c["content_hash"]]
    older = [c for c in candidates if c["content_hash"] and c not in complete]
    if complete:
        return complete[0], "unchanged"
    if incomplete:
        return incomplete[0], ("updated" if older else "added")
    if older:
        return older[0], "updated"
    return None, "added"


def _row(entry: Entry, run_id: str, run: Record, action: str) -> dict[str, Any]:
    """The report's row of a shared run."""
    return {
        "source_run_id": entry.key,
        "run_id": run_id,
        "run_name": run.get("run_name"),
        "action": action,
    }


def keep_used(
    sink: ModelSink, doomed: list[str], stray_models: list[str], states: list[Record]
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Runs and logged models an import is about to delete, less those a model version (of
    any registered model) uses: (runs to delete, models to delete, detail rows of kept runs).

    Deleting them would leave the version pointing at a deleted run or at no files.
    """
    if not doomed and not stray_models:
        return doomed, stray_models, []
    used = sink.versions_using(doomed, stray_models)
    state_of = {s["run_id"]: s for s in states}
    kept: list[dict[str, Any]] = []
    for run_id in doomed:
        state = state_of.get(run_id)
        if run_id not in used or state is None or state["lifecycle_stage"] != "active":
            continue
        versions = used[run_id]
        which = "model version" if len(versions) == 1 else "model versions"
        verb = "uses" if len(versions) == 1 else "use"
        kept.append(
            {
                "source_run_id": state["source_run_id"],
                "run_id": run_id,
                "run_name": state["run_name"],
                "action": "kept",
                "reason": f"{which} {', '.join(versions)} {verb} it",
            }
        )
    spared = {row["run_id"] for row in kept}
    return (
        [r for r in doomed if r not in spared],
        [m for m in stray_models if m not in used],
        kept,
    )


def _bounded_map(
    fn: Callable[[_T], _R], items: list[_T], workers: int
) -> Generator[_R, None, None]:
    """``fn`` over ``items`` on ``workers`` threads, at most 2 x workers in flight, results in
    order; the first failure cancels what has not started and is raised.

    Closing the generator cancels what has not started and waits for what has: a consumer
    that may stop early must close it (``contextlib.closing``), or the threads go on until
    the generator is collected, after the files they read may be gone."""
    from concurrent.futures import Future, ThreadPoolExecutor

    pending: list[Future[_R]] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="arcuate-import") as pool:
        try:
            it = iter(items)
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for f in pending:
                f.cancel()
