"""AS SPARK imports of a signed table write each model directory's ``model.sig`` too (without
``VERIFIED BY``, which AS SPARK refuses): the stock ``model_signing verify key`` checks it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.mlflow.connect import spark_guard
from tests.imports.import_helpers import recipient_context
from tests.spark.spark_helpers import ServerStore

pytest.importorskip("model_signing")
from tests.trust.test_model_sig import Provider, rows_of, stock_verify


@pytest.fixture(scope="module")
def provider(mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Provider:
    with spark_guard():
        return Provider(tmp_path_factory.mktemp("spark-model-sig"), mlflow_template)


def _frame(spark: Any, rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    from arcuate.format.schema import SCHEMA

    return spark.createDataFrame(pa.Table.from_pylist(rows, schema=SCHEMA))


def _download(store: Any, uri: str, dst: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", store.registry_uri)
    dst.mkdir(parents=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))


def test_as_spark_model_import_writes_model_sig(
    spark: Any,
    provider: Provider,
    recipient_store: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from arcuate.engine.distributed import import_model_spark

    rows = rows_of(provider.export("model", "MODEL churn"))
    ctx = recipient_context(recipient_store)
    with spark_guard():
        result = import_model_spark(_frame(spark, rows), "churn", ctx, source="x#a.b.c")
        assert result.summary["added"] == 2
        model = _download(recipient_store, "models:/churn/1", tmp_path / "v1", monkeypatch)
    ok = stock_verify(model, provider.pub)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_as_spark_experiment_import_writes_model_sig(
    spark: Any,
    provider: Provider,
    mlflow_server: ServerStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from arcuate.engine.distributed import import_experiment_spark

    rows = rows_of(provider.export("exp", "EXPERIMENT exp"))
    target = recipient_context(mlflow_server)
    with spark_guard():
        import_experiment_spark(
            _frame(spark, rows), "model-sig by spark", target, source="x#a.b.c", partitions=2
        )
        client = mlflow_server.client()
        eid = client.get_experiment_by_name("model-sig by spark").experiment_id
        (lm,) = client.search_logged_models(experiment_ids=[eid])
        model = _download(mlflow_server, lm.artifact_location, tmp_path / "lm", monkeypatch)
    ok = stock_verify(model, provider.pub)
    assert ok.returncode == 0, ok.stdout + ok.stderr
