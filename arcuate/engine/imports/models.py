"""Model imports: shared versions into one registered model, validated first, re-runnable.

Versions keep their numbers when the registry allows it. Each version links to its imported
source run: a run an experiment import brought from the same provider and share holding the
very same files (read, never written), else the model import's own copy of the run in
experiment ``models/<name>``, whose files it places (``docs/recipient.md``, "Where things
go"). Pass 2 in phases (:meth:`_ModelImport.run`): the registered model prepared, every
version imported (kept in place, updated, or registered anew), the aliases set, and last the
versions no longer shared deleted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from arcuate.backends.protocols import ModelSink, Provenance, Record
from arcuate.engine import provenance as prov
from arcuate.engine import signing
from arcuate.engine.imports.importer import (
    Importer,
    ImportReport,
    lease_notes,
    model_result,
    statement,
)
from arcuate.engine.imports.ingest import ingest
from arcuate.engine.imports.policy import refuse_pickles
from arcuate.engine.imports.spool import Entry, Spool
from arcuate.engine.progress import Progress
from arcuate.engine.result import StatementResult
from arcuate.errors import ConflictError
from arcuate.format import validate as v
from arcuate.format.manifest import MODEL_SIG_PATH
from arcuate.format.schema import OWNER_LOGGED_MODEL_PREFIX, OWNER_MODEL
from arcuate.syntax.unparse import name as sql_name
from arcuate.syntax.unparse import string as sql_string

if TYPE_CHECKING:
    from arcuate.engine.context import Context


def import_model(
    batches: Iterable[pa.RecordBatch],
    model: str,
    ctx: Context,
    *,
    overwrite: bool = False,
    source: str = "",
    refuse_pickle: bool = False,
    verify_key: str | None = None,
    verify_ca: bool = False,
) -> StatementResult:
    """Import shared model versions into registered model ``model``.

    Versions keep their numbers when the numbering allows it (placeholders recreate gaps);
    otherwise the mapping is reported (``version_map``) and kept with each version's
    provenance. Each version's files become a logged model (or run artifacts, for ``runs:/``
    sources) of its imported source run.

    Raises:
        ShareDataError: a row is malformed or hostile (nothing has been written).
        BackendError: MLflow failed midway; running the statement again finishes the import.
    """
    started = time.monotonic()
    name = v.check_model_name(model)
    sink: ModelSink = ctx.model_sink
    bars = Progress(ctx.progress)
    key = signing.pinned_key(verify_key, ctx.settings.require_signature, verify_ca)
    with Spool.open("model") as spool, bars.running():
        reading = bars.task("validating shared rows", None)
        if key is not None:
            spool.digest_records()
        ingest(spool, batches, lambda n: bars.advance(reading, n))
        seen = signing.check_spool(spool, key, source)
        if refuse_pickle or ctx.settings.refuse_pickle:
            refuse_pickles(spool)
        imp = _ModelImport(sink, spool, name, overwrite, source, bars)
        imp.check_experiment()  # before the lease, which creates the registered model
        with sink.lock("model", name) as lease:
            report = imp.run()
    return model_result(
        report,
        name,
        started=started,
        statement=statement("MODEL", name, overwrite, source),
        notes=lease_notes(lease.waited, spool.helper_peak_rss) | signing.signature_note(seen),
    )


@dataclass
class _RunHere:
    """A run here that a version links to: the model import's own copy (``owned``: it may
    write to it), or a run an experiment import owns (read only)."""

    run_id: str
    experiment_id: str
    artifact_uri: str
    owned: bool
    experiment_name: str = ""
    source: str = ""


@dataclass
class _Location:
    """Where in a run a version's files belong, worked out from the shared record.

    ``kind``: ``logged_model`` (a logged model of the run), ``run_path`` (the run's artifacts
    under ``path``) or ``bare`` (a location the recipient cannot reach: a logged model of the
    model import's own). ``style``: how the version's source reads (``models:/<id>``,
    ``runs:/<run>/<path>``, or the run's artifact URI and the path).
    """

    kind: str
    model: dict[str, Any] | None
    path: str
    style: str


@dataclass
class _Placed:
    """A version's files in place: its source here, its logged model (``model_id``: the
    version's; ``link``: the logged model holding the files, with ``shared``, the shared
    record of it) and how many files were written."""

    source: str
    model_id: str | None
    link: str | None = None
    shared: Record | None = None
    written: int = 0

    def link_version(self, sink: ModelSink, name: str, number: int) -> None:
        """List the version on the logged model holding its files (as the provider did)."""
        if self.link is not None and self.shared is not None:
            sink.link_logged_model(self.link, self.shared, name, number)


#: a version whose run here is gone (deleted): it cannot be kept
_GONE = _RunHere("", "", "", owned=False)


class _ModelImport(Importer):
    """Versions of one registered model, and the runs and files they need.

    A version links to its imported source run: a run an experiment import brought from the
    same provider and share holding the very same files (read, never written), else the model
    import's own copy in experiment ``models/<name>`` (see docs/recipient.md).
    """

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
        super().__init__(sink, spool, name, overwrite, source, progress, origin)
        self.owner = prov.model_owner(name)
        self.experiment = prov.model_experiment(name)
        self._eid: str | None = None
        self._own: dict[str, list[Record]] | None = None
        self._foreign: dict[str, list[_RunHere]] = {}
        self._models: dict[str, list[Record]] = {}
        #: the provenance of what this import writes
        self.stamp = self.origin.stamp(self.owner)

    def run(self) -> ImportReport:
        self.check_experiment()
        entries = self.spool.entries
        order = sorted(range(len(entries)), key=lambda i: entries[i].version or 0)
        state = self._prepare(order)
        current = [c for c in state["versions"] if not c["placeholder"]]
        mapping, keep, doomed = self._import_versions(order, self._by_source(current))
        self._set_aliases(state["aliases"], mapping, current, keep)
        self._remove(current, keep, doomed)
        return self.report

    def _prepare(self, order: list[int]) -> Record:
        """The registered model with the description and tags of its latest shared version;
        the placeholders an interrupted import left are deleted."""
        top = self.spool.load(order[-1])["model_version"] if order else None
        state = self.sink.prepare_registered_model(
            self.name,
            description=top["model_description"] if top else None,
            tags=top["model_tags"] if top else {},
            exact=self.exact,
        )
        placeholders = [c["version"] for c in state["versions"] if c["placeholder"]]
        if placeholders:
            self.sink.delete_versions(self.name, placeholders)
        return state

    def _by_source(self, current: list[Record]) -> dict[tuple[str, int], list[Record]]:
        """The versions here this table imported, by the shared version they came from."""
        by_source: dict[tuple[str, int], list[Record]] = defaultdict(list)
        for c in current:
            if not self.origin.matches(c["provenance"]):
                continue  # another table's version: never matched, only OVERWRITE removes it
            if c["source_version"] is not None:
                by_source[(c["source_model"], c["source_version"])].append(c)
        return by_source

    def _import_versions(
        self, order: list[int], by_source: dict[tuple[str, int], list[Record]]
    ) -> tuple[dict[int, int], set[int], list[int]]:
        """Every shared version imported, lowest number first: (shared number -> number here,
        the versions here that stay, those the import replaced)."""
        mapping: dict[int, int] = {}
        keep: set[int] = set()
        doomed: list[int] = []
        writing = self.progress.task(f"importing versions into {self.name}", len(order))
        for index in order:
            entry = self.spool.entries[index]
            record = self.spool.load(index)
            number = int(record["model_version"]["version"])
            candidates = by_source.get((record["model_version"]["name"], number), [])
            target, action, reason, dropped = self._version(entry, record, candidates)
            doomed += dropped
            mapping[number] = target
            keep.add(target)
            self.report.count(action)
            row: dict[str, Any] = {"source_version": number, "version": target, "action": action}
            if reason:
                row["reason"] = reason
            self.report.rows.append(row)
            self.progress.advance(writing)
        return mapping, keep, doomed

    def _set_aliases(
        self, have: dict[str, int], mapping: dict[int, int], current: list[Record], keep: set[int]
    ) -> None:
        """The shared aliases on their versions here; aliases no longer shared dropped (with
        OVERWRITE all others, else those on versions an import wrote)."""
        wanted: dict[str, int] = {}
        for index, entry in enumerate(self.spool.entries):
            for alias in self.spool.load(index)["model_version"]["aliases"]:
                wanted[alias] = mapping[int(entry.version or 0)]
        imported = {c["version"] for c in current if c["imported"]} | keep
        remove = [
            a for a, ver in have.items() if a not in wanted and (self.exact or ver in imported)
        ]
        changes = {a: ver for a, ver in wanted.items() if have.get(a) != ver}
        if changes or remove:
            self.sink.set_aliases(self.name, changes, remove=remove)

    def _remove(self, current: list[Record], keep: set[int], doomed: list[int]) -> None:
        """Last: the versions replaced (with OVERWRITE, every version not shared) deleted."""
        replaced = set(doomed)
        if self.exact:
            doomed = doomed + [c["version"] for c in current if c["version"] not in keep]
        doomed = sorted(set(doomed) - keep)
        self.sink.delete_versions(self.name, doomed)
        self.report.removed = len([d for d in doomed if d not in replaced])

    def check_experiment(self) -> None:
        """Refuse, before anything is written, an experiment ``models/<name>`` that arcuate
        did not create for this model (the runs it recreates would be mixed into it), or
        that was deleted (only OVERWRITE restores it)."""
        state = self.sink.experiment_state(self.experiment)
        if state is None:
            return
        if state["provenance"].owner != self.owner:
            raise ConflictError(
                f"experiment {self.experiment!r} exists and was not created by arcuate for "
                f"model {self.name!r}; a model import keeps the runs it recreates there",
                hint="rename that experiment, or import the model under another name",
            )
        if state["lifecycle_stage"] == "deleted" and not self.exact:
            raise ConflictError(
                f"experiment {self.experiment!r}, where the runs of model {self.name!r} are "
                "kept, is deleted (MLflow keeps its name)",
                hint=f"CREATE MODEL OVERWRITE {sql_name(self.name)} ... restores it, or restore "
                f"it with `mlflow experiments restore --experiment-id {state['experiment_id']}`",
            )

    # -- one version ----------------------------------------------------------------------
    def _version(
        self, entry: Entry, record: dict[str, Any], candidates: list[Record]
    ) -> tuple[int, str, str | None, list[int]]:
        """Import one shared version: (version here, action, reason, versions it replaces).

        A version here with the same source (the provider's model or run path) keeps its
        number: its files are updated where they are, when this import owns them.
        """
        mv = record["model_version"]
        complete = [c for c in candidates if c["content_hash"] == entry.content_hash]
        same = [
            c
            for c in candidates
            if c not in complete and c["source_uri"] == (mv.get("source") or "")
        ]
        chosen: Record | None = next(iter(complete or same), None)
        dropped = [c["version"] for c in candidates if c is not chosen]
        if chosen is not None:
            kept = self._keep(chosen, entry, record, complete=chosen in complete)
            if kept is not None:
                return chosen["version"], kept[0], kept[1], dropped
            dropped.append(chosen["version"])
        target = self._create(entry, record)
        return target, ("updated" if candidates else "added"), None, dropped

    def _keep(
        self,
        chosen: Record,
        entry: Entry,
        record: dict[str, Any],
        *,
        complete: bool,
    ) -> tuple[str, str | None] | None:
        """Bring an existing version up to date in place: (action, reason), or None when it
        cannot be kept (its run is gone, or its files must move)."""
        run = self._version_run(chosen)
        if run is _GONE:
            return None
        if complete and run is not None and not run.owned:
            return "unchanged", None  # the run's owner keeps those files right
        placed = self._place(entry, record, run, check=complete)
        if placed is None and run is not None and not self.exact:
            return "stale", self._stale_reason(run)
        if placed is None or placed.source != chosen["source"]:
            return None
        if complete and not placed.written:
            return "unchanged", None
        number = int(chosen["version"])
        self.sink.update_version(
            self.name,
            number,
            record["model_version"],
            entry.files,
            current=chosen,
            provenance=self.stamp,
            exact=self.exact,
        )
        placed.link_version(self.sink, self.name, number)
        self.sink.finish_version(self.name, number, content_hash=entry.content_hash)
        return ("updated" if chosen["content_hash"] else "added"), None

    def _stale_reason(self, run: _RunHere) -> str:
        again = f"CREATE EXPERIMENT {sql_name(run.experiment_name)}"
        if run.source:
            again += f" AS {sql_string(run.source)}"
        return (
            f"its files are in run {run.run_id} of experiment {run.experiment_name!r}, which "
            f"an experiment import owns, and the share changed them: run {again} again, then "
            "this statement (or CREATE MODEL OVERWRITE, which gives the version its own copy "
            "under a new number)"
        )

    def _create(self, entry: Entry, record: dict[str, Any]) -> int:
        """A new version for the shared one (its run and files placed first); its number."""
        run, placed = self._source_run(entry, record)
        if placed is None:
            placed = self._place(entry, record, run)
        assert placed is not None  # a run of its own (or none) always takes the files
        number = self.sink.create_version(
            self.name,
            record["model_version"],
            entry.files,
            source=placed.source,
            run_id=run.run_id if run else None,
            model_id=placed.model_id,
            provenance=self.stamp,
        )
        placed.link_version(self.sink, self.name, number)
        self.sink.finish_version(self.name, number, content_hash=entry.content_hash)
        return number

    # -- the run a version links to ---------------------------------------------------------
    def _version_run(self, chosen: Record) -> _RunHere | None:
        """The run an existing version links to (None: it has none; ``_GONE``: deleted)."""
        if not chosen.get("run_id"):
            return None
        state = self.sink.run_state(chosen["run_id"])
        if state is None or state["lifecycle_stage"] != "active":
            return _GONE
        return _RunHere(
            state["run_id"],
            str(state["experiment_id"]),
            state["artifact_uri"],
            owned=self._owns(state["provenance"]),
            experiment_name=state.get("experiment_name") or "",
            source=state["provenance"].source,
        )

    def _owns(self, found: Provenance) -> bool:
        return found.owner == self.owner and self.origin.matches(found)

    def _source_run(
        self, entry: Entry, record: dict[str, Any]
    ) -> tuple[_RunHere | None, _Placed | None]:
        """The run a new version links to, and its files when they are in place already.

        A run an experiment import brought from the same provider and share is linked when
        it holds exactly the version's files (they are not written); otherwise the model
        import's own copy of the run is used, created if need be.
        """
        run = record.get("run")
        src = (run or {}).get("run_id") or record["model_version"].get("run_id")
        if not src:
            return None, None
        for candidate in self._foreign_runs(src):
            placed = self._place(entry, record, candidate)
            if placed is not None:
                return candidate, placed
        return self._own_run(src, record, entry), None

    def _foreign_runs(self, src: str) -> list[_RunHere]:
        """Complete runs of ``src`` that an experiment import brought from this very provider
        and share (none when the provider is unknown)."""
        if not self.origin.family:
            return []
        if src not in self._foreign:
            found = [
                r
                for r in self.sink.find_runs(src)
                if r["content_hash"]
                and r["lifecycle_stage"] == "active"
                and r["provenance"].owner == prov.EXPERIMENT_OWNER
                and self.origin.same_share(r["provenance"])
            ]
            # the oldest experiment first (ids are numbers in SQL stores), then by run id
            found.sort(key=lambda r: (len(r["experiment_id"]), r["experiment_id"], r["run_id"]))
            self._foreign[src] = [
                _RunHere(r["run_id"], str(r["experiment_id"]), r["artifact_uri"], owned=False)
                for r in found
            ]
        return self._foreign[src]

    def _experiment(self) -> str:
        """The id of ``models/<name>``, created (tagged as this model's) when first needed."""
        if self._eid is None:
            self._eid = self.sink.prepare_experiment(
                self.experiment, {}, update_tags=False, restore=self.exact, owner=self.owner
            )
        return self._eid

    def _own_runs(self) -> dict[str, list[Record]]:
        """This import's copies of source runs, by source run id (complete ones first)."""
        if self._own is None:
            self._own = defaultdict(list)
            if self.sink.experiment_state(self.experiment) is not None:
                eid = self._experiment()
                for s in self.sink.list_runs(eid):
                    if s["lifecycle_stage"] == "active" and self._owns(s["provenance"]):
                        self._own[s["source_run_id"]].append(dict(s, experiment_id=eid))
                for states in self._own.values():
                    states.sort(key=lambda s: not s["content_hash"])
        return self._own

    def _own_run(self, src: str, record: dict[str, Any], entry: Entry) -> _RunHere | None:
        """The model import's own copy of source run ``src``: its metadata and the version's
        logged model (the run's other artifacts are not in a model table)."""
        run = record.get("run")
        found = self._own_runs().get(src, [])
        if run is None:  # the table has no record of the run: only an earlier copy can serve
            return self._here(found[0]) if found else None
        digest = _run_digest(run)
        if found and found[0]["content_hash"] == digest:
            return self._here(found[0])
        eid = self._experiment()
        mv = record["model_version"]
        slim = dict(run)
        slim["logged_models"] = [
            m for m in run["logged_models"] if m["model_id"] == mv.get("model_id")
        ]
        fresh = not found
        if fresh:
            run_id = self.sink.create_run(eid, slim, source_run_id=src, provenance=self.stamp)
        else:
            run_id = found[0]["run_id"]
        model_ids: dict[str, str] = {}
        files: list[dict[str, Any]] = []
        for lm in slim["logged_models"]:
            existing = None if fresh else self._lookup_model(eid, run_id, lm["model_id"])
            model_ids[lm["model_id"]] = existing or self.sink.create_logged_model(eid, run_id, lm)
            owner = OWNER_LOGGED_MODEL_PREFIX + lm["model_id"]
            files += [dict(f, owner=owner) for f in entry.files if f["owner"] == OWNER_MODEL]
        stats = self.sink.fill_run(
            run_id, slim, files, run_ids={}, model_ids=model_ids, fresh=fresh, exact=False
        )
        self.report.add_files(stats)
        self.sink.finish_run(run_id, content_hash=digest, provenance=self.stamp)
        written = self.sink.run_state(run_id)
        assert written is not None  # just written
        state = {
            "run_id": run_id,
            "experiment_id": eid,
            "artifact_uri": written["artifact_uri"],
            "content_hash": digest,
        }
        self._own_runs()[src] = [state]
        return self._here(state)

    @staticmethod
    def _here(state: Record) -> _RunHere:
        return _RunHere(
            state["run_id"], str(state["experiment_id"]), state["artifact_uri"], owned=True
        )

    # -- a version's files ------------------------------------------------------------------
    def _place(
        self, entry: Entry, record: dict[str, Any], run: _RunHere | None, *, check: bool = False
    ) -> _Placed | None:
        """Put a version's files where MLflow can serve them (see docs/recipient.md, "Where
        things go"). In a run another import owns nothing is written: the files must be
        there already (else None). ``check``: the version is complete, so the files are only
        checked (their bytes read where they are local) and repaired if need be."""
        loc = self._locate(record, run)
        deep = None if check else True
        if run is None or run.owned:
            return self._write(loc, entry, run, deep=deep)
        if loc.kind == "bare":  # files the run never held: a logged model of this import's
            return self._write(loc, entry, None, deep=deep)
        return self._find_in(loc, entry, run)

    def _locate(self, record: dict[str, Any], run: _RunHere | None) -> _Location:
        """Where the version's files belong: a logged model (the shared one named, or one of
        the import's own), or a path of the run's artifacts."""
        mv = record["model_version"]
        shared_run = record.get("run") or {}
        src = mv.get("source") or ""
        src_run = shared_run.get("run_id") or mv.get("run_id")
        runs_path = _runs_path(src, src_run)
        model = _shared_model(mv, shared_run, runs_path if run is not None else "")
        if model is not None:
            style = "models" if (mv.get("model_id") or run is None) else "runs"
            return _Location("logged_model", model, runs_path, style)
        if run is not None and runs_path:
            return _Location("run_path", None, runs_path, "runs")
        rel = _artifact_path(src, src_run) if run is not None else None
        if rel:
            return _Location("run_path", None, rel, "artifact_uri")
        # a location the recipient cannot reach: the files become a logged model, whose id
        # stays the same when the files change (so the version keeps its number)
        key = f"{self.origin.tag}\x00{mv['name']}\x00{mv['version']}"
        bare = f"v{mv['version']}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        return _Location("bare", _bare_model(bare), "", "models")

    def _source_of(self, loc: _Location, run: _RunHere | None, model_id: str | None) -> str:
        if loc.style == "models":
            return f"models:/{model_id}"
        assert run is not None
        if loc.style == "runs":
            return f"runs:/{run.run_id}/{loc.path}"
        return f"{run.artifact_uri.rstrip('/')}/{loc.path}"

    def _write(
        self, loc: _Location, entry: Entry, run: _RunHere | None, *, deep: bool | None
    ) -> _Placed:
        """The files written into a location this import owns (extra files there removed)."""
        run_id = run.run_id if run else None
        if loc.model is not None:
            eid = run.experiment_id if run else self._experiment()
            mid, stats = self.sink.ensure_logged_model(eid, run_id, loc.model, entry.files)
            self.report.add_files(stats)
            model_id = mid if loc.style == "models" else None
            source = self._source_of(loc, run, mid)
            return _Placed(source, model_id, mid, loc.model, written=int(stats["files"]))
        assert run_id is not None
        stats = self.sink.upload_run_files(run_id, entry.files, loc.path, prune=True, deep=deep)
        self.report.add_files(stats)
        return _Placed(self._source_of(loc, run, None), None, written=int(stats["files"]))

    def _find_in(self, loc: _Location, entry: Entry, run: _RunHere) -> _Placed | None:
        """The version's files in a run another import owns, if it holds exactly them. The
        ``model.sig`` a signed table adds is not compared: that run holds its own table's
        (signed anew, other bytes for the same files) or none (docs/trust.md)."""
        files = [f for f in entry.files if not f.get("model_sig")]
        ignore = frozenset({MODEL_SIG_PATH}) if len(files) < len(entry.files) else frozenset()
        if loc.model is None:
            if self.sink.same_files(run.artifact_uri, files, loc.path, ignore=ignore):
                return _Placed(self._source_of(loc, run, None), None)
            return None
        if run.experiment_id not in self._models:
            self._models[run.experiment_id] = self.sink.list_logged_models(run.experiment_id)
        for lm in self._models[run.experiment_id]:
            if lm["source_model_id"] != loc.model["model_id"] or lm["run_id"] != run.run_id:
                continue
            if self.sink.same_files(lm["artifact_location"], files, ignore=ignore):
                mid = lm["model_id"]
                model_id = mid if loc.style == "models" else None
                return _Placed(self._source_of(loc, run, mid), model_id, mid, loc.model)
        return None

    def _lookup_model(self, eid: str, run_id: str | None, src_mid: str) -> str | None:
        for lm in self.sink.list_logged_models(eid):
            if lm["source_model_id"] == src_mid and lm["run_id"] == run_id:
                return str(lm["model_id"])
        return None


def _run_digest(run: dict[str, Any]) -> str:
    """What a model import's own copy of a run holds (its metadata; logged models aside)."""
    body = {k: val for k, val in run.items() if k != "logged_models"}
    text = json.dumps({"model-table-run": body}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _runs_path(src: str, src_run: str | None) -> str:
    """The path in a ``runs:/<source run>/<path>`` source ("" for any other source)."""
    prefix = f"runs:/{src_run}/"
    return src[len(prefix) :].strip("/") if src_run and src.startswith(prefix) else ""


def _artifact_path(src: str, src_run: str | None) -> str | None:
    """The path under the source run's artifact URI that a source names, if it is one."""
    marker = f"/{src_run}/artifacts/" if src_run else None
    if marker and marker in src:
        rel = src.split(marker, 1)[1].strip("/")
        if rel and all(p not in ("", ".", "..") for p in rel.split("/")):
            return rel
    return None


def _shared_model(mv: Record, shared_run: Record, runs_path: str) -> Record | None:
    """The shared logged model holding a version's files: the one it names, or the one of
    its run named like its ``runs:/`` path; None when the files are no logged model's."""
    logged = {m["model_id"]: m for m in shared_run.get("logged_models") or ()}
    src_mid = mv.get("model_id")
    if src_mid is None and runs_path:
        src_mid = next((m["model_id"] for m in logged.values() if m["name"] == runs_path), None)
    if src_mid is None:
        return None
    return logged.get(src_mid) or _bare_model(src_mid)


def _bare_model(model_id: str) -> dict[str, Any]:
    """A logged-model record for files that came without one."""
    return {
        "model_id": model_id,
        "name": "model",
        "model_type": None,
        "status": "READY",
        "status_message": None,
        "creation_time": None,
        "step": None,
        "tags": {},
        "params": {},
    }
