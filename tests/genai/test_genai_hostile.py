"""Hostile scorer and eval-record rows in an experiment table: each refused with a
ShareDataError naming the row and field before anything is written (the whole store, its
files included, is unchanged), and a code-carrying scorer never runs on either side."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from arcuate.engine.imports.experiments import import_experiment
from arcuate.engine.imports.models import import_model
from arcuate.errors import ShareDataError
from arcuate.format import limits
from tests.genai.genai_helpers import (
    builtin_json,
    code_json,
    export_with_genai,
    judge_json,
    record,
    store_of,
)
from tests.imports.import_helpers import (
    T0,
    batches_of,
    provider_context,
    recipient_context,
    run_row,
    table_batches,
)
from tests.prompts.prompt_helpers import snapshot


def scorer_row(name: str, version: int, serialized: str, kind: str = "builtin") -> dict[str, Any]:
    """A ``scorer`` row of format 2, built by hand."""
    return {
        "format_version": 2,
        "kind": "scorer",
        "key": f"{name}/{version}",
        "exported_at": T0,
        "scorer": {
            "experiment_key": "1",
            "name": name,
            "version": version,
            "kind": kind,
            "serialized": serialized,
        },
        "files": [],
    }


def eval_row(i: int, dataset: str = "d-1", **fields: Any) -> dict[str, Any]:
    """An ``eval_record`` row of format 2 (record ``i``), built by hand; ``fields`` override."""
    r = record(i)
    e: dict[str, Any] = {
        "dataset_id": dataset,
        "dataset_name": "qa-gold",
        "dataset_tags": [{"key": "team", "value": "search"}],
        "record_id": f"dr-{i}",
        **{k: json.dumps(v) for k, v in r.items()},
    }
    e.update(fields)
    return {
        "format_version": 2,
        "kind": "eval_record",
        "key": f"{dataset}/dr-{i}",
        "exported_at": T0,
        "eval_record": e,
        "files": [],
    }


def good() -> list[dict[str, Any]]:
    run = run_row()
    run["format_version"] = 2
    return [
        run,
        scorer_row("polite", 1, builtin_json()),
        scorer_row("tone", 1, judge_json(), kind="instructions"),
        eval_row(0),
        eval_row(1),
        eval_row(2),
    ]


def _with(index: int, column: str, **fields: Any) -> list[dict[str, Any]]:
    rows = good()
    rows[index][column].update(fields)
    return rows


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _nested_code() -> str:
    doc = json.loads(builtin_json())
    doc["builtin_scorer_pydantic_data"]["extra"] = {"call_source": "import os"}
    return json.dumps(doc)


def _other_class() -> str:
    doc = json.loads(builtin_json())
    doc["builtin_scorer_class"] = "os.system"
    return json.dumps(doc)


def _memory_judge() -> str:
    doc = json.loads(judge_json())
    doc["memory_augmented_judge_data"] = {"base_judge": {}}
    return json.dumps(doc)


def _too_deep_scorer() -> str:
    doc = json.loads(builtin_json())
    doc["builtin_scorer_pydantic_data"]["x"] = json.loads(_deep(limits.MAX_SCORER_JSON_DEPTH))
    return json.dumps(doc)


HOSTILE: dict[str, tuple[list[dict[str, Any]], int, str, str]] = {
    "duplicate inputs": (
        _with(5, "eval_record", inputs=json.dumps(record(0)["inputs"])),
        5, "eval_record.inputs", "row 3",
    ),
    "inputs not an object": (
        _with(4, "eval_record", inputs="[1]"), 4, "eval_record.inputs", "JSON object",
    ),
    "expectations too deep": (
        _with(3, "eval_record", expectations='{"a":' + _deep(70) + "}"),
        3, "eval_record.expectations", "nested deeper",
    ),
    "record too large": (
        _with(4, "eval_record", outputs=json.dumps("x" * (limits.MAX_EVAL_RECORD_BYTES + 1))),
        4, "eval_record.inputs", "at most",
    ),
    "bad source type": (
        _with(3, "eval_record", source=json.dumps({"source_type": "PICKLE"})),
        3, "eval_record.source.source_type", "PICKLE",
    ),
    "two names for one dataset": (
        _with(4, "eval_record", dataset_name="other"), 4, "eval_record.dataset_name", "row 3",
    ),
    "code-carrying scorer": (
        [*good(), scorer_row("length_ok", 1, code_json(Path("/nonexistent/canary")))],
        6, "scorer.serialized", "carries code",
    ),
    "code nested in a built-in": (
        _with(1, "scorer", serialized=_nested_code()), 1, "scorer.serialized", "call_source",
    ),
    "memory-augmented judge": (
        _with(2, "scorer", serialized=_memory_judge()), 2, "scorer.serialized", "memory_augmented",
    ),
    "class not allow-listed": (
        _with(1, "scorer", serialized=_other_class()), 1, "scorer.serialized", "os.system",
    ),
    "scorer JSON too deep": (
        _with(1, "scorer", serialized=_too_deep_scorer()), 1, "scorer.serialized", "deeper",
    ),
    "kind mismatch": (_with(2, "scorer", kind="builtin"), 2, "scorer.kind", "instructions"),
    "version twice": (
        [*good(), scorer_row("polite", 1, builtin_json())], 6, "scorer.version", "row 1",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_genai_rows_refused_before_any_write(
    case: str, recipient_store: Any, workdir: Path
) -> None:
    rows, row, field, words = HOSTILE[case]
    ctx = recipient_context(recipient_store)
    import_experiment(batches_of(good()), "agent", ctx, source="p#s.d.t")  # something to keep
    before = snapshot(recipient_store)
    with pytest.raises(ShareDataError) as info:
        import_experiment(batches_of(copy.deepcopy(rows)), "agent", ctx, source="p#s.d.t")
    assert (info.value.row, info.value.field) == (row, field), str(info.value)
    assert words in str(info.value)
    assert snapshot(recipient_store) == before


def test_record_count_over_the_bound(
    recipient_store: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_EVAL_RECORDS", 2)
    before = snapshot(recipient_store)
    with pytest.raises(ShareDataError) as info:
        import_experiment(batches_of(good()), "agent", recipient_context(recipient_store))
    assert (info.value.row, info.value.field) == (5, "eval_record.dataset_id")
    assert "at most 2" in str(info.value)
    assert snapshot(recipient_store) == before


def test_genai_rows_in_a_model_table_refused(recipient_store: Any, workdir: Path) -> None:
    before = snapshot(recipient_store)
    with pytest.raises(ShareDataError) as info:
        import_model(batches_of([eval_row(0)]), "m", recipient_context(recipient_store))
    assert (info.value.row, info.value.field) == (0, "kind")
    assert snapshot(recipient_store) == before


def _no_deserializing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way MLflow turns a serialized scorer into code fails the test if reached."""
    import pickle

    import cloudpickle
    from mlflow.genai.scorers import base, scorer_utils

    def boom(*_: Any, **__: Any) -> Any:
        raise AssertionError("a scorer was deserialized")

    monkeypatch.setattr(base.Scorer, "model_validate", classmethod(boom))
    monkeypatch.setattr(scorer_utils, "recreate_function", boom)
    monkeypatch.setattr(cloudpickle, "loads", boom)
    monkeypatch.setattr(pickle, "loads", boom)


def test_code_carrying_scorer_never_runs(
    mlflow_store: Any, recipient_store: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The canary: a @scorer whose signature default writes a file when MLflow rebuilds it
    (MLflow's own list_scorers does, research notes §4). The provider leaves it out of the
    export (a summary line says so); a table carrying it is refused by the recipient."""
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS", "true")
    _no_deserializing(monkeypatch)
    canary = workdir / "CANARY"
    eid = mlflow_store.client().create_experiment("agent")
    store_of(mlflow_store).register_scorer(eid, "length_ok", code_json(canary))
    store_of(mlflow_store).register_scorer(eid, "polite", builtin_json())

    provider = provider_context(mlflow_store, workdir / "wh")
    stream, location = export_with_genai(provider, ("s", "d", "t"), "agent")
    assert stream.scorers == 1 and len(stream.skipped) == 1
    assert "'length_ok' version 1" in stream.skipped[0] and "carries code" in stream.skipped[0]
    rows = [r for b in table_batches(location) for r in b.to_pylist()]
    assert [r["key"] for r in rows if r["kind"] == "scorer"] == ["polite/1"]
    assert not canary.exists()

    hostile = [scorer_row("length_ok", 1, code_json(canary)), *good()]
    before = snapshot(recipient_store)
    with pytest.raises(ShareDataError) as info:
        import_experiment(batches_of(hostile), "agent", recipient_context(recipient_store))
    assert (info.value.row, info.value.field) == (0, "scorer.serialized")
    assert snapshot(recipient_store) == before
    assert not canary.exists()


def test_the_canary_is_live(mlflow_store: Any, workdir: Path) -> None:
    """The control: MLflow's own scorer read rebuilds the @scorer and the canary appears, so
    its absence above means arcuate never rebuilt it. (In a process of its own: MLflow's
    helper reads the global tracking URI, which this suite must not change.)"""
    import subprocess
    import sys

    canary = workdir / "CANARY"
    eid = mlflow_store.client().create_experiment("agent")
    store_of(mlflow_store).register_scorer(eid, "length_ok", code_json(canary))
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_store.tracking_uri,
        "MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS": "true",
    }
    code = "import sys; from mlflow.genai.scorers import list_scorers; list_scorers(experiment_id=sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, eid], env=env, check=True, capture_output=True)
    assert canary.read_text() == "ran"
