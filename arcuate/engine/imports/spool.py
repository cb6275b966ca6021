"""Pass 1 of an import: every shared row validated and spooled to local disk.

Record metadata goes to one pack file, small inline files to another
(:mod:`arcuate.backends.spooled` reads them), larger ones and chunk rows to files on disk;
chunked files are reassembled and checked once all rows are read. Memory holds one batch and
a small index (:class:`Entry` per record), never the table. A bad row raises before anything is
written anywhere else. Pass 2 (:mod:`~arcuate.engine.imports.experiments`,
:mod:`~arcuate.engine.imports.models`) reads the records back one at a time.

Where pass 1 runs (here, or in a helper process for a large shared table) is decided by
:mod:`~arcuate.engine.imports.ingest`; this module runs it here, and the helper process runs
this same code (:mod:`~arcuate.engine.imports.worker`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

import pyarrow as pa

from arcuate.backends.spooled import PACK_BYTES
from arcuate.engine.imports.genai import GenAISpool
from arcuate.engine.imports.traces import TraceSpool
from arcuate.engine.spools import new_spool_dir
from arcuate.errors import ShareDataError
from arcuate.format import validate as v
from arcuate.format.columns import batch_metrics, check_list_bounds, chunk_data, without_metrics
from arcuate.format.history import MetricColumns
from arcuate.format.manifest import CODE as MODEL_SIG_CODE
from arcuate.format.manifest import (
    MODEL_SIG_PATH,
    MODEL_SIGNATURE_KIND,
    SIGNATURE_KIND,
    UNSIGNED_KINDS,
    VALIDATED_KINDS,
    Carried,
    ModelSig,
    add_digest,
    carried,
    check_model_sig,
    model_signatures,
    record_resource,
    row_digest,
    shared_digest,
)
from arcuate.format.schema import EVAL_RECORD, RUN, SCORER, TRACE, Content

#: Arrow bytes turned into Python values at a time while validating (bounds the Python copy).
_SLICE_BYTES = 4 * 1024 * 1024
#: The spool's pack files: every record's document, and the inline files up to
#: :data:`~arcuate.backends.spooled.PACK_BYTES`, each appended to one file (creating a file
#: per record and per small file is a system call each, which can cost more than validating
#: them: about a millisecond on a virtual machine's ext4); entries and file records say
#: where theirs are.
RECORDS_PACK: Final = "records.pack"
BLOBS_PACK: Final = "blobs.pack"


def _slice_rows(batch: pa.RecordBatch | pa.Table) -> int:
    """Rows per slice so that a slice holds about :data:`_SLICE_BYTES` of Arrow data."""
    if batch.num_rows == 0:
        return 1
    rows = int(batch.num_rows)
    per_row = max(1, int(batch.nbytes) // rows)
    return max(1, min(rows, _SLICE_BYTES // per_row))


def _text_time(value: Any) -> str:
    """An ``exported_at`` as signed: ISO text (what a signature's claim holds)."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


# -- spool ---------------------------------------------------------------------------------------
@dataclass
class Entry:
    """What stays in memory of a spooled record: where it is and what it weighs."""

    row: int
    kind: str
    key: str
    content_hash: str
    files: list[dict[str, Any]]
    metric_points: int
    lifecycle_stage: str = "active"
    parent: str | None = None
    version: int | None = None
    #: source ids of the logged models the run owns, and of those it points at (metric
    #: links, model inputs): what decides whether it can be written in bulk
    models: list[str] = field(default_factory=list)
    model_refs: list[str] = field(default_factory=list)
    #: where the record's document is in the spool's records pack: offset and length
    doc_at: int = 0
    doc_bytes: int = 0


def _entry(
    record: v.SharedRecord, files: list[dict[str, Any]], run_text: str | None = None
) -> Entry:
    """What stays in memory of a spooled record (``run_text``: :func:`_run_text` of its run)."""
    run = record.run or {}
    return Entry(
        row=record.row,
        kind=record.kind,
        key=record.key,
        content_hash=_hash_record(record, run_text),
        files=files,
        metric_points=len(run.get("metrics") or ()),
        lifecycle_stage=run.get("lifecycle_stage") or "active",
        parent=run.get("parent_run_id"),
        version=(record.model_version or {}).get("version"),
        models=[lm["model_id"] for lm in run.get("logged_models") or ()],
        model_refs=sorted(
            {m["model_id"] for m in run.get("metrics") or () if m["model_id"]}
            | set(run.get("model_inputs") or ())
        ),
    )


def _run_text(run: dict[str, Any], history: MetricColumns | None = None) -> str:
    """A run as the content hash encodes it (keys sorted, no spaces). ``history``: the run's
    metric points as columns, whose text is made from them (the same characters)."""
    return _run_texts(run, history)[0]


def _run_texts(run: dict[str, Any], history: MetricColumns | None) -> tuple[str, str | None]:
    """(:func:`_run_text`, the same with the points of ``history`` left out, ``[]``: what the
    spool keeps beside the columns); the second is None when ``history`` is not used."""
    text = history.json_text() if history is not None else None
    if text is None:
        return json.dumps(run, sort_keys=True, separators=(",", ":"), allow_nan=True), None
    token = f"\x00metrics {uuid.uuid4().hex}"  # stands for the points' text
    marker = json.dumps(token)
    rest = json.dumps(
        {**run, "metrics": token},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=True,
    )
    if rest.count(marker) != 1:  # a value spelled like the marker: no shortcut
        return json.dumps(run, sort_keys=True, separators=(",", ":"), allow_nan=True), None
    return rest.replace(marker, text), rest.replace(marker, "[]")


def _hash_record(record: v.SharedRecord, run_text: str | None = None) -> str:
    """Content hash of what a record would write (times that cannot be set are left out).

    ``run_text`` is :func:`_run_text` of the record's run when the caller has it: the text
    hashed is the same either way (``"run"`` is the last of the body's sorted keys).
    """
    body: dict[str, Any] = {"kind": record.kind, "key": record.key}
    if record.run is not None and run_text is None:
        body["run"] = record.run
    if record.model_version is not None:
        mv = dict(record.model_version)
        for skip in (
            "name",
            "model_description",
            "model_tags",
            "aliases",
            "creation_time",
            "last_updated_time",
        ):
            mv.pop(skip, None)
        body["model_version"] = mv
    body["files"] = sorted(
        ((f.owner, f.path, f.size, f.sha256) for f in record.files), key=lambda t: (t[0], t[1])
    )
    text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    if record.run is not None and run_text is not None:
        text = f'{text[:-1]},"run":{run_text}}}'
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Spool:
    """Validated records and file bytes on local disk, read back one record at a time."""

    def __init__(self, root: Path, content: Content, *, create: bool = True) -> None:
        self.root = root
        self.content = content
        self.entries: list[Entry] = []
        self.experiment: dict[str, Any] | None = None
        self.rows = 0
        self.bytes = 0
        #: peak resident bytes of the helper process that read the table, if one did
        self.helper_peak_rss = 0
        self._by_key: dict[str, int] = {}
        self._chunks: dict[tuple[str, str, str], list[v.ChunkMeta]] = defaultdict(list)
        self._chunk_dirs: dict[tuple[str, str, str], Path] = {}
        #: the pack files being appended to (records, small inline files), by name
        self._packs: dict[str, BinaryIO] = {}
        self._model_ids: dict[str, int] = {}
        self._aliases: dict[str, int] = {}
        #: shared model.sig files (bytes in blobs/), written into their directories by _finish
        self._model_sigs: list[tuple[ModelSig, Path]] = []
        #: a signed table's signature row (kept whether or not it is verified), and, when the
        #: import verifies one (:meth:`digest_records`), each record's digest and the
        #: exported_at values the rows carry (arcuate.engine.signing)
        self.signature: Carried | None = None
        self.digests: dict[str, str] | None = None
        self.exported_at: set[str] = set()
        if create:
            root.mkdir(parents=True, exist_ok=True)
            (root / "blobs").mkdir()
            (root / "chunks").mkdir()
        #: the table's scorer versions and evaluation records (format 2, experiment tables)
        self.genai = GenAISpool(root)
        #: the table's traces (format 2, experiment tables)
        self.traces = TraceSpool(root)

    @classmethod
    @contextlib.contextmanager
    def open(cls, content: Content) -> Iterator[Spool]:
        """A spool in a fresh temporary directory, removed afterwards (and, should this process
        be killed, by the next import: :mod:`arcuate.engine.spools`)."""
        root = new_spool_dir()
        try:
            yield cls(root, content)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # -- pass 1 --------------------------------------------------------------------------------
    def ingest(
        self, batches: Iterable[pa.RecordBatch], tick: Callable[[int], None] | None = None
    ) -> None:
        """Validate every row of every batch and spool it; then check and join chunked files.

        ``tick`` is told the rows read so far after each batch.

        Raises:
            ShareDataError: the first bad row, named by its 0-based position in the stream.
        """
        self.check_marker(batches)
        try:
            for batch in batches:
                if not isinstance(batch, (pa.RecordBatch, pa.Table)):
                    raise ShareDataError(
                        f"expected Arrow record batches, got {type(batch).__name__}",
                        row=self.rows,
                    )
                v.check_columns(batch.schema.names, self.rows)
                for start in range(0, batch.num_rows, step := _slice_rows(batch)):
                    part = batch.slice(start, step)
                    first = self.rows + start
                    for offset, row in enumerate(self._rows(part, first)):
                        self._read_row(row, first + offset)
                self.rows += batch.num_rows
                if tick is not None:
                    tick(self.rows)
        finally:
            self._close_packs()
        self._finish()

    def digest_records(self) -> None:
        """Keep each record's signed digest while ingesting (an import that verifies)."""
        self.digests = {}

    def _read_row(self, row: dict[str, Any], i: int) -> None:
        if row.get("kind") == SIGNATURE_KIND:
            self.signature = carried(row, i, self.signature)
            return
        kind = row.get("kind")
        if self.digests is not None and kind not in VALIDATED_KINDS | UNSIGNED_KINDS:
            self._digest(row, i, row_digest(row))  # scorers, eval records, traces: as read
        if kind == MODEL_SIGNATURE_KIND:
            self._add_model_sigs(model_signatures(row, i))
            return
        routed = kind if self.content == "experiment" else None
        if routed in (SCORER, EVAL_RECORD):
            self.genai.add(row, i)
            return
        if routed == TRACE:
            self.traces.add(row, i)
            return
        item = v.parse_row(row, i, self.content)
        if self.digests is not None and isinstance(item, v.SharedRecord):
            self._digest(row, i, shared_digest(item, _text_time(row.get("exported_at"))))
        self._add(item)

    def _digest(self, row: dict[str, Any], i: int, digest: str) -> None:
        """Keep row ``i``'s signed digest (a name seen twice is refused) and its export time."""
        assert self.digests is not None
        add_digest(self.digests, record_resource(row), digest, i)
        self.exported_at.add(_text_time(row.get("exported_at")))

    def check_marker(self, batches: Iterable[pa.RecordBatch]) -> None:
        """A shared table is read only as what its marker says it holds (its rows are then
        checked to be of that kind): a model table cannot become an experiment."""
        marked = getattr(batches, "content", None)
        if marked is None or marked == self.content:
            return
        article = {"experiment": "an experiment", "prompt": "a prompt"}.get(marked, "a model")
        verb = f"CREATE {marked.upper()}" if marked in ("experiment", "prompt") else "CREATE MODEL"
        wanted = "an experiment" if self.content == "experiment" else "a model"
        raise ShareDataError(
            f"the shared table is marked as {article} table in its description, not "
            f"{wanted} table; import it with {verb}",
            field="kind",
        )

    def state(self) -> dict[str, Any]:
        """The index of an ingested spool, as JSON (what a helper process hands back)."""
        return {
            "entries": [dataclasses.asdict(e) for e in self.entries],
            "experiment": self.experiment,
            "rows": self.rows,
            "bytes": self.bytes,
            "genai": self.genai.state(),
            "signature": self.signature.to_json() if self.signature else None,
            "digests": self.digests,
            "exported_at": sorted(self.exported_at),
            "traces": self.traces.state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """The index a helper process handed back (:meth:`state`), after it filled this spool."""
        self.entries = [Entry(**e) for e in state["entries"]]
        self.experiment = state["experiment"]
        self.rows = int(state["rows"])
        self.bytes = int(state["bytes"])
        self._by_key = {e.key: i for i, e in enumerate(self.entries)}
        self.genai.restore(state.get("genai") or {})
        self.traces.restore(state.get("traces") or {})
        self.helper_peak_rss = int(state.get("peak_rss") or 0)
        sig = state.get("signature")
        self.signature = Carried.from_json(sig) if sig else None
        self.digests = state.get("digests")
        self.exported_at = set(state.get("exported_at") or ())

    def python_rows(self, batch: pa.RecordBatch | pa.Table, first: int) -> list[dict[str, Any]]:
        """The rows of ``batch`` as pass 1 reads them (a provider's signer digests these)."""
        out: list[dict[str, Any]] = []
        for start in range(0, batch.num_rows, step := _slice_rows(batch)):
            out.extend(self._rows(batch.slice(start, step), first + start))
        return out

    def _rows(self, batch: pa.RecordBatch | pa.Table, first: int) -> list[dict[str, Any]]:
        """The rows of a (small) batch as Python values; metric histories checked column-wise
        when they pass (:mod:`arcuate.format.columns`), else left for row-by-row checks.
        Every list's length is checked first, on Arrow's lengths."""
        check_list_bounds(batch, first)
        if not isinstance(batch, pa.RecordBatch):
            return self._pylist(batch, first)
        checked = views = None
        with contextlib.suppress(pa.ArrowException, ValueError, OverflowError):
            checked = batch_metrics(batch)
            if checked is not None:
                batch = without_metrics(batch)
        with contextlib.suppress(pa.ArrowException, ValueError, OverflowError):
            split = chunk_data(batch)
            if split is not None:
                batch, views = split
        rows = self._pylist(batch, first)
        for j, row in enumerate(rows):
            if checked is not None and checked[j] is not None and isinstance(row.get("run"), dict):
                row["run"]["metrics"] = checked[j]
            if views is not None and isinstance(row.get("chunk"), dict):
                row["chunk"]["data"] = views[j]
        return rows

    def _pylist(self, batch: pa.RecordBatch | pa.Table, first: int) -> list[dict[str, Any]]:
        try:
            return batch.to_pylist()  # type: ignore[no-any-return]
        except (pa.ArrowException, ValueError, OverflowError) as exc:
            # find the row that Arrow cannot turn into Python values (e.g. a year 10000 date)
            for j in range(batch.num_rows):
                try:
                    batch.slice(j, 1).to_pylist()
                except (pa.ArrowException, ValueError, OverflowError) as inner:
                    raise ShareDataError(
                        f"the row cannot be read: {inner}", row=first + j
                    ) from inner
            raise ShareDataError(f"the batch cannot be read: {exc}", row=first) from exc

    def _add(self, item: v.SharedRecord | v.SharedChunk) -> None:
        if isinstance(item, v.SharedChunk):
            self._add_chunk(item)
            return
        record = item
        self._check_unique(record)
        if self.experiment is None and record.experiment is not None:
            self.experiment = record.experiment
        index = len(self.entries)
        files = self._spool_files(index, record)
        doc = {
            "row": record.row,
            "kind": record.kind,
            "key": record.key,
            "experiment": record.experiment,
            "model_version": record.model_version,
        }
        run_text, spooled, history = None, None, None
        if record.run is not None:
            if type(record.run.get("metrics")) is v.CheckedMetrics:
                history = MetricColumns.of(record.run["metrics"])
            run_text, spooled = _run_texts(record.run, history)
        if spooled is not None and history is not None:  # points as columns: read at a tenth
            doc["metric_columns"] = history.to_json()
        text = json.dumps(doc, allow_nan=True)
        text = f'{text[:-1]}, "run": {spooled or run_text or "null"}}}'
        data = text.encode("utf-8")
        entry = _entry(record, files, run_text)
        entry.doc_at, entry.doc_bytes = self._append(RECORDS_PACK, data), len(data)
        self.entries.append(entry)
        self._by_key[record.key] = index

    def _append(self, name: str, data: bytes) -> int:
        """``data`` appended to the pack file ``name`` of the spool; the offset it starts at."""
        pack = self._packs.get(name)
        if pack is None:
            pack = self._packs[name] = open(self.root / name, "ab")  # noqa: SIM115
        at = pack.tell()
        pack.write(data)
        return at

    def _close_packs(self) -> None:
        """Every pack written out and closed (pass 2 reads them from any thread)."""
        packs, self._packs = self._packs, {}
        for pack in packs.values():
            pack.close()

    def _check_unique(self, record: v.SharedRecord) -> None:
        """A key, a logged model's id and an alias may each appear once in a table."""
        if record.key in self._by_key:
            first = self.entries[self._by_key[record.key]].row
            raise ShareDataError(
                f"key {record.key!r} appears twice (first in row {first})",
                row=record.row,
                field="key",
            )
        if record.run is not None and record.kind == RUN:
            for j, lm in enumerate(record.run["logged_models"]):
                other = self._model_ids.get(lm["model_id"])
                if other is not None:
                    raise ShareDataError(
                        f"logged model {lm['model_id']!r} also belongs to row {other}",
                        row=record.row,
                        field=f"run.logged_models[{j}].model_id",
                    )
                self._model_ids[lm["model_id"]] = record.row
        if record.model_version is not None:
            for alias in record.model_version["aliases"]:
                other = self._aliases.get(alias)
                if other is not None:
                    raise ShareDataError(
                        f"alias {alias!r} is also on the version in row {other}",
                        row=record.row,
                        field="model_version.aliases",
                    )
                self._aliases[alias] = record.row

    def _spool_files(self, index: int, record: v.SharedRecord) -> list[dict[str, Any]]:
        """The record's inline files written to disk; each file's metadata and local path
        (chunked ones are joined there by :meth:`_finish`)."""
        files: list[dict[str, Any]] = []
        for n, f in enumerate(record.files):
            meta = f.meta()
            if f.data is not None and len(f.data) <= PACK_BYTES:
                meta["local"] = str(self.root / BLOBS_PACK)
                meta["at"] = self._append(BLOBS_PACK, f.data)
            else:  # one flat directory: a directory per record costs a mkdir and an rmdir
                meta["local"] = str(self.root / "blobs" / f"{index}-{n}")
                if f.data is not None:
                    with open(meta["local"], "xb") as fh:
                        fh.write(f.data)
            files.append(meta)
            self.bytes += f.size
        return files

    def _add_model_sigs(self, sigs: list[ModelSig]) -> None:
        """Keep a row's model.sig files on disk until their records are all read."""
        for sig in sigs:
            local = self.root / "blobs" / f"model-sig-{len(self._model_sigs)}"
            with open(local, "xb") as fh:
                fh.write(sig.data)
            self._model_sigs.append((dataclasses.replace(sig, data=b""), local))

    def _attach_model_sigs(self) -> None:
        """Each model.sig becomes one more file of its directory, at its root: checked to
        belong to a model directory of a record of this table that has no model.sig of its
        own, and to sign exactly that directory's files (docs/trust.md)."""
        keys: dict[str, int] = {}
        for sig, local in self._model_sigs:
            index = self._by_key.get(sig.key)
            if index is None:
                raise ShareDataError(
                    f"model.sig of {sig.owner} belongs to key {sig.key!r}, which has no record",
                    row=sig.row,
                    field="key",
                    code=MODEL_SIG_CODE,
                )
            if keys.setdefault(sig.key, sig.row) != sig.row:
                raise ShareDataError(
                    f"record {sig.key!r} has a second model_signature row (the first is row "
                    f"{keys[sig.key]})",
                    row=sig.row,
                    field="key",
                    code=MODEL_SIG_CODE,
                )
            entry = self.entries[index]
            listed = [(f["owner"], f["path"], f["sha256"]) for f in entry.files]
            check_model_sig(sig, entry.kind, listed)
            size = local.stat().st_size
            digest = hashlib.sha256(local.read_bytes()).hexdigest()
            entry.files.append(
                {
                    "owner": sig.owner,
                    "path": MODEL_SIG_PATH,
                    "size": size,
                    "sha256": digest,
                    "chunks": 0,
                    "local": str(local),
                    "model_sig": True,
                }
            )
            self.bytes += size
            # what the record writes now includes its model.sig files
            entry.content_hash = hashlib.sha256(
                f"{entry.content_hash}\x00{sig.owner}\x00{digest}".encode()
            ).hexdigest()
        self._model_sigs.clear()

    def _add_chunk(self, chunk: v.SharedChunk) -> None:
        ident = (chunk.key, chunk.owner, chunk.path)
        folder = self._chunk_dirs.get(ident)
        if folder is None:
            folder = self.root / "chunks" / str(len(self._chunk_dirs))
            folder.mkdir()
            self._chunk_dirs[ident] = folder
        target = folder / str(chunk.index)
        if target.exists():
            raise ShareDataError(
                f"chunk {chunk.index} of {chunk.owner}/{chunk.path} appears twice",
                row=chunk.row,
                field="chunk.index",
            )
        target.write_bytes(chunk.data)
        self._chunks[ident].append(
            v.ChunkMeta(chunk.row, chunk.index, chunk.offset, len(chunk.data))
        )

    def _finish(self) -> None:
        """Join chunked files (checking order, offsets, sizes, SHA-256); reject stray chunks.
        The version numbers of a model table must leave few gaps (each is a placeholder)."""
        self.genai.finish()
        self.traces.finish()
        if self.content == "model":
            v.check_version_numbers((e.row, int(e.version or 0)) for e in self.entries)
        used: set[tuple[str, str, str]] = set()
        for entry in self.entries:
            record = self._shared_record(entry)
            for meta, f in zip(entry.files, record.files, strict=True):
                if f.chunks == 0:
                    continue
                ident = (entry.key, f.owner, f.path)
                ordered = v.check_chunks(record, f, self._chunks.get(ident, []))
                used.add(ident)
                folder = self._chunk_dirs[ident]
                digest = hashlib.sha256()
                with open(meta["local"], "xb") as out:
                    for c in ordered:
                        part = folder / str(c.index)
                        data = part.read_bytes()
                        digest.update(data)
                        out.write(data)
                        part.unlink()
                v.check_digest(record, f, digest.hexdigest())
        for ident, chunks in self._chunks.items():
            if ident not in used:
                first = min(chunks, key=lambda c: c.row)
                key, owner, path = ident
                if key not in self._by_key:
                    msg = f"chunk of {owner}/{path} belongs to key {key!r}, which has no record"
                else:
                    msg = f"chunk of {owner}/{path} matches no chunked file of record {key!r}"
                raise ShareDataError(msg, row=first.row, field="chunk")
        self._attach_model_sigs()

    @staticmethod
    def _shared_record(entry: Entry) -> v.SharedRecord:
        files = [
            v.SharedFile(f["owner"], f["path"], f["size"], f["sha256"], None, f["chunks"])
            for f in entry.files
        ]
        return v.SharedRecord(entry.row, entry.kind, entry.key, None, None, None, files)

    # -- pass 2 --------------------------------------------------------------------------------
    def load(self, index: int, *, columns: bool = False) -> dict[str, Any]:
        """The record document of entry ``index``; with ``columns``, a run's validated metric
        points as :class:`~arcuate.format.history.MetricColumns` (else as dicts)."""
        entry = self.entries[index]
        with open(self.root / RECORDS_PACK, "rb") as pack:
            pack.seek(entry.doc_at)
            text = pack.read(entry.doc_bytes)
        if len(text) != entry.doc_bytes:
            raise OSError(f"the spool's records pack ends before record {index}")
        doc: dict[str, Any] = json.loads(text)
        history = doc.pop("metric_columns", None)
        if history is not None:
            points = MetricColumns.from_json(history)
            doc["run"]["metrics"] = points if columns else points.points()
        return doc
