"""AS SPARK and the Spark table backend end to end, through ``arcuate.execute(..., spark=...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

import arcuate
from arcuate.errors import PlanError
from arcuate.format.schema import FORMAT_VERSION, parse_description
from tests.imports.import_helpers import assert_same, snapshot_experiment, snapshot_model
from tests.spark.spark_helpers import ServerStore


def test_statements_run_on_spark(
    spark: Any,
    mlflow_server: ServerStore,
    server_experiment: str,
    server_model: str,
    recipient_store: Any,
    tmp_path: Path,
) -> None:
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    warehouse = tmp_path / "warehouse"
    provider = {
        "tracking_uri": mlflow_server.tracking_uri,
        "registry_uri": mlflow_server.registry_uri,
        "warehouse": str(warehouse),
        "chunk_bytes": 4096,
        "progress": False,
        "spark": spark,
    }
    (result,) = arcuate.execute(
        f"CREATE SHARE ml WITH TABLE ml.runs FROM EXPERIMENT '{server_experiment}'", **provider
    )
    assert result.summary["runs"] == 7
    # a tracking server every task can reach: packaging ran in Spark tasks
    from arcuate.engine.context import Context
    from arcuate.engine.runner import _distributed

    assert _distributed(Context(arcuate.resolve_settings(**provider)))
    (model,) = arcuate.execute(
        f"CREATE SHARE ml WITH TABLE ml.model FROM MODEL '{server_model}'", **provider
    )
    assert model.summary["versions"] == 2
    location = result.summary["location"]
    assert location == str(warehouse / "ml" / "runs")
    assert parse_description(DeltaTable(location).metadata().description) == (FORMAT_VERSION, "experiment")

    catalog = LocalShareCatalog(warehouse / "shares.yaml")
    _record, token = catalog.create_recipient("bob")
    catalog.grant("ml", "bob")
    assert token is not None
    handle = serve_in_thread(str(warehouse / "shares.yaml"))
    try:
        profile = write_profile(tmp_path / "bob.share", handle.endpoint, token)
        coord = f"{profile}#ml.ml.runs"
        recipient = {
            "tracking_uri": recipient_store.tracking_uri,
            "registry_uri": recipient_store.registry_uri,
            "progress": False,
            "spark": spark,
        }
        (imported,) = arcuate.execute(f"CREATE EXPERIMENT landed AS SPARK '{coord}'", **recipient)
        (versions,) = arcuate.execute(
            f"CREATE MODEL landed AS SPARK '{profile}#ml.ml.model'", **recipient
        )
    finally:
        handle.stop()
    assert imported.summary["added"] == 7
    assert imported.summary["partitions"] >= 1  # the runner handed AS SPARK to Spark tasks
    assert (versions.summary["added"], versions.summary["versions"]) == (2, 2)
    client = recipient_store.client()
    assert int(client.get_model_version_by_alias("landed", "champion").version) == 2
    keep = ("description", "tags", "stage", "status", "aliases")
    mine, theirs = (
        snapshot_model(recipient_store, "landed"),
        snapshot_model(mlflow_server, server_model),
    )
    assert (mine["aliases"], mine["tags"]) == (theirs["aliases"], theirs["tags"])
    assert {n: {k: v[k] for k in keep} for n, v in mine["versions"].items()} == {
        n: {k: v[k] for k in keep} for n, v in theirs["versions"].items()
    }
    assert_same(
        snapshot_experiment(recipient_store, "landed", imported=True),
        snapshot_experiment(mlflow_server, server_experiment, imported=False),
    )


def test_as_spark_without_a_session_is_refused_before_running(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="SparkSession"):
        arcuate.execute(f"CREATE EXPERIMENT x AS SPARK '{tmp_path}/p.share#a.b.c'")
