"""The whole trip: export with INCLUDING DATASETS, SCORERS, serve the table with the embedded
Delta Sharing server, read it with the real ``delta_sharing`` client through a helper process
(pass 1 of a large table), import, compare through MLflow's API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arcuate.engine.imports.experiments import import_experiment
from tests.genai.genai_helpers import build_genai, export_with_genai, genai_snapshot
from tests.imports.import_helpers import provider_context, recipient_context


def test_served_table_imports_through_the_helper_process(
    mlflow_store: Any, recipient_store: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import arcuate.engine.imports.worker as worker
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.reader import DeltaSharingReader
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    client = mlflow_store.client()
    eid = client.create_experiment("agent")
    run = client.create_run(eid)
    client.set_terminated(run.info.run_id)
    build_genai(mlflow_store, eid, records=300)
    _, location = export_with_genai(
        provider_context(mlflow_store, workdir / "wh"), ("s", "agent"), "agent"
    )
    catalog = LocalShareCatalog(workdir / "shares.yaml")
    catalog.add_table("genai", "default", "agent", location)
    _record, token = catalog.create_recipient("ann")
    catalog.grant("genai", "ann")
    handle = serve_in_thread(str(workdir / "shares.yaml"))
    try:
        assert token is not None
        profile = write_profile(workdir / "ann.share", handle.endpoint, token)
        started: list[int] = []
        real = worker.run_worker

        def counting(request: dict[str, Any], tick: Any = None) -> dict[str, Any]:
            started.append(1)
            return real(request, tick)

        monkeypatch.setattr(worker, "WORKER_BYTES", 1)
        monkeypatch.setattr(worker, "run_worker", counting)
        coordinate = f"{profile}#genai.default.agent"
        ctx = recipient_context(recipient_store)
        result = import_experiment(
            DeltaSharingReader().batches(coordinate), "agent", ctx, source=coordinate
        )
        assert started == [1]
        assert result.summary["eval_records_written"] == 300 and result.summary["scorers"] == 3
        assert genai_snapshot(recipient_store, "agent") == genai_snapshot(mlflow_store, "agent")
        again = import_experiment(
            DeltaSharingReader().batches(coordinate), "agent", ctx, source=coordinate
        )
        assert again.summary["eval_records_written"] == 0 and again.summary["scorers_added"] == 0
    finally:
        handle.stop()
