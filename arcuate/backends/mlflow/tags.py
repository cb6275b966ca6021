"""The tags arcuate reads and writes in MLflow: every key declared once, and the rules for them.

Provenance and completeness live in ``arcuate.*`` tags (``docs/recipient.md`` lists them):
where a run or version came from (``arcuate.source_run_id``, ``arcuate.source_version``,
``arcuate.origin``...), which import owns it (``arcuate.owner``), and whether it is complete
(``arcuate.content_hash``, written last). The engine never sees these keys: the sink turns
them into the fields of :class:`~arcuate.backends.protocols.Provenance` and of the states it
lists. The public-API writer (``sink.py``) and the bulk writer (``bulk.py``) both build their
tags here, so the two paths leave the same tags. Standard library only (and arcuate's own
protocol types): a leaf module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from arcuate.backends.protocols import Provenance, Record

# -- arcuate's own keys ------------------------------------------------------------------------
SOURCE_RUN_ID: Final = "arcuate.source_run_id"
#: the share coordinate as the statement gave it
SOURCE: Final = "arcuate.source"
#: written last: an object without it is incomplete (an interrupted import finishes it)
CONTENT_HASH: Final = "arcuate.content_hash"
FILES_HASH: Final = "arcuate.files_hash"
SOURCE_PARENT_RUN_ID: Final = "arcuate.source_parent_run_id"
SOURCE_MODEL_ID: Final = "arcuate.source_model_id"
SOURCE_MODEL_VERSIONS: Final = "arcuate.source_model_versions"
SOURCE_MODEL: Final = "arcuate.source_model"
SOURCE_VERSION: Final = "arcuate.source_version"
SOURCE_URI: Final = "arcuate.source_uri"
PLACEHOLDER: Final = "arcuate.placeholder"
MAX_VERSION: Final = "arcuate.max_version"
#: an imported evaluation dataset's id at the provider (MLflow gives it a new id)
SOURCE_DATASET_ID: Final = "arcuate.source_dataset_id"
#: provider, share and table (``<endpoint>#<share>.<schema>.<table>``): engine/provenance.py
ORIGIN: Final = "arcuate.origin"
#: which import wrote a run (``experiment`` or ``model:<name>``); only the owner changes it
OWNER: Final = "arcuate.owner"
#: Tag keys of import leases start with this (:mod:`arcuate.backends.mlflow.lease`): arcuate
#: manages them (never shared, never removed by OVERWRITE).
LOCK_PREFIX: Final = "arcuate.lock."
#: Tags arcuate manages; the same keys arriving from a share (a re-shared import) are replaced.
MANAGED: Final = frozenset(
    {
        SOURCE_RUN_ID,
        SOURCE,
        CONTENT_HASH,
        FILES_HASH,
        SOURCE_PARENT_RUN_ID,
        SOURCE_MODEL_ID,
        SOURCE_MODEL_VERSIONS,
        SOURCE_MODEL,
        SOURCE_VERSION,
        SOURCE_URI,
        PLACEHOLDER,
        MAX_VERSION,
        SOURCE_DATASET_ID,
        ORIGIN,
        OWNER,
    }
)
#: arcuate's own version tags: the same keys arriving from a share are replaced (other
#: ``arcuate.*`` keys a provider's version carries are kept as they are)
VERSION_MANAGED: Final = frozenset(
    {SOURCE_MODEL, SOURCE_VERSION, SOURCE, SOURCE_URI, CONTENT_HASH, PLACEHOLDER, FILES_HASH}
    | {ORIGIN, OWNER}
)

# -- MLflow's keys -----------------------------------------------------------------------------
PARENT_TAG: Final = "mlflow.parentRunId"
USER_TAG: Final = "mlflow.user"
RUN_NAME_TAG: Final = "mlflow.runName"
LOG_MODEL_HISTORY_TAG: Final = "mlflow.log-model.history"
MODEL_VERSIONS_TAG: Final = "mlflow.modelVersions"


def is_managed(key: str) -> bool:
    """Whether ``key`` is arcuate's own (provenance, completeness, leases)."""
    return key in MANAGED or key.startswith(LOCK_PREFIX)


def files_digest(files: Iterable[Record]) -> str:
    """One digest over (path, size, sha256) of a file set: the ``arcuate.files_hash`` tag."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f["path"]):
        h.update(f"{f['path']}\x00{f['size']}\x00{f['sha256']}\n".encode())
    return h.hexdigest()


# -- provenance ----------------------------------------------------------------------------------
def provenance_tags(provenance: Provenance) -> dict[str, str]:
    """``arcuate.owner`` and ``arcuate.origin`` of an object an import writes (the coordinate,
    ``arcuate.source``, is written when the object is created: :func:`created_run_tags`)."""
    out: dict[str, str] = {}
    if provenance.owner is not None:
        out[OWNER] = provenance.owner
    if provenance.origin:
        out[ORIGIN] = provenance.origin
    return out


def provenance_of(tags: Mapping[str, str]) -> Provenance:
    """The provenance an object's tags record (None where a tag is missing)."""
    return Provenance(tags.get(SOURCE) or "", tags.get(ORIGIN), tags.get(OWNER))


# -- runs ----------------------------------------------------------------------------------------
def created_run_tags(source_run_id: str, run: Record, provenance: Provenance) -> dict[str, str]:
    """The tags a run is created with: its provenance and (read only at creation) its user."""
    tags = {SOURCE_RUN_ID: source_run_id, **provenance_tags(provenance)}
    if provenance.source:
        tags[SOURCE] = provenance.source
    if run.get("user_id"):
        tags[USER_TAG] = run["user_id"]
    return tags


def run_tags(run: Record, run_ids: Mapping[str, str]) -> dict[str, str]:
    """The tags a run should carry here: the shared ones with run ids remapped."""
    tags = {k: v for k, v in run["tags"].items() if not is_managed(k)}
    parent = run.get("parent_run_id") or tags.get(PARENT_TAG)
    if parent:
        new = run_ids.get(parent)
        if new is not None:
            tags[PARENT_TAG] = new
        else:
            # the parent was not shared (yet): no dangling id; remember the source's
            tags.pop(PARENT_TAG, None)
            tags[SOURCE_PARENT_RUN_ID] = parent
    if LOG_MODEL_HISTORY_TAG in tags:
        tags[LOG_MODEL_HISTORY_TAG] = _remap_history(tags[LOG_MODEL_HISTORY_TAG], run_ids)
    return tags


def stale_tags(current: Mapping[str, str], wanted: Mapping[str, str], *, exact: bool) -> list[str]:
    """Tags of a run here to delete: ids that no longer apply, and with ``exact`` all extras."""
    out = []
    for key in current:
        if key in wanted or key == RUN_NAME_TAG:
            continue
        if is_managed(key):
            if key == SOURCE_PARENT_RUN_ID:
                out.append(key)
            continue
        if exact or key in (PARENT_TAG, USER_TAG):
            out.append(key)
    return out


def _remap_history(value: str, run_ids: Mapping[str, str]) -> str:
    """``mlflow.log-model.history`` with its ``run_id`` fields pointing at the imported runs."""
    try:
        doc = json.loads(value)
    except ValueError:
        return value
    if not isinstance(doc, list):
        return value
    changed = False
    for entry in doc:
        if isinstance(entry, dict) and isinstance(entry.get("run_id"), str):
            new = run_ids.get(entry["run_id"])
            if new is not None and new != entry["run_id"]:
                entry["run_id"] = new
                changed = True
    return json.dumps(doc) if changed else value


def run_state(run_id: str, tags: dict[str, str], **info: Any) -> Record:
    """The state of a run here (see :class:`~arcuate.backends.protocols.RunSink`): ``info``
    holds ``experiment_id``, ``lifecycle_stage`` and ``artifact_uri``; the tags are kept
    for the sink's own use."""
    return {
        "run_id": run_id,
        "run_name": tags.get(RUN_NAME_TAG),
        "source_run_id": tags.get(SOURCE_RUN_ID),
        "content_hash": tags.get(CONTENT_HASH),
        "provenance": provenance_of(tags),
        "tags": tags,
        **info,
    }


# -- logged models ---------------------------------------------------------------------------------
def logged_model_tags(shared: Mapping[str, str]) -> dict[str, str]:
    """The tags a shared logged model should carry here (arcuate's own aside).

    The provider's ``mlflow.modelVersions`` names versions of *its* registry, which mean
    nothing here: it is kept as ``arcuate.source_model_versions``, and a model import lists
    the versions it registers in ``mlflow.modelVersions`` again."""
    wanted = {k: v for k, v in shared.items() if not is_managed(k)}
    if MODEL_VERSIONS_TAG in wanted:
        wanted[SOURCE_MODEL_VERSIONS] = wanted.pop(MODEL_VERSIONS_TAG)
    return wanted


def lists_versions(model: Record) -> bool:
    """Whether a shared logged model listed its provider's registry versions (a model import
    then lists its own on the logged model here)."""
    tags = model.get("tags") or {}
    return MODEL_VERSIONS_TAG in tags or SOURCE_MODEL_VERSIONS in tags


# -- versions ------------------------------------------------------------------------------------
def version_tags(
    version: Record, files: Iterable[Record], provenance: Provenance
) -> dict[str, str]:
    """The tags an imported version carries: the shared ones, and its provenance."""
    # arcuate's own tags from the share (a re-shared import) are replaced by this hop's
    tags = {k: v for k, v in version["tags"].items() if not k.startswith("arcuate.")}
    for k, v in version["tags"].items():
        if k.startswith("arcuate.") and k not in VERSION_MANAGED:
            tags[k] = v
    tags[SOURCE_MODEL] = version["name"]
    tags[SOURCE_VERSION] = str(version["version"])
    tags[FILES_HASH] = files_digest(files)
    if provenance.source:
        tags[SOURCE] = provenance.source
    if provenance.origin:
        tags[ORIGIN] = provenance.origin
    if version.get("source"):
        tags[SOURCE_URI] = version["source"]
    return tags


def version_state(number: int, tags: dict[str, str], **info: Any) -> Record:
    """The state of a version here (see :class:`~arcuate.backends.protocols.VersionSink`):
    ``info`` holds ``run_id``, ``source``, ``stage`` and ``description``; the tags are kept
    for the sink's own use."""
    try:
        source_version: int | None = int(tags.get(SOURCE_VERSION, ""))
    except ValueError:
        source_version = None
    return {
        "version": number,
        "source_model": tags.get(SOURCE_MODEL, ""),
        "source_version": source_version,
        "imported": bool(tags.get(SOURCE_VERSION)),
        "content_hash": tags.get(CONTENT_HASH),
        "source_uri": tags.get(SOURCE_URI) or "",
        "placeholder": bool(tags.get(PLACEHOLDER)),
        "provenance": provenance_of(tags),
        "tags": tags,
        **info,
    }
