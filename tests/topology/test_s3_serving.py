"""Issue 13 item 2: tables in S3 served the way the protocol intends.

The warehouse lives in moto's S3 server (a real HTTP endpoint on loopback); the server reads
the ``_delta_log`` from it and answers data files with S3's own pre-signed URLs, so file bytes
go from the store to the recipient. The server gets credentials of its own (storage options),
distinct from the environment's, so every answer and log line can be scanned for them.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyarrow as pa
import pytest
import requests

from tests.server.conftest import experiment_rows, write_experiment
from tests.topology.topology_helpers import share_and_serve_with_the_cli

pytestmark = [pytest.mark.s3]

ACCESS_KEY = "AKIAARCUATESERVE0001"
SECRET = "arcuate-serve-secret-7f3e9b1c"
CREDS = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET}


@dataclass
class S3Sharing:
    """Tables in S3 and one on local disk, a catalog, a server and alice's profile."""

    s3: Any
    prefix: str
    catalog: Path
    handle: Any
    profile: Path
    token: str

    @property
    def server(self) -> Any:
        return self.handle.sharing

    def url(self, table: str) -> str:
        return f"{self.profile}#s3.mlflow.{table}"

    def location(self, table: str) -> str:
        return f"s3://{self.s3.bucket}/{self.prefix}/mlflow/{table}"

    def api(self, path: str, method: str = "GET", **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.handle.endpoint}{path}", headers=headers, timeout=30, **kwargs
        )

    def query(self, table: str, body: dict[str, Any] | None = None) -> requests.Response:
        path = f"/shares/s3/schemas/mlflow/tables/{table}/query"
        return self.api(path, "POST", json=body or {})


def _simple_table(location: str) -> None:
    """Create, append, delete: a CDF table with ``cdc`` files, three versions."""
    from deltalake import DeltaTable, write_deltalake

    cdf = {"delta.enableChangeDataFeed": "true"}
    write_deltalake(
        location,
        pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", "b", "c"]}),
        configuration=cdf,
        storage_options=CREDS,
    )
    write_deltalake(
        location,
        pa.table({"id": pa.array([4], pa.int64()), "name": ["d"]}),
        mode="append",
        storage_options=CREDS,
    )
    DeltaTable(location, storage_options=CREDS).delete("id = 2")


@pytest.fixture(scope="module")
def s3_sharing(s3: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Sharing]:
    from arcuate.backends.deltalake.store import DeltaLakeTableStore
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    root = tmp_path_factory.mktemp("s3-serving")
    prefix = f"serving-{uuid.uuid4().hex[:8]}"
    store = DeltaLakeTableStore(f"s3://{s3.bucket}/{prefix}", storage_options=CREDS)
    write_experiment(store, ("mlflow", "experiment"), 0)
    write_experiment(store, ("mlflow", "experiment"), 1)
    for name in ("gone", "broken", "nofile"):
        write_experiment(store, ("mlflow", name), 0)
    _simple_table(f"s3://{s3.bucket}/{prefix}/mlflow/simple")
    local = DeltaLakeTableStore(str(root / "warehouse"))
    write_experiment(local, ("mlflow", "local"), 0)

    catalog = LocalShareCatalog(root / "shares.yaml")
    for name in ("experiment", "simple", "gone", "broken", "nofile"):
        catalog.add_table("s3", "mlflow", name, f"s3://{s3.bucket}/{prefix}/mlflow/{name}")
    catalog.add_table("s3", "mlflow", "nobucket", "s3://no-such-bucket/wh/mlflow/t")
    catalog.add_table("s3", "mlflow", "local", str(root / "warehouse" / "mlflow" / "local"))
    _, token = catalog.create_recipient("alice")
    assert token is not None
    catalog.grant("s3", "alice")
    with serve_in_thread(str(catalog.path), storage_options=CREDS) as handle:
        profile = write_profile(root / "alice.share", handle.endpoint, token)
        yield S3Sharing(s3, prefix, catalog.path, handle, profile, token)


@pytest.fixture(autouse=True)
def _no_retries_no_5xx(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Fail fast instead of retrying, and check the server answered no 5xx in the test."""
    from delta_sharing.rest_client import DataSharingRestClient

    monkeypatch.setattr(DataSharingRestClient, "_should_retry", lambda self, error: False)
    if "s3_sharing" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("s3_sharing").server
    before = server.stats.server_errors
    yield
    assert server.stats.server_errors == before, "the server answered with a 5xx"


def _deltalake_rows(location: str, version: int | None = None) -> pa.Table:
    from deltalake import DeltaTable

    return DeltaTable(location, version=version, storage_options=CREDS).to_pyarrow_table()


def _file_urls(response: requests.Response) -> list[tuple[str, dict[str, Any]]]:
    """(url, file line) of every data file in a parquet-format query answer."""
    out = []
    for line in response.text.splitlines():
        doc = json.loads(line)
        if "file" in doc:
            out.append((doc["file"]["url"], doc["file"]))
    return out


# -- the official client and the protocol ----------------------------------------------------
def test_official_client_reads_a_table_in_s3(s3_sharing: S3Sharing) -> None:
    import delta_sharing

    expected = _deltalake_rows(s3_sharing.location("experiment"))
    for delta_format in (False, True):  # fsspec over the URLs, and the Rust kernel
        frame = delta_sharing.load_as_pandas(
            s3_sharing.url("experiment"), use_delta_format=delta_format
        )
        assert sorted(zip(frame["kind"], frame["key"], strict=True)) == sorted(
            zip(expected["kind"].to_pylist(), expected["key"].to_pylist(), strict=True)
        )
        big = frame[frame["kind"] == "chunk"].sort_values(by="key")
        assert len(big) == 2


def test_data_files_are_the_stores_own_presigned_urls(s3_sharing: S3Sharing) -> None:
    """Bytes go from S3 to the recipient: the server sends none of them."""
    server = s3_sharing.server
    sent, signed = server.stats.file_bytes, server.stats.presigned_urls
    started = int(time.time())
    response = s3_sharing.query("experiment")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    files = _file_urls(response)
    assert files
    table = (
        f"{s3_sharing.s3.endpoint}/{s3_sharing.s3.bucket}/{s3_sharing.prefix}/mlflow/experiment/"
    )
    for url, line in files:
        assert url.startswith(table), url
        query = parse_qs(urlparse(url).query)
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Expires"] == ["900"]  # the default TTL for object-store tables
        assert started + 900 <= line["expirationTimestamp"] // 1000 <= int(time.time()) + 900
        body = requests.get(url, timeout=30)
        assert body.status_code == 200 and len(body.content) == line["size"]
    assert server.stats.file_bytes == sent  # not one byte through the server
    assert server.stats.presigned_urls == signed + len(files)


def test_local_tables_keep_the_servers_own_signed_urls(s3_sharing: S3Sharing) -> None:
    import delta_sharing

    response = s3_sharing.query("local")
    (url, line), *_ = _file_urls(response)
    assert url.startswith(f"{s3_sharing.handle.endpoint}/files/")
    assert "sig=" in url and "X-Amz-" not in url
    assert line["expirationTimestamp"] // 1000 - time.time() > 3500  # one hour for these
    assert len(delta_sharing.load_as_pandas(s3_sharing.url("local"))) == len(experiment_rows(0))


def _signature_at(s3: Any, key: str, moment: str, ttl: int, monkeypatch: Any) -> str:
    """The signature botocore gives a GET of ``key`` signed at ``moment`` for ``ttl`` s."""
    import boto3
    import botocore.auth
    from botocore.config import Config

    at = datetime.datetime.strptime(moment, "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at)
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        region_name=s3.env["AWS_DEFAULT_REGION"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": s3.bucket, "Key": key}, ExpiresIn=ttl
    )
    return parse_qs(urlparse(url).query)["X-Amz-Signature"][0]


def test_presigned_url_expiry_is_the_url_ttl(
    s3_sharing: S3Sharing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``url_ttl_seconds=2`` the store's URL is signed for 2 s from the query: the expiry
    is inside the signature (S3 refuses the URL after it; moto does not check, so the
    signature is checked against botocore's for the same request at the same moment)."""
    from arcuate.backends.sharing.server import serve_in_thread

    with serve_in_thread(str(s3_sharing.catalog), url_ttl_seconds=2, storage_options=CREDS) as h:
        before = time.time()
        response = requests.post(
            f"{h.endpoint}/shares/s3/schemas/mlflow/tables/experiment/query",
            headers={"Authorization": f"Bearer {s3_sharing.token}"},
            json={},
            timeout=30,
        )
        after = time.time()
        (url, line), *_ = _file_urls(response)
        query = parse_qs(urlparse(url).query)
        signed = datetime.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        signed_at = signed.replace(tzinfo=datetime.UTC).timestamp()
        assert query["X-Amz-Expires"] == ["2"]
        assert int(before) <= signed_at <= after
        # the protocol's expirationTimestamp never promises more than the URL gives
        assert int(before) + 2 <= line["expirationTimestamp"] / 1000 <= signed_at + 2
        key = urlparse(url).path.split("/", 2)[2]
        expected = _signature_at(s3_sharing.s3, key, query["X-Amz-Date"][0], 2, monkeypatch)
        assert query["X-Amz-Signature"] == [expected]
        time.sleep(max(0.0, signed_at + 2.5 - time.time()))
        again = requests.post(
            f"{h.endpoint}/shares/s3/schemas/mlflow/tables/experiment/query",
            headers={"Authorization": f"Bearer {s3_sharing.token}"},
            json={},
            timeout=30,
        )
        (fresh, _), *_ = _file_urls(again)
        assert parse_qs(urlparse(fresh).query)["X-Amz-Date"] != query["X-Amz-Date"]


def test_time_travel_on_a_table_in_s3(s3_sharing: S3Sharing) -> None:
    import delta_sharing
    from deltalake import DeltaTable

    url, location = s3_sharing.url("simple"), s3_sharing.location("simple")
    for version, ids in ((0, [1, 2, 3]), (1, [1, 2, 3, 4]), (2, [1, 3, 4])):
        frame = delta_sharing.load_as_pandas(url, version=version)
        assert sorted(frame["id"]) == ids
    history = DeltaTable(location, storage_options=CREDS).history()
    first = next(h for h in history if h["version"] == 1)["timestamp"]
    moment = datetime.datetime.fromtimestamp(first / 1000, datetime.UTC)
    frame = delta_sharing.load_as_pandas(url, timestamp=moment.isoformat().replace("+00:00", "Z"))
    assert sorted(frame["id"]) == [1, 2, 3, 4]


def test_changes_of_a_table_in_s3(s3_sharing: S3Sharing) -> None:
    import delta_sharing

    changes = delta_sharing.load_table_changes_as_pandas(
        s3_sharing.url("simple"), starting_version=0
    )
    seen = sorted(
        zip(changes["_commit_version"], changes["_change_type"], changes["id"], strict=True)
    )
    assert seen == [
        (0, "insert", 1),
        (0, "insert", 2),
        (0, "insert", 3),
        (1, "insert", 4),
        (2, "delete", 2),
    ]


# -- what is missing or broken -----------------------------------------------------------------
def _keys(s3: Any, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", ())]


def _delete(s3: Any, keys: list[str]) -> None:
    for key in keys:
        s3.client().delete_object(Bucket=s3.bucket, Key=key)


def test_a_table_whose_objects_are_missing_is_a_clean_protocol_error(
    s3_sharing: S3Sharing, caplog: pytest.LogCaptureFixture
) -> None:
    s3, prefix = s3_sharing.s3, s3_sharing.prefix
    _delete(s3, _keys(s3, f"{prefix}/mlflow/gone/"))  # every object
    _delete(s3, [f"{prefix}/mlflow/broken/_delta_log/00000000000000000000.json"])  # the log
    caplog.set_level(logging.WARNING, logger="arcuate.server")
    for table in ("gone", "broken", "nobucket"):
        for method, path in (
            ("POST", f"/shares/s3/schemas/mlflow/tables/{table}/query"),
            ("GET", f"/shares/s3/schemas/mlflow/tables/{table}/metadata"),
            ("GET", f"/shares/s3/schemas/mlflow/tables/{table}/version"),
        ):
            response = s3_sharing.api(path, method, json={} if method == "POST" else None)
            assert response.status_code == 404, (table, path, response.text)
            assert response.json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
            assert "s3://" not in response.text and prefix not in response.text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "no-such-bucket" in logged  # the cause goes to the provider's log


def test_a_missing_data_file_fails_the_recipients_import_by_name(
    s3_sharing: S3Sharing, mlflow_store: Any
) -> None:
    import arcuate
    from arcuate.errors import BackendError

    s3, prefix = s3_sharing.s3, s3_sharing.prefix
    data = [k for k in _keys(s3, f"{prefix}/mlflow/nofile/") if k.endswith(".parquet")]
    _delete(s3, data)
    assert s3_sharing.query("nofile").status_code == 200  # the server never reads data files
    with pytest.raises(BackendError) as caught:
        arcuate.execute(
            f"CREATE EXPERIMENT lost AS '{s3_sharing.url('nofile')}'",
            tracking_uri=mlflow_store.tracking_uri,
            registry_uri=mlflow_store.registry_uri,
            progress=False,
        )
    assert "could not download file" in str(caught.value) and "HTTP 404" in str(caught.value)
    assert "X-Amz-Signature" not in str(caught.value)


def test_an_unreachable_store_is_a_clean_protocol_error(
    s3_sharing: S3Sharing, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arcuate.backends.sharing.server import serve_in_thread
    from benchmarks.topology import free_port

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # it would win over the option (object_store)
    options = {**CREDS, "aws_endpoint_url": f"http://127.0.0.1:{free_port()}"}
    with serve_in_thread(str(s3_sharing.catalog), storage_options=options) as h:
        response = requests.post(
            f"{h.endpoint}/shares/s3/schemas/mlflow/tables/experiment/query",
            headers={"Authorization": f"Bearer {s3_sharing.token}"},
            json={},
            timeout=60,
        )
        assert response.status_code == 404, response.text
        assert h.sharing.stats.server_errors == 0


def test_deltalake_style_storage_options_serve_too(s3_sharing: S3Sharing) -> None:
    """The options a deltalake user already has (upper case, client options mixed in, keys
    only deltalake reads) open the same store for the server."""
    import delta_sharing

    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    options = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ALLOW_HTTP": "true",
        "timeout": "60s",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        "AWS_COPY_IF_NOT_EXISTS_NOPE": "x",
    }
    with serve_in_thread(str(s3_sharing.catalog), storage_options=options) as h:
        profile = write_profile(
            s3_sharing.catalog.parent / "opts.share", h.endpoint, s3_sharing.token
        )
        frame = delta_sharing.load_as_pandas(f"{profile}#s3.mlflow.simple")
        assert sorted(frame["id"]) == [1, 3, 4]
        assert h.sharing.stats.presigned_urls > 0


# -- credentials -------------------------------------------------------------------------------
def test_no_credential_in_any_answer_or_log_line(
    s3_sharing: S3Sharing, caplog: pytest.LogCaptureFixture
) -> None:
    """The secret key is nowhere; the access key id only inside a pre-signed URL's query."""
    caplog.set_level(logging.DEBUG, logger="arcuate.server")
    t = "/shares/s3/schemas/mlflow/tables"
    responses = [
        s3_sharing.api("/shares"),
        s3_sharing.api("/shares/s3/all-tables"),
        s3_sharing.api(f"{t}/experiment/metadata"),
        s3_sharing.api(f"{t}/experiment/version"),
        s3_sharing.query("experiment"),
        s3_sharing.query("experiment", {"version": 0}),
        s3_sharing.api(f"{t}/simple/changes?startingVersion=0"),
        s3_sharing.api(f"{t}/experiment/changes?startingVersion=0&endingVersion=1"),
        s3_sharing.query("experiment", {"version": 99}),
        s3_sharing.query("nobucket"),
        s3_sharing.api(f"{t}/missing/metadata"),
    ]
    urls = 0
    for response in responses:
        assert response.status_code < 500
        text = response.text + json.dumps(dict(response.headers))
        assert SECRET not in text
        for line in response.text.splitlines():
            doc = json.loads(line)
            for action in doc.values():
                url = action.get("url") if isinstance(action, dict) else None
                if url:
                    urls += 1
                    assert ACCESS_KEY in parse_qs(urlparse(url).query)["X-Amz-Credential"][0]
                    line = line.replace(url, "")
            assert ACCESS_KEY not in line
    assert urls >= 5
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST /delta-sharing/shares/s3/schemas/mlflow/tables/experiment/query 200" in logged
    assert SECRET not in logged and ACCESS_KEY not in logged and "X-Amz" not in logged


def test_store_errors_are_scrubbed_of_credentials() -> None:
    from arcuate.backends.sharing.server.objectstore import ObjectStores

    stores = ObjectStores({**CREDS, "aws_session_token": "session-token-1234567"})
    text = f"refused: key={SECRET} token=session-token-1234567 id={ACCESS_KEY}"
    scrubbed = stores.scrub(text)
    assert SECRET not in scrubbed and "session-token-1234567" not in scrubbed
    assert scrubbed.count("<redacted>") == 2


# -- the command line, end to end --------------------------------------------------------------
def test_cli_exports_to_s3_and_serves_it(s3: Any, mlflow_store: Any, workdir: Path) -> None:
    """``arcuate run`` with the warehouse and storage options from the environment, then
    ``arcuate serve`` of that catalog, read by the official client."""
    client = mlflow_store.client()
    eid = client.create_experiment("cli-exp", artifact_location=str(workdir / "artifacts"))
    run = client.create_run(eid)
    client.log_param(run.info.run_id, "lr", "0.1")
    client.set_terminated(run.info.run_id)
    warehouse = f"s3://{s3.bucket}/cli-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "ARCUATE_STORAGE_OPTIONS": json.dumps(CREDS)}
    shared = share_and_serve_with_the_cli(workdir, "cli-exp", warehouse, mlflow_store, env)
    assert list(shared.frame["key"]) == [run.info.run_id]
    for text in (shared.run_output, shared.serve_output):
        assert SECRET not in text and ACCESS_KEY not in text


def test_large_files_exported_to_s3_are_cut_by_the_chunk_helper(
    s3: Any, mlflow_store: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large local artifact exported into a warehouse in S3 goes through the helper process
    (so the MLflow process never holds a chunk), which writes and commits through the store."""
    import arcuate
    from arcuate.backends.deltalake import chunk_worker
    from tests.export.export_helpers import reassemble

    monkeypatch.setattr(chunk_worker, "WORKER_BYTES", 1)
    blob = os.urandom(3 * 1024 * 1024 + 17)
    (workdir / "big.bin").write_bytes(blob)
    client = mlflow_store.client()
    eid = client.create_experiment("big-exp", artifact_location=str(workdir / "artifacts"))
    run = client.create_run(eid)
    client.log_artifact(run.info.run_id, str(workdir / "big.bin"))
    client.set_terminated(run.info.run_id)
    warehouse = f"s3://{s3.bucket}/helper-{uuid.uuid4().hex[:8]}"
    (result,) = arcuate.execute(
        "CREATE SHARE big WITH TABLE runs FROM EXPERIMENT 'big-exp'",
        tracking_uri=mlflow_store.tracking_uri,
        registry_uri=mlflow_store.registry_uri,
        warehouse=warehouse,
        catalog=str(workdir / "shares.yaml"),
        chunk_bytes=1024 * 1024,
        storage_options=CREDS,
        progress=False,
    )
    assert result.summary["helper_peak_rss"] > 0
    prefix = urlparse(f"{warehouse}/runs").path.lstrip("/") + "/"
    assert any("/part-chunks-" in k for k in _keys(s3, prefix))
    rows = _deltalake_rows(f"{warehouse}/runs").to_pylist()
    _, files = reassemble(rows)
    assert files[(run.info.run_id, "artifacts", "big.bin")] == blob
