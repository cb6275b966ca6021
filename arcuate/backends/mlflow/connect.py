"""Connecting to MLflow with explicit URIs, and keeping credentials out of everything we write.

MLflow resolves a missing registry URI through the Spark session when pyspark is installed,
which can exit the process; so every client here gets both URIs spelled out, and nothing
global (``mlflow.set_tracking_uri``, environment variables) is touched.

:func:`redact_uri` is applied to every URI-like value that leaves the provider: model version
sources and run links, dataset sources, tag and param values that are URIs, and error messages.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: Query/fragment keys that carry secrets: Azure SAS, AWS and GCS presigned URLs, OAuth,
#: database drivers. A query or fragment holding any of them is dropped whole (a SAS token
#: is the whole query: its other fields are useless without ``sig``).
_SECRET_KEYS: Final = frozenset(
    {
        "sig",
        "signature",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "auth",
        "authorization",
        "api_key",
        "apikey",
        "key",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "sas",
        "sastoken",
        "code",
        "credential",
        "credentials",
        "session_token",
        "security_token",
    }
)
_SECRET_PREFIXES: Final = ("x-amz-", "x-goog-", "x-ms-")

_URI: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_USERINFO: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#]*@)")
_URI_LIKE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://\S*$")


def make_client(tracking_uri: str, registry_uri: str) -> MlflowClient:
    """An MlflowClient bound to both URIs explicitly; sets nothing global."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


def _is_secret_key(key: str) -> bool:
    k = key.strip().lower()
    return k in _SECRET_KEYS or k.startswith(_SECRET_PREFIXES)


def _has_secret(part: str) -> bool:
    """Whether a query string or fragment carries a credential-like ``key=value``."""
    try:
        pairs = parse_qsl(part, keep_blank_values=True)
    except ValueError:  # malformed: keep nothing we cannot read
        return True
    return any(_is_secret_key(k) for k, _ in pairs)


def redact_uri(uri: str) -> str:
    """``uri`` without userinfo (``user:password@``) and without a query or fragment carrying
    credentials (SAS tokens, ``X-Amz-*``, ``token=``...).

    Anything else is returned unchanged, character for character, so plain paths, ``runs:/``
    and ``models:/`` URIs and harmless query strings round-trip exactly.
    """
    if not uri or not _URI.match(uri):
        return uri
    out = uri
    m = _USERINFO.match(out)
    if m:
        out = m.group("scheme") + out[m.end() :]
    frag = ""
    hash_at = out.find("#")
    if hash_at >= 0:
        out, frag = out[:hash_at], out[hash_at + 1 :]
    query = ""
    q_at = out.find("?")
    if q_at >= 0:
        out, query = out[:q_at], out[q_at + 1 :]
    if query and not _has_secret(query):
        out += "?" + query
    elif not query and q_at >= 0:
        out += "?"
    if frag and not _has_secret(frag):
        out += "#" + frag
    elif not frag and hash_at >= 0:
        out += "#"
    return out


def redact_value(value: str | None) -> str | None:
    """A tag/param value redacted if it is a URI, unchanged otherwise."""
    if value is None or not _URI_LIKE.match(value):
        return value
    return redact_uri(value)


def redact_json_uris(text: str | None) -> str | None:
    """A JSON document (a dataset source) with every URI-valued string redacted.

    Unchanged, character for character, when nothing in it needs redaction; text that is not
    JSON is treated as one value.
    """
    if not text:
        return text
    try:
        doc = json.loads(text)
    except ValueError:
        return redact_value(text)
    changed = False

    def walk(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, str):
            red = redact_value(node)
            if red != node:
                changed = True
            return red
        if isinstance(node, list):
            return [walk(x) for x in node]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    cleaned = walk(doc)
    return json.dumps(cleaned) if changed else text
