"""An import interrupted midway (a fault injected at MLflow call N) finishes when run again:
same content as a clean import, no duplicates, nothing lost."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.mlflow.sink import MlflowSink
from arcuate.engine.imports import import_experiment, import_model
from tests.imports.import_helpers import (
    Small,
    assert_same,
    recipient_context,
    snapshot_experiment,
    snapshot_model,
    table_batches,
)


class InjectedFault(Exception):
    """Raised by the proxy in place of the real call."""


class FailingSink:
    """The real sink behind a proxy that counts calls and fails call number ``fail_at``."""

    def __init__(self, real: MlflowSink, fail_at: int | None = None) -> None:
        self.real = real
        self.fail_at = fail_at
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.real, name)
        if not callable(target) or name.startswith("_"):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self.fail_at is not None and len(self.calls) == self.fail_at:
                raise InjectedFault(f"injected at call {self.fail_at} ({name})")
            return target(*args, **kwargs)

        return call


class Store:
    def __init__(self, root: Path, template: Path) -> None:
        root.mkdir(parents=True)
        shutil.copyfile(template, root / "mlflow.db")
        self.tracking_uri = self.registry_uri = f"sqlite:///{root / 'mlflow.db'}"

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri, self.registry_uri)


def _run_both(store: Any, exp_loc: str, model_loc: str, fail_at: int | None) -> FailingSink:
    ctx = recipient_context(store)
    proxy = FailingSink(ctx.model_sink, fail_at)
    ctx.model_sink = proxy  # type: ignore[misc]
    import_experiment(table_batches(exp_loc), "e", ctx)
    import_model(table_batches(model_loc), "m", ctx)
    return proxy


def _model_view(store: Any) -> dict[str, Any]:
    snap = snapshot_model(store, "m")
    for mv in snap["versions"].values():
        mv.pop("run_id"), mv.pop("source")
    return snap


def test_interrupted_imports_resume(small: Small, mlflow_template: Path, workdir: Path) -> None:
    exp_loc, model_loc = small.export()
    clean = Store(workdir / "clean", mlflow_template)
    total = len(_run_both(clean, exp_loc, model_loc, None).calls)
    expected_exp = snapshot_experiment(clean, "e", imported=True)
    expected_model = _model_view(clean)
    assert total > 20
    points = range(1, total + 1, 3)  # every third sink call
    for n in points:
        store = Store(workdir / f"at-{n}", mlflow_template)
        with pytest.raises(InjectedFault):
            _run_both(store, exp_loc, model_loc, n)
        _run_both(store, exp_loc, model_loc, None)
        assert_same(snapshot_experiment(store, "e", imported=True), expected_exp)
        assert_same(_model_view(store), expected_model)
        client = store.client()
        eid = client.get_experiment_by_name("e").experiment_id
        sources = [r.data.tags["arcuate.source_run_id"] for r in client.search_runs([eid])]
        assert len(sources) == len(set(sources)) == 3, f"duplicates after failing at call {n}"
        lms = client.search_logged_models(experiment_ids=[eid])
        assert len(lms) == 1, f"logged model duplicated after failing at call {n}"


class FailingClient:
    """The sink's real MlflowClient behind a proxy failing its call number ``fail_at``."""

    def __init__(self, real: Any, fail_at: int | None) -> None:
        self.real = real
        self.fail_at = fail_at
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.real, name)
        if not callable(target) or name.startswith("_"):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.fail_at is not None and self.calls == self.fail_at:
                raise InjectedFault(f"injected at MLflow call {self.fail_at} ({name})")
            return target(*args, **kwargs)

        return call


def _overwrite(store: Any, exp_loc: str, model_loc: str, fail_at: int | None) -> int:
    ctx = recipient_context(store)
    proxy = FailingClient(ctx.model_sink.client, fail_at)
    ctx.model_sink._client = proxy
    import_experiment(table_batches(exp_loc), "e", ctx, overwrite=True)
    import_model(table_batches(model_loc), "m", ctx, overwrite=True)
    return proxy.calls


def _active(store: Any) -> set[str]:
    client = store.client()
    eid = client.get_experiment_by_name("e").experiment_id
    return {r.info.run_id for r in client.search_runs([eid])}


def test_interrupted_overwrite_never_leaves_less(
    small: Small, mlflow_template: Path, workdir: Path
) -> None:
    """OVERWRITE interrupted at any MLflow call keeps every old run until the new ones are in
    place; run again, it ends exactly like an uninterrupted OVERWRITE."""
    from mlflow.entities import Metric

    old_exp, old_model = small.export(suffix="_old")
    small.client.delete_run(small.running)
    small.client.log_batch(small.child, metrics=[Metric("loss", 0.2, 1_700_000_000_500, 1)])
    small.client.create_run(small.experiment_id, run_name="new")
    small.client.update_model_version("small-model", "2", description="changed")
    exp_loc, model_loc = small.export()

    def prepared(name: str) -> Store:
        store = Store(workdir / name, mlflow_template)
        _run_both(store, old_exp, old_model, None)
        client = store.client()
        client.create_run(client.get_experiment_by_name("e").experiment_id, run_name="own")
        return store

    clean = prepared("clean")
    total = _overwrite(clean, exp_loc, model_loc, None)
    expected_exp = snapshot_experiment(clean, "e", imported=True)
    expected_model = _model_view(clean)
    assert_same(expected_exp, snapshot_experiment(small.store, "small", imported=False))
    step = max(1, total // 7)
    deleted_phase = 0
    for n in sorted({1, *range(2, total, step), total}):
        store = prepared(f"at-{n}")
        before = _active(store)
        with pytest.raises(InjectedFault):
            _overwrite(store, exp_loc, model_loc, n)
        if not before <= _active(store):
            # an old run is gone: only the last phase deletes, once every shared run is
            # complete and exact
            deleted_phase += 1
            runs = snapshot_experiment(store, "e", imported=True)["runs"]
            assert_same({k: runs.get(k) for k in expected_exp["runs"]}, expected_exp["runs"])
        _overwrite(store, exp_loc, model_loc, None)
        assert_same(snapshot_experiment(store, "e", imported=True), expected_exp)
        assert_same(_model_view(store), expected_model)
    assert deleted_phase >= 1  # a failure inside the deletion phase was exercised
