"""Hostile prompt tables: each refused with a ShareDataError naming the row and field (or a
ConflictError for what the recipient holds), and nothing written to the store."""

from __future__ import annotations

import copy
import json
from typing import Any

import pyarrow as pa
import pytest

from arcuate.engine.imports.prompts import import_prompt
from arcuate.errors import ConflictError, ShareDataError
from arcuate.format.schema import SCHEMA
from tests.imports.import_helpers import T0, recipient_context
from tests.prompts.prompt_helpers import CHAT, MODEL_CONFIG, snapshot


def prompt_row(version: int, **fields: Any) -> dict[str, Any]:
    """A valid ``prompt_version`` row of format 2, built by hand; ``fields`` override."""
    pv: dict[str, Any] = {
        "name": "qa",
        "prompt_description": "answers",
        "prompt_tags": [{"key": "team", "value": "ml"}],
        "version": version,
        "template_type": "text",
        "template": f"v{version} {{{{question}}}}",
        "commit_message": f"commit {version}",
        "tags": [{"key": "author", "value": "ana"}],
        "response_format": None,
        "model_config": None,
        "aliases": [],
        "creation_time": T0,
        "last_updated_time": T0,
        "user_id": None,
    }
    pv.update(fields)
    return {
        "format_version": 2,
        "kind": "prompt_version",
        "key": str(version),
        "exported_at": T0,
        "prompt_version": pv,
        "files": [],
    }


def batches(rows: list[dict[str, Any]]) -> list[pa.RecordBatch]:
    return [pa.RecordBatch.from_pylist(rows, schema=SCHEMA)]


GOOD = [
    prompt_row(1, aliases=["production"]),
    prompt_row(
        2,
        template_type="chat",
        template=json.dumps(CHAT),
        model_config=json.dumps(MODEL_CONFIG),
        response_format=json.dumps({"type": "object"}),
    ),
    prompt_row(4, aliases=["candidate"]),
]


def _with(row: int, **fields: Any) -> list[dict[str, Any]]:
    rows = copy.deepcopy(GOOD)
    rows[row]["prompt_version"].update(fields)
    return rows


HOSTILE = {
    "bad name": (_with(0, name="qa/../x"), 0, "prompt_version.name", "may only contain"),
    "two names": (_with(1, name="other"), 1, "prompt_version.name", "one prompt"),
    "alias twice": (_with(2, aliases=["production"]), 2, "prompt_version.aliases", "also points"),
    "reserved alias": (_with(2, aliases=["latest"]), 2, "prompt_version.aliases[0]", "reserved"),
    "gaps over the bound": (
        [prompt_row(1), prompt_row(5000)],
        1,
        "prompt_version.version",
        "placeholder prompt version",
    ),
    "version over the bound": (_with(2, version=10**9), 2, "prompt_version.version", "between"),
    "reserved version tag": (
        _with(0, tags=[{"key": "mlflow.prompt.text", "value": "x"}]),
        0,
        "prompt_version.tags[0].key",
        "reserved",
    ),
    "reserved prompt tag": (
        _with(0, prompt_tags=[{"key": "_mlflow_experiment_ids", "value": ",1,"}]),
        0,
        "prompt_version.prompt_tags[0].key",
        "reserved",
    ),
    "template too large": (
        _with(0, template="x" * 100_001),
        0,
        "prompt_version.template",
        "at most 100000",
    ),
    "chat not a list": (
        _with(1, template=json.dumps({"role": "user"})),
        1,
        "prompt_version.template",
        "JSON list",
    ),
    "chat message malformed": (
        _with(1, template=json.dumps([{"role": "user", "content": 1}])),
        1,
        "prompt_version.template",
        "string 'role' and 'content'",
    ),
    "chat too deep": (
        _with(1, template="[" * 200 + "]" * 200),
        1,
        "prompt_version.template",
        "deeper than 64",
    ),
    "unknown template type": (
        _with(0, template_type="python"),
        0,
        "prompt_version.template_type",
        "must be one of chat, text, got 'python'",
    ),
    "response format not an object": (
        _with(1, response_format="[1, 2]"),
        1,
        "prompt_version.response_format",
        "JSON object",
    ),
    "model config MLflow refuses": (
        _with(1, model_config=json.dumps({"temperature": "hot"})),
        1,
        "prompt_version.model_config",
        "MLflow refuses",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_prompt_table_is_refused_before_any_write(case: str, recipient_store: Any) -> None:
    rows, row, field, words = HOSTILE[case]
    before = snapshot(recipient_store)
    with pytest.raises(ShareDataError, match=words) as info:
        import_prompt(batches(rows), "qa", recipient_context(recipient_store))
    assert (info.value.row, info.value.field) == (row, field)
    assert snapshot(recipient_store) == before


def test_v1_row_and_scorer_are_refused(recipient_store: Any) -> None:
    rows = copy.deepcopy(GOOD)
    rows[1]["format_version"] = 1
    with pytest.raises(ShareDataError, match="format 2") as info:
        import_prompt(batches(rows), "qa", recipient_context(recipient_store))
    assert (info.value.row, info.value.field) == (1, "format_version")
    rows = copy.deepcopy(GOOD)
    rows[2]["scorer"] = {"name": "s", "serialized": "{}"}
    with pytest.raises(ShareDataError) as info:
        import_prompt(batches(rows), "qa", recipient_context(recipient_store))
    assert (info.value.row, info.value.field) == (2, "scorer")


def test_prompt_under_a_model_name_is_refused(recipient_store: Any) -> None:
    recipient_store.client().create_registered_model("qa")
    before = snapshot(recipient_store)
    with pytest.raises(ConflictError, match="'qa' is a registered model"):
        import_prompt(batches(GOOD), "qa", recipient_context(recipient_store))
    assert snapshot(recipient_store) == before


def test_a_version_here_that_differs_is_refused(recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    import_prompt(batches(GOOD), "qa", ctx)
    before = snapshot(recipient_store)
    changed = _with(1, commit_message="rewritten history")
    for overwrite in (False, True):
        with pytest.raises(ConflictError, match="version 2 here differs"):
            import_prompt(batches(changed), "qa", ctx, overwrite=overwrite)
        assert snapshot(recipient_store) == before


def test_overwrite_makes_tags_aliases_and_versions_the_shared_ones(recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    import_prompt(batches(GOOD), "qa", ctx)
    client = recipient_store.client()
    client.set_prompt_tag("qa", "local", "yes")
    client.set_prompt_alias("qa", "mine", 1)
    fewer = copy.deepcopy(GOOD[:2])
    for r in fewer:
        r["prompt_version"]["prompt_description"] = "new words"
    # without OVERWRITE: local tag and alias stay, version 4 stays
    kept = import_prompt(batches(fewer), "qa", ctx)
    assert kept.summary["removed"] == 0
    assert client.get_prompt("qa").tags["local"] == "yes"
    assert client.get_prompt("qa").description == "new words"
    assert [v.version for v in client.search_prompt_versions("qa")] == [4, 2, 1]
    done = import_prompt(batches(fewer), "qa", ctx, overwrite=True)
    assert done.summary["removed"] == 1
    assert "local" not in client.get_prompt("qa").tags
    assert sorted(v.version for v in client.search_prompt_versions("qa")) == [1, 2]
    assert client.get_prompt_version("qa", 1).aliases == ["production"]  # "mine" removed


def test_a_prompt_table_too_large_is_refused(
    recipient_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arcuate.format import limits

    monkeypatch.setattr(limits, "MAX_PROMPT_TABLE_BYTES", 1000)
    before = snapshot(recipient_store)
    big = [prompt_row(n, template="x" * 400) for n in range(1, 4)]
    with pytest.raises(ShareDataError, match="more than 1000 bytes") as info:
        import_prompt(batches(big), "qa", recipient_context(recipient_store))
    assert info.value.field == "prompt_version"
    assert snapshot(recipient_store) == before
