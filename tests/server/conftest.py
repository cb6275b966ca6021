"""A real sharing server on a free loopback port, over real Delta tables, for the whole session.

Tables: ``experiment`` (the arcuate format: runs with inline binary files, a chunked file and a
model version, written twice by DeltaLakeTableStore so it has history and change data),
``simple`` (create, append, delete: a CDF table with ``cdc`` files), ``parts`` (partitioned
with awkward values) and ``nocdf``. Shares: ``models`` (granted to alice), ``other`` (granted
to bob only). Tests that change grants or tokens use their own recipients and shares.

The delta_sharing client retries 5xx for minutes; here it is told not to, and every test
checks afterwards that the server produced no 5xx at all.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

_hosts = "127.0.0.1,localhost"
os.environ["NO_PROXY"] = ",".join(x for x in (os.environ.get("NO_PROXY"), _hosts) if x)
os.environ["no_proxy"] = os.environ["NO_PROXY"]

UTC = datetime.UTC
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def experiment_rows(generation: int) -> list[dict[str, Any]]:
    """Rows of an experiment export in the table format, binary files included."""
    blob = bytes(range(256)) * 40 + b"\x00\n\r\xe2\x80\xa8" + bytes([generation])
    runs = []
    for i in range(3):
        run_id = f"run{i:02d}"
        files = [
            {
                "owner": "artifacts",
                "path": f"model/weights-{i}.bin",
                "size": len(blob),
                "sha256": "0" * 64,
                "data": blob + bytes([i]),
                "chunks": 0,
            },
            {
                "owner": "artifacts",
                "path": "notes/readme\u2028line.txt",
                "size": 12,
                "sha256": "1" * 64,
                "data": "h\u00e9llo \u2028 w\u00f6rld".encode(),
                "chunks": 0,
            },
        ]
        runs.append(
            {
                "format_version": 1,
                "kind": "run",
                "key": run_id,
                "exported_at": T0 + datetime.timedelta(minutes=generation),
                "experiment": {
                    "experiment_id": "7",
                    "name": "exp \u00fcnicode",
                    "lifecycle_stage": "active",
                    "tags": [{"key": "team", "value": "ml"}],
                },
                "run": {
                    "run_id": run_id,
                    "run_name": f"run {i}",
                    "status": "FINISHED",
                    "start_time": T0,
                    "end_time": T0 + datetime.timedelta(seconds=30),
                    "user_id": "ann",
                    "lifecycle_stage": "active",
                    "parent_run_id": None,
                    "params": [{"key": "lr", "value": str(0.1 * (i + 1))}],
                    "tags": [],
                    "metrics": [
                        {
                            "key": "loss",
                            "value": 1.0 / (s + 1),
                            "step": s,
                            "timestamp": T0 + datetime.timedelta(seconds=s),
                            "model_id": None,
                            "dataset_name": None,
                            "dataset_digest": None,
                        }
                        for s in range(5)
                    ],
                    "inputs": [],
                    "model_inputs": [],
                    "logged_models": [],
                },
                "files": files,
            }
        )
    big = os.urandom(70_000)
    owner = {
        "format_version": 1,
        "kind": "run",
        "key": "run99",
        "exported_at": T0,
        "run": {"run_id": "run99", "run_name": "big", "status": "FINISHED", "start_time": T0},
        "files": [
            {
                "owner": "artifacts",
                "path": "big.bin",
                "size": len(big),
                "sha256": "2" * 64,
                "data": None,
                "chunks": 2,
            }
        ],
    }
    chunks = [
        {
            "format_version": 1,
            "kind": "chunk",
            "key": "run99",
            "chunk": {
                "owner": "artifacts",
                "path": "big.bin",
                "index": n,
                "offset": n * 35_000,
                "data": big[n * 35_000 : (n + 1) * 35_000],
            },
        }
        for n in range(2)
    ]
    version = {
        "format_version": 1,
        "kind": "model_version",
        "key": "1",
        "model_version": {"name": "m", "version": 1, "aliases": ["champion"], "creation_time": T0},
        "files": [
            {
                "owner": "model",
                "path": "MLmodel",
                "size": 5,
                "sha256": "3" * 64,
                "data": b"flav\x00",
                "chunks": 0,
            }
        ],
    }
    return [*runs, owner, *chunks, version]


def write_experiment(store: Any, table: tuple[str, ...], generation: int) -> None:
    from arcuate.format.schema import SCHEMA

    rows = experiment_rows(generation)
    batch = pa.Table.from_pylist(rows, schema=SCHEMA).to_batches()
    store.write(table, batch, content="experiment")


@dataclass
class Sharing:
    """The session's server, catalog, warehouse and profiles."""

    root: Path
    warehouse: Path
    catalog_path: Path
    handle: Any
    profiles: dict[str, Path]
    tokens: dict[str, str]

    @property
    def endpoint(self) -> str:
        return str(self.handle.endpoint)

    @property
    def catalog(self) -> Any:
        from arcuate.backends.sharing.catalog import LocalShareCatalog

        return LocalShareCatalog(self.catalog_path)

    def url(self, table: str, who: str = "alice", share: str = "models") -> str:
        return f"{self.profiles[who]}#{share}.mlflow.{table}"

    def location(self, table: str) -> str:
        return str(self.warehouse / "mlflow" / table)

    def new_recipient(self, name: str, *shares: str, **kwargs: Any) -> tuple[Path, str]:
        """A recipient of its own (for tests that revoke, rotate or expire), with a profile."""
        from arcuate.backends.sharing.server import write_profile

        _, token = self.catalog.create_recipient(name, **kwargs)
        assert token is not None
        for share in shares:
            self.catalog.grant(share, name)
        return write_profile(self.root / f"{name}.share", self.endpoint, token), token


def _build(root: Path) -> tuple[Path, Path]:
    from deltalake import DeltaTable, write_deltalake

    from arcuate.backends.deltalake.store import DeltaLakeTableStore
    from arcuate.backends.sharing.catalog import LocalShareCatalog

    warehouse = root / "warehouse"
    store = DeltaLakeTableStore(str(warehouse))
    write_experiment(store, ("mlflow", "experiment"), 0)
    write_experiment(store, ("mlflow", "experiment"), 1)

    simple = str(warehouse / "mlflow" / "simple")
    cdf = {"delta.enableChangeDataFeed": "true"}
    write_deltalake(
        simple,
        pa.table(
            {
                "id": pa.array([1, 2, 3], pa.int64()),
                "name": ["a", "b\u2028c", None],
                "payload": [b"\x00\x01", b"", None],
                "at": pa.array([T0, T0, None], pa.timestamp("us", tz="UTC")),
            }
        ),
        configuration=cdf,
    )
    write_deltalake(
        simple,
        pa.table(
            {
                "id": pa.array([4], pa.int64()),
                "name": ["d"],
                "payload": [b"\xff"],
                "at": pa.array([T0], pa.timestamp("us", tz="UTC")),
            }
        ),
        mode="append",
    )
    DeltaTable(simple).delete("id = 2")

    write_deltalake(
        str(warehouse / "mlflow" / "parts"),
        pa.table({"k": ["a b/c", "x%y", None, "\u00fc", "plain"], "v": [1, 2, 3, 4, 5]}),
        partition_by=["k"],
    )
    write_deltalake(str(warehouse / "mlflow" / "nocdf"), pa.table({"v": [1, 2]}))

    catalog_path = warehouse / "shares.yaml"
    catalog = LocalShareCatalog(catalog_path)
    for table in ("experiment", "simple", "parts", "nocdf"):
        catalog.add_table("models", "mlflow", table, str(warehouse / "mlflow" / table))
    catalog.add_table("other", "mlflow", "simple", simple)
    return warehouse, catalog_path


@pytest.fixture(scope="session")
def sharing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sharing]:
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    root = tmp_path_factory.mktemp("sharing")
    warehouse, catalog_path = _build(root)
    catalog = LocalShareCatalog(catalog_path)
    tokens = {}
    for name, share in (("alice", "models"), ("bob", "other")):
        _, token = catalog.create_recipient(name)
        assert token is not None
        catalog.grant(share, name)
        tokens[name] = token
    with serve_in_thread(str(catalog_path)) as handle:
        profiles = {
            name: write_profile(root / f"{name}.share", handle.endpoint, token)
            for name, token in tokens.items()
        }
        yield Sharing(root, warehouse, catalog_path, handle, profiles, tokens)


@pytest.fixture(autouse=True)
def _no_retries_no_5xx(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Fail fast instead of retrying (the client's 5xx backoff adds up to ~100 s), and make
    sure the server answered nothing with a 5xx during the test."""
    from delta_sharing.rest_client import DataSharingRestClient

    monkeypatch.setattr(DataSharingRestClient, "_should_retry", lambda self, error: False)
    if "sharing" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("sharing").handle.sharing
    before = server.stats.server_errors
    yield
    assert server.stats.server_errors == before, "the server answered with a 5xx"
