"""Round trips across backends: Spark-written tables through the pandas path and vice versa,
and AS SPARK imports spread over Spark tasks into a real mlflow server."""

from __future__ import annotations

from typing import Any

import pytest

from arcuate.backends.sharing.reader import DeltaSharingReader
from arcuate.backends.spark.reader import SparkShareReader
from arcuate.engine.distributed import import_experiment_spark
from arcuate.engine.imports import import_experiment
from arcuate.errors import ShareDataError
from tests.imports.import_helpers import assert_same, recipient_context, snapshot_experiment
from tests.spark.spark_helpers import ServerStore, SparkShare

SAME = (
    "runs", "added", "updated", "unchanged", "removed", "kept", "files", "bytes", "metric_points"
)


def _core(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in SAME}


def test_spark_table_imports_through_the_pandas_path(
    spark_share: SparkShare,
    mlflow_server: ServerStore,
    server_experiment: str,
    recipient_store: Any,
) -> None:
    coord = spark_share.coordinate("by_spark")
    ctx = recipient_context(recipient_store)
    result = import_experiment(DeltaSharingReader().batches(coord), "from spark", ctx, source=coord)
    assert result.summary["added"] == 7
    assert_same(
        snapshot_experiment(recipient_store, "from spark", imported=True),
        snapshot_experiment(mlflow_server, server_experiment, imported=False),
    )


def test_both_tables_read_the_same_through_spark(spark: Any, spark_share: SparkShare) -> None:
    from tests.spark.spark_helpers import canonical

    reader = SparkShareReader(spark)
    a = reader.dataframe(spark_share.coordinate("by_spark")).toArrow()
    assert reader.loaded_by == "python-client"  # Sail has no Delta Sharing connector
    b = reader.dataframe(spark_share.coordinate("by_deltalake")).toArrow()
    from arcuate.format.schema import conform

    def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "exported_at": None} for r in rows]

    assert strip(canonical(conform(a))) == strip(canonical(conform(b)))


def test_as_spark_import_spread_over_tasks(
    spark: Any,
    spark_share: SparkShare,
    mlflow_server: ServerStore,
    server_experiment: str,
    recipient_store: Any,
) -> None:
    coord = spark_share.coordinate("by_deltalake")
    frame = SparkShareReader(spark).dataframe(coord)
    target = recipient_context(mlflow_server)
    first = import_experiment_spark(frame, "by spark tasks", target, source=coord, partitions=3)
    pandas = import_experiment(
        DeltaSharingReader().batches(coord), "by pandas", recipient_context(recipient_store),
        source=coord,
    )  # fmt: skip
    assert _core(first.summary) == _core(pandas.summary)
    assert first.summary["partitions"] == 3
    assert sorted(r["source_run_id"] for r in first.rows) == sorted(
        r["source_run_id"] for r in pandas.rows
    )
    source = snapshot_experiment(mlflow_server, server_experiment, imported=False)
    assert_same(snapshot_experiment(mlflow_server, "by spark tasks", imported=True), source)

    # idempotent: the same share again changes nothing
    again = import_experiment_spark(frame, "by spark tasks", target, source=coord, partitions=2)
    assert (again.summary["unchanged"], again.summary["added"]) == (7, 0)

    # OVERWRITE: a run the share does not list is removed, last; one a model version uses stays
    client = mlflow_server.client()
    eid = client.get_experiment_by_name("by spark tasks").experiment_id
    stray = client.create_run(eid, run_name="local only")
    client.set_terminated(stray.info.run_id)
    used = client.create_run(eid, run_name="registered").info.run_id
    client.set_terminated(used)
    client.create_registered_model("spark-tasks-kept")
    client.create_model_version("spark-tasks-kept", f"runs:/{used}/model", used)
    over = import_experiment_spark(
        frame, "by spark tasks", target, overwrite=True, source=coord, partitions=2
    )
    assert (over.summary["removed"], over.summary["kept"], over.summary["runs"]) == (1, 1, 7)
    assert client.get_run(stray.info.run_id).info.lifecycle_stage == "deleted"
    assert client.get_run(used).info.lifecycle_stage == "active"
    (kept,) = [r for r in over.rows if r["action"] == "kept"]
    assert kept["reason"] == "model version spark-tasks-kept/1 uses it"
    client.delete_registered_model("spark-tasks-kept")
    client.delete_run(used)
    assert_same(snapshot_experiment(mlflow_server, "by spark tasks", imported=True), source)


def _frame(spark: Any, rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    from arcuate.format.schema import SCHEMA

    return spark.createDataFrame(pa.Table.from_pylist(rows, schema=SCHEMA))


@pytest.mark.parametrize(
    "damage",
    ["traversal", "bad_checksum", "model_twice", "stray_chunk"],
)
def test_a_bad_row_stops_the_import_before_anything_is_written(
    spark: Any, recipient_store: Any, damage: str
) -> None:
    from tests.imports.import_helpers import chunk_rows, file_entry, run_row

    rows = [run_row(f"{i:032x}", name=f"r{i}") for i in range(12)]
    entry, chunks = chunk_rows(f"{3:032x}", "big.bin", bytes(range(200)) * 30, 1024)
    rows[3]["files"].append(entry)
    rows += chunks
    if damage == "traversal":
        rows[7]["files"] = [file_entry("../../etc/passwd", b"x")]
    elif damage == "bad_checksum":
        rows[-1]["chunk"]["data"] = b"\x00" + rows[-1]["chunk"]["data"][1:]
    elif damage == "model_twice":
        lm = {
            "model_id": "m-" + "1" * 32, "name": "model", "model_type": None, "status": "READY",
            "status_message": None, "creation_time": None, "step": None, "tags": [],
            "params": [],
        }  # fmt: skip
        rows[1]["run"]["logged_models"] = [lm]
        rows[9]["run"]["logged_models"] = [dict(lm)]
    else:
        rows.append({**chunks[0], "key": "f" * 32})
    ctx = recipient_context(recipient_store)
    with pytest.raises(ShareDataError):
        import_experiment_spark(_frame(spark, rows), "never", ctx, partitions=4)
    assert recipient_store.client().get_experiment_by_name("never") is None


def test_model_versions_as_spark(spark: Any, recipient_store: Any) -> None:
    from arcuate.engine.distributed import import_model_spark
    from tests.imports.import_helpers import version_row

    rows = [version_row(1, aliases=["champion"]), version_row(3, stage="Production")]
    ctx = recipient_context(recipient_store)
    result = import_model_spark(_frame(spark, rows), "spark-model", ctx, source="x#a.b.c")
    assert (result.summary["added"], result.summary["versions"]) == (2, 2)
    client = recipient_store.client()
    assert int(client.get_model_version_by_alias("spark-model", "champion").version) == 1
    again = import_model_spark(_frame(spark, rows), "spark-model", ctx, source="x#a.b.c")
    assert again.summary["unchanged"] == 2


@pytest.mark.parametrize("flavor", ["PANDAS", "SPARK"])
@pytest.mark.parametrize("table", ["by_deltalake", "by_spark"])
def test_round_trip_over_both_table_backends_and_both_read_modes(
    table: str,
    flavor: str,
    spark: Any,
    spark_share: SparkShare,
    mlflow_server: ServerStore,
    server_experiment: str,
) -> None:
    """The same statement, whichever backend wrote the table and however it is read."""
    import arcuate

    name = f"matrix {table} {flavor}"
    settings = {
        "tracking_uri": mlflow_server.tracking_uri,
        "registry_uri": mlflow_server.registry_uri,
        "progress": False,
        "spark": spark,
    }
    statement = f"CREATE EXPERIMENT `{name}` AS {flavor} '{spark_share.coordinate(table)}'"
    (result,) = arcuate.execute(statement, **settings)
    assert (result.summary["added"], result.summary["runs"]) == (7, 7)
    assert ("partitions" in result.summary) == (flavor == "SPARK")
    assert_same(
        snapshot_experiment(mlflow_server, name, imported=True),
        snapshot_experiment(mlflow_server, server_experiment, imported=False),
    )
    (again,) = arcuate.execute(statement, **settings)
    assert (again.summary["added"], again.summary["unchanged"]) == (0, 7)
