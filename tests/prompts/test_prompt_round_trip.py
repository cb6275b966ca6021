"""Prompts travel: export to a Delta table, import into a fresh sqlite store, compare through
MLflow's public API; re-import writes nothing; a new version and a moved alias arrive alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arcuate.engine.imports.prompts import import_prompt
from tests.imports.import_helpers import provider_context, recipient_context, table_batches
from tests.prompts.prompt_helpers import (
    build_prompt,
    export_prompt_to,
    prompt_snapshot,
    snapshot,
)


def test_prompt_round_trip(mlflow_store: Any, recipient_store: Any, workdir: Path) -> None:
    build_prompt(mlflow_store)
    provider = provider_context(mlflow_store, workdir / "wh")
    location = export_prompt_to(provider, ("s", "d", "qa"), "qa")
    ctx = recipient_context(recipient_store)

    result = import_prompt(table_batches(location), "qa", ctx, source="p#s.d.qa")
    assert result.summary["added"] == 3 and result.summary["versions"] == 3
    want = prompt_snapshot(mlflow_store, "qa")
    assert sorted(want["versions"]) == [1, 2, 4]
    assert prompt_snapshot(recipient_store, "qa") == want
    client = recipient_store.client()
    assert client.get_prompt("qa").tags["arcuate.source"] == "p#s.d.qa"
    # the provider's read wrote nothing (no load_prompt side effect)
    assert "_mlflow_experiment_ids" not in mlflow_store.client().get_prompt("qa").tags

    before = snapshot(recipient_store)
    again = import_prompt(table_batches(location), "qa", ctx, source="p#s.d.qa")
    assert again.summary["added"] == 0 and again.summary["unchanged"] == 3
    assert snapshot(recipient_store) == before

    # an incremental change: a new version, an alias moved
    mlflow_store.client().create_prompt_version("qa", "v5 {{q}}", description="fifth")
    mlflow_store.client().set_prompt_alias("qa", "candidate", 5)
    location = export_prompt_to(provider, ("s", "d", "qa"), "qa")
    third = import_prompt(table_batches(location), "qa", ctx, source="p#s.d.qa")
    assert third.summary["added"] == 1 and third.summary["unchanged"] == 3
    assert prompt_snapshot(recipient_store, "qa") == prompt_snapshot(mlflow_store, "qa")
    assert client.get_prompt_version("qa", 5).aliases == ["candidate"]


def test_prompt_round_trip_into_mlflow_server(
    mlflow_store: Any, mlflow_server: Any, workdir: Path
) -> None:
    """The same over REST (a real ``mlflow server``, shared by the session: a fresh name)."""
    import uuid

    build_prompt(mlflow_store)
    location = export_prompt_to(
        provider_context(mlflow_store, workdir / "wh"), ("s", "d", "qa"), "qa"
    )
    name = f"qa-{uuid.uuid4().hex[:8]}"
    ctx = recipient_context(mlflow_server)
    result = import_prompt(table_batches(location), name, ctx, source="p#s.d.qa")
    assert result.summary["added"] == 3
    assert prompt_snapshot(mlflow_server, name) == prompt_snapshot(mlflow_store, "qa")
    again = import_prompt(table_batches(location), name, ctx, source="p#s.d.qa")
    assert again.summary["unchanged"] == 3 and again.summary["added"] == 0
    # the deleted number 3 stays used over REST too: a new version gets 5
    assert mlflow_server.client().create_prompt_version(name, "next").version == 5
