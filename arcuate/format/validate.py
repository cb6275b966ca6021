"""Validation of shared rows before anything is written: every value is treated as hostile.

A recipient reads rows someone else wrote. Each row is checked against the table format
(:mod:`arcuate.format.schema`) and against MLflow's own limits, and turned into a plain,
normalised record: timestamps become epoch milliseconds, key/value lists become dicts. A row
that cannot be imported exactly raises :class:`~arcuate.errors.ShareDataError` naming the row
(0-based, in read order) and the field. Nothing is truncated or guessed: a value MLflow would
silently shorten is an error here.

This module imports only the standard library and arcuate's format and errors: it knows no
MLflow, no Arrow, no Delta.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import unquote

from arcuate.errors import ShareDataError
from arcuate.format.limits import (
    MAX_ALIAS_LENGTH,
    MAX_ALIASES,
    MAX_CHUNK_BYTES,
    MAX_CHUNKS_PER_FILE,
    MAX_DATASET_DIGEST_LENGTH,
    MAX_DATASET_INPUTS,
    MAX_DATASET_NAME_LENGTH,
    MAX_DATASET_PROFILE_LENGTH,
    MAX_DATASET_SCHEMA_LENGTH,
    MAX_DATASET_SOURCE_LENGTH,
    MAX_DATASET_SOURCE_TYPE_LENGTH,
    MAX_DESCRIPTION_LENGTH,
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_EXPERIMENT_TAG_VALUE_LENGTH,
    MAX_FILE_BYTES,
    MAX_FILES_PER_RECORD,
    MAX_INPUT_TAG_KEY_LENGTH,
    MAX_INPUT_TAG_VALUE_LENGTH,
    MAX_INPUT_TAGS,
    MAX_INT64,
    MAX_JSON_DEPTH,
    MAX_KEY_LENGTH,
    MAX_LOGGED_MODELS,
    MAX_METRIC_POINTS_PER_RUN,
    MAX_MODEL_INPUTS,
    MAX_MODEL_NAME_LENGTH,
    MAX_MODEL_TAG_VALUE_LENGTH,
    MAX_MODEL_TYPE_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_PARAMS,
    MAX_PATH_LENGTH,
    MAX_RUN_LINK_LENGTH,
    MAX_RUN_NAME_LENGTH,
    MAX_SEGMENT_BYTES,
    MAX_SOURCE_LENGTH,
    MAX_STATUS_MESSAGE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS,
    MAX_TIMESTAMP,
    MAX_USER_ID_LENGTH,
    MAX_VERSION,
    MAX_VERSION_PLACEHOLDERS,
    MAX_VERSION_TAG_VALUE_LENGTH,
)
from arcuate.format.schema import (
    CHUNK,
    EVAL_RECORD,
    MODEL_VERSION,
    OWNER_ARTIFACTS,
    OWNER_LOGGED_MODEL_PREFIX,
    OWNER_MODEL,
    PROMPT_VERSION,
    REQUIRED_COLUMNS,
    RUN,
    SCORER,
    SUPPORTED_VERSIONS,
    TRACE,
    Content,
)

RUN_STATUSES: Final = frozenset({"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"})
LIFECYCLE_STAGES: Final = frozenset({"active", "deleted"})
LOGGED_MODEL_STATUSES: Final = frozenset({"PENDING", "READY", "FAILED", "UNSPECIFIED"})
STAGES: Final = frozenset({"None", "Staging", "Production", "Archived"})
VERSION_STATUSES: Final = frozenset({"READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION"})
PROMPT_TAG: Final = "mlflow.prompt.is_prompt"

#: Param, metric and tag keys: MLflow's regex (POSIX flavour), then its path-uniqueness rule.
_KEY = re.compile(r"^[/\w.\- :]+$")
#: Run and logged-model ids: MLflow's run-id rule, ASCII only.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,255}$")
_ALIAS = re.compile(r"^[\w\-]+$")
_ALIAS_RESERVED = re.compile(r"^[vV]\d+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: ``logged_models/`` and a logged model id (at most 256 characters).
_MAX_OWNER_LENGTH: Final = len(OWNER_LOGGED_MODEL_PREFIX) + 256
_MS: Final = timedelta(milliseconds=1)


# -- normalised shapes -------------------------------------------------------------------------
@dataclass(frozen=True)
class SharedFile:
    """One file of a record: inline (``data``) or split into ``chunks`` chunk rows."""

    owner: str
    path: str
    size: int
    sha256: str
    data: bytes | None
    chunks: int

    def meta(self) -> dict[str, Any]:
        """Everything but the bytes (what the content hash and the spool keep)."""
        return {
            "owner": self.owner,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "chunks": self.chunks,
        }


@dataclass
class SharedRecord:
    """A validated ``run`` or ``model_version`` row, normalised (times in epoch ms)."""

    row: int
    kind: str
    key: str
    experiment: dict[str, Any] | None
    run: dict[str, Any] | None
    model_version: dict[str, Any] | None
    files: list[SharedFile] = field(default_factory=list)


class CheckedMetrics(list[dict[str, Any]]):
    """A run's metric points, already validated and normalised (column-wise, by
    :func:`arcuate.format.columns.batch_metrics`, with the rules of :func:`_metric`).

    :func:`run_info` takes such a list as it is. Values read from a share are plain lists and
    dicts, never this type, so a share cannot make its points skip validation.
    """


@dataclass(frozen=True)
class SharedChunk:
    """A validated ``chunk`` row."""

    row: int
    key: str
    owner: str
    path: str
    index: int
    offset: int
    data: bytes


# -- small checks ------------------------------------------------------------------------------
def _fail(message: str, row: int | None, name: str) -> ShareDataError:
    return ShareDataError(message, row=row, field=name)


def _show(value: Any, limit: int = 60) -> str:
    if isinstance(value, (str, bytes)) and len(value) > limit:
        value = value[:limit]  # repr of a hostile megabyte-long value costs megabytes
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_missing(value: Any) -> bool:
    # pandas frames carry NaN / NaT / NA for missing values; Arrow carries None.
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in ("NaTType", "NAType")


def text(
    value: Any,
    row: int | None,
    name: str,
    *,
    limit: int,
    required: bool = False,
    allow_empty: bool = True,
) -> str | None:
    """A string within ``limit`` characters with no NUL (databases cannot store it)."""
    if _is_missing(value):
        if required:
            raise _fail("is required but missing", row, name)
        return None
    if not isinstance(value, str):
        raise _fail(f"must be a string, got {type(value).__name__} {_show(value)}", row, name)
    if not allow_empty and value == "":
        raise _fail("must not be empty", row, name)
    if len(value) > limit:
        raise _fail(
            f"is {len(value)} characters long; MLflow allows at most {limit} "
            "(arcuate never truncates)",
            row,
            name,
        )
    if "\x00" in value:
        raise _fail("contains a NUL character", row, name)
    return value


def required_text(value: Any, row: int | None, name: str, *, limit: int) -> str:
    """A non-empty string (see :func:`text`)."""
    out = text(value, row, name, limit=limit, required=True, allow_empty=False)
    assert out is not None
    return out


def integer(
    value: Any, row: int | None, name: str, *, low: int = -(2**63), high: int = MAX_INT64
) -> int:
    """A whole number in ``[low, high]``; booleans and floats are not integers."""
    if _is_missing(value):
        raise _fail("is required but missing", row, name)
    if isinstance(value, bool) or not isinstance(value, int):
        # numpy integers are not ``int`` subclasses but convert exactly.
        if (
            type(value).__module__ == "numpy"
            and hasattr(value, "dtype")
            and value.dtype.kind in "iu"
        ):
            value = int(value)
        else:
            raise _fail(f"must be an integer, got {type(value).__name__} {_show(value)}", row, name)
    if not low <= value <= high:
        raise _fail(f"must be between {low} and {high}, got {value}", row, name)
    return int(value)


def timestamp_ms(value: Any, row: int | None, name: str, *, required: bool = False) -> int | None:
    """Epoch milliseconds of a timezone-aware (or UTC-naive) datetime in a sane range."""
    if _is_missing(value):
        if required:
            raise _fail("is required but missing", row, name)
        return None
    if not isinstance(value, datetime):
        raise _fail(f"must be a timestamp, got {type(value).__name__} {_show(value)}", row, name)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        ms = (value - _EPOCH) // _MS
    except (OverflowError, ValueError) as exc:
        raise _fail(f"timestamp {_show(value)} is out of range", row, name) from exc
    if ms < 0 or value >= MAX_TIMESTAMP:
        raise _fail(f"timestamp {value.isoformat()} is outside 1970-01-01 .. 2500-01-01", row, name)
    return int(ms)


def choice(
    value: Any, row: int | None, name: str, allowed: frozenset[str], *, default: str | None = None
) -> str:
    """One of ``allowed`` (``default`` when missing, if given)."""
    if _is_missing(value) and default is not None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise _fail(f"must be one of {', '.join(sorted(allowed))}, got {_show(value)}", row, name)
    return value


def identifier(value: Any, row: int | None, name: str, *, required: bool = True) -> str | None:
    """A run or logged-model id: letters, digits, '_' and '-', at most 256 characters."""
    if _is_missing(value):
        if required:
            raise _fail("is required but missing", row, name)
        return None
    if not isinstance(value, str) or not _ID.match(value):
        raise _fail(
            f"is not a valid id (letters, digits, '_' and '-', 1-256 characters): {_show(value)}",
            row,
            name,
        )
    return value


def entity_key(value: Any, row: int | None, name: str) -> str:
    """A param, metric or tag key by MLflow's rules (charset, length, no path tricks)."""
    if _is_missing(value) or value == "":
        raise _fail("key is missing or empty", row, name)
    if not isinstance(value, str):
        raise _fail(f"key must be a string, got {type(value).__name__}", row, name)
    if len(value) > MAX_KEY_LENGTH:
        raise _fail(
            f"key is {len(value)} characters long; MLflow allows at most {MAX_KEY_LENGTH}",
            row,
            name,
        )
    if not _KEY.match(value):
        raise _fail(
            f"key {_show(value)} may only contain letters, digits, '_', '-', '.', ' ', ':' and '/'",
            row,
            name,
        )
    norm = posixpath.normpath(value)
    if norm != value or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise _fail(f"key {_show(value)} is not a normalised relative name", row, name)
    return value


def too_many(count: int, limit: int, row: int | None, name: str) -> ShareDataError:
    """The error for a list of ``count`` items over its bound (see arcuate.format.limits)."""
    return _fail(f"holds {count} items; arcuate reads at most {limit} here", row, name)


def _sequence(value: Any, row: int | None, name: str, *, limit: int) -> list[Any]:
    """A list (Arrow) or array (pandas) of at most ``limit`` items as a Python list; missing
    means empty. The length is checked before the items are copied."""
    if _is_missing(value):
        return []
    if isinstance(value, (str, bytes, Mapping)):
        raise _fail(f"must be a list, got {type(value).__name__}", row, name)
    try:
        count = len(value)
    except TypeError as exc:
        raise _fail(f"must be a list, got {type(value).__name__}", row, name) from exc
    if count > limit:
        raise too_many(count, limit, row, name)
    try:
        return list(value)
    except TypeError as exc:
        raise _fail(f"must be a list, got {type(value).__name__}", row, name) from exc


def _struct(value: Any, row: int | None, name: str, *, required: bool = True) -> Mapping[str, Any]:
    if _is_missing(value):
        if required:
            raise _fail("is required but missing", row, name)
        return {}
    if not isinstance(value, Mapping):
        raise _fail(f"must be a struct, got {type(value).__name__}", row, name)
    return value


def key_values(
    value: Any,
    row: int | None,
    name: str,
    *,
    value_limit: int,
    count_limit: int = MAX_TAGS,
    key_check: Any = None,
    key_limit: int = MAX_KEY_LENGTH,
) -> dict[str, str]:
    """A list of at most ``count_limit`` ``{key, value}`` structs as a dict; duplicate keys are
    an error."""
    out: dict[str, str] = {}
    for j, item in enumerate(_sequence(value, row, name, limit=count_limit)):
        where = f"{name}[{j}]"
        item = _struct(item, row, where)
        if key_check is None:
            key = entity_key(item.get("key"), row, f"{where}.key")
        else:
            key = key_check(item.get("key"), row, f"{where}.key")
        if len(key) > key_limit:
            raise _fail(f"key is longer than {key_limit} characters", row, f"{where}.key")
        val = text(item.get("value"), row, f"{where}.value", limit=value_limit, required=True)
        assert val is not None
        if key in out:
            raise _fail(f"duplicate key {key!r}", row, f"{where}.key")
        out[key] = val
    return out


def relative_path(value: Any, row: int | None, name: str) -> str:
    """A file path relative to its owner that cannot escape it on any platform.

    Rejects absolute paths, drive letters, backslashes, ``..`` and ``.`` segments, empty
    segments (``a//b``, trailing ``/``), control characters and over-long names.
    """
    if _is_missing(value) or value == "":
        raise _fail("path is missing or empty", row, name)
    if not isinstance(value, str):
        raise _fail(f"path must be a string, got {type(value).__name__}", row, name)
    if len(value) > MAX_PATH_LENGTH:
        raise _fail(f"path is longer than {MAX_PATH_LENGTH} characters", row, name)
    if "\x00" in value:
        raise _fail(f"path {_show(value)} contains a NUL character", row, name)
    if _CONTROL.search(value):
        raise _fail(f"path {_show(value)} contains a control character", row, name)
    if "\\" in value:
        raise _fail(f"path {_show(value)} contains a backslash", row, name)
    if value.startswith("/"):
        raise _fail(f"path {_show(value)} is absolute", row, name)
    if _DRIVE.match(value):
        raise _fail(f"path {_show(value)} starts with a drive letter", row, name)
    for segment in value.split("/"):
        if segment == "":
            raise _fail(f"path {_show(value)} has an empty segment", row, name)
        if segment in (".", ".."):
            raise _fail(f"path {_show(value)} has a {segment!r} segment", row, name)
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise _fail(
                f"path {_show(value)} has a segment over {MAX_SEGMENT_BYTES} bytes", row, name
            )
        if segment.startswith(".artifact.uploading."):
            raise _fail(f"path {_show(value)} uses MLflow's reserved upload prefix", row, name)
    return value


def owner_name(value: Any, row: int | None, name: str, allowed: Iterable[str]) -> str:
    """A file owner among those the record declares."""
    allowed = sorted(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise _fail(
            f"owner {_show(value)} is not one of this record's owners ({', '.join(allowed)})",
            row,
            name,
        )
    return value


def sha256_hex(value: Any, row: int | None, name: str) -> str:
    """A SHA-256 digest as 64 hex digits (normalised to lower case)."""
    if not isinstance(value, str) or len(value) != 64 or not _SHA256.match(value.lower()):
        raise _fail(f"is not a SHA-256 hex digest: {_show(value)}", row, name)
    return value.lower()


def _binary(value: Any, row: int | None, name: str, *, limit: int) -> bytes | None:
    """Binary data of at most ``limit`` bytes (a chunk, or an inline file)."""
    if _is_missing(value):
        return None
    if not isinstance(value, (memoryview, bytes, bytearray)):
        raise _fail(f"must be binary data, got {type(value).__name__}", row, name)
    if len(value) > limit:
        raise _fail(f"holds {len(value)} bytes; arcuate reads at most {limit}", row, name)
    if isinstance(value, memoryview):
        # a view of a reader's buffer (chunk bytes): used as it is, never copied
        return value  # type: ignore[return-value]
    return bytes(value)


def _chunk_count(value: Any, row: int, name: str) -> int:
    """A file's declared number of chunk rows (0: inline), checked before it counts anything."""
    if _is_missing(value):
        return 0
    count = integer(value, row, name, low=0)
    if count > MAX_CHUNKS_PER_FILE:
        raise _fail(
            f"declares {count} chunks; arcuate reads at most {MAX_CHUNKS_PER_FILE} per file",
            row,
            name,
        )
    return count


# -- names a statement gives ----------------------------------------------------------------------
def check_experiment_name(name: Any) -> str:
    """The target experiment name, by MLflow's rules."""
    return required_text(name, None, "experiment", limit=MAX_EXPERIMENT_NAME_LENGTH)


def check_model_name(name: Any, row: int | None = None, where: str = "model") -> str:
    """A registered model name, by MLflow's rules (no '/', ':' or path tricks)."""
    value = required_text(name, row, where, limit=MAX_MODEL_NAME_LENGTH)
    if value.strip() == "":
        raise _fail("model name is blank", row, where)
    if "/" in value or ":" in value:
        raise _fail(f"model name {_show(value)} cannot contain '/' or ':'", row, where)
    norm = posixpath.normpath(value)
    if norm != value or norm == "." or norm.startswith(".."):
        raise _fail(f"model name {_show(value)} is not a normalised name", row, where)
    return value


def check_alias(value: Any, row: int | None, name: str) -> str:
    """A registered-model alias: letters, digits, '_' and '-'; not reserved."""
    alias = required_text(value, row, name, limit=MAX_ALIAS_LENGTH)
    if not _ALIAS.match(alias):
        raise _fail(
            f"alias {_show(alias)} may only contain letters, digits, '_' and '-'", row, name
        )
    if alias.lower() == "latest" or _ALIAS_RESERVED.match(alias):
        raise _fail(f"alias {alias!r} is reserved by MLflow", row, name)
    return alias


def _logged_model_name(value: Any, row: int | None, name: str) -> str:
    out = required_text(value, row, name, limit=MAX_KEY_LENGTH)
    bad = [c for c in ("/", ":", ".", "%", '"', "'") if c in out]
    if bad:
        raise _fail(f"logged model name {_show(out)} cannot contain {bad[0]!r}", row, name)
    return out


# -- columns and rows ---------------------------------------------------------------------------
def check_columns(names: Sequence[str], first_row: int) -> None:
    """Every column of the format is present (extra columns are ignored)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ShareDataError(
            f"the shared table lacks column(s) {', '.join(missing)}: it is not an arcuate "
            "table of a supported format version",
            row=first_row,
            field=missing[0],
        )


def _experiment(value: Any, row: int) -> dict[str, Any] | None:
    if _is_missing(value):
        return None
    exp = _struct(value, row, "experiment")
    return {
        "experiment_id": text(exp.get("experiment_id"), row, "experiment.experiment_id", limit=256),
        "name": text(exp.get("name"), row, "experiment.name", limit=MAX_EXPERIMENT_NAME_LENGTH),
        "lifecycle_stage": choice(
            exp.get("lifecycle_stage"),
            row,
            "experiment.lifecycle_stage",
            LIFECYCLE_STAGES,
            default="active",
        ),
        "tags": key_values(
            exp.get("tags"), row, "experiment.tags", value_limit=MAX_EXPERIMENT_TAG_VALUE_LENGTH
        ),
    }


def _metric(value: Any, row: int, name: str) -> dict[str, Any]:
    m = _struct(value, row, name)
    raw = m.get("value")
    if isinstance(raw, bool) or raw is None:
        raise _fail(f"metric value must be a number, got {_show(raw)}", row, f"{name}.value")
    if not isinstance(raw, (int, float)):
        if type(raw).__module__ == "numpy" and hasattr(raw, "dtype") and raw.dtype.kind in "iuf":
            raw = raw.item()
        else:
            raise _fail(
                f"metric value must be a number, got {type(raw).__name__}", row, f"{name}.value"
            )
    return {
        "key": entity_key(m.get("key"), row, f"{name}.key"),
        "value": float(raw),
        "step": integer(m.get("step"), row, f"{name}.step"),
        "timestamp": timestamp_ms(m.get("timestamp"), row, f"{name}.timestamp", required=True),
        "model_id": identifier(m.get("model_id"), row, f"{name}.model_id", required=False),
        "dataset_name": text(
            m.get("dataset_name"), row, f"{name}.dataset_name", limit=MAX_DATASET_NAME_LENGTH
        ),
        "dataset_digest": text(
            m.get("dataset_digest"), row, f"{name}.dataset_digest", limit=MAX_DATASET_DIGEST_LENGTH
        ),
    }


def _metrics(value: Any, row: int, name: str) -> list[dict[str, Any]]:
    if type(value) is CheckedMetrics:
        if len(value) > MAX_METRIC_POINTS_PER_RUN:
            raise too_many(len(value), MAX_METRIC_POINTS_PER_RUN, row, f"{name}.metrics")
        return value  # still marked checked: the spool keeps such a history as columns
    points = _sequence(value, row, f"{name}.metrics", limit=MAX_METRIC_POINTS_PER_RUN)
    return [_metric(m, row, f"{name}.metrics[{j}]") for j, m in enumerate(points)]


def _input_tag_key(value: Any, row: int | None, name: str) -> str:
    return required_text(value, row, name, limit=MAX_INPUT_TAG_KEY_LENGTH)


def _dataset(value: Any, row: int, name: str) -> dict[str, Any]:
    d = _struct(value, row, name)
    return {
        "name": required_text(d.get("name"), row, f"{name}.name", limit=MAX_DATASET_NAME_LENGTH),
        "digest": required_text(
            d.get("digest"), row, f"{name}.digest", limit=MAX_DATASET_DIGEST_LENGTH
        ),
        "source_type": required_text(
            d.get("source_type"), row, f"{name}.source_type", limit=MAX_DATASET_SOURCE_TYPE_LENGTH
        ),
        "source": text(
            d.get("source"), row, f"{name}.source", limit=MAX_DATASET_SOURCE_LENGTH, required=True
        ),
        "schema": text(d.get("schema"), row, f"{name}.schema", limit=MAX_DATASET_SCHEMA_LENGTH),
        "profile": text(d.get("profile"), row, f"{name}.profile", limit=MAX_DATASET_PROFILE_LENGTH),
        "tags": key_values(
            d.get("tags"),
            row,
            f"{name}.tags",
            value_limit=MAX_INPUT_TAG_VALUE_LENGTH,
            count_limit=MAX_INPUT_TAGS,
            key_check=_input_tag_key,
            key_limit=MAX_INPUT_TAG_KEY_LENGTH,
        ),
    }


def _logged_model(value: Any, row: int, name: str) -> dict[str, Any]:
    lm = _struct(value, row, name)
    step = lm.get("step")
    return {
        "model_id": identifier(lm.get("model_id"), row, f"{name}.model_id"),
        "name": _logged_model_name(lm.get("name"), row, f"{name}.name"),
        "model_type": text(
            lm.get("model_type"), row, f"{name}.model_type", limit=MAX_MODEL_TYPE_LENGTH
        ),
        "status": choice(
            lm.get("status"), row, f"{name}.status", LOGGED_MODEL_STATUSES, default="READY"
        ),
        "status_message": text(
            lm.get("status_message"), row, f"{name}.status_message", limit=MAX_STATUS_MESSAGE_LENGTH
        ),
        "creation_time": timestamp_ms(lm.get("creation_time"), row, f"{name}.creation_time"),
        # null: the run does not list the model as an output (docs/format.md)
        "step": None if _is_missing(step) else integer(step, row, f"{name}.step"),
        "tags": key_values(lm.get("tags"), row, f"{name}.tags", value_limit=MAX_TAG_VALUE_LENGTH),
        "params": key_values(
            lm.get("params"),
            row,
            f"{name}.params",
            value_limit=MAX_PARAM_VALUE_LENGTH,
            count_limit=MAX_PARAMS,
        ),
    }


#: Tags whose values are JSON that an import parses (to map the run ids inside).
JSON_TAGS: Final = frozenset({"mlflow.log-model.history"})


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON ``text``, counted without parsing it (Python's
    parser recurses, and fails on deep input with a RecursionError)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(raw: str, row: int | None, name: str, depth_limit: int = MAX_JSON_DEPTH) -> Any:
    """JSON text of a shared field, its nesting bounded before Python's recursive parser sees
    it (the shared check of prompts, scorers, eval records and traces).

    Raises:
        ShareDataError: nested deeper than ``depth_limit``, or not JSON.
    """
    if (depth := json_depth(raw)) > depth_limit:
        raise _fail(f"is JSON nested deeper than {depth_limit} levels ({depth})", row, name)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _fail(f"is not valid JSON ({exc})", row, name) from None


def _check_json_tags(tags: dict[str, str], row: int, name: str) -> None:
    """JSON-valued tags an import parses nest at most MAX_JSON_DEPTH levels."""
    for j, (key, value) in enumerate(tags.items()):
        if key in JSON_TAGS and (depth := json_depth(value)) > MAX_JSON_DEPTH:
            raise _fail(
                f"{key} is JSON that nests deeper than {MAX_JSON_DEPTH} levels ({depth})",
                row,
                f"{name}[{j}].value",
            )


def run_info(value: Any, row: int, name: str = "run") -> dict[str, Any]:
    """A RUN_INFO struct, normalised."""
    r = _struct(value, row, name)
    run: dict[str, Any] = {
        "run_id": identifier(r.get("run_id"), row, f"{name}.run_id"),
        "run_name": text(r.get("run_name"), row, f"{name}.run_name", limit=MAX_RUN_NAME_LENGTH),
        "status": choice(r.get("status"), row, f"{name}.status", RUN_STATUSES),
        "start_time": timestamp_ms(r.get("start_time"), row, f"{name}.start_time"),
        "end_time": timestamp_ms(r.get("end_time"), row, f"{name}.end_time"),
        "user_id": text(r.get("user_id"), row, f"{name}.user_id", limit=MAX_USER_ID_LENGTH),
        "lifecycle_stage": choice(
            r.get("lifecycle_stage"),
            row,
            f"{name}.lifecycle_stage",
            LIFECYCLE_STAGES,
            default="active",
        ),
        "parent_run_id": identifier(
            r.get("parent_run_id"), row, f"{name}.parent_run_id", required=False
        ),
        "params": key_values(
            r.get("params"),
            row,
            f"{name}.params",
            value_limit=MAX_PARAM_VALUE_LENGTH,
            count_limit=MAX_PARAMS,
        ),
        "tags": key_values(r.get("tags"), row, f"{name}.tags", value_limit=MAX_TAG_VALUE_LENGTH),
        "metrics": _metrics(r.get("metrics"), row, name),
        "inputs": [
            _dataset(d, row, f"{name}.inputs[{j}]")
            for j, d in enumerate(
                _sequence(r.get("inputs"), row, f"{name}.inputs", limit=MAX_DATASET_INPUTS)
            )
        ],
        "model_inputs": [
            identifier(m, row, f"{name}.model_inputs[{j}]")
            for j, m in enumerate(
                _sequence(
                    r.get("model_inputs"), row, f"{name}.model_inputs", limit=MAX_MODEL_INPUTS
                )
            )
        ],
        "logged_models": [
            _logged_model(m, row, f"{name}.logged_models[{j}]")
            for j, m in enumerate(
                _sequence(
                    r.get("logged_models"), row, f"{name}.logged_models", limit=MAX_LOGGED_MODELS
                )
            )
        ],
    }
    _check_json_tags(run["tags"], row, f"{name}.tags")
    name_tag = run["tags"].get("mlflow.runName")
    if run["run_name"] is not None and name_tag is not None and name_tag != run["run_name"]:
        raise _fail(
            f"run_name {run['run_name']!r} differs from its mlflow.runName tag {name_tag!r}",
            row,
            f"{name}.run_name",
        )
    if name_tag is not None and len(name_tag) > MAX_RUN_NAME_LENGTH:
        raise _fail(
            f"mlflow.runName is longer than {MAX_RUN_NAME_LENGTH} characters", row, f"{name}.tags"
        )
    seen: set[str] = set()
    for j, lm in enumerate(run["logged_models"]):
        if lm["model_id"] in seen:
            raise _fail(
                f"logged model {lm['model_id']!r} is listed twice",
                row,
                f"{name}.logged_models[{j}].model_id",
            )
        seen.add(lm["model_id"])
    return run


def _model_version(value: Any, row: int) -> dict[str, Any]:
    mv = _struct(value, row, "model_version")
    tags = key_values(
        mv.get("tags"), row, "model_version.tags", value_limit=MAX_VERSION_TAG_VALUE_LENGTH
    )
    model_tags = key_values(
        mv.get("model_tags"),
        row,
        "model_version.model_tags",
        value_limit=MAX_MODEL_TAG_VALUE_LENGTH,
    )
    if PROMPT_TAG in tags or PROMPT_TAG in model_tags:
        raise _fail(
            "this is an MLflow prompt, not a model; prompts cannot be imported as model versions",
            row,
            "model_version.tags",
        )
    aliases = [
        check_alias(a, row, f"model_version.aliases[{j}]")
        for j, a in enumerate(
            _sequence(mv.get("aliases"), row, "model_version.aliases", limit=MAX_ALIASES)
        )
    ]
    if len(set(aliases)) != len(aliases):
        raise _fail("an alias is listed twice", row, "model_version.aliases")
    stage = mv.get("stage")
    return {
        "name": check_model_name(mv.get("name"), row, "model_version.name"),
        "model_description": text(
            mv.get("model_description"),
            row,
            "model_version.model_description",
            limit=MAX_DESCRIPTION_LENGTH,
        ),
        "model_tags": model_tags,
        "version": integer(
            mv.get("version"), row, "model_version.version", low=1, high=MAX_VERSION
        ),
        "description": text(
            mv.get("description"), row, "model_version.description", limit=MAX_DESCRIPTION_LENGTH
        ),
        "tags": tags,
        "aliases": aliases,
        "stage": "None"
        if _is_missing(stage)
        else choice(stage, row, "model_version.stage", STAGES),
        "status": choice(
            mv.get("status"), row, "model_version.status", VERSION_STATUSES, default="READY"
        ),
        "status_message": text(
            mv.get("status_message"),
            row,
            "model_version.status_message",
            limit=MAX_STATUS_MESSAGE_LENGTH,
        ),
        "creation_time": timestamp_ms(mv.get("creation_time"), row, "model_version.creation_time"),
        "last_updated_time": timestamp_ms(
            mv.get("last_updated_time"), row, "model_version.last_updated_time"
        ),
        "user_id": text(mv.get("user_id"), row, "model_version.user_id", limit=MAX_USER_ID_LENGTH),
        "source": text(mv.get("source"), row, "model_version.source", limit=MAX_SOURCE_LENGTH),
        "run_id": identifier(mv.get("run_id"), row, "model_version.run_id", required=False),
        "run_link": text(
            mv.get("run_link"), row, "model_version.run_link", limit=MAX_RUN_LINK_LENGTH
        ),
        "model_id": identifier(mv.get("model_id"), row, "model_version.model_id", required=False),
    }


def _unquoted(value: str) -> str:
    """``value`` percent-decoded until it no longer changes (as MLflow reads a source)."""
    while (plain := unquote(value)) != value:
        value = plain
    return value


def _artifact_part(path: str, row: int, name: str) -> None:
    """A part of a source that becomes an artifact path: the file path rules, before and
    after percent-decoding."""
    relative_path(path, row, name)
    relative_path(_unquoted(path), row, name)


def check_source(value: str | None, row: int, run_id: str | None) -> None:
    """A version's source, completely: the parts an import turns into artifact paths follow
    the rules of file paths (:func:`relative_path`), the URI forms are those it reads.

    * ``runs:/<run id>[/<path>]``: the path is placed under the imported run's artifacts;
    * ``models:/<model id>``, ``models:/<name>/<version>``, ``models:/<name>@<alias>``;
    * any other location, kept as it is in a tag; where it holds ``/<run_id>/artifacts/``,
      the rest is a path inside the run's artifacts.

    Nowhere a ``..`` segment, also percent-encoded (MLflow's own rule for sources), nor a
    control character.
    """
    name = "model_version.source"
    if value is None:
        return
    if _CONTROL.search(value):
        raise _fail(f"source {_show(value)} contains a control character", row, name)
    if ".." in _unquoted(value).replace("\\", "/").split("/"):
        raise _fail(f"source {_show(value)} has a '..' segment", row, name)
    for scheme in ("runs", "models"):
        if value.split(":", 1)[0].lower() != scheme:
            continue
        prefix = f"{scheme}:/"
        rest = value[len(prefix) :].rstrip("/")
        first = rest.split("/", 1)[0]
        if (
            not value.startswith(prefix)
            or value.startswith(prefix + "/")  # a host: MLflow refuses it too
            or not first
            or (scheme == "runs" and not _ID.match(first))
        ):
            form = "runs:/<run id>/<path>" if scheme == "runs" else "models:/<model id>"
            raise _fail(f"source {_show(value)} is not of the form {form}", row, name)
        _artifact_part(rest, row, name)
        return
    marker = f"/{run_id}/artifacts/" if run_id else None
    if marker and marker in value:
        rel = value.split(marker, 1)[1].strip("/")
        if rel:
            _artifact_part(rel, row, name)


def check_version_numbers(versions: Iterable[tuple[int, int]]) -> None:
    """The (row, version number) of a model table's versions leave at most
    MAX_VERSION_PLACEHOLDERS numbers unused below them (each becomes a placeholder version).

    Raises:
        ShareDataError: names the row of the first version past the bound.
    """
    missing = previous = 0
    for row, number in sorted(versions, key=lambda rv: rv[1]):
        missing += max(0, number - previous - 1)
        previous = number
        if missing > MAX_VERSION_PLACEHOLDERS:
            raise _fail(
                f"version {number} leaves {missing} numbers below it unused; an import "
                "recreates each as a placeholder version (MLflow numbers versions in order), "
                f"at most {MAX_VERSION_PLACEHOLDERS} per model table",
                row,
                "model_version.version",
            )


def _files(value: Any, row: int, owners: set[str]) -> list[SharedFile]:
    out: list[SharedFile] = []
    seen: dict[tuple[str, str], int] = {}
    for j, item in enumerate(_sequence(value, row, "files", limit=MAX_FILES_PER_RECORD)):
        where = f"files[{j}]"
        f = _struct(item, row, where)
        owner = owner_name(f.get("owner"), row, f"{where}.owner", owners)
        path = relative_path(f.get("path"), row, f"{where}.path")
        size = integer(f.get("size"), row, f"{where}.size", low=0, high=MAX_FILE_BYTES)
        digest = sha256_hex(f.get("sha256"), row, f"{where}.sha256")
        data = _binary(f.get("data"), row, f"{where}.data", limit=MAX_CHUNK_BYTES)
        chunks = _chunk_count(f.get("chunks"), row, f"{where}.chunks")
        if (owner, path) in seen:
            raise _fail(f"file {owner}/{path} is listed twice", row, f"{where}.path")
        seen[(owner, path)] = j
        if chunks == 0:
            if data is None:
                raise _fail(
                    f"file {path!r} has neither inline data nor chunks", row, f"{where}.data"
                )
            if len(data) != size:
                raise _fail(
                    f"file {path!r} declares {size} bytes but carries {len(data)}",
                    row,
                    f"{where}.size",
                )
            if hashlib.sha256(data).hexdigest() != digest:
                raise _fail(
                    f"file {path!r} does not match its SHA-256 checksum", row, f"{where}.sha256"
                )
        else:
            if data is not None:
                raise _fail(f"file {path!r} has both inline data and chunks", row, f"{where}.data")
            if chunks > size:
                raise _fail(
                    f"file {path!r} declares {chunks} chunks for {size} bytes",
                    row,
                    f"{where}.chunks",
                )
        out.append(SharedFile(owner, path, size, digest, data, chunks))
    # A path that is a file cannot also be a directory of another file of the same owner.
    paths = {(sf.owner, sf.path) for sf in out}
    for sf in out:
        parts = sf.path.split("/")
        for k in range(1, len(parts)):
            if (sf.owner, "/".join(parts[:k])) in paths:
                raise _fail(
                    f"{'/'.join(parts[:k])!r} is both a file and a directory of {sf.path!r}",
                    row,
                    f"files[{seen[(sf.owner, sf.path)]}].path",
                )
    return out


def parse_row(row: Mapping[str, Any], i: int, expect: Content) -> SharedRecord | SharedChunk:
    """Validate and normalise one row of a table holding ``expect`` content.

    Raises:
        ShareDataError: the row is malformed or hostile; names row ``i`` and the field.
    """
    version = row.get("format_version")
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or version not in SUPPORTED_VERSIONS
    ):
        try:
            shown = int(version)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            shown = version  # type: ignore[assignment]
        raise _fail(
            f"format version {_show(shown)} is not supported (this arcuate reads "
            f"{', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}); upgrade arcuate",
            i,
            "format_version",
        )
    kind = row.get("kind")
    wanted = RUN if expect == "experiment" else MODEL_VERSION
    if kind == PROMPT_VERSION:
        raise _fail(
            "this row is a prompt_version row: the table holds a prompt (use CREATE PROMPT)",
            i,
            "kind",
        )
    if kind in (SCORER, EVAL_RECORD, TRACE) and expect != "experiment":
        raise _fail(
            f"this row is a {kind} row: the table holds an experiment, not a model "
            "(use CREATE EXPERIMENT)",
            i,
            "kind",
        )
    if kind not in (RUN, MODEL_VERSION, CHUNK):
        raise _fail(
            f"unknown row kind {_show(kind)} (known: run, model_version, chunk, scorer, "
            "eval_record, trace)",
            i,
            "kind",
        )
    for column in ("scorer", "eval_record", "trace"):
        if not _is_missing(row.get(column)):
            raise _fail(f"a {kind} row carries no {column}", i, column)
    if kind not in (wanted, CHUNK):
        holds = "a model" if kind == MODEL_VERSION else "an experiment"
        verb = "CREATE MODEL" if kind == MODEL_VERSION else "CREATE EXPERIMENT"
        expected = "an experiment" if expect == "experiment" else "a model"
        raise _fail(
            f"this row is a {kind} row: the table holds {holds}, not {expected} (use {verb})",
            i,
            "kind",
        )
    key = row.get("key")
    if not isinstance(key, str) or key == "":
        raise _fail(f"key must be a non-empty string, got {_show(key)}", i, "key")
    if kind == CHUNK:
        return _chunk(row, i, key)
    if kind == RUN:
        identifier(key, i, "key")
        run = run_info(row.get("run"), i)
        if run["run_id"] != key:
            raise _fail(f"key {key!r} differs from run.run_id {run['run_id']!r}", i, "key")
        owners = {OWNER_ARTIFACTS} | {
            OWNER_LOGGED_MODEL_PREFIX + lm["model_id"] for lm in run["logged_models"]
        }
        return SharedRecord(
            row=i,
            kind=RUN,
            key=key,
            experiment=_experiment(row.get("experiment"), i),
            run=run,
            model_version=None,
            files=_files(row.get("files"), i, owners),
        )
    mv = _model_version(row.get("model_version"), i)
    if key != str(mv["version"]):
        raise _fail(f"key {key!r} differs from model_version.version {mv['version']}", i, "key")
    run_value = row.get("run")
    source_run = None if _is_missing(run_value) else run_info(run_value, i)
    if source_run is not None and mv["run_id"] is not None and source_run["run_id"] != mv["run_id"]:
        raise _fail(
            f"run.run_id {source_run['run_id']!r} differs from "
            f"model_version.run_id {mv['run_id']!r}",
            i,
            "run.run_id",
        )
    check_source(mv["source"], i, (source_run or {}).get("run_id") or mv["run_id"])
    return SharedRecord(
        row=i,
        kind=MODEL_VERSION,
        key=key,
        experiment=_experiment(row.get("experiment"), i),
        run=source_run,
        model_version=mv,
        files=_files(row.get("files"), i, {OWNER_MODEL}),
    )


def _chunk(row: Mapping[str, Any], i: int, key: str) -> SharedChunk:
    identifier(key, i, "key")  # the run id or version number of the record it belongs to
    c = _struct(row.get("chunk"), i, "chunk")
    data = _binary(c.get("data"), i, "chunk.data", limit=MAX_CHUNK_BYTES)
    if not data:
        raise _fail("chunk carries no data", i, "chunk.data")
    owner = c.get("owner")
    if not isinstance(owner, str) or not (
        owner in (OWNER_ARTIFACTS, OWNER_MODEL)
        or (owner.startswith(OWNER_LOGGED_MODEL_PREFIX) and len(owner) <= _MAX_OWNER_LENGTH)
    ):
        raise _fail(f"chunk owner {_show(owner)} is not a known owner", i, "chunk.owner")
    return SharedChunk(
        row=i,
        key=key,
        owner=owner,
        path=relative_path(c.get("path"), i, "chunk.path"),
        index=integer(c.get("index"), i, "chunk.index", low=0, high=MAX_CHUNKS_PER_FILE - 1),
        offset=integer(c.get("offset"), i, "chunk.offset", low=0, high=MAX_FILE_BYTES),
        data=data,
    )


# -- cross-row checks ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ChunkMeta:
    """What the importer keeps of a chunk row once its bytes are on disk."""

    row: int
    index: int
    offset: int
    size: int


def check_chunks(
    record: SharedRecord, file: SharedFile, chunks: Sequence[ChunkMeta]
) -> list[ChunkMeta]:
    """The chunks of a file in order, complete, contiguous and adding up to its size.

    Raises:
        ShareDataError: a chunk is missing, repeated, out of place or the sizes do not add up.
    """
    where = f"{file.owner}/{file.path}"
    by_index: dict[int, ChunkMeta] = {}
    for c in chunks:
        if c.index in by_index:
            raise _fail(f"chunk {c.index} of {where!r} appears twice", c.row, "chunk.index")
        if c.index >= file.chunks:
            raise _fail(
                f"chunk index {c.index} of {where!r} is beyond its {file.chunks} chunks",
                c.row,
                "chunk.index",
            )
        by_index[c.index] = c
    if len(by_index) != file.chunks:
        # every index present is below file.chunks: the first five missing ones are among
        # the first len(by_index) + 5 numbers (the declared count is never iterated)
        span = range(min(file.chunks, len(by_index) + 5))
        missing = [k for k in span if k not in by_index][:5]
        raise _fail(
            f"file {where!r} of record {record.key!r} lacks chunk(s) "
            f"{', '.join(map(str, missing))} of {file.chunks}",
            record.row,
            "files",
        )
    ordered = [by_index[k] for k in range(file.chunks)]
    offset = 0
    for c in ordered:
        if c.offset != offset:
            raise _fail(
                f"chunk {c.index} of {where!r} starts at offset {c.offset}, expected {offset}",
                c.row,
                "chunk.offset",
            )
        offset += c.size
    if offset != file.size:
        raise _fail(
            f"chunks of {where!r} add up to {offset} bytes, the file declares {file.size}",
            record.row,
            "files",
        )
    return ordered


def check_digest(record: SharedRecord, file: SharedFile, digest: str) -> None:
    """The reassembled bytes of a chunked file match its declared SHA-256."""
    if digest != file.sha256:
        raise _fail(
            f"reassembled file {file.owner}/{file.path} does not match its SHA-256 checksum",
            record.row,
            "files",
        )
