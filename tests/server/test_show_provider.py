"""``SHOW SHARES IN PROVIDER '<profile>'``: what a recipient's profile can read, asked of the real
server over HTTP with the official client's REST layer."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

import arcuate
from arcuate.errors import BackendError, NotFoundError, UnreachableError
from arcuate.format.schema import FORMAT_VERSION
from tests.server.conftest import Sharing, experiment_rows


def _rows_of(location: str) -> int:
    from deltalake import DeltaTable

    return int(DeltaTable(location).to_pyarrow_table().num_rows)


@pytest.fixture(scope="module")
def lister(sharing: Sharing) -> Path:
    """A recipient granted ``models`` and a share of her own holding a model table."""
    from arcuate.backends.deltalake.store import DeltaLakeTableStore
    from arcuate.format.schema import SCHEMA

    versions = [r for r in experiment_rows(0) if r["kind"] == "model_version"]
    DeltaLakeTableStore(str(sharing.warehouse)).write(
        ("lister", "churn_model"),
        pa.Table.from_pylist(versions, schema=SCHEMA).to_batches(),
        content="model",
    )
    location = str(sharing.warehouse / "lister" / "churn_model")
    sharing.catalog.add_table("listed", "default", "churn_model", location)
    sharing.catalog.add_table("listed_empty", "default", "gone", location)
    sharing.catalog.remove_table("listed_empty", "default", "gone")  # a share with no tables left
    profile, _ = sharing.new_recipient("lister", "models", "listed", "listed_empty")
    return profile


def test_it_lists_every_share_schema_and_table_with_kind_and_rows(
    sharing: Sharing, lister: Path
) -> None:
    [result] = arcuate.execute(f"SHOW SHARES IN PROVIDER '{lister}'")
    assert result.action == "show shares in provider"
    assert result.summary == {
        "profile": str(lister),
        "endpoint": sharing.endpoint,
        "shares": 3,
        "tables": 5,
    }
    seen = [
        (r["share"], r["schema"], r["table"], r["kind"], r["format_version"], r["rows"])
        for r in result.rows
    ]
    loc = sharing.location
    assert seen == [
        ("models", "mlflow", "experiment", "experiment", FORMAT_VERSION, _rows_of(loc("experiment"))),
        ("models", "mlflow", "simple", None, None, _rows_of(loc("simple"))),
        ("models", "mlflow", "parts", None, None, _rows_of(loc("parts"))),
        ("models", "mlflow", "nocdf", None, None, 2),
        ("listed", "default", "churn_model", "model", FORMAT_VERSION, 1),
        ("listed_empty", None, None, None, None, None),
    ]
    experiment, simple = result.rows[0], result.rows[1]
    assert experiment["coordinate"] == f"{lister}#models.mlflow.experiment"
    assert experiment["problem"] is None and experiment["bytes"] > 0
    assert experiment["version"] == 1  # written twice: versions 0 and 1
    assert simple["coordinate"] is None
    assert simple["problem"] == (
        "not an arcuate table (its description carries no arcuate format marker)"
    )
    text = str(result)
    assert text.startswith("show shares in provider: profile=")
    header = next(line for line in text.splitlines() if "coordinate" in line)
    assert header.split()[:4] == ["share", "schema", "table", "kind"]
    assert any(line.split()[3:4] == ["model"] for line in text.splitlines())
    assert sharing.tokens["alice"] not in text
    assert all(token not in text for token in sharing.tokens.values())


def test_a_coordinate_it_lists_is_one_describe_reads(sharing: Sharing, lister: Path) -> None:
    [listing] = arcuate.execute(f"SHOW SHARES IN PROVIDER '{lister}'")
    model = next(r for r in listing.rows if r["kind"] == "model")
    [described] = arcuate.execute(f"DESCRIBE '{model['coordinate']}'")
    assert described.summary["kind"] == "model"


def test_only_granted_shares_are_listed(sharing: Sharing) -> None:
    [result] = arcuate.execute(f"SHOW SHARES IN PROVIDER '{sharing.profiles['bob']}'")
    assert [(r["share"], r["table"]) for r in result.rows] == [("other", "simple")]


def test_failures_name_the_profile_and_the_endpoint(sharing: Sharing, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"the profile .*missing\.share does not exist"):
        arcuate.execute(f"SHOW SHARES IN PROVIDER '{tmp_path / 'missing.share'}'")
    forged = tmp_path / "forged.share"
    forged.write_text(
        json.dumps(
            {"shareCredentialsVersion": 1, "endpoint": sharing.endpoint, "bearerToken": "nope"}
        )
    )
    with pytest.raises(BackendError) as info:
        arcuate.execute(f"SHOW SHARES IN PROVIDER '{forged}'")
    assert f"the sharing server at {sharing.endpoint} rejected the token" in str(info.value)
    assert "ask the provider for a new profile" in str(info.value)
    down = tmp_path / "down.share"
    down.write_text(
        json.dumps(
            {
                "shareCredentialsVersion": 1,
                "endpoint": "http://127.0.0.1:9/delta-sharing",
                "bearerToken": "x",
            }
        )
    )
    with pytest.raises(UnreachableError) as down_info:
        arcuate.execute(f"SHOW SHARES IN PROVIDER '{down}'", retry_seconds=1)
    assert str(down_info.value).startswith(
        "the sharing server at http://127.0.0.1:9/delta-sharing cannot be reached: "
        "connection refused, while listing shares; gave up after"
    )


def test_explain_lists_nothing() -> None:
    [result] = arcuate.execute("EXPLAIN SHOW SHARES IN PROVIDER 'nowhere.share'")
    assert result.rows[0]["operator"] == "ListProviderShares"


class _Hostile:
    """A real HTTP server that answers the listing requests with what a hostile server could."""

    def __init__(self, pages: bool = False) -> None:
        import http.server
        import threading

        hostile = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, lines: list[object], version: str = "3") -> None:
                body = "".join(json.dumps(x) + "\n" for x in lines).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Delta-Table-Version", version)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                hostile.requests += 1
                if self.path.startswith("/ds/shares?") or self.path == "/ds/shares":
                    names = ["bad/../name", "ok"]
                    self._send([{"items": [{"name": n} for n in names]}])
                elif pages:  # the same page again and again
                    item = {"name": "t", "schema": "s", "share": "ok"}
                    self._send([{"items": [item], "nextPageToken": "again"}])
                else:
                    items = [
                        {"name": "counts", "schema": "s", "share": "ok"},
                        {"name": "bad.name", "schema": "s", "share": "ok"},
                        {"name": "broken", "schema": "s", "share": "ok"},
                    ]
                    self._send([{"items": items}])

            def do_POST(self) -> None:
                hostile.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if "/tables/broken/" in self.path:
                    self._send([{"protocol": {"minReaderVersion": 1}}, {"metaData": {}}])
                    return
                marker = json.dumps({"arcuate": {"format_version": 1, "content": "experiment"}})
                meta = {
                    "id": "x",
                    "description": marker,
                    "format": {"provider": "parquet"},
                    "schemaString": "{}",
                    "partitionColumns": [],
                }
                stats = ['{"numRecords": 2}', '{"numRecords": 1e400}', "[" * 100_000, None]
                files = [
                    {
                        "url": "http://x/f",
                        "id": str(i),
                        "partitionValues": {},
                        "size": 10,
                        "stats": s,
                    }
                    for i, s in enumerate(stats)
                ]
                self._send(
                    [{"protocol": {"minReaderVersion": 1}}, {"metaData": meta}]
                    + [{"file": f} for f in files]
                )

        self.requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/ds"

    def profile(self, path: Path) -> Path:
        doc = {"shareCredentialsVersion": 1, "endpoint": self.endpoint, "bearerToken": "t"}
        path.write_text(json.dumps(doc))
        return path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_hostile_listing_is_reported_not_trusted(tmp_path: Path) -> None:
    server = _Hostile()
    try:
        [result] = arcuate.execute(f"SHOW SHARES IN PROVIDER '{server.profile(tmp_path / 'h')}'")
    finally:
        server.close()
    rows = {(r["share"], r["table"]): r for r in result.rows}
    assert rows[("bad/../name", None)]["problem"].startswith(
        "the server listed an invalid share name 'bad/../name'"
    )
    counts = rows[("ok", "counts")]
    assert (counts["kind"], counts["rows"], counts["bytes"], counts["version"]) == (
        "experiment",
        None,  # a file without usable statistics: the row count is unknown, not a guess
        40,
        3,
    )
    assert rows[("ok", "bad.name")]["problem"].startswith("the server listed an invalid table")
    assert rows[("ok", "bad.name")]["coordinate"] is None
    assert rows[("ok", "broken")]["problem"] and rows[("ok", "broken")]["kind"] is None
    assert server.requests == 4  # shares, the good share's tables, two queries: nothing else


def test_endless_pages_stop_with_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from arcuate.backends.sharing import listing

    monkeypatch.setattr(listing, "MAX_PAGES", 5)
    server = _Hostile(pages=True)
    try:
        with pytest.raises(BackendError, match="sent more than 5 pages of tables of share 'ok'"):
            arcuate.execute(f"SHOW SHARES IN PROVIDER '{server.profile(tmp_path / 'h')}'")
    finally:
        server.close()
    assert server.requests == 6


def test_listing_a_server_that_is_down_keeps_to_retry_seconds(tmp_path: Path) -> None:
    """The listing retries for the statement's ``retry_seconds``, not a budget of its own."""
    down = tmp_path / "down.share"
    down.write_text(
        json.dumps(
            {
                "shareCredentialsVersion": 1,
                "endpoint": "http://127.0.0.1:9/delta-sharing",
                "bearerToken": "x",
            }
        )
    )
    with pytest.raises(UnreachableError) as info:
        arcuate.execute(f"SHOW SHARES IN PROVIDER '{down}'", retry_seconds=0)
    assert "gave up after 1 attempt in 0." in str(info.value)
