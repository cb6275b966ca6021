"""Issue 13 item 2 on Azure Blob Storage: the warehouse and serving "through the same code".

The store is Azurite (Microsoft's emulator, a real HTTP endpoint on loopback), reached as a
private Azure endpoint: account name, account key, endpoint URL. ``CREATE SHARE`` writes the
tables there, ``arcuate serve`` hands out Azure's own SAS URLs for the data files, and the
official client and arcuate read them. The account key must never reach an answer, a log line
or an error.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.topology.azurite import KEY, Azurite
from tests.topology.topology_helpers import share_and_serve_with_the_cli

pytestmark = [pytest.mark.azure]

CONTAINER = "shares"


@pytest.fixture(scope="module")
def container(azurite: Azurite) -> str:
    azurite.create_container(CONTAINER)
    return CONTAINER


def _provider_experiment(store: Any, root: Path) -> tuple[str, dict[str, bytes]]:
    """An experiment with a param, a metric history and two files; its run id and files."""
    client = store.client()
    eid = client.create_experiment("azure-exp", artifact_location=str(root / "artifacts"))
    run = client.create_run(eid)
    rid = run.info.run_id
    client.log_param(rid, "lr", "0.1")
    for step in range(5):
        client.log_metric(rid, "loss", 1.0 / (step + 1), step=step, timestamp=1_000 + step)
    files = {"model/weights.bin": bytes(range(256)) * 40, "notes.txt": b"trained on az://\n"}
    for name, data in files.items():
        local = root / "files" / name
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        client.log_artifact(rid, str(local), os.path.dirname(name) or None)
    client.set_terminated(rid)
    return rid, files


@dataclass
class AzureShare:
    azurite: Azurite
    warehouse: str
    catalog: Path
    handle: Any
    profile: Path
    token: str
    files: dict[str, bytes]

    def query(self) -> requests.Response:
        return requests.post(
            f"{self.handle.endpoint}/shares/az/schemas/default/tables/runs/query",
            headers={"Authorization": f"Bearer {self.token}"},
            json={},
            timeout=30,
        )


@pytest.fixture
def azure_share(
    azurite: Azurite, container: str, mlflow_store: Any, workdir: Path
) -> Iterator[AzureShare]:
    """The experiment exported by ``CREATE SHARE`` into ``az://shares/<prefix>``, served by
    arcuate's server with a 10-minute URL TTL, granted to bob."""
    import arcuate
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    _, files = _provider_experiment(mlflow_store, workdir)
    warehouse = f"az://{container}/wh-{uuid.uuid4().hex[:8]}"
    catalog = workdir / "shares.yaml"
    arcuate.execute(
        "CREATE SHARE az WITH TABLE runs FROM EXPERIMENT 'azure-exp'",
        tracking_uri=mlflow_store.tracking_uri, registry_uri=mlflow_store.registry_uri,
        warehouse=warehouse, catalog=str(catalog), storage_options=azurite.options(),
    )  # fmt: skip
    shares = LocalShareCatalog(catalog)
    _, token = shares.create_recipient("bob")
    assert token is not None
    shares.grant("az", "bob")
    with serve_in_thread(
        str(catalog), storage_options=azurite.options(), url_ttl_seconds=600
    ) as handle:
        profile = write_profile(workdir / "bob.share", handle.endpoint, token)
        yield AzureShare(azurite, warehouse, catalog, handle, profile, token, files)


def test_an_experiment_shared_from_azure_round_trips(
    azure_share: AzureShare, recipient_store: Any
) -> None:
    """Written to Azure by ``CREATE SHARE``, read by the official client and imported by
    arcuate with every file byte; the server sends none of the bytes."""
    import delta_sharing

    import arcuate

    prefix = azure_share.warehouse.removeprefix(f"az://{CONTAINER}/")
    blobs = azure_share.azurite.blob_names(CONTAINER, prefix)
    assert any("/runs/_delta_log/" in b for b in blobs)
    assert any(b.endswith(".parquet") for b in blobs)
    server = azure_share.handle.sharing
    sent, signed = server.stats.file_bytes, server.stats.presigned_urls
    url = f"{azure_share.profile}#az.default.runs"
    for delta_format in (False, True):  # fsspec over the URLs, and the Rust kernel
        frame = delta_sharing.load_as_pandas(url, use_delta_format=delta_format)
        assert "run" in set(frame["kind"])
    arcuate.execute(
        f"CREATE EXPERIMENT 'from-azure' AS '{url}'",
        tracking_uri=recipient_store.tracking_uri, registry_uri=recipient_store.registry_uri,
    )  # fmt: skip
    assert server.stats.file_bytes == sent  # not one byte through the server
    assert server.stats.presigned_urls > signed

    client = recipient_store.client()
    experiment = client.get_experiment_by_name("from-azure")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params == {"lr": "0.1"}
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value, m.timestamp) for m in history] == [
        (s, 1.0 / (s + 1), 1_000 + s) for s in range(5)
    ]
    local = Path(client.download_artifacts(run.info.run_id, "", str(Path.cwd() / "got")))
    for name, data in azure_share.files.items():
        assert (local / name).read_bytes() == data


def test_data_files_are_read_only_sas_urls_of_one_blob(azure_share: AzureShare) -> None:
    """Each data file is Azure's own SAS URL: read permission on that blob alone, expiring
    after the server's URL TTL; a write through it is refused."""
    started = datetime.datetime.now(datetime.UTC)
    response = azure_share.query()
    assert response.status_code == 200
    lines = [json.loads(x) for x in response.text.splitlines()]
    files = [line["file"] for line in lines if "file" in line]
    assert files
    table = f"{azure_share.azurite.endpoint}/{CONTAINER}/"
    for line in files:
        url = line["url"]
        assert url.startswith(table), url
        query = parse_qs(urlparse(url).query)
        assert query["sp"] == ["r"] and query["sr"] == ["b"] and query["sig"]
        expiry = datetime.datetime.fromisoformat(query["se"][0].replace("Z", "+00:00"))
        assert 590 <= (expiry - started).total_seconds() <= 620
        assert abs(line["expirationTimestamp"] / 1000 - expiry.timestamp()) <= 5
        body = requests.get(url, timeout=30)
        assert body.status_code == 200 and len(body.content) == line["size"]
        put = requests.put(url, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=30)
        assert put.status_code == 403
    assert KEY not in response.text


def test_a_missing_container_is_a_clean_protocol_error(
    azurite: Azurite, container: str, workdir: Path
) -> None:
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread

    shares = LocalShareCatalog(workdir / "shares.yaml")
    shares.add_table("az", "default", "gone", "az://no-such-container/wh/default/gone")
    _, token = shares.create_recipient("bob")
    assert token is not None
    shares.grant("az", "bob")
    with serve_in_thread(str(shares.path), storage_options=azurite.options()) as handle:
        response = requests.post(
            f"{handle.endpoint}/shares/az/schemas/default/tables/gone/query",
            headers={"Authorization": f"Bearer {token}"}, json={}, timeout=60,
        )  # fmt: skip
    assert response.status_code == 404
    assert response.json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
    assert KEY not in response.text


def test_the_command_line_takes_azure_credentials_from_the_environment(
    azurite: Azurite, container: str, mlflow_store: Any, workdir: Path
) -> None:
    """``arcuate run`` exports to ``az://`` and ``arcuate serve`` serves it with nothing but
    Azure's own variables; the account key appears in no output."""
    run_id, _ = _provider_experiment(mlflow_store, workdir)
    warehouse = f"az://{container}/cli-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env.pop("ARCUATE_STORAGE_OPTIONS", None)
    env.update(azurite.env())
    shared = share_and_serve_with_the_cli(workdir, "azure-exp", warehouse, mlflow_store, env)
    assert run_id in set(shared.frame["key"])
    assert KEY not in shared.run_output and KEY not in shared.serve_output


@pytest.mark.parametrize(
    "name",
    [
        "azure_storage_account_key", "azure_storage_access_key", "azure_storage_master_key",
        "account_key", "access_key", "master_key", "AZURE_STORAGE_ACCESS_KEY",
        "aws_sse_customer_key_base64", "google_private_key",
    ],
)  # fmt: skip
def test_every_spelling_of_a_key_is_scrubbed_from_store_errors(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """object_store takes an Azure account key under six names (and an S3 SSE-C key, a
    private key): each is scrubbed, from the options and from the environment alike."""
    from arcuate.backends.sharing.server.objectstore import ObjectStores

    text = f"refused: key={KEY} id=AKIAARCUATE0000000001"
    scrubbed = ObjectStores({name: KEY}).scrub(text)
    assert KEY not in scrubbed and "AKIAARCUATE0000000001" in scrubbed
    if name.upper().startswith(("AZURE_", "AWS_", "GOOGLE_")):
        monkeypatch.setenv(name.upper(), KEY)
        assert KEY not in ObjectStores({}).scrub(text)


def test_a_sas_credential_reaches_no_answer_or_log_line(
    azure_share: AzureShare, caplog: pytest.LogCaptureFixture
) -> None:
    """A server holding a SAS token instead of the account key. Azure cannot sign a URL
    with one, so a query is refused cleanly (400, not a 5xx that clients retry); a token
    that may not list is refused by the store, whose error quotes its request. The token is
    in no answer or log line."""
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    from arcuate.backends.sharing.server import serve_in_thread
    from tests.topology.azurite import ACCOUNT

    caplog.set_level(logging.DEBUG, logger="arcuate.server")
    secrets, answers = [], []
    for can_list in (True, False):
        sas = generate_account_sas(
            ACCOUNT, KEY, ResourceTypes(service=True, container=True, object=True),
            AccountSasPermissions(read=True, list=can_list),
            expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
        )  # fmt: skip
        secrets += [sas, parse_qs(sas)["sig"][0]]
        options = {
            "azure_storage_account_name": ACCOUNT,
            "azure_storage_sas_key": sas,
            "azure_storage_endpoint": azure_share.azurite.endpoint,
            "azure_allow_http": "true",
        }
        with serve_in_thread(str(azure_share.catalog), storage_options=options) as handle:
            headers = {"Authorization": f"Bearer {azure_share.token}"}
            base = f"{handle.endpoint}/shares/az/schemas/default/tables/runs"
            answers += [
                requests.get(f"{base}/metadata", headers=headers, timeout=60),
                requests.post(f"{base}/query", headers=headers, json={}, timeout=60),
            ]
    assert [a.status_code for a in answers] == [200, 400, 404, 404]
    assert answers[1].json()["errorCode"] == "UNSUPPORTED_OPERATION"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Generating SAS keys with SAS tokens auth is not supported" in logged
    for text in (*(a.text for a in answers), logged):
        assert KEY not in text
        for secret in secrets:
            assert secret not in text


def test_a_share_into_a_missing_container_names_the_table_cleanly(
    azurite: Azurite, mlflow_store: Any, workdir: Path
) -> None:
    """The store's refusal is a clear backend error naming the table's location and the
    store's answer, without the terminal colours deltalake puts in its message or the
    key; the catalog is not written."""
    import arcuate
    from arcuate.errors import BackendError

    _provider_experiment(mlflow_store, workdir)
    catalog = workdir / "shares.yaml"
    with pytest.raises(BackendError) as info:
        arcuate.execute(
            "CREATE SHARE az WITH TABLE runs FROM EXPERIMENT 'azure-exp'",
            tracking_uri=mlflow_store.tracking_uri, registry_uri=mlflow_store.registry_uri,
            warehouse="az://no-such-container/wh", catalog=str(catalog),
            storage_options=azurite.options(),
        )  # fmt: skip
    text = str(info.value)
    assert "az://no-such-container/wh/runs" in text and "ContainerNotFound" in text, text
    assert "\x1b" not in text and KEY not in text
    assert not catalog.exists()
