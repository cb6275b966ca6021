"""The access log: one record per request (refusals included) in a Delta table next to the
catalog, written off the request path through a durable spool; never a secret; nothing lost
on SIGTERM; ``SHOW ACCESS LOG`` and ``SHOW RECIPIENT USAGE`` read it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

import arcuate
from arcuate.backends.sharing.audit import log_location, spool_location
from arcuate.backends.sharing.catalog import LocalShareCatalog
from arcuate.backends.sharing.server import serve_in_thread, write_profile
from arcuate.backends.sharing.server.audit import AuditLog
from arcuate.backends.sharing.server.signing import FileClaim
from tests.server.conftest import Sharing

SERVE = "from arcuate.frontends.serve_cli import serve_command; serve_command()"
TABLE = "/shares/s/schemas/default/tables/t"


@pytest.fixture
def catalog(tmp_path: Path) -> LocalShareCatalog:
    """A catalog of its own: share ``s`` with table ``default.t`` (3 versions), and ``u``."""
    location = str(tmp_path / "wh" / "t")
    for n in range(3):
        write_deltalake(location, pa.table({"v": [n, n + 1]}), mode="append")
    catalog = LocalShareCatalog(tmp_path / "wh" / "shares.yaml")
    catalog.add_table("s", "default", "t", location)
    catalog.add_table("u", "default", "t", location)
    return catalog


def recipient(catalog: LocalShareCatalog, name: str, *shares: str) -> str:
    _, token = catalog.create_recipient(name)
    assert token is not None
    for share in shares:
        catalog.grant(share, name)
    return token


def records(catalog: LocalShareCatalog) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = DeltaTable(str(log_location(catalog.path))).to_pyarrow_table().to_pylist()
    return rows


def test_every_request_is_one_record_refusals_included(catalog: LocalShareCatalog) -> None:
    alice = recipient(catalog, "alice", "s")
    carol = recipient(catalog, "carol", "s")
    catalog.set_ip_access_list("carol", ["192.0.2.0/24"])
    dave = recipient(catalog, "dave", "s")
    catalog.set_rate_limit("dave", 1, 3600)
    sent: list[tuple[httpx.Response, dict[str, Any]]] = []
    with serve_in_thread(str(catalog.path)) as server, httpx.Client(timeout=10) as http:

        def ask(expect: dict[str, Any], method: str, url: str, token: str | None = None, **kw: Any) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            resp = http.request(method, url, headers=headers, **kw)
            sent.append((resp, expect))
            return resp

        e = server.endpoint
        ask({"recipient": "alice", "action": "list_shares", "status": 200}, "GET", e + "/shares", alice)
        meta = ask({"action": "metadata", "status": 200, "share": "s", "schema": "default", "table": "t", "table_version": 2},
                   "GET", e + TABLE + "/metadata", alice)
        query = ask({"action": "query", "status": 200, "table_version": 1}, "POST", e + TABLE + "/query", alice, json={"version": 1})
        url = json.loads(query.text.splitlines()[2])["file"]["url"]
        ask({"recipient": "alice", "action": "file", "status": 200, "share": "s", "table": "t"}, "GET", url)
        ask({"recipient": None, "action": "file", "status": 403, "error_code": "PERMISSION_DENIED"}, "GET", url.replace("sig=", "sig=0"))
        # an expired URL is still alice's: its signature says so
        table_id, _, path = urlsplit(url).path.partition("/files/")[2].partition("/")
        late = FileClaim(table_id, path, "alice", int(time.time()) - 1)
        expired = server.sharing.signer.file_url(e, late, server.sharing.watcher.view().recipient("alice").token_id)
        ask({"recipient": "alice", "action": "file", "status": 403, "error_code": "PERMISSION_DENIED"}, "GET", expired)
        ask({"recipient": "alice", "action": "changes", "status": 400, "error_code": "INVALID_PARAMETER_VALUE"},
            "GET", e + TABLE + "/changes?startingVersion=0", alice)  # no change data feed on t
        ask({"recipient": "alice", "action": "get_share", "status": 404, "share": "u", "error_code": "RESOURCE_DOES_NOT_EXIST"},
            "GET", e + "/shares/u", alice)
        ask({"recipient": None, "action": "list_shares", "status": 401, "error_code": "UNAUTHENTICATED"}, "GET", e + "/shares", "nope")
        ask({"recipient": "carol", "action": "list_shares", "status": 403, "error_code": "PERMISSION_DENIED"}, "GET", e + "/shares", carol)
        ask({"recipient": "dave", "status": 200}, "GET", e + "/shares", dave)
        ask({"recipient": "dave", "status": 429, "error_code": "REQUEST_LIMIT_EXCEEDED"}, "GET", e + "/shares", dave)
        ask({"action": "table_version", "status": 200, "table_version": 2}, "HEAD", e + TABLE, alice)
        ask({"action": "other", "status": 405, "error_code": "METHOD_NOT_ALLOWED"}, "DELETE", e + "/shares", alice)
        ask({"action": "other", "status": 404, "recipient": None}, "GET", e + "/nowhere", alice)
        assert meta.status_code == 200
    # read once the server has stopped (its log flushed): a request's record is made after its
    # answer was sent, so the last one can still be on its way while the client reads the answer
    found = {r["request_id"]: r for r in records(catalog)}
    assert len(found) == len(sent) == server.sharing.stats.requests
    for resp, expect in sent:
        rec = found[resp.headers["x-request-id"]]
        assert rec["status"] == resp.status_code
        assert rec["bytes_sent"] == len(resp.content)
        assert rec["client_address"] == "127.0.0.1" and rec["method"] == resp.request.method
        assert rec["duration_ms"] >= 0 and rec["time"].tzinfo is not None
        assert rec["date"] == rec["time"].strftime("%Y-%m-%d")
        if resp.status_code >= 400 and resp.request.method != "HEAD":
            assert rec["error_code"] == resp.json()["errorCode"]
        else:
            assert rec["error_code"] is None
        for key, value in expect.items():
            assert rec[key] == value, (key, rec)


def _secrets(token_holders: dict[str, str], urls: list[str], page_token: str) -> list[str]:
    found = [*token_holders.values(), page_token]
    for url in urls:
        query = dict(parse_qsl(urlsplit(url).query))
        found.append(query["sig"])
    return found


def _scan(root: Path, secrets: list[str], skip: set[Path]) -> list[str]:
    """Every file under root (but ``skip``) that holds one of the secrets."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and path not in skip:
            data = path.read_bytes()
            hits += [f"{path}: {s[:6]}..." for s in secrets if s.encode() in data]
    return hits


def test_no_secret_reaches_the_spool_the_table_or_any_file_but_the_profile(
    catalog: LocalShareCatalog, tmp_path: Path
) -> None:
    tokens = {"alice": recipient(catalog, "alice", "s", "u")}
    table = log_location(catalog.path)
    table.write_text("not a table")  # the writer cannot commit: batches stay in the spool
    with serve_in_thread(str(catalog.path)) as server, httpx.Client(timeout=10) as http:
        profile = write_profile(tmp_path / "alice.share", server.endpoint, tokens["alice"])
        auth = {"Authorization": f"Bearer {tokens['alice']}"}
        page = http.get(server.endpoint + "/shares?maxResults=1", headers=auth).json()
        page_token = page["nextPageToken"]
        http.get(server.endpoint + f"/shares?maxResults=1&pageToken={page_token}", headers=auth)
        query = http.post(server.endpoint + TABLE + "/query", headers=auth, json={})
        urls = [json.loads(x)["file"]["url"] for x in query.text.splitlines()[2:]]
        for url in urls:
            http.get(url)
            http.get(url.replace("sig=", "sig=f"))  # refused, logged
        # a client that puts its token where it does not belong
        http.get(server.endpoint + f"/shares?token={tokens['alice']}", headers=auth)
        http.get(server.endpoint + "/shares", headers={"Authorization": f"Basic {tokens['alice']}"})
        time.sleep(1.5)  # a batch or two reach the spool (and fail to commit)
    # counted once the server has stopped: a request's record is counted after its answer
    requests = server.sharing.stats.requests
    spool = spool_location(catalog.path)
    segments = sorted(spool.glob("*.jsonl"))
    spooled = [json.loads(line) for s in segments for line in s.read_text().splitlines()]
    assert len(spooled) == requests  # every record waits on disk, flushed at shutdown
    secrets = _secrets(tokens, urls, page_token)
    assert _scan(catalog.path.parent, secrets, skip=set()) == []
    assert _scan(tmp_path, secrets, skip={profile}) == []
    # once the table can be written, the next server replays the spool, each record once
    table.unlink()
    with serve_in_thread(str(catalog.path)) as server:
        deadline = time.monotonic() + 30
        while server.sharing.audit.stats.replayed < requests:
            assert time.monotonic() < deadline, server.sharing.audit.stats
            time.sleep(0.05)
    rows = records(catalog)
    assert sorted(r["request_id"] for r in rows) == sorted(r["request_id"] for r in spooled)
    assert not list(spool.glob("*.jsonl"))
    assert _scan(catalog.path.parent, secrets, skip=set()) == []  # the table's Parquet files too


def test_replay_commits_each_segment_exactly_once(tmp_path: Path) -> None:
    table, spool = tmp_path / "log", tmp_path / "log.spool"
    spool.mkdir()

    def record(n: int) -> dict[str, Any]:
        return {
            "time": 1_700_000_000_000_000 + n, "request_id": f"r{n}", "action": "list_shares",
            "status": 200, "bytes_sent": 1, "duration_ms": 0.5, "date": "2023-11-14",
        }  # fmt: skip

    writer = AuditLog(table, spool)
    # a server that stopped after committing segment 1 but before deleting it, and before
    # committing segment 2: both files are still there
    writer._commit("wgone-1", 1, [record(1), record(2)])
    for seq, rows in ((1, [record(1), record(2)]), (2, [record(3)])):
        (spool / f"wgone-1-{seq:012d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (spool / "wgone-1.lock").touch()
    writer.start()
    writer.record(record(4))
    writer.flush()
    writer.close()
    ids = sorted(r["request_id"] for r in DeltaTable(str(table)).to_pyarrow_table().to_pylist())
    assert ids == ["r1", "r2", "r3", "r4"]
    assert writer.stats.replayed == 3 and writer.stats.committed == 1
    assert sorted(p.name for p in spool.iterdir()) == []


def test_segments_are_spooled_every_interval_and_committed_together(tmp_path: Path) -> None:
    """A commit per second cost every request in flight ~10 ms of GIL; segments now wait in the
    spool and go to the table together (a flush, the commit interval, or shutdown)."""
    table, spool = tmp_path / "log", tmp_path / "log.spool"
    writer = AuditLog(table, spool, interval=0.02, commit_interval=3600)
    writer.start()
    created = DeltaTable(str(table)).version()
    for n in range(6):
        writer.record({
            "time": 1_700_000_000_000_000 + n, "request_id": f"r{n}", "action": "list_shares",
            "status": 200, "bytes_sent": 1, "duration_ms": 0.5, "date": "2023-11-14",
        })  # fmt: skip
        time.sleep(0.1)  # each record in a segment of its own
    assert len(list(spool.glob("*.jsonl"))) == 6  # on disk: what a SIGKILL would not lose
    assert DeltaTable(str(table)).version() == created  # not in the table yet
    writer.flush()
    writer.close()
    log = DeltaTable(str(table))
    assert log.version() == created + 1  # one commit for the six
    assert sorted(r["request_id"] for r in log.to_pyarrow_table().to_pylist()) == [
        f"r{n}" for n in range(6)
    ]
    assert not list(spool.glob("*.jsonl"))


@pytest.fixture
def erin(sharing: Sharing) -> Iterator[str]:
    _, token = sharing.new_recipient("erin", "models")
    yield token
    sharing.catalog.drop_recipient("erin", if_exists=True)


def test_show_access_log_and_recipient_usage(sharing: Sharing, erin: str) -> None:
    auth = {"Authorization": f"Bearer {erin}"}
    before = time.time()
    with httpx.Client(timeout=10) as http:
        sizes = [len(http.get(sharing.endpoint + "/shares", headers=auth).content) for _ in range(3)]
        refused = http.get(sharing.endpoint + "/shares/other", headers=auth)
    sharing.handle.sharing.audit.flush()
    catalog = str(sharing.catalog_path)

    def show(statement: str) -> Any:
        return arcuate.execute(statement, catalog=catalog)[0]

    log = show("SHOW ACCESS LOG FOR RECIPIENT ERIN")  # names match without case
    assert [r["status"] for r in log.rows] == [404, 200, 200, 200]  # newest first
    assert log.rows[0]["request_id"] == refused.headers["x-request-id"]
    assert log.rows[0]["share"] == "other" and log.rows[0]["action"] == "get_share"
    assert set(log.rows[0]) == {
        "time", "request_id", "recipient", "client_address", "method", "action", "share",
        "schema", "table", "table_version", "status", "error_code", "bytes_sent", "duration_ms",
    }  # fmt: skip
    assert log.summary == {"requests": 4}
    assert len(show("SHOW ACCESS LOG FOR RECIPIENT erin ON SHARE other").rows) == 1
    newest = show("SHOW ACCESS LOG FOR RECIPIENT erin LIMIT 2")
    assert [r["request_id"] for r in newest.rows] == [r["request_id"] for r in log.rows[:2]]
    assert "note" in newest.summary
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before - 1))
    assert len(show(f"SHOW ACCESS LOG FOR RECIPIENT erin SINCE '{since}Z'").rows) == 4
    assert show("SHOW ACCESS LOG FOR RECIPIENT erin SINCE '2999-01-01'").rows == []
    usage = show("SHOW RECIPIENT USAGE FOR RECIPIENT erin").rows
    assert usage == [
        {
            "recipient": "erin",
            "requests": 4,
            "refused": 1,
            "bytes_sent": sum(sizes) + len(refused.content),
            "first_access": log.rows[-1]["time"],
            "last_access": log.rows[0]["time"],
        }
    ]
    everyone = {r["recipient"] for r in show("SHOW RECIPIENT USAGE").rows}
    assert {"alice", "bob", "erin"} <= everyone
    on_other = show("SHOW RECIPIENT USAGE FOR RECIPIENT erin ON SHARE other").rows[0]
    assert (on_other["requests"], on_other["refused"]) == (1, 1)


def test_show_access_log_before_any_server_ran(tmp_path: Path) -> None:
    catalog = str(tmp_path / "shares.yaml")
    assert arcuate.execute("SHOW ACCESS LOG", catalog=catalog)[0].rows == []
    LocalShareCatalog(catalog).create_recipient("x")
    usage = arcuate.execute("SHOW RECIPIENT USAGE", catalog=catalog)[0].rows
    assert usage == [
        {"recipient": "x", "requests": 0, "refused": 0, "bytes_sent": 0, "first_access": None,
         "last_access": None}
    ]  # fmt: skip


def test_sigterm_mid_load_loses_no_record(catalog: LocalShareCatalog) -> None:
    token = recipient(catalog, "alice", "s")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--catalog", str(catalog.path), "--port", "0",
         "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().split(" at ")[1].strip()
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(n: int) -> None:
        paths = ["/shares", TABLE + "/metadata", TABLE + "/version"]
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
            while not stop.is_set():
                try:
                    resp = http.get(endpoint + paths[n % 3])
                except httpx.HTTPError as exc:
                    with lock:
                        failures.append(type(exc).__name__)
                    time.sleep(0.01)
                    continue
                with lock:
                    seen.append(resp.headers["x-request-id"])

    try:
        deadline = time.monotonic() + 20
        while True:  # until it answers
            try:
                httpx.get(endpoint + "/shares", headers={"Authorization": f"Bearer {token}"})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        answered = len(seen)
        proc.send_signal(signal.SIGTERM)  # while the clients keep asking
        proc.communicate(timeout=60)
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert answered > 50 and failures  # there was load, and it was cut off mid-way
    logged = [r["request_id"] for r in records(catalog)]
    assert len(logged) == len(set(logged))  # no request twice
    missing = set(seen) - set(logged)
    assert not missing, f"{len(missing)} answered requests are not in the access log"
    assert not list(spool_location(catalog.path).glob("*.jsonl"))  # all of it in the table


def test_the_table_is_created_when_the_server_starts_not_on_a_request(
    catalog: LocalShareCatalog,
) -> None:
    # creating it (and the writer's first open) costs ~0.4 s of CPU with the GIL held: under
    # load that stalled the requests of the first second of every server
    with serve_in_thread(str(catalog.path)) as server:
        assert DeltaTable(str(log_location(catalog.path))).version() == 0
        assert records(catalog) == []
        assert server.sharing.stats.requests == 0
