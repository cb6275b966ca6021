"""Fixtures of the Spark tests: a real Sail Spark Connect server, a pyspark Connect session to
it (``sail_port`` and ``spark``, in ``tests/conftest.py``: the conformance suite shares them),
and a real ``mlflow server`` on loopback that Spark tasks talk to.

Sail runs in its own process (``sail_server.py``: ``SparkConnectServer`` bound to 127.0.0.1,
port 0, started in the background), so Python UDFs run apart from pytest, as on a cluster:
nothing of the driver's memory or MLflow globals reaches the tasks. Both servers start once per
session in their own process groups and are stopped at the end.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.spark.spark_helpers import ServerStore, SparkShare

if importlib.util.find_spec("pysail") is None or importlib.util.find_spec("pyspark") is None:
    # pip install -e '.[test]' brings both; without them these tests cannot run at all
    collect_ignore_glob = ["test_*.py"]

HERE = Path(__file__).resolve().parent
_hosts = "127.0.0.1,localhost"
os.environ["NO_PROXY"] = ",".join(x for x in (os.environ.get("NO_PROXY"), _hosts) if x)
os.environ["no_proxy"] = os.environ["NO_PROXY"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.spark)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER_EXPERIMENT = "spark source ✓"


@pytest.fixture(scope="session")
def server_experiment(mlflow_server: ServerStore, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An experiment on the mlflow server: runs with params, tags, metric history (NaN too),
    a parent and children, small and chunked artifacts, a logged model with files."""
    from mlflow.entities import LoggedModelOutput, Metric

    client = mlflow_server.client()
    eid = client.create_experiment(SERVER_EXPERIMENT, tags={"team": "ml", "note": "é"})
    files = tmp_path_factory.mktemp("artifacts")
    (files / "notes.txt").write_text("hello ✓\n", encoding="utf-8")
    (files / "deep" / "er").mkdir(parents=True)
    (files / "deep" / "er" / "big.bin").write_bytes(bytes(range(256)) * 50)  # 12800 B: chunked
    parent = client.create_run(eid, run_name="parent", start_time=1_700_000_000_000)
    runs = [parent.info.run_id]
    for i in range(6):
        tags = {"mlflow.parentRunId": parent.info.run_id} if i < 2 else {}
        run = client.create_run(
            eid, run_name=f"child-{i}", start_time=1_700_000_001_000 + i, tags=tags
        )
        runs.append(run.info.run_id)
    for n, rid in enumerate(runs):
        points = [Metric("loss", 1.0 / (s + 1), 1_700_000_100_000 + s, s) for s in range(5)]
        points.append(Metric("odd", float("nan"), 1_700_000_200_000, 0))
        client.log_batch(rid, metrics=points, params=[], tags=[])
        client.log_param(rid, "alpha", str(n / 10))
        client.set_tag(rid, "kind", "even" if n % 2 == 0 else "odd")
        client.log_artifact(rid, str(files / "notes.txt"))
        if n % 3 == 0:
            client.log_artifacts(rid, str(files / "deep"), "deep")
        client.set_terminated(rid, "FINISHED", end_time=1_700_000_300_000 + n)
    model = client.create_logged_model(eid, name="model", source_run_id=runs[1])
    client.log_model_artifacts(model.model_id, str(files / "deep"))
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(runs[1], [LoggedModelOutput(model.model_id, 3)])
    return SERVER_EXPERIMENT


@pytest.fixture(scope="session")
def spark_share(
    spark: Any,
    mlflow_server: ServerStore,
    server_experiment: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SparkShare]:
    """``ml.default.by_deltalake`` and ``ml.default.by_spark`` on arcuate's sharing server."""
    from arcuate.backends.deltalake.store import DeltaLakeTableStore
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile
    from arcuate.backends.spark.store import SparkTableStore
    from arcuate.config import Settings
    from arcuate.engine.context import Context
    from arcuate.engine.distributed import export_experiment_spark
    from arcuate.engine.export import export_experiment
    from arcuate.plan.ops import ExportExperiment

    root = tmp_path_factory.mktemp("spark-share")
    warehouse = root / "warehouse"
    ctx = Context(
        Settings(
            tracking_uri=mlflow_server.tracking_uri,
            registry_uri=mlflow_server.registry_uri,
            warehouse=str(warehouse),
            chunk_bytes=4096,
            progress=False,
            spark=spark,
        )
    )
    op = ExportExperiment(server_experiment)
    stream = export_experiment(op, ctx)
    by_dl = DeltaLakeTableStore(str(warehouse)).write(
        ("ml", "by_deltalake"), stream.batches, content="experiment"
    )
    by_sp = SparkTableStore(spark, str(warehouse)).write(
        ("ml", "by_spark"), export_experiment_spark(op, ctx, runs_per_group=3), content="experiment"
    )
    catalog = LocalShareCatalog(root / "shares.yaml")
    catalog.add_table("ml", "default", "by_deltalake", by_dl.location)
    catalog.add_table("ml", "default", "by_spark", by_sp.location)
    _record, token = catalog.create_recipient("ann")
    catalog.grant("ml", "ann")
    assert token is not None
    handle = serve_in_thread(str(root / "shares.yaml"))
    try:
        profile = write_profile(root / "ann.share", handle.endpoint, token)
        yield SparkShare(profile, warehouse, root / "shares.yaml")
    finally:
        handle.stop()


SERVER_MODEL = "spark model ✓"


@pytest.fixture(scope="session")
def server_model(mlflow_server: ServerStore, server_experiment: str) -> str:
    """A registered model on the mlflow server: two versions of the experiment's logged model."""
    client = mlflow_server.client()
    eid = client.get_experiment_by_name(server_experiment).experiment_id
    (model,) = client.search_logged_models(experiment_ids=[eid])
    client.create_registered_model(SERVER_MODEL, tags={"team": "ml"}, description="d")
    for _ in range(2):
        client.create_model_version(
            SERVER_MODEL,
            source=f"models:/{model.model_id}",
            run_id=model.source_run_id,
            model_id=model.model_id,
        )
    client.set_registered_model_alias(SERVER_MODEL, "champion", "2")
    return SERVER_MODEL
