"""The request log cannot be forged, and a hostile corpus never gets a 5xx.

One request is one log line: every field is escaped (control characters, CR/LF, ESC, NUL,
U+2028/2029, C1 controls, other non-printables), no logged path carries a query string, and
nothing a client sends can add a line, a token or a signature to the log.
"""

from __future__ import annotations

import json
import logging
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.server.conftest import Sharing
from tests.server.test_security import TABLE, first_file_url, raw


class AccessLog:
    """Records of the server's loggers, as the console would print them."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.formatter = logging.Formatter("%(message)s")

    def records(self) -> list[logging.LogRecord]:
        return [r for r in self.caplog.records if r.name.startswith("arcuate.server")]

    def access(self) -> list[str]:
        """Formatted request lines (the server logs them at INFO, everything else above)."""
        return [self.formatter.format(r) for r in self.records() if r.levelno == logging.INFO]

    def everything(self) -> list[str]:
        return [self.formatter.format(r) for r in self.records()]

    def wait_for(self, count: int) -> list[str]:
        """The request lines once ``count`` are there (the line is written after the reply)."""
        deadline = time.monotonic() + 10
        while len(self.access()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.access()

    def clear(self) -> None:
        self.caplog.clear()


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> Iterator[AccessLog]:
    caplog.set_level(logging.INFO, logger="arcuate.server")
    log = AccessLog(caplog)
    log.clear()
    yield log


def forbidden_characters(line: str) -> list[str]:
    """Characters that could break, forge or hide a log line."""
    bad = []
    for c in line:
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            bad.append(repr(c))
    return bad


def assert_clean_line(sharing: Sharing, line: str, *, access: bool = True) -> None:
    assert len(line.splitlines()) == 1, line
    assert not forbidden_characters(line), (forbidden_characters(line), line)
    assert "sig=" not in line, line
    if access:  # a request line never shows a query string
        assert "?" not in line, line
    for token in sharing.tokens.values():
        assert token not in line


def auth(sharing: Sharing) -> dict[str, str]:
    return {"Authorization": f"Bearer {sharing.tokens['alice']}"}


# -- item 16: focused regressions --------------------------------------------------------------
@pytest.mark.parametrize(
    "escape",
    [
        "%0A",
        "%0D",
        "%0D%0A",
        "%1B[31m",
        "%00",
        "%E2%80%A8",
        "%E2%80%A9",
        "%C2%85",
        "%7F",
        "%0B",
        "%0C",
        "%E2%80%AE",
    ],
    ids=["LF", "CR", "CRLF", "ESC", "NUL", "U+2028", "U+2029", "NEL", "DEL", "VT", "FF", "RLO"],
)
def test_a_forged_line_in_the_path_stays_in_one_escaped_line(
    sharing: Sharing, access_log: AccessLog, escape: str
) -> None:
    prefix = urlsplit(sharing.endpoint).path
    forged = f"127.0.0.1 alice GET {prefix}/shares/models 200 1.0ms"
    target = f"{prefix}/shares/x{escape}{forged.replace(' ', '%20')}"
    status, _ = raw(sharing, "GET", target)  # no token at all
    assert status in (401, 404)
    lines = access_log.wait_for(1)
    assert len(lines) == 1, lines
    assert_clean_line(sharing, lines[0])
    assert lines[0].count(f" {status} ") == 1 and " 200 " not in lines[0]


def test_query_strings_never_reach_the_log(sharing: Sharing, access_log: AccessLog) -> None:
    url = first_file_url(sharing)
    parts = urlsplit(url)
    base, _, _ = parts.path.rpartition("/")
    prefix = urlsplit(sharing.endpoint).path
    targets = [
        f"{parts.path}?{parts.query}",  # a good file URL
        f"{base}/../../x?{parts.query}",  # a path the client rewrote
        f"{prefix}/files?{parts.query}",  # no trailing slash: not a file route
        f"{prefix}/shares?{parts.query}",  # a signature on a listing
        f"{prefix}/shares?maxResults=1&pageToken=abc",
        f"{prefix}{TABLE}/changes?startingVersion=0&token={sharing.tokens['alice']}",
    ]
    for target in targets:
        raw(sharing, "GET", target, auth(sharing))
    lines = access_log.wait_for(len(targets) + 1)  # + the query that made the file URL
    assert len(lines) == len(targets) + 1, lines
    for line in lines:
        assert_clean_line(sharing, line)
    assert "sig=" not in "\n".join(access_log.everything())


def test_a_refused_file_url_names_the_recipient_its_signature_proves(
    sharing: Sharing, access_log: AccessLog
) -> None:
    """An expired file URL, still signed for alice, is logged as alice's refused request; a
    URL whose signature does not check names nobody, whoever it claims."""
    import httpx

    from arcuate.backends.sharing.server.signing import FileClaim

    url = first_file_url(sharing)
    _, _, rest = urlsplit(url).path.partition("/files/")
    table_id, _, path = rest.partition("/")
    server = sharing.handle.sharing
    alice = server.watcher.view().recipient("alice")
    claim = FileClaim(table_id, path, "alice", int(time.time()) - 1)
    expired = server.signer.file_url(sharing.endpoint, claim, alice.token_id)
    forged = expired.replace("sig=", "sig=A")
    access_log.clear()
    assert httpx.get(expired).status_code == 403
    assert httpx.get(forged).status_code == 403
    lines = access_log.wait_for(2)
    assert len(lines) == 2, lines
    assert " alice GET " in lines[0] and " 403 " in lines[0], lines[0]
    assert " alice " not in lines[1] and " 403 " in lines[1], lines[1]


def test_a_forged_client_address_is_escaped(sharing: Sharing, access_log: AccessLog) -> None:
    # uvicorn trusts X-Forwarded-For from loopback: the client field is client-controlled
    headers = {"X-Forwarded-For": "10.0.0.1\x85127.0.0.1 alice GET /x 200 1.0ms"}
    status, _ = raw(sharing, "GET", urlsplit(sharing.endpoint).path + "/shares", headers)
    assert status == 401
    lines = access_log.wait_for(1)
    assert len(lines) == 1
    assert_clean_line(sharing, lines[0])


def test_each_field_is_one_word(sharing: Sharing, access_log: AccessLog) -> None:
    prefix = urlsplit(sharing.endpoint).path
    raw(sharing, "GET", f"{prefix}/shares/a%20b%5Cc", auth(sharing))
    (line,) = access_log.wait_for(1)
    fields = line.split(" ")
    assert len(fields) == 6, line  # client, recipient, method, path, status, time
    assert fields[1] == "alice" and fields[2] == "GET" and fields[4] == "404"
    assert fields[3].startswith(prefix + "/shares/a")


def test_an_overlong_path_is_cut_in_the_log(sharing: Sharing, access_log: AccessLog) -> None:
    prefix = urlsplit(sharing.endpoint).path
    raw(sharing, "GET", f"{prefix}/shares/{'a' * 8000}", auth(sharing))
    (line,) = access_log.wait_for(1)
    assert len(line) < 2000
    assert_clean_line(sharing, line)


# -- the hostile corpus (issue 10, done-when) ----------------------------------------------------
@dataclass(frozen=True)
class Hostile:
    """One hostile request: method, target under the endpoint's path, headers, body."""

    name: str
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    token: bool = True
    file: bool = False  # target is a query string and path suffix for a signed file URL


def _corpus() -> list[Hostile]:
    t = TABLE
    deep = b"[" * 100_000
    cases = [
        # control characters and odd encodings in paths
        Hostile("lf-in-share", "GET", "/shares/x%0Afake%20line"),
        Hostile("crlf-in-share", "GET", "/shares/x%0D%0Afake"),
        Hostile("esc-in-share", "GET", "/shares/x%1B%5B2J"),
        Hostile("nul-in-share", "GET", "/shares/x%00y"),
        Hostile("u2028-in-share", "GET", "/shares/x%E2%80%A8y"),
        Hostile("u2029-in-schema", "GET", "/shares/models/schemas/x%E2%80%A9y/tables"),
        Hostile("nel-in-table", "GET", "/shares/models/schemas/mlflow/tables/x%C2%85y/metadata"),
        Hostile("bidi-in-share", "GET", "/shares/x%E2%80%AEy"),
        Hostile("invalid-utf8", "GET", "/shares/%FF%FE%FD"),
        Hostile("bad-percent", "GET", "/shares/%ZZ%4"),
        Hostile("encoded-traversal", "GET", "/shares/models/schemas/%2e%2e%2f%2e%2e/tables"),
        Hostile("overlong-path", "GET", "/shares/" + "a" * 8000),
        Hostile("no-token-lf", "GET", "/shares/x%0Ay", token=False),
        # huge, odd and unicode digits in parameters
        Hostile("maxresults-zero", "GET", "/shares?maxResults=0"),
        Hostile("maxresults-huge", "GET", "/shares?maxResults=" + "9" * 30),
        Hostile("maxresults-5000", "GET", "/shares?maxResults=" + "9" * 5000),
        Hostile("maxresults-superscript", "GET", "/shares?maxResults=%C2%B2"),
        Hostile("maxresults-arabic", "GET", "/shares?maxResults=%D9%A3"),
        Hostile("maxresults-underscore", "GET", "/shares?maxResults=1_0"),
        Hostile("pagetoken-control", "GET", "/shares?pageToken=%0A%1B%00"),
        Hostile("version-superscript", "GET", f"{t}/metadata?version=%C2%B2"),
        Hostile("version-arabic", "GET", f"{t}/metadata?version=%D9%A1"),
        Hostile("changes-5000", "GET", f"{t}/changes?startingVersion=" + "9" * 5000),
        Hostile(
            "changes-end-huge", "GET", f"{t}/changes?startingVersion=0&endingVersion=" + "9" * 25
        ),
        Hostile("timestamp-control", "GET", f"{t}/version?startingTimestamp=%0A2024%1B"),
        Hostile(
            "bool-unicode",
            "GET",
            f"{t}/changes?startingVersion=0&includeHistoricalMetadata=tru%C3%A9",
        ),
        # request bodies
        Hostile("deep-arrays", "POST", f"{t}/query", body=b"[" * 1000),
        Hostile("deep-objects", "POST", f"{t}/query", body=b'{"a":' * 1000),
        Hostile("deep-100k", "POST", f"{t}/query", body=deep),
        Hostile(
            "deep-balanced", "POST", f"{t}/query", body=b'{"f":' + b"[" * 3000 + b"]" * 3000 + b"}"
        ),
        Hostile("huge-number", "POST", f"{t}/query", body=b'{"version": ' + b"9" * 4000 + b"}"),
        Hostile("float-overflow", "POST", f"{t}/query", body=b'{"limitHint": 1e999}'),
        Hostile("nan", "POST", f"{t}/query", body=b'{"version": NaN}'),
        Hostile("lone-surrogate", "POST", f"{t}/query", body=b'{"timestamp": "\\ud800"}'),
        Hostile(
            "bad-content-length-type",
            "POST",
            f"{t}/query",
            headers=(("Content-Type", "text/\x85"),),
            body=b"{}",
        ),
        # bad methods
        Hostile("delete", "DELETE", "/shares"),
        Hostile("put-query", "PUT", f"{t}/query", body=b"{}"),
        Hostile("custom-method", "BREW", "/shares"),
        Hostile("options", "OPTIONS", f"{t}/query"),
        Hostile("post-file", "POST", "", file=True),
        # bad headers and tokens
        Hostile(
            "basic-auth", "GET", "/shares", headers=(("Authorization", "Basic YTpi"),), token=False
        ),
        Hostile(
            "huge-token",
            "GET",
            "/shares",
            headers=(("Authorization", "Bearer " + "x" * 6000),),
            token=False,
        ),
        Hostile(
            "nel-token",
            "GET",
            "/shares",
            headers=(("Authorization", "Bearer abc\x85def"),),
            token=False,
        ),
        Hostile(
            "empty-bearer", "GET", "/shares", headers=(("Authorization", "Bearer  "),), token=False
        ),
        Hostile(
            "capabilities-odd",
            "GET",
            f"{t}/metadata",
            headers=(
                ("delta-sharing-capabilities", "responseformat=\x85;;==;readerfeatures=\xff"),
            ),
        ),
        Hostile(
            "forwarded-for", "GET", "/shares", headers=(("X-Forwarded-For", "1.2.3.4\x85fake"),)
        ),
        Hostile(
            "forwarded-esc", "GET", "/shares", headers=(("X-Forwarded-For", "1.2.3.4\x1b[2J\x07"),)
        ),
        Hostile(
            "auth-esc",
            "GET",
            "/shares",
            headers=(("Authorization", "Bearer a\x1b[2Jb"),),
            token=False,
        ),
        # signed file URLs
        Hostile("se-superscript", "GET", "se=%C2%B2", file=True),
        Hostile("se-5000", "GET", "se=" + "9" * 5000, file=True),
        Hostile("se-arabic", "GET", "se=%D9%A3", file=True),
        Hostile("sig-control", "GET", "sig=%0A%1B", file=True),
        Hostile("rc-control", "GET", "rc=alice%0Abob", file=True),
        Hostile("file-traversal", "GET", "../../shares.yaml", file=True),
        Hostile("file-lf-path", "GET", "x%0Ay", file=True),
        Hostile("range-superscript", "GET", "", headers=(("Range", "bytes=\xc2\xb2-"),), file=True),
        Hostile(
            "range-5000", "GET", "", headers=(("Range", "bytes=" + "9" * 5000 + "-"),), file=True
        ),
        Hostile("range-unit", "GET", "", headers=(("Range", "items=0-1"),), file=True),
        Hostile("range-reversed", "GET", "", headers=(("Range", "bytes=9-2"),), file=True),
        Hostile("range-past-end", "GET", "", headers=(("Range", "bytes=999999999-"),), file=True),
        Hostile(
            "range-many",
            "GET",
            "",
            headers=(("Range", "bytes=" + "0-0," * 300 + "1-1"),),
            file=True,
        ),
        Hostile("range-head", "HEAD", "", headers=(("Range", "bytes=-0"),), file=True),
    ]
    return cases


CORPUS = _corpus()

Doc = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A hand edit: put ``value`` at a dotted path of the catalog (numbers index lists)."""

    def edit(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def _append(path: str, value: Any) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        node: Any = doc
        for key in path.split("."):
            node = node[int(key)] if isinstance(node, list) else node[key]
        node.append(value)

    return edit


#: Hand edits that leave valid YAML of the wrong shape, each loaded while serving.
BAD_CATALOGS: list[tuple[str, Callable[[Doc], None]]] = [
    ("grants-list", _set("grants", ["ml"])),
    ("grant-string", _set("grants.models", "alice")),
    ("grant-nested", _set("grants.models", [["alice"]])),
    ("recipient-string", _append("recipients", "mallory")),
    ("recipient-no-name", _append("recipients", {"comment": "x"})),
    ("recipient-name-list", _set("recipients.0.name", ["alice"])),
    ("token-string", _set("recipients.0.token", "abc")),
    ("expires-tomorrow", _set("recipients.0.token.expires_at", "tomorrow")),
    ("expires-number", _set("recipients.0.token.expires_at", 12)),
    ("created-garbage", _set("recipients.0.created_at", "the day before")),
    ("salt-not-hex", _set("recipients.0.token.salt", "zz")),
    ("shares-mapping", _set("shares", {"a": 1})),
    ("share-string", _append("shares", "extra")),
    ("schemas-mapping", _set("shares.0.schemas", {"m": 1})),
    ("location-number", _set("shares.0.schemas.0.tables.0.location", 5)),
    ("start-version-text", _set("shares.0.schemas.0.tables.0.startVersion", "abc")),
    ("history-text", _set("shares.0.schemas.0.tables.0.historyShared", "sometimes")),
    ("table-no-name", _append("shares.0.schemas.0.tables", {"location": "/x"})),
    ("top-level-list", lambda doc: (doc.clear(), doc.update({"__list__": True}))),
    ("version-list", _set("version", [1])),
]


def _bad_catalog_text(good: str, edit: Callable[[Doc], None]) -> str:
    doc = yaml.safe_load(good)
    edit(doc)
    if doc.get("__list__"):
        return "- just\n- a list\n"
    return str(yaml.safe_dump(doc, sort_keys=False))


def _send(sharing: Sharing, case: Hostile, file_url: str) -> int:
    headers = {k: v for k, v in case.headers}
    if case.token and not any(k == "Authorization" for k, _ in case.headers):
        headers.update(auth(sharing))
    if case.file:
        parts = urlsplit(file_url)
        path, query = parts.path, parts.query
        if "=" in case.target:
            key = case.target.split("=", 1)[0]
            query = "&".join(
                [p for p in query.split("&") if not p.startswith(key + "=")] + [case.target]
            )
        elif case.target:
            path = path.rpartition("/")[0] + "/" + case.target
        target = f"{path}?{query}"
    else:
        target = urlsplit(sharing.endpoint).path + case.target
    status, _ = raw_with_body(sharing, case.method, target, headers, case.body)
    return status


def raw_with_body(
    sharing: Sharing, method: str, target: str, headers: dict[str, str], body: bytes | None
) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection(sharing.handle.host, sharing.handle.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v.encode("latin-1"))
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) + len(BAD_CATALOGS) >= 40
    assert len({c.name for c in CORPUS}) == len(CORPUS)


def test_no_hostile_request_gets_a_5xx_and_each_logs_one_clean_line(
    sharing: Sharing, access_log: AccessLog
) -> None:
    file_url = first_file_url(sharing)
    access_log.clear()
    statuses: dict[str, int] = {}
    for case in CORPUS:
        statuses[case.name] = _send(sharing, case, file_url)
    assert not {k: v for k, v in statuses.items() if v >= 500}, statuses
    lines = access_log.wait_for(len(CORPUS))
    assert len(lines) == len(CORPUS), "\n".join(lines)
    for line in access_log.access():
        assert_clean_line(sharing, line)
    for line in access_log.everything():
        assert_clean_line(sharing, line, access=False)


def test_bad_catalog_shapes_loaded_while_serving(sharing: Sharing, access_log: AccessLog) -> None:
    good = sharing.catalog_path.read_bytes()
    prefix = urlsplit(sharing.endpoint).path
    statuses: list[tuple[str, str, int]] = []
    listed: list[Any] = []
    try:
        for name, edit in BAD_CATALOGS:
            text = _bad_catalog_text(good.decode(), edit)
            tmp = sharing.catalog_path.with_suffix(".hostile")
            tmp.write_text(text)
            tmp.replace(sharing.catalog_path)
            for path in ("/shares", "/shares/models/schemas", TABLE + "/metadata"):
                status, body = raw(sharing, "GET", prefix + path, auth(sharing))
                statuses.append((name, path, status))
            status, body = raw(sharing, "GET", prefix + "/shares", auth(sharing))
            listed.append(json.loads(body).get("items"))
    finally:
        tmp = sharing.catalog_path.with_suffix(".restore")
        tmp.write_bytes(good)
        tmp.replace(sharing.catalog_path)
    assert raw(sharing, "GET", prefix + "/shares", auth(sharing))[0] == 200
    # the server kept serving the last good catalog through every bad edit
    assert [s for s in statuses if s[2] != 200] == []
    assert listed == [[{"name": "models"}]] * len(BAD_CATALOGS)
    requests = len(BAD_CATALOGS) * 4 + 1
    lines = access_log.wait_for(requests)
    assert len(lines) == requests
    errors = [
        access_log.formatter.format(r) for r in access_log.records() if r.levelno >= logging.ERROR
    ]
    assert len(errors) == len(BAD_CATALOGS), errors  # one per bad version, not per request
    for line in access_log.access():
        assert_clean_line(sharing, line)
    for line in access_log.everything():
        assert_clean_line(sharing, line, access=False)
    for error in errors:
        assert "keeping the last good one" in error


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /delta-sharing/shares/x\x1b[2J HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /delta-sharing/shares/x\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /delta-sharing/shares HTTP/1.1\r\nHost: x\r\nContent-Length: \xc2\xb2\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on the plain port
    ],
    ids=["esc-in-target", "nul-in-target", "superscript-length", "tls"],
)
def test_what_is_not_http_is_refused_before_the_app_with_a_fixed_line(
    sharing: Sharing, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    import socket

    caplog.set_level(logging.INFO)
    with socket.create_connection((sharing.handle.host, sharing.handle.port), timeout=10) as s:
        s.sendall(request_bytes)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    deadline = time.monotonic() + 5
    while not caplog.records and time.monotonic() < deadline:
        time.sleep(0.01)
    formatter = logging.Formatter("%(message)s")
    for record in caplog.records:  # uvicorn's fixed warning, nothing from the request
        line = formatter.format(record)
        assert len(line.splitlines()) == 1 and not forbidden_characters(line), line
        assert "x" not in line.replace("Invalid HTTP request received.", "")


def test_a_server_bug_is_one_escaped_error_line_without_signatures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import SharingServer, serve_in_thread

    async def broken(self: SharingServer, request: Any) -> Any:
        raise RuntimeError("boom\nforged line http://h/files/t/x?sp=r&se=1&sig=SECRET\x1b[2J")

    monkeypatch.setattr(SharingServer, "list_shares", broken)
    catalog = LocalShareCatalog(tmp_path / "shares.yaml")
    catalog.add_table("s", "m", "t", str(tmp_path / "t"))
    _, token = catalog.create_recipient("r")
    caplog.set_level(logging.INFO, logger="arcuate.server")
    with serve_in_thread(str(catalog.path)) as handle:
        status, body = raw_with_body(
            _FakeSharing(handle),
            "GET",
            "/delta-sharing/shares",
            {"Authorization": f"Bearer {token}"},
            None,
        )
        assert status == 500 and json.loads(body)["errorCode"] == "INTERNAL_ERROR"
        assert b"boom" not in body and b"SECRET" not in body
        deadline = time.monotonic() + 5
        while len(caplog.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handle.sharing.stats.server_errors == 1
    formatter = logging.Formatter("%(message)s")
    lines = [formatter.format(r) for r in caplog.records if r.name == "arcuate.server"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and len(lines) == 2  # the error and the request line
    for line in lines:
        assert len(line.splitlines()) == 1 and not forbidden_characters(line), line
        assert "SECRET" not in line
    assert "RuntimeError: boom\\x0aforged line http://h/files/t/x?<redacted>" in formatter.format(
        errors[0]
    )


class _FakeSharing:
    """Enough of :class:`Sharing` for :func:`raw_with_body` against another server."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("/delta-sharing/shares/ml", "/delta-sharing/shares/ml"),
        ("exp \u00fcnicode", "exp\\x20\u00fcnicode"),
        ("a\nb\rc\x1bd\x00e\x7ff\x85g", "a\\x0ab\\x0dc\\x1bd\\x00e\\x7ff\\x85g"),
        ("\u2028\u2029\u202e\u00a0", "\\u2028\\u2029\\u202e\\xa0"),
        ("back\\slash \\x0a", "back\\\\slash\\x20\\\\x0a"),  # a literal "\x0a" stays tellable
        ("", "-"),
        (None, "-"),
        ("\U000e0041", "\\U000e0041"),  # an invisible tag character
    ],
)
def test_log_field(value: object, logged: str) -> None:
    from arcuate.backends.sharing.server.logline import log_field

    assert log_field(value) == logged


def test_log_field_cuts_and_keeps_spaces_when_asked() -> None:
    from arcuate.backends.sharing.server.logline import log_field

    assert log_field("a" * 2000) == "a" * 1024 + "...(+976)"
    assert log_field("a b\nc", spaces=True) == "a b\\x0ac"
