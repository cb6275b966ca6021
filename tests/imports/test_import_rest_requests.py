"""An import into a real ``mlflow server`` over REST makes few requests per run, and keeps
several in flight: counted by a proxy in front of the server (counts, not timings)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from arcuate.backends.mlflow.sink import log_batches
from arcuate.backends.mlflow.tags import CONTENT_HASH, FILES_HASH
from arcuate.engine.imports import import_experiment
from tests.imports.import_helpers import (
    batches_of,
    file_entry,
    recipient_context,
    run_row,
    snapshot_experiment,
)
from tests.rest_proxy import CountingProxy

pytestmark = pytest.mark.server

RUNS = 8
BIG = 1500  # metric points of the first run: more than one log_batch holds (1,000)
API = "/api/2.0/mlflow/"


def _rows() -> list[dict[str, Any]]:
    rows = []
    for r in range(RUNS):
        points = BIG if r == 0 else 3
        metrics = [("loss", 1.0 / (p + 1), p, 1_700_000_000_000 + p) for p in range(points)]
        rows.append(
            run_row(
                f"{r:032x}",
                name=f"run-{r}",
                params={"lr": "0.1", "seed": str(r)},
                tags={"team": "ml", "i": str(r)},
                metrics=metrics,
                files=[file_entry(f"out/{r}.txt", f"run {r}\n".encode())],
            )
        )
    return rows


def test_new_runs_are_written_in_few_requests_several_at_once(mlflow_server: Any) -> None:
    name = f"rest-requests-{uuid.uuid4().hex[:8]}"
    proxy = CountingProxy(mlflow_server.tracking_uri, hold=0.02)
    with proxy.running():
        store = SimpleNamespace(tracking_uri=proxy.url, registry_uri=proxy.url)
        ctx = recipient_context(store, import_path="api", rest_concurrency=4)
        report = import_experiment(batches_of(_rows()), name, ctx)
        assert report.summary["added"] == RUNS
        assert proxy.count(API + "runs/create") == RUNS
        # one batch per run, two for the run of 1,500 points: params, tags and the tags that
        # complete the run go in the same batches
        assert proxy.count(API + "runs/log-batch") == RUNS + 1
        assert proxy.count(API + "runs/update") == RUNS  # status and end time
        assert proxy.count(API + "runs/set-tag") == proxy.count(API + "runs/delete-tag") == 0
        # per run: create, log-batch, update, one file; and a few for the experiment
        assert proxy.total() <= 4 * RUNS + 20
        assert proxy.peak[API + "runs/create"] >= 2 and proxy.peak[API + "runs/log-batch"] >= 2
        # imported again: nothing to write
        again = import_experiment(batches_of(_rows()), name, ctx)
        assert again.summary["unchanged"] == RUNS
    assert len(snapshot_experiment(mlflow_server, name, imported=True)["runs"]) == RUNS
    client = mlflow_server.client()
    eid = client.get_experiment_by_name(name).experiment_id
    for run in client.search_runs([eid]):
        # the user came in create_run's own field: no mlflow.user tag to delete afterwards
        assert run.info.user_id == "ann" and "mlflow.user" not in run.data.tags
        assert {CONTENT_HASH, FILES_HASH} <= set(run.data.tags)
        assert run.info.status == "FINISHED" and run.data.params["lr"] == "0.1"
        points = len(client.get_metric_history(run.info.run_id, "loss"))
        assert points == (BIG if run.info.run_name == "run-0" else 3)


@pytest.mark.parametrize(
    ("metrics", "params", "tags", "calls"),
    [
        (0, 0, 0, 1),
        (3, 2, 2, 1),
        (1500, 0, 0, 2),
        (2500, 150, 250, 3),
        (994, 0, 0, 1),
        (995, 0, 0, 2),
    ],
)
def test_log_batches_are_full_and_end_with_the_completing_tags(
    metrics: int, params: int, tags: int, calls: int
) -> None:
    last = [f"last{i}" for i in range(6)]
    got = list(log_batches(list(range(metrics)), [f"p{i}" for i in range(params)],
                           [f"t{i}" for i in range(tags)], last))  # fmt: skip
    assert len(got) == calls
    for m, p, t in got:
        assert len(p) <= 100 and len(t) <= 100 and len(m) + len(p) + len(t) <= 1000
    assert got[-1][2][-len(last) :] == last
    assert [x for m, _, _ in got for x in m] == list(range(metrics))
    assert [x for _, p, _ in got for x in p] == [f"p{i}" for i in range(params)]
    assert [x for _, _, t in got for x in t] == [f"t{i}" for i in range(tags)] + last


def test_the_rest_clients_log_batch_keeps_within_mlflows_limits(mlflow_server: Any) -> None:
    """arcuate's REST client cuts a batch as MLflow's client does (100 params and 100 tags
    with up to 1,000 metrics a request, 1,000 entities in all); every value arrives, NaN and
    infinities included."""
    import math

    from arcuate.backends.mlflow.rest import Metric, Param, RestClient, RunTag

    proxy = CountingProxy(mlflow_server.tracking_uri)
    with proxy.running():
        client = RestClient(proxy.url, proxy.url)
        eid = client.create_experiment(f"batches-{uuid.uuid4().hex[:8]}")
        run = client.create_run(eid, user_id="ann", start_time=1000, tags=[], run_name="big")
        rid = run.info.run_id
        params = [Param(f"p{i:03d}", str(i)) for i in range(250)]
        tags = [RunTag(f"t{i:03d}", str(i)) for i in range(120)]
        odd = [math.nan, math.inf, -math.inf]
        metrics = [Metric("m", odd[i] if i < 3 else float(i), 1000 + i, i) for i in range(2500)]
        client.log_batch(rid, metrics=metrics, params=params, tags=tags)
        # (100 p + 100 t + 800 m), (100 p + 20 t + 880 m), (50 p + 820 m), then none left
        assert proxy.count("runs/log-batch") == 3
    # what MLflow's own client writes from the same batch (the server stores infinities as
    # the largest double): the same params, tags and points
    from mlflow import entities

    mlflow = mlflow_server.client()
    other = mlflow.create_run(eid, run_name="big-mlflow").info.run_id
    mlflow.log_batch(
        other,
        metrics=[entities.Metric(m.key, m.value, m.timestamp, m.step) for m in metrics],
        params=[entities.Param(p.key, p.value) for p in params],
        tags=[entities.RunTag(t.key, t.value) for t in tags],
    )
    got, want = mlflow.get_run(rid), mlflow.get_run(other)
    assert got.data.params == want.data.params == {p.key: p.value for p in params}
    mine = {k: v for k, v in got.data.tags.items() if k.startswith("t")}
    assert mine == {k: v for k, v in want.data.tags.items() if k.startswith("t")}
    assert len(mine) == 120
    history = [(m.step, m.timestamp, repr(m.value)) for m in mlflow.get_metric_history(rid, "m")]
    expected = [(m.step, m.timestamp, repr(m.value)) for m in mlflow.get_metric_history(other, "m")]
    assert sorted(history) == sorted(expected) and len(history) == 2500
    assert sorted(history)[0][2] == "nan"
