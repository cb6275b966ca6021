"""Prompts through the dialect: CREATE SHARE ... FROM PROMPT on the provider, the embedded
sharing server over HTTP, CREATE PROMPT ... AS '<coordinate>' on the recipient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import arcuate
from tests.prompts.prompt_helpers import build_prompt, prompt_snapshot, snapshot


@pytest.fixture
def served(mlflow_store: Any, workdir: Path) -> Iterator[str]:
    """Prompt ``qa`` exported with CREATE SHARE, granted to ``ann`` and served: the
    coordinate of its table."""
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    build_prompt(mlflow_store)
    warehouse = workdir / "wh"
    (result,) = arcuate.execute(
        "CREATE SHARE genai WITH TABLE qa_prompt FROM PROMPT qa",
        tracking_uri=mlflow_store.tracking_uri,
        registry_uri=mlflow_store.registry_uri,
        warehouse=str(warehouse),
        progress=False,
    )
    assert result.summary["versions"] == 3
    catalog = LocalShareCatalog(warehouse / "shares.yaml")
    _record, token = catalog.create_recipient("ann")
    catalog.grant("genai", "ann")
    handle = serve_in_thread(str(warehouse / "shares.yaml"))
    try:
        assert token is not None
        profile = write_profile(workdir / "ann.share", handle.endpoint, token)
        yield f"{profile}#genai.default.qa_prompt"
    finally:
        handle.stop()


def test_create_prompt_from_a_share(served: str, mlflow_store: Any, recipient_store: Any) -> None:
    uris = {"tracking_uri": recipient_store.tracking_uri, "progress": False}
    (result,) = arcuate.execute(f"CREATE PROMPT qa AS PANDAS '{served}'", **uris)
    assert result.summary["added"] == 3
    assert prompt_snapshot(recipient_store, "qa") == prompt_snapshot(mlflow_store, "qa")
    before = snapshot(recipient_store)
    (again,) = arcuate.execute(f"CREATE PROMPT qa AS '{served}'", **uris)
    assert again.summary["unchanged"] == 3 and again.summary["added"] == 0
    assert snapshot(recipient_store) == before
    # EXPLAIN touches nothing
    (plan,) = arcuate.execute(f"EXPLAIN CREATE PROMPT OVERWRITE qa AS '{served}'", **uris)
    assert "ImportPrompt" in plan.text
    assert snapshot(recipient_store) == before


def test_prompt_table_is_not_a_model_table(served: str, recipient_store: Any) -> None:
    from arcuate.errors import ShareDataError

    before = snapshot(recipient_store)
    with pytest.raises(ShareDataError, match=r"marked as a prompt table .* CREATE PROMPT"):
        arcuate.execute(
            f"CREATE MODEL qa AS '{served}'",
            tracking_uri=recipient_store.tracking_uri,
            progress=False,
        )
    assert snapshot(recipient_store) == before


def test_describe_a_prompt_table(served: str, recipient_store: Any) -> None:
    before = snapshot(recipient_store)
    (result,) = arcuate.execute(
        f"DESCRIBE '{served}'", tracking_uri=recipient_store.tracking_uri, progress=False
    )
    assert result.summary["kind"] == "prompt" and result.summary["versions"] == 3
    assert result.summary["valid"] is True
    rows = {r["version"]: r for r in result.rows}
    assert sorted(rows) == [1, 2, 4]
    assert rows[2]["template_type"] == "chat" and rows[2]["aliases"] == "production"
    assert rows[2]["model_config"] is True and rows[4]["aliases"] == "candidate"
    assert snapshot(recipient_store) == before
