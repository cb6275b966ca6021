"""Exports packaged by Spark tasks (Sail Python workers) reading a real mlflow server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arcuate.backends.deltalake.store import DeltaLakeTableStore
from arcuate.backends.spark.store import SparkTableStore
from arcuate.config import Settings
from arcuate.engine.context import Context
from arcuate.engine.distributed import export_experiment_spark
from arcuate.engine.export import export_experiment
from arcuate.plan.ops import ExportExperiment
from tests.spark.spark_helpers import ServerStore, canonical


def _ctx(store: ServerStore, warehouse: Path, spark: Any = None) -> Context:
    return Context(
        Settings(
            tracking_uri=store.tracking_uri,
            registry_uri=store.registry_uri,
            warehouse=str(warehouse),
            chunk_bytes=4096,
            progress=False,
            spark=spark,
        )
    )


def _without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "exported_at": None} for r in rows]


def test_tasks_pack_the_same_rows_as_the_driver(
    spark: Any, mlflow_server: ServerStore, server_experiment: str, tmp_path: Path
) -> None:
    op = ExportExperiment(server_experiment)
    ctx = _ctx(mlflow_server, tmp_path / "dl")
    stream = export_experiment(op, ctx)
    DeltaLakeTableStore(str(tmp_path / "dl")).write(("e",), stream.batches, content="experiment")
    sctx = _ctx(mlflow_server, tmp_path / "sp", spark)
    export = export_experiment_spark(op, sctx, runs_per_group=2, partitions=3)
    store = SparkTableStore(spark, str(tmp_path / "sp"))
    written = store.write(("e",), export, content="experiment")
    assert export.summary() == stream.summary()
    assert (export.runs, export.partitions) == (7, 3)
    assert written.rows == len(store.read(("e",)))
    ours = _without_time(canonical(store.read(("e",))))
    theirs = _without_time(canonical(DeltaLakeTableStore(str(tmp_path / "dl")).read(("e",))))
    assert ours == theirs
