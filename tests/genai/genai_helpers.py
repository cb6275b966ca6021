"""The dataset and scorer part of the issue 14 torture fixture, and helpers to compare it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BOOLEAN = {"type": "boolean"}


def store_of(store: Any) -> Any:
    """The client's own tracking store (MLflow's GenAI helpers use the global URI)."""
    return store.client()._tracking_client.store


def builtin_json(name: str = "polite", guidelines: tuple[str, ...] = ("Be polite.",)) -> str:
    """A built-in ``Guidelines`` scorer as MLflow serializes it."""
    from mlflow.genai.scorers import Guidelines

    return json.dumps(Guidelines(name=name, guidelines=list(guidelines)).model_dump())


def judge_json(name: str = "tone") -> str:
    """An instruction judge (``make_judge``) as MLflow serializes it."""
    from mlflow.genai.judges import make_judge

    judge = make_judge(
        name=name,
        instructions="Is the tone of {{ outputs }} friendly? ✓",
        model="openai:/gpt-4o-mini",
        feedback_value_type=bool,
    )
    return json.dumps(judge.model_dump())


def code_json(canary: Path, name: str = "length_ok") -> str:
    """A ``@scorer`` whose signature default writes ``canary`` when MLflow rebuilds it."""
    from mlflow.genai.scorers import scorer

    @scorer
    def length_ok(outputs: Any) -> bool:
        return len(str(outputs)) < 100

    payload = length_ok.model_dump()
    payload["name"] = name
    payload["call_signature"] = f"(outputs, _c=open({str(canary)!r}, 'w').write('ran'))"
    return json.dumps(payload)


def record(i: int) -> dict[str, Any]:
    """Record ``i`` of the evaluation dataset: unique inputs, expectations, a source."""
    return {
        "inputs": {"question": f"What is {i} + {i}? ünï", "context": {"n": i}},
        "outputs": {"answer": str(2 * i)},
        "expectations": {"expected_response": str(2 * i), "score": i % 5},
        "tags": {"split": "test" if i % 3 else "train", "mlflow.user": "ana"},
        "source": {"source_type": "HUMAN", "source_data": {"annotator": "ana"}},
    }


def build_genai(store: Any, experiment_id: str, *, records: int = 10_000) -> str:
    """A dataset of ``records`` records linked to the experiment, a built-in scorer (two
    versions) and an instruction judge registered in it; the dataset's id."""
    client = store.client()
    ds = client.create_dataset(
        name="qa-gold", experiment_id=[experiment_id], tags={"team": "search", "mlflow.user": "ana"}
    )
    st = store_of(store)
    rows = [record(i) for i in range(records)]
    for start in range(0, len(rows), 1000):
        st.upsert_dataset_records(ds.dataset_id, rows[start : start + 1000])
    st.register_scorer(experiment_id, "polite", builtin_json())
    st.register_scorer(
        experiment_id, "polite", builtin_json(guidelines=("Be polite.", "No jargon."))
    )
    st.register_scorer(experiment_id, "tone", judge_json())
    return str(ds.dataset_id)


def genai_snapshot(store: Any, experiment_name: str) -> dict[str, Any]:
    """What MLflow's public API shows of the experiment's scorers and datasets: every field
    a recipient can set (ids, times and arcuate's provenance tags left out)."""
    client = store.client()
    eid = client.get_experiment_by_name(experiment_name).experiment_id
    st = store_of(store)
    scorers = {
        (sv.scorer_name, sv.scorer_version): json.loads(sv._serialized_scorer)
        for latest in st.list_scorers(eid)
        for sv in st.list_scorer_versions(eid, latest.scorer_name)
    }
    datasets = {}
    for ds in client.search_datasets(experiment_ids=[eid]):
        records, token = [], None
        while True:
            page, token = st._load_dataset_records(
                ds.dataset_id, max_results=1000, page_token=token
            )
            records += [r.to_dict() for r in page]
            if not token:
                break
        keep = ("inputs", "outputs", "expectations", "tags", "source", "source_type", "source_id",
                "created_by", "last_updated_by")  # fmt: skip
        full = client.get_dataset(ds.dataset_id)
        datasets[ds.name] = {
            "tags": {k: v for k, v in ds.tags.items() if not k.startswith("arcuate.")},
            "schema": full.schema,
            "profile": full.profile,
            "created_by": full.created_by,
            "experiments": len(st.get_dataset_experiment_ids(ds.dataset_id)),
            "records": sorted(
                ({k: r.get(k) for k in keep} for r in records),
                key=lambda r: json.dumps(r["inputs"], sort_keys=True),
            ),
        }
    return {"scorers": scorers, "datasets": datasets}


def export_with_genai(ctx: Any, table: tuple[str, ...], experiment: str, **kw: Any) -> Any:
    """``CREATE SHARE … FROM EXPERIMENT e INCLUDING DATASETS, SCORERS`` through arcuate's
    exporter (``kw`` overrides ``datasets``/``scorers``); the stream, once written, and the
    table's location."""
    from arcuate.engine.export import export_experiment
    from arcuate.plan.ops import ExportExperiment

    op = ExportExperiment(
        experiment, datasets=kw.get("datasets", True), scorers=kw.get("scorers", True)
    )
    stream = export_experiment(op, ctx)
    written = ctx.table_store.write(table, stream.batches, content=stream.content)
    return stream, str(written.location)
