"""Reading a shared table with the official ``delta_sharing`` client, as Arrow record batches.

A coordinate is ``<profile file>#<share>.<schema>.<table>``, exactly what the client takes.
The table is read with ``delta_sharing.load_as_pandas`` and cut into record batches of the
format's schema, so the importer sees the same stream whatever produced the rows (a later
reader can fetch the table file by file). Values are converted exactly: NaN metric values stay
NaN, bytes stay bytes; anything that does not fit the format's schema is reported with its
row and column rather than coerced.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from arcuate.errors import BackendError, NotFoundError, ShareDataError
from arcuate.format.schema import SCHEMA, SUPPORTED_VERSIONS, parse_description

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_BATCH_ROWS: Final = 256


def _split(coordinate: str) -> tuple[str, str]:
    """(profile path, share.schema.table), checked the way the client will parse it."""
    profile, sep, name = coordinate.rpartition("#")
    parts = name.split(".")
    if not sep or not profile or len(parts) != 3 or not all(parts):
        raise NotFoundError(
            f"{coordinate!r} is not a shared table coordinate",
            hint="write it as '<profile file>#<share>.<schema>.<table>'",
        )
    return profile, name


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in ("NaTType", "NAType")


def frame_to_batches(
    frame: pd.DataFrame, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Record batches of the format's schema from a frame of shared rows.

    Nested values (dicts, numpy arrays of dicts, bytes) convert as they are, NaN inside them is
    kept; a missing top-level value (NaN, NaT, None) becomes null. Columns the format does not
    have are dropped; columns it needs but the frame lacks are left out, for the importer to
    report.

    Raises:
        ShareDataError: a value does not fit its column's type (names row and column).
    """
    fields = [f for f in SCHEMA if f.name in frame.columns]
    schema = pa.schema(fields)
    for start in range(0, len(frame), batch_rows):
        part = frame.iloc[start : start + batch_rows]
        arrays = []
        for f in fields:
            values = [None if _missing(x) else x for x in part[f.name].tolist()]
            arrays.append(_array(values, f, start))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _array(values: list[Any], f: pa.Field, start: int) -> pa.Array:
    try:
        return pa.array(values, type=f.type, from_pandas=False)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        for j, value in enumerate(values):
            try:
                pa.array([value], type=f.type, from_pandas=False)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as inner:
                raise ShareDataError(
                    f"value does not fit the format's {f.type} column: {inner}",
                    row=start + j,
                    field=f.name,
                ) from inner
        raise ShareDataError(f"column cannot be converted: {exc}", row=start, field=f.name) from exc


class DeltaSharingReader:
    """A :class:`~arcuate.backends.protocols.ShareReader` over the ``delta_sharing`` client."""

    name = "delta-sharing"

    def __init__(self, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> None:
        self.batch_rows = batch_rows

    def metadata(self, coordinate: str) -> dict[str, Any]:
        """The table's version, description marker (format version, content) and schema.

        Raises:
            NotFoundError: the coordinate is malformed, or the table is not shared with you.
            BackendError: the sharing server cannot be reached or answered an error.
        """
        import delta_sharing

        _split(coordinate)
        try:
            meta = delta_sharing.get_table_metadata(coordinate)
            version = delta_sharing.get_table_version(coordinate)
        except Exception as exc:
            raise _client_error(coordinate, exc) from exc
        marker = parse_description(getattr(meta, "description", None))
        return {
            "coordinate": coordinate,
            "version": version,
            "name": getattr(meta, "name", None),
            "format_version": marker[0] if marker else None,
            "content": marker[1] if marker else None,
            "schema": json.loads(meta.schema_string)
            if getattr(meta, "schema_string", None)
            else None,
        }

    def check(self, coordinate: str) -> dict[str, Any]:
        """The table's metadata, verified to be an arcuate table of a supported format version.

        Raises:
            ShareDataError: the table is not an arcuate table, or of a newer format version.
        """
        meta = self.metadata(coordinate)
        if meta["format_version"] is None:
            raise ShareDataError(
                f"shared table {coordinate!r} is not an arcuate table (its description "
                "carries no arcuate format marker)"
            )
        if meta["format_version"] not in SUPPORTED_VERSIONS:
            raise ShareDataError(
                f"shared table {coordinate!r} uses arcuate format version "
                f"{meta['format_version']}; this arcuate reads "
                f"{', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}; upgrade arcuate"
            )
        return meta

    def frame(self, coordinate: str, *, limit: int | None = None) -> pd.DataFrame:
        """The shared table (or its first ``limit`` rows) as the client's pandas frame."""
        import delta_sharing

        _split(coordinate)
        try:
            return delta_sharing.load_as_pandas(coordinate, limit=limit)
        except Exception as exc:
            raise _client_error(coordinate, exc) from exc

    def batches(self, coordinate: str) -> Iterator[pa.RecordBatch]:
        """Record batches of the shared table, after checking it is an arcuate table."""
        self.check(coordinate)
        frame = self.frame(coordinate)
        return frame_to_batches(frame, batch_rows=self.batch_rows)

    def preview(self, coordinate: str, limit: int = 20) -> pd.DataFrame:
        """The first rows, with file bytes and chunk data left out: a quick look, no import."""
        frame = self.frame(coordinate, limit=limit)
        keep = [c for c in ("format_version", "kind", "key", "exported_at") if c in frame.columns]
        out = frame[keep].copy()
        if "run" in frame.columns:
            out["name"] = [
                (r or {}).get("run_name") if isinstance(r, dict) else None for r in frame["run"]
            ]
        if "model_version" in frame.columns:
            out["version"] = [
                (m or {}).get("version") if isinstance(m, dict) else None
                for m in frame["model_version"]
            ]
        if "files" in frame.columns:
            out["files"] = [0 if _missing_list(f) else len(f) for f in frame["files"]]
        return out


def _missing_list(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _client_error(coordinate: str, exc: Exception) -> Exception:
    """The client's failure as an arcuate error that says where and, if it can, why."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return NotFoundError(f"profile file of {coordinate!r} not found: {text}")
    if status in (403, 404):
        return NotFoundError(
            f"shared table {coordinate!r} is not available to this profile ({status}): {text}"
        )
    if status == 401:
        return BackendError(
            f"the sharing server rejected the profile's token for {coordinate!r}: {text}",
            hint="ask the provider for a new profile (the token may have expired or been rotated)",
        )
    return BackendError(f"could not read shared table {coordinate!r}: {text}")
