"""What goes over the wire: protocol errors, ASCII-safe JSON and NDJSON bodies, request parsing.

The 1.4 client splits bodies with ``str.splitlines()`` (which also breaks on U+2028 and
friends) and retries every 5xx for about 100 s, so every body is ASCII-escaped JSON, lines
are separated by ``\\n`` only, and client mistakes are always 4xx.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from starlette.responses import Response

JSON_TYPE: Final = "application/json; charset=utf-8"
NDJSON_TYPE: Final = "application/x-ndjson; charset=utf-8"

#: Longest user-supplied text echoed back in an error message.
_ECHO_LIMIT: Final = 120
#: Digits in a number a client sends: enough for any int64 (9223372036854775807).
MAX_DIGITS: Final = 19
INT64_MAX: Final = 2**63 - 1
#: Nesting of arrays and objects in a request body (a query body needs 2).
MAX_JSON_DEPTH: Final = 32
#: Ranges in one Range header (Starlette's own cap).
MAX_RANGES: Final = 100


class SharingError(Exception):
    """A request the server refuses: HTTP status, protocol error code, message (and headers
    the status needs, such as ``Content-Range`` for 416)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def not_found(message: str) -> SharingError:
    return SharingError(404, "RESOURCE_DOES_NOT_EXIST", message)


def invalid(message: str) -> SharingError:
    return SharingError(400, "INVALID_PARAMETER_VALUE", message)


def malformed(message: str) -> SharingError:
    return SharingError(400, "MALFORMED_REQUEST", message)


def unsupported(message: str) -> SharingError:
    return SharingError(400, "UNSUPPORTED_OPERATION", message)


def echo(value: object) -> str:
    """User input quoted for a message, cut short so a huge name cannot bloat the reply."""
    text = str(value)
    if len(text) > _ECHO_LIMIT:
        text = text[:_ECHO_LIMIT] + "..."
    return repr(text)


def dumps(obj: Any) -> str:
    """Compact, ASCII-only JSON: no character the client's line splitter could break on."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def without_nulls(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol omits absent optional fields rather than sending null."""
    return {k: v for k, v in obj.items() if v is not None}


def json_response(obj: Any, *, headers: Mapping[str, str] | None = None) -> Response:
    """One JSON document on one line (the client reads list responses with one next())."""
    return Response(dumps(obj) + "\n", media_type=None, headers=_with_type(headers, JSON_TYPE))


def ndjson_response(lines: Iterable[Any], *, headers: Mapping[str, str] | None = None) -> Response:
    """One JSON object per line, no blank lines."""
    body = "".join(dumps(line) + "\n" for line in lines)
    return Response(body, media_type=None, headers=_with_type(headers, NDJSON_TYPE))


def error_response(exc: SharingError, *, head: bool = False) -> Response:
    """The protocol's error shape, ``{"errorCode", "message"}`` (no body for HEAD)."""
    headers = dict(exc.headers)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="delta-sharing"'
    if head:
        return Response(None, status_code=exc.status, headers=headers)
    body = dumps({"errorCode": exc.code, "message": exc.message}) + "\n"
    return Response(
        body, status_code=exc.status, media_type=None, headers=_with_type(headers, JSON_TYPE)
    )


def _with_type(headers: Mapping[str, str] | None, content_type: str) -> dict[str, str]:
    out = dict(headers or {})
    out["Content-Type"] = content_type
    return out


# -- request parsing ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Capabilities:
    """The ``delta-sharing-capabilities`` request header, lower-cased."""

    formats: tuple[str, ...]
    reader_features: frozenset[str]
    end_stream_action: bool

    @classmethod
    def parse(cls, header: str | None) -> Capabilities:
        """``key=v1,v2;key2=v``; without the header the client wants parquet."""
        values: dict[str, list[str]] = {}
        for part in (header or "").lower().split(";"):
            key, sep, value = part.partition("=")
            if sep:
                values[key.strip()] = [v.strip() for v in value.split(",") if v.strip()]
        formats = tuple(values.get("responseformat") or ["parquet"])
        return cls(
            formats=formats,
            reader_features=frozenset(values.get("readerfeatures") or []),
            end_stream_action=(values.get("includeendstreamaction") or ["false"])[0] == "true",
        )


def ascii_int(raw: str, max_digits: int = MAX_DIGITS) -> int | None:
    """``raw`` as a non-negative integer if it is 1 to ``max_digits`` ASCII digits, else None.

    ``int()`` alone is too lax for input from the network: it takes any Unicode decimal digit
    (Arabic-Indic, fullwidth...), ``_`` separators, signs and spaces, and it raises rather
    than answer on more than 4300 digits; ``str.isdigit`` also accepts ``²``.
    """
    if 0 < len(raw) <= max_digits and raw.isascii() and raw.isdigit():
        return int(raw)
    return None


def parse_int(
    name: str, raw: str | None, *, minimum: int = 0, maximum: int = INT64_MAX
) -> int | None:
    """A whole-number query parameter in ``[minimum, maximum]``, or None when absent."""
    if raw is None:
        return None
    value = ascii_int(raw)
    if value is None or not minimum <= value <= maximum:
        raise invalid(f"{name} must be a whole number from {minimum} to {maximum}, got {echo(raw)}")
    return value


def parse_bool(name: str, raw: str | None) -> bool | None:
    """``true``/``false`` in any case (the Python client sends ``True``/``False``)."""
    if raw is None:
        return None
    low = raw.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    raise invalid(f"{name} must be true or false, got {echo(raw)}")


def parse_timestamp(name: str, raw: str) -> int:
    """An ISO-8601 instant (``Z``, an offset, or none for UTC) as epoch milliseconds."""
    text = raw.strip()
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise invalid(
            f"{name} must be an ISO-8601 timestamp such as 2024-01-31T12:00:00Z, got {echo(raw)}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


#: A JSON string, closed or not (its brackets are text, not nesting).
_JSON_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
#: +1 for ``[`` and ``{``, -1 for ``]`` and ``}``, by byte value.
_NESTING_STEP: Final = [{0x5B: 1, 0x7B: 1, 0x5D: -1, 0x7D: -1}.get(b, 0) for b in range(256)]


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body`` opens more than ``limit`` nested arrays/objects at some point.

    Checked before parsing: ``json.loads`` recurses once per level, so a 1 MiB body of ``[``
    ends in ``RecursionError``. Strings are cut out and the brackets counted in C-speed
    steps, so a megabyte of brackets costs milliseconds on the event loop.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_NESTING_STEP.__getitem__, brackets)), default=0) > limit


@dataclass(frozen=True)
class QueryRequest:
    """The body of ``POST .../query``; unknown fields are ignored, as the protocol allows."""

    version: int | None = None
    timestamp: str | None = None
    starting_version: int | None = None
    ending_version: int | None = None
    limit_hint: int | None = None
    max_files: int | None = None
    page_token: str | None = None
    include_refresh_token: bool = False
    refresh_token: str | None = None

    @classmethod
    def parse(cls, body: bytes) -> QueryRequest:
        """Validate types (MALFORMED_REQUEST) and values (INVALID_PARAMETER_VALUE)."""
        if not body.strip():
            return cls()
        if json_depth_exceeds(body, MAX_JSON_DEPTH):
            raise malformed(
                f"the request body nests arrays or objects deeper than {MAX_JSON_DEPTH} levels"
            )
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise malformed("the request body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise malformed("the request body must be a JSON object")

        def integer(key: str, minimum: int = 0) -> int | None:
            value = doc.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int):
                raise malformed(f"{key} must be a whole number")
            if not minimum <= value <= INT64_MAX:
                raise invalid(
                    f"{key} must be a whole number from {minimum} to {INT64_MAX}, "
                    f"got {echo(value)}"
                )
            return value

        def text(key: str) -> str | None:
            value = doc.get(key)
            if value is None:
                return None
            if not isinstance(value, str):
                raise malformed(f"{key} must be a string")
            return value

        hints = doc.get("predicateHints")
        if hints is not None and (
            not isinstance(hints, list) or not all(isinstance(h, str) for h in hints)
        ):
            raise malformed("predicateHints must be a list of strings")
        text("jsonPredicateHints")  # best effort: accepted and not evaluated
        text("idempotencyKey")
        include = doc.get("includeRefreshToken")
        if include is not None and not isinstance(include, bool):
            raise malformed("includeRefreshToken must be true or false")
        request = cls(
            version=integer("version"),
            timestamp=text("timestamp"),
            starting_version=integer("startingVersion"),
            ending_version=integer("endingVersion"),
            limit_hint=integer("limitHint"),
            max_files=integer("maxFiles", 1),
            page_token=text("pageToken"),
            include_refresh_token=bool(include),
            refresh_token=text("refreshToken"),
        )
        chosen = [
            k
            for k, v in (
                ("version", request.version),
                ("timestamp", request.timestamp),
                ("startingVersion", request.starting_version),
            )
            if v is not None
        ]
        if len(chosen) > 1:
            raise invalid(
                f"only one of version, timestamp and startingVersion may be set: {chosen}"
            )
        if request.ending_version is not None and request.starting_version is None:
            raise invalid("endingVersion needs startingVersion")
        if (
            request.ending_version is not None
            and request.starting_version is not None
            and request.ending_version < request.starting_version
        ):
            raise invalid("endingVersion must not be before startingVersion")
        if request.timestamp is not None:
            parse_timestamp("timestamp", request.timestamp)
        return request


# -- Range headers of file requests ------------------------------------------------------------
_RANGE_SPEC: Final = re.compile(r"([0-9]*)-([0-9]*)")


def parse_range(header: str, size: int) -> list[tuple[int, int]]:
    """The byte ranges ``[start, end)`` a ``Range`` header asks of a file of ``size`` bytes.

    Stricter than Starlette's own parser, and with the same outcome where both accept, so
    that every refusal is the protocol's JSON error: 400 MALFORMED_REQUEST when the header
    is malformed (not ``bytes``, not ASCII digits, more than 19 digits, more than 100 ranges,
    a range that ends before it starts), 416 when no byte of the file is asked for.
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        raise malformed("the Range header must be 'bytes=<first>-<last>[, ...]'")
    parts = spec.split(",")
    if len(parts) > MAX_RANGES:
        raise malformed(f"the Range header asks for more than {MAX_RANGES} ranges")
    ranges = [_one_range(part.strip(), size) for part in parts]
    if any(start >= size for start, _ in ranges):
        raise SharingError(
            416,
            "INVALID_PARAMETER_VALUE",
            f"the Range header asks for bytes past the end of the file ({size} bytes)",
            headers={"Content-Range": f"bytes */{size}"},
        )
    if any(start >= end for start, end in ranges):
        raise malformed("a range in the Range header ends before it starts")
    return ranges


def _one_range(part: str, size: int) -> tuple[int, int]:
    """One ``first-last``, ``first-`` or ``-suffix`` range, computed as Starlette does."""
    m = _RANGE_SPEC.fullmatch(part)
    first = ascii_int(m.group(1)) if m and m.group(1) else None
    last = ascii_int(m.group(2)) if m and m.group(2) else None
    if (
        m is None
        or (m.group(1) and first is None)
        or (m.group(2) and last is None)
        or (first is None and last is None)
    ):
        raise malformed(f"the Range header has a malformed range {echo(part)}")
    if first is None:
        assert last is not None
        return max(size - last, 0), size
    end = last + 1 if last is not None and last < size else size
    return first, end
