"""An export from a real ``mlflow server`` over REST: metric histories are read concurrently
(up to ``rest_concurrency`` requests in flight), one request per run and metric key, and the
table is the same whatever the concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arcuate.config import Settings
from arcuate.engine.context import Context
from arcuate.engine.export import export_experiment
from arcuate.plan.ops import ExportExperiment
from tests.export.export_helpers import reassemble, rows_deltalake
from tests.rest_proxy import CountingProxy

pytestmark = pytest.mark.server

RUNS, KEYS, POINTS = 6, 4, 3
HISTORY = "/api/2.0/mlflow/metrics/get-history"


def _experiment(server: Any, name: str) -> None:
    from mlflow.entities import Metric

    client = server.client()
    eid = client.create_experiment(name)
    for r in range(RUNS):
        rid = client.create_run(eid, start_time=1000 + r, run_name=f"run-{r}").info.run_id
        points = [
            Metric(f"m{k}", k + r + p / 10, 1_700_000_000_000 + p, p)
            for k in range(KEYS)
            for p in range(POINTS)
        ]
        client.log_batch(rid, metrics=points)
        client.set_terminated(rid)


def _export(url: str, warehouse: Path, name: str, concurrency: int) -> dict[str, Any]:
    ctx = Context(
        Settings(
            tracking_uri=url,
            registry_uri=url,
            warehouse=str(warehouse),
            progress=False,
            rest_concurrency=concurrency,
        )
    )
    stream = export_experiment(ExportExperiment(name), ctx)
    table = ctx.table_store.write(("s", "t"), stream.batches, content=stream.content)
    records, _ = reassemble(rows_deltalake(table.location))
    for row in records.values():  # the export's own time stamps differ between two exports
        row.pop("exported_at", None)
    return records


def test_histories_are_read_concurrently_one_request_per_key(
    mlflow_server: Any, workdir: Path
) -> None:
    _experiment(mlflow_server, "rest-export")
    proxy = CountingProxy(mlflow_server.tracking_uri, hold=0.05)
    with proxy.running():
        one = _export(proxy.url, workdir / "one", "rest-export", 1)
        assert proxy.count(HISTORY) == RUNS * KEYS
        assert proxy.peak[HISTORY] == 1
        proxy.reset()
        many = _export(proxy.url, workdir / "many", "rest-export", 4)
        assert proxy.count(HISTORY) == RUNS * KEYS
        assert 2 <= proxy.peak[HISTORY] <= 4
    assert many == one
    points = [m for row in one.values() if row["run"] for m in row["run"]["metrics"]]
    assert len(points) == RUNS * KEYS * POINTS
