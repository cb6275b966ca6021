"""An export from a real ``mlflow server`` over REST: metric histories are read through the
server's bulk endpoint (one request per key for up to 100 runs), or without it one request per
run and key; up to ``rest_concurrency`` requests in flight; the same table either way."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.mlflow import source as source_module
from arcuate.backends.mlflow.source import MlflowSource
from arcuate.config import Settings
from arcuate.engine.context import Context
from arcuate.engine.export import export_experiment, export_model
from arcuate.errors import BackendError
from arcuate.format.records import ColumnarList
from arcuate.plan.ops import ExportExperiment, ExportModel
from tests.export.export_helpers import reassemble, rows_deltalake
from tests.rest_proxy import DOWNLOAD, CountingProxy

pytestmark = pytest.mark.server

RUNS, KEYS, POINTS, FILES = 6, 4, 3, 3
HISTORY = "/api/2.0/mlflow/metrics/get-history"
BULK = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"


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
        for f in range(FILES):
            client.log_text(rid, f"run {r} file {f}\n", f"out/{f}.txt")
        client.set_terminated(rid)


def _export(
    url: str, warehouse: Path, name: str, concurrency: int, *, model: bool = False
) -> tuple[dict[str, Any], dict[tuple[str, str, str], bytes]]:
    ctx = Context(
        Settings(
            tracking_uri=url,
            registry_uri=url,
            warehouse=str(warehouse),
            progress=False,
            rest_concurrency=concurrency,
        )
    )
    if model:
        stream = export_model(ExportModel(name), ctx)
    else:
        stream = export_experiment(ExportExperiment(name), ctx)
    table = ctx.table_store.write(("s", "t"), stream.batches, content=stream.content)
    records, files = reassemble(rows_deltalake(table.location))
    for row in records.values():  # the export's own time stamps differ between two exports
        row.pop("exported_at", None)
    return records, files


def test_histories_are_read_in_bulk_one_request_per_key(mlflow_server: Any, workdir: Path) -> None:
    _experiment(mlflow_server, "rest-export")
    proxy = CountingProxy(mlflow_server.tracking_uri, hold=0.05)
    with proxy.running():
        one = _export(proxy.url, workdir / "one", "rest-export", 1)
        assert proxy.count(BULK) == KEYS and proxy.count(HISTORY) == 0
        assert proxy.peak[BULK] == 1
        proxy.reset()
        many = _export(proxy.url, workdir / "many", "rest-export", 4)
        assert proxy.count(BULK) == KEYS and proxy.count(HISTORY) == 0
        assert 2 <= proxy.peak[BULK] <= 4
        # a run's files are downloaded ahead of the one being read
        downloads = [p for (m, p) in proxy.counts if m == "GET" and p.startswith(DOWNLOAD)]
        assert len(downloads) == RUNS * FILES
        assert all(proxy.counts[("GET", p)] == 1 for p in downloads)  # each file once
        assert 2 <= proxy.peak["download"] <= 4
    assert many == one
    points = [m for row in one[0].values() if row["run"] for m in row["run"]["metrics"]]
    assert len(points) == RUNS * KEYS * POINTS
    assert len(one[1]) == RUNS * FILES
    assert sorted(one[1].values()) == sorted(
        f"run {r} file {f}\n".encode() for r in range(RUNS) for f in range(FILES)
    )


def test_without_the_bulk_endpoint_histories_are_read_concurrently_per_key(
    mlflow_server: Any, workdir: Path
) -> None:
    _experiment(mlflow_server, "rest-export-nobulk")
    bulk = _export(mlflow_server.tracking_uri, workdir / "bulk", "rest-export-nobulk", 4)
    proxy = CountingProxy(mlflow_server.tracking_uri, hold=0.05, refuse=(BULK,))
    with proxy.running():
        one = _export(proxy.url, workdir / "one", "rest-export-nobulk", 1)
        assert proxy.count(HISTORY) == RUNS * KEYS and proxy.peak[HISTORY] == 1
        proxy.reset()
        many = _export(proxy.url, workdir / "many", "rest-export-nobulk", 4)
        assert proxy.count(BULK) <= KEYS  # the first group only: then not tried again
        assert proxy.count(HISTORY) == RUNS * KEYS and 2 <= proxy.peak[HISTORY] <= 4
    assert many == one == bulk


def test_a_bulk_answer_that_may_be_cut_off_is_read_run_by_run(
    mlflow_server: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _experiment(mlflow_server, "rest-export-cut")
    whole = _export(mlflow_server.tracking_uri, workdir / "whole", "rest-export-cut", 4)
    # the server answers at most this many points: every key's answer may be cut off
    monkeypatch.setattr(source_module, "_BULK_POINTS", RUNS * POINTS)
    proxy = CountingProxy(mlflow_server.tracking_uri)
    with proxy.running():
        cut = _export(proxy.url, workdir / "cut", "rest-export-cut", 4)
        assert proxy.count(BULK) == KEYS and proxy.count(HISTORY) == RUNS * KEYS
    assert cut == whole


def test_bulk_answers_are_read_together_but_decoded_two_at_a_time_into_columns(
    mlflow_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoded answer costs about 500 bytes of Python objects a point: at most DECODES
    are alive at once, whatever ``rest_concurrency`` is, and each run's points leave the
    source as one Arrow array (no dict per point)."""
    _experiment(mlflow_server, "rest-export-decode")
    decode = source_module._bulk_points
    lock = threading.Lock()
    decoding = {"now": 0, "peak": 0}

    def counted(*args: Any) -> Any:
        with lock:
            decoding["now"] += 1
            decoding["peak"] = max(decoding["peak"], decoding["now"])
        try:
            threading.Event().wait(0.2)  # makes an overlap observable
            return decode(*args)
        finally:
            with lock:
                decoding["now"] -= 1

    monkeypatch.setattr(source_module, "_bulk_points", counted)
    proxy = CountingProxy(mlflow_server.tracking_uri, hold=0.2)
    with proxy.running():
        source = MlflowSource(proxy.url, proxy.url, concurrency=8)
        experiment = source.get_experiment("rest-export-decode")
        runs = list(source.iter_runs(experiment["experiment_id"]))
        assert proxy.count(BULK) == KEYS and proxy.peak[BULK] > source_module.DECODES
    assert source_module.DECODES == 2 and decoding["peak"] == source_module.DECODES
    assert len(runs) == RUNS
    for run in runs:
        assert isinstance(run["metrics"], ColumnarList)
        assert len(run["metrics"]) == KEYS * POINTS


def _first_point(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def rewrite(body: bytes) -> bytes:
        answer = json.loads(body)
        change(answer["metrics"][0])
        return json.dumps(answer).encode()

    return rewrite


@pytest.mark.parametrize(
    ("rewrite", "says"),
    [
        (lambda body: b"<html>busy</html>", "JSONDecodeError"),
        (_first_point(lambda p: p.update(run_id="f" * 32)), "not asked for"),
        (_first_point(lambda p: p.update(value="many")), "could not convert"),
        (_first_point(lambda p: p.pop("timestamp")), "KeyError"),
        (_first_point(lambda p: p.update(timestamp=10**17)), "out of range"),
    ],
    ids=["not-json", "another-run", "not-a-number", "no-timestamp", "timestamp-range"],
)
def test_a_malformed_bulk_answer_fails_the_export_naming_the_metric(
    mlflow_server: Any,
    workdir: Path,
    request: pytest.FixtureRequest,
    rewrite: Callable[[bytes], bytes],
    says: str,
) -> None:
    name = f"rest-export-hostile-{request.node.callspec.id}"
    _experiment(mlflow_server, name)
    proxy = CountingProxy(mlflow_server.tracking_uri, rewrite={BULK: rewrite})
    with proxy.running(), pytest.raises(BackendError) as caught:
        _export(proxy.url, workdir / "t", name, 4)
    message = str(caught.value)
    assert "the bulk history of metric 'm" in message and "is malformed" in message
    assert says in message
    assert not any((workdir / "t").rglob("*.parquet"))  # nothing written


def _rich_experiment(server: Any, name: str) -> None:
    """Runs with what an export carries: params (one a URI with credentials), tags, NaN and
    infinite points, a dataset input, nested files, a logged model with linked metrics and
    files, a deleted run and a run still running."""
    import tempfile

    from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput, Metric, Param

    client = server.client()
    eid = client.create_experiment(name, tags={"team": "a", "link": "s3://u:p@b/k?token=x"})
    for r in range(3):
        rid = client.create_run(eid, start_time=1000 + r, run_name=f"run-{r}").info.run_id
        points = [Metric("loss", 1 / (p + 1), 1_700_000_000_000 + p, p) for p in range(4)]
        points += [Metric("odd", [math.nan, math.inf, -math.inf][r], 1_700_000_000_100, 0)]
        params = [Param("lr", "0.01"), Param("data", "https://u:pw@h/x?sig=abc")]
        client.log_batch(rid, metrics=points, params=params)
        client.set_tag(rid, "mlflow.note.content", f"note {r}")
        dataset = Dataset("d", "abc", "local", '{"uri": "s3://u:p@b/d"}', '{"a": 1}', None)
        client.log_inputs(rid, datasets=[DatasetInput(dataset, [InputTag("ctx", "train")])])
        client.log_text(rid, f"run {r}\n", "out/deep/a.txt")
        client.log_text(rid, "x" * 5000, "b.txt")
        if r == 0:
            model = client.create_logged_model(eid, name="lm", source_run_id=rid, params={"p": "1"})
            client.log_metric(rid, "lm", 3.0, 1_700_000_000_300, 0, model_id=model.model_id)
            client.log_outputs(rid, models=[LoggedModelOutput(model.model_id, 0)])
            with tempfile.TemporaryDirectory() as d:
                Path(d, "MLmodel").write_text("flavors: {}\n")
                client.log_model_artifacts(model.model_id, d)
            client.finalize_logged_model(model.model_id, "READY")
        if r < 2:
            client.set_terminated(rid, end_time=2000 + r)
    deleted = client.create_run(eid, run_name="gone").info.run_id
    client.delete_run(deleted)


def test_the_rest_client_exports_what_mlflows_client_exports(
    mlflow_server: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _rich_experiment(mlflow_server, "rest-export-clients")
    url = mlflow_server.tracking_uri
    light = _export(url, workdir / "light", "rest-export-clients", 4)
    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", "mlflow")
    mlflow = _export(url, workdir / "mlflow", "rest-export-clients", 4)
    assert repr(light) == repr(mlflow)  # repr: NaN points are equal there
    runs = [row["run"] for row in light[0].values() if row["run"]]
    assert sorted(r["run_name"] for r in runs) == ["run-0", "run-1", "run-2"]
    assert any(r["logged_models"] for r in runs)
    assert len(light[1]) == 3 * 2 + 1


def test_the_rest_client_exports_a_model_as_mlflows_client_does(
    mlflow_server: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model export mixes both clients (MLflow's for the registry, arcuate's for runs,
    logged models and files): versions from a run's files and from a logged model."""
    _rich_experiment(mlflow_server, "rest-export-model-runs")
    client = mlflow_server.client()
    eid = client.get_experiment_by_name("rest-export-model-runs").experiment_id
    run = client.search_runs([eid], filter_string="attributes.run_name = 'run-0'")[0]
    logged = client.search_logged_models([eid])[0]
    client.create_registered_model("rest-export-model", tags={"team": "a"})
    client.create_model_version(
        "rest-export-model", f"runs:/{run.info.run_id}/out", run_id=run.info.run_id
    )
    client.create_model_version(
        "rest-export-model",
        f"models:/{logged.model_id}",
        run_id=run.info.run_id,
        model_id=logged.model_id,
    )
    client.set_registered_model_alias("rest-export-model", "best", "2")
    url = mlflow_server.tracking_uri
    light = _export(url, workdir / "light", "rest-export-model", 4, model=True)
    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", "mlflow")
    mlflow = _export(url, workdir / "mlflow", "rest-export-model", 4, model=True)
    assert repr(light) == repr(mlflow)
    assert sorted(path for (_key, _owner, path) in light[1]) == ["MLmodel", "deep/a.txt"]
