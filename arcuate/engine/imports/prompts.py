"""Import a shared prompt table into an MLflow prompt: every version with its number.

A prompt table is small (at most MAX_PROMPT_VERSIONS rows of bounded size, no files), so it
is validated in memory, not spooled. Everything is checked before the first write: each row
(:mod:`arcuate.format.prompts`), the rows together, and the plan against what the recipient
holds. A prompt name that is a registered model here is refused; a version that exists here
with other content is refused (MLflow prompt versions are immutable; OVERWRITE does not change
that); a new version whose number MLflow has already used here is refused.

Then the prompt is created (or its description and tags updated), new versions are created in
ascending order (a missing number becomes a placeholder version, created then deleted), and
aliases are set last. Versions equal to the shared ones are left alone, so running the import
again writes nothing. OVERWRITE makes the prompt's tags and aliases exactly the shared ones and
deletes versions here that the share does not hold.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from arcuate.backends.protocols import PromptSink, Record
from arcuate.engine import signing
from arcuate.engine.imports.importer import statement
from arcuate.engine.result import StatementResult
from arcuate.errors import BackendUnavailableError, ConflictError, ShareDataError
from arcuate.format import limits
from arcuate.format import validate as v
from arcuate.format.columns import check_list_bounds
from arcuate.format.manifest import (
    SIGNATURE_KIND,
    Carried,
    add_digest,
    carried,
    record_resource,
    row_digest,
)
from arcuate.format.prompts import (
    SharedPrompt,
    check_prompt_name,
    check_prompt_rows,
    parse_prompt_row,
)

if TYPE_CHECKING:
    from arcuate.engine.context import Context


@dataclass
class Signed:
    """A prompt table's signature row, and each version row's signed digest and export time:
    what :func:`arcuate.engine.signing.check_spool` checks."""

    signature: Carried | None = None
    digests: dict[str, str] = field(default_factory=dict)
    exported_at: set[str] = field(default_factory=set)

    def add(self, row: dict[str, Any], i: int) -> None:
        """Keep row ``i``'s digest (a version named twice is refused) and export time."""
        add_digest(self.digests, record_resource(row), row_digest(row), i)
        at = row.get("exported_at")
        self.exported_at.add(at.isoformat() if isinstance(at, datetime) else str(at))


def read_prompt_rows(
    batches: Iterable[pa.RecordBatch], signed: Signed | None = None
) -> list[SharedPrompt]:
    """Every row of a shared prompt table, validated, ascending by version; a signature row
    is kept in ``signed`` (and each row's digest, for an import that verifies), else skipped.

    Raises:
        ShareDataError: the first bad row (0-based position in the stream) and field.
    """
    marked = getattr(batches, "content", None)
    if marked is not None and marked != "prompt":
        raise ShareDataError(
            f"the shared table is marked as a{'n' if marked == 'experiment' else ''} {marked} "
            f"table in its description, not a prompt table; import it with CREATE {marked.upper()}",
            field="kind",
        )
    out: list[SharedPrompt] = []
    seen = size = 0
    for batch in batches:
        if not isinstance(batch, (pa.RecordBatch, pa.Table)):
            raise ShareDataError(f"expected Arrow record batches, got {type(batch).__name__}")
        v.check_columns(batch.schema.names, seen)
        if "prompt_version" not in batch.schema.names:
            raise ShareDataError(
                "the shared table lacks column prompt_version: it is not a prompt table",
                row=seen,
                field="prompt_version",
            )
        if seen + batch.num_rows > limits.MAX_PROMPT_VERSIONS + 1:  # + a signature row
            raise v.too_many(seen + batch.num_rows, limits.MAX_PROMPT_VERSIONS, seen, "rows")
        size += batch.nbytes
        if size > limits.MAX_PROMPT_TABLE_BYTES:
            raise ShareDataError(
                f"the prompt table holds more than {limits.MAX_PROMPT_TABLE_BYTES} bytes (Arrow); "
                "a prompt table is validated in memory",
                row=seen,
                field="prompt_version",
            )
        check_list_bounds(batch, seen)
        for j, row in enumerate(batch.to_pylist()):
            if row.get("kind") == SIGNATURE_KIND:
                sig = signed.signature if signed else None
                found = carried(row, seen + j, sig)
                if signed is not None:
                    signed.signature = found
                continue
            if signed is not None:
                signed.add(row, seen + j)
            out.append(parse_prompt_row(row, seen + j))
        seen += batch.num_rows
    if not out:
        raise ShareDataError("the shared table holds no prompt version", row=0, field="kind")
    out.sort(key=lambda r: r.version)
    check_prompt_rows(out)
    return out


def import_prompt(
    batches: Iterable[pa.RecordBatch],
    prompt: str,
    ctx: Context,
    *,
    overwrite: bool = False,
    source: str = "",
    verify_key: str | None = None,
    verify_ca: bool = False,
) -> StatementResult:
    """Import a shared prompt table into prompt ``prompt`` (see the module docstring);
    ``verify_key`` (or ``require_signature``): its signature is checked before any write.

    Raises:
        ShareDataError: a row is malformed or hostile (nothing has been written).
        ConflictError: the name is a registered model here, a version here differs from the
            shared one, or a version number cannot be kept (nothing has been written).
    """
    started = time.monotonic()
    name = check_prompt_name(prompt)
    sink = ctx.model_sink
    if not isinstance(sink, PromptSink):
        raise BackendUnavailableError("the configured MLflow backend cannot import prompts")
    key = signing.pinned_key(verify_key, ctx.settings.require_signature, verify_ca)
    signed = Signed() if key is not None else None
    rows = read_prompt_rows(batches, signed)
    seen = signing.check_spool(signed, key, source)
    state = sink.prompt_state(name)
    new, unchanged = _plan(name, rows, state)
    doomed = _doomed(rows, state) if overwrite else []
    wanted = _prompt(rows)
    if new or doomed or _changes(wanted, state, overwrite):
        sink.write_prompt(
            name,
            wanted,
            [_version(r) for r in new],
            state=state,
            exact=overwrite,
            source=source,
            remove=doomed,
        )
    summary: dict[str, Any] = {
        "prompt": name,
        "versions": len(rows),
        "added": len(new),
        "unchanged": len(unchanged),
        "removed": len(doomed),
        "seconds": round(time.monotonic() - started, 3),
    } | signing.signature_note(seen)
    same = {r.version for r in unchanged}
    return StatementResult(
        statement=statement("PROMPT", name, overwrite, source),
        action="import_prompt",
        summary=summary,
        rows=[
            {"version": r.version, "action": "unchanged" if r.version in same else "added"}
            for r in rows
        ],
    )


def _version(r: SharedPrompt) -> Record:
    return {"row": r.row, "version": r.version, **_content(r)}


def _plan(
    name: str, rows: list[SharedPrompt], state: Record | None
) -> tuple[list[SharedPrompt], list[SharedPrompt]]:
    """(versions to create, versions already here and equal); refuses what cannot be done."""
    here: dict[int, Record] = (state or {}).get("versions", {})
    top = int((state or {}).get("top", 0))
    new: list[SharedPrompt] = []
    same: list[SharedPrompt] = []
    for r in rows:
        if r.version in here:
            if here[r.version] != _content(r):
                raise ConflictError(
                    f"prompt {name!r} version {r.version} here differs from the shared one "
                    "(MLflow prompt versions cannot be changed)",
                    hint="import the prompt under another name, or delete the prompt here",
                )
            same.append(r)
        elif r.version <= top:
            raise ConflictError(
                f"prompt {name!r}: version number {r.version} was already used here (its "
                "version was deleted); version numbers cannot be kept",
                hint="import the prompt under another name",
            )
        else:
            new.append(r)
    return new, same


def _content(r: SharedPrompt) -> Record:
    return {
        "template": r.template,
        "commit_message": r.commit_message,
        "tags": r.tags,
        "response_format": r.response_format,
        "model_config": r.model_config,
    }


def _doomed(rows: list[SharedPrompt], state: Record | None) -> list[int]:
    shared = {r.version for r in rows}
    return sorted(n for n in (state or {}).get("versions", {}) if n not in shared)


def _prompt(rows: list[SharedPrompt]) -> Record:
    """The prompt as shared: description, tags and aliases (alias -> version)."""
    first = rows[0]
    return {
        "description": first.description,
        "tags": first.prompt_tags,
        "aliases": {a: r.version for r in rows for a in r.aliases},
    }


def _changes(wanted: Record, state: Record | None, exact: bool) -> bool:
    """Whether the prompt's description, tags or aliases here differ from ``wanted``."""
    if state is None:
        return True
    if state["description"] != wanted["description"]:
        return True
    tags, aliases = state["tags"], state["aliases"]
    if any(tags.get(k) != val for k, val in wanted["tags"].items()):
        return True
    if any(aliases.get(a) != n for a, n in wanted["aliases"].items()):
        return True
    return exact and (set(tags) != set(wanted["tags"]) or set(aliases) != set(wanted["aliases"]))
