"""Helpers of the import tests: contexts, exports, shared-row builders, MLflow snapshots.

Snapshots read a store only through MLflow's public client API and key every run by its
*source* run id (the provider's own id, or the ``arcuate.source_run_id`` provenance tag on the
recipient side), so two stores compare equal exactly when the import preserved everything the
API can set. ``arcuate.*`` tags are provenance and are left out of the comparison.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from arcuate.config import resolve_settings
from arcuate.engine.context import Context
from arcuate.format.schema import SCHEMA

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class Share:
    """The provider's tables, shared and readable by a recipient profile."""

    warehouse: Path
    catalog: Path
    profile: Path
    endpoint: str
    experiment_table: str
    model_table: str

    @property
    def experiment(self) -> str:
        return f"{self.profile}#ml.default.experiment"

    @property
    def model(self) -> str:
        return f"{self.profile}#ml.default.model"


def provider_context(store: Any, warehouse: Path, **kw: Any) -> Context:
    return Context(
        resolve_settings(
            tracking_uri=store.tracking_uri,
            registry_uri=store.registry_uri,
            warehouse=str(warehouse),
            chunk_bytes=kw.pop("chunk_bytes", 4096),
            progress=False,
            **kw,
        )
    )


def recipient_context(store: Any, **kw: Any) -> Context:
    """An engine context writing into ``store`` (progress off unless asked), with the
    settings of the environment (``ARCUATE_IMPORT_PATH``, ``ARCUATE_LOCK_WAIT``)."""
    return Context(
        resolve_settings(
            tracking_uri=store.tracking_uri,
            registry_uri=store.registry_uri,
            progress=kw.pop("progress", False),
            **kw,
        )
    )


def export_to(
    ctx: Context, table: tuple[str, ...], *, experiment: str | None = None, model: str | None = None
) -> str:
    """Export with arcuate's exporter into a Delta table; its location."""
    from arcuate.engine.export import export_experiment, export_model
    from arcuate.plan.ops import ExportExperiment, ExportModel

    if experiment is not None:
        stream = export_experiment(ExportExperiment(experiment), ctx)
    else:
        assert model is not None
        stream = export_model(ExportModel(model), ctx)
    return str(ctx.table_store.write(table, stream.batches, content=stream.content).location)


def table_batches(location: str) -> Iterator[pa.RecordBatch]:
    """The record batches of a Delta table read directly (no sharing server)."""
    from deltalake import DeltaTable

    yield from DeltaTable(location).to_pyarrow_table().to_batches(max_chunksize=7)


# -- hand-built shared rows ---------------------------------------------------------------------
def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: str, data: bytes, owner: str = "artifacts") -> dict[str, Any]:
    return {
        "owner": owner,
        "path": path,
        "size": len(data),
        "sha256": sha(data),
        "data": data,
        "chunks": 0,
    }


def run_row(
    run_id: str = "a" * 32,
    *,
    name: str = "run",
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    metrics: list[tuple[str, float, int, int]] | None = None,
    files: list[dict[str, Any]] | None = None,
    status: str = "FINISHED",
    end: dt.datetime | None = T0 + dt.timedelta(minutes=5),
    parent: str | None = None,
    logged_models: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A valid ``run`` row of the format, built by hand."""
    ms = dt.timedelta(milliseconds=1)
    return {
        "format_version": 1,
        "kind": "run",
        "key": run_id,
        "exported_at": T0,
        "experiment": {
            "experiment_id": "1",
            "name": "provider exp",
            "lifecycle_stage": "active",
            "tags": [{"key": "team", "value": "ml"}],
        },
        "run": {
            "run_id": run_id,
            "run_name": name,
            "status": status,
            "start_time": T0,
            "end_time": end,
            "user_id": "ann",
            "lifecycle_stage": "active",
            "parent_run_id": parent,
            "params": [{"key": k, "value": v} for k, v in (params or {"lr": "0.1"}).items()],
            "tags": [{"key": k, "value": v} for k, v in (tags or {"team": "ml"}).items()],
            "metrics": [
                {
                    "key": k,
                    "value": val,
                    "step": step,
                    "timestamp": dt.datetime(1970, 1, 1, tzinfo=UTC) + ts * ms,
                    "model_id": None,
                    "dataset_name": None,
                    "dataset_digest": None,
                }
                for k, val, step, ts in (metrics or [("loss", 0.5, 0, 1_700_000_000_000)])
            ],
            "inputs": [],
            "model_inputs": [],
            "logged_models": logged_models or [],
        },
        "model_version": None,
        "files": files if files is not None else [file_entry("notes/readme.txt", b"hello\n")],
        "chunk": None,
    }


def version_row(
    version: int = 1,
    *,
    run_id: str = "a" * 32,
    files: Any = None,
    aliases: list[str] | None = None,
    stage: str = "None",
) -> dict[str, Any]:
    """A valid ``model_version`` row (source ``runs:/<run>/model``)."""
    row = run_row(run_id, files=[])
    row["kind"] = "model_version"
    row["key"] = str(version)
    row["model_version"] = {
        "name": "provider-model",
        "model_description": "desc",
        "model_tags": [{"key": "owner", "value": "ann"}],
        "version": version,
        "description": f"v{version}",
        "tags": [{"key": "v", "value": str(version)}],
        "aliases": aliases or [],
        "stage": stage,
        "status": "READY",
        "status_message": None,
        "creation_time": T0,
        "last_updated_time": T0,
        "user_id": "ann",
        "source": f"runs:/{run_id}/model",
        "run_id": run_id,
        "run_link": None,
        "model_id": None,
    }
    row["files"] = (
        files
        if files is not None
        else [file_entry("MLmodel", b"flavors:\n  python_function: {}\n", owner="model")]
    )
    return row


def chunk_rows(
    key: str, path: str, data: bytes, size: int, owner: str = "artifacts"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A chunked FILE entry and its chunk rows (``size`` bytes per chunk)."""
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    entry = {
        "owner": owner,
        "path": path,
        "size": len(data),
        "sha256": sha(data),
        "data": None,
        "chunks": len(parts),
    }
    rows = []
    offset = 0
    for index, part in enumerate(parts):
        rows.append(
            {
                "format_version": 1,
                "kind": "chunk",
                "key": key,
                "exported_at": T0,
                "experiment": None,
                "run": None,
                "model_version": None,
                "files": None,
                "chunk": {
                    "owner": owner,
                    "path": path,
                    "index": index,
                    "offset": offset,
                    "data": part,
                },
            }
        )
        offset += len(part)
    return entry, rows


def batches_of(rows: list[dict[str, Any]], size: int = 2) -> list[pa.RecordBatch]:
    """Rows as record batches of the format's schema."""
    table = pa.Table.from_pylist([copy.deepcopy(r) for r in rows], schema=SCHEMA)
    return table.to_batches(max_chunksize=size)


# -- snapshots of an MLflow store -----------------------------------------------------------------
def _pt(key: str, value: float, step: int, ts: int) -> tuple[Any, ...]:
    return (key, "nan" if math.isnan(value) else value, step, ts)


def _files(client: Any, run_id: str) -> dict[str, bytes]:
    if not client.list_artifacts(run_id):  # MLflow takes an empty S3 directory for a file
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, "", tmp)
        return read_tree(local)


def read_tree(root: str | Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    root = Path(root)
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = Path(dirpath) / name
            out[full.relative_to(root).as_posix()] = full.read_bytes()
    return out


def _model_files(store: Any, model: Any) -> dict[str, bytes]:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(model.artifact_location, tracking_uri=store.tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        return read_tree(repo.download_artifacts("", dst_path=tmp))


def _clean_tags(tags: dict[str, str], ids: dict[str, str]) -> dict[str, str]:
    out = {k: v for k, v in tags.items() if not k.startswith("arcuate.")}
    if "mlflow.parentRunId" in out:
        out["mlflow.parentRunId"] = ids.get(out["mlflow.parentRunId"], out["mlflow.parentRunId"])
    return out


def snapshot_experiment(store: Any, name: str, *, imported: bool) -> dict[str, Any]:
    """Everything MLflow's API shows of an experiment's active runs, keyed by source run id.

    ``imported``: the store is a recipient; map its ids back through provenance.
    """
    from mlflow.entities import ViewType

    client = store.client()
    exp = client.get_experiment_by_name(name)
    assert exp is not None, f"no experiment {name!r}"
    runs = client.search_runs(
        [exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000
    )
    models = list(client.search_logged_models(experiment_ids=[exp.experiment_id], max_results=100))
    # ids here -> source ids
    ids = {
        r.info.run_id: (r.data.tags.get("arcuate.source_run_id") if imported else r.info.run_id)
        for r in runs
    }
    mids = {
        m.model_id: ((m.tags or {}).get("arcuate.source_model_id") if imported else m.model_id)
        for m in models
    }
    out: dict[str, Any] = {
        "tags": {k: v for k, v in exp.tags.items() if not k.startswith("arcuate.")},
        "runs": {},
    }
    for r in runs:
        rid = r.info.run_id
        points = sorted(
            (
                _pt(m.key, m.value, m.step, m.timestamp)
                for key in r.data.metrics
                for m in client.get_metric_history(rid, key)
            ),
            key=repr,
        )
        mine = [m for m in models if m.source_run_id == rid]
        logged = {}
        for m in mine:
            tags = {
                k: v
                for k, v in (m.tags or {}).items()
                if not k.startswith("arcuate.") and k != "mlflow.modelVersions"
            }
            logged[mids[m.model_id]] = {
                "name": m.name,
                "model_type": m.model_type or None,  # REST returns "" for none
                "status": str(m.status),
                "tags": tags,
                "params": dict(m.params or {}),
                "metrics": sorted(
                    (
                        (
                            x.key,
                            x.value,
                            x.step,
                            x.timestamp,
                            x.dataset_name,
                            x.dataset_digest,
                            ids.get(x.run_id),
                        )
                        for x in (m.metrics or ())
                    ),
                    key=repr,
                ),
                "files": _model_files(store, m),
            }
        out["runs"][ids[rid]] = {
            "run_name": r.info.run_name,
            "status": r.info.status,
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
            "user_id": r.info.user_id,
            "lifecycle_stage": r.info.lifecycle_stage,
            "params": dict(r.data.params),
            "tags": _clean_tags(dict(r.data.tags), ids),
            "metrics": points,
            "latest": {k: ("nan" if math.isnan(val) else val) for k, val in r.data.metrics.items()},
            "inputs": sorted(
                (
                    d.dataset.name,
                    d.dataset.digest,
                    d.dataset.source_type,
                    d.dataset.source,
                    d.dataset.schema,
                    d.dataset.profile,
                    tuple(sorted((t.key, t.value) for t in d.tags)),
                )
                for d in r.inputs.dataset_inputs
            ),
            "model_inputs": sorted(
                mids.get(m.model_id, m.model_id) for m in (r.inputs.model_inputs or ())
            ),
            "outputs": sorted(
                (mids.get(o.model_id, o.model_id), o.step)
                for o in (r.outputs.model_outputs if r.outputs else ())
            ),
            "logged_models": logged,
            "artifacts": _files(client, rid),
        }
    return out


def snapshot_model(store: Any, name: str) -> dict[str, Any]:
    """A registered model through MLflow's API: description, tags, aliases, each version."""
    client = store.client()
    rm = client.get_registered_model(name)
    quote = '"' if "'" in name else "'"
    versions = client.search_model_versions(f"name = {quote}{name}{quote}")
    return {
        "description": rm.description,
        "tags": {k: v for k, v in rm.tags.items() if not k.startswith("arcuate.")},
        "aliases": {a: int(v) for a, v in rm.aliases.items()},
        "versions": {
            int(mv.version): {
                "description": mv.description,
                "tags": {k: v for k, v in mv.tags.items() if not k.startswith("arcuate.")},
                "stage": mv.current_stage,
                "status": mv.status,
                "aliases": sorted(mv.aliases),
                "run_id": mv.run_id,
                "source": mv.source,
                "run_link": mv.run_link or None,  # REST returns "" for none
            }
            for mv in versions
        },
    }


def store_state(store: Any) -> dict[str, Any]:
    """A coarse picture of a whole store: experiments, runs, registered models, versions."""
    from mlflow.entities import ViewType

    client = store.client()
    exps = client.search_experiments(view_type=ViewType.ALL)
    runs = (
        client.search_runs([e.experiment_id for e in exps], run_view_type=ViewType.ALL)
        if exps
        else []
    )
    models = client.search_registered_models()
    return {
        "experiments": sorted(
            (e.name, e.lifecycle_stage, json.dumps(e.tags, sort_keys=True)) for e in exps
        ),
        "runs": sorted(
            (r.info.run_id, r.info.status, json.dumps(r.data.tags, sort_keys=True)) for r in runs
        ),
        "models": sorted(m.name for m in models),
        "versions": sorted((mv.name, mv.version) for mv in client.search_model_versions()),
    }


def first(items: Iterable[Any]) -> Any:
    return next(iter(items))


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two nested snapshots differ, as readable paths (empty when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=repr):
            where = f"{path}/{key}"
            if key not in a:
                out.append(f"{where}: only in the second")
            elif key not in b:
                out.append(f"{where}: only in the first")
            else:
                out += differences(a[key], b[key], where)
        return out
    if a != b:
        sa, sb = repr(a), repr(b)
        return [f"{path}: {sa[:300]} != {sb[:300]}"]
    return []


def assert_same(target: Any, source: Any) -> None:
    diff = differences(target, source)
    assert not diff, "target differs from source:\n" + "\n".join(diff[:40])


# -- a small provider that tests may change -------------------------------------------------------
@dataclass
class Small:
    """A provider store with a few runs, a logged model and a registered model."""

    store: Any
    root: Path
    experiment_id: str
    parent: str
    child: str
    running: str
    model_id: str

    @property
    def client(self) -> Any:
        return self.store.client()

    def export(self, *, overwrite_filter: str | None = None, suffix: str = "") -> tuple[str, str]:
        """Export experiment ``small`` and model ``small-model``; (experiment, model) locations."""
        from arcuate.engine.export import export_experiment, export_model
        from arcuate.plan.ops import ExportExperiment, ExportModel

        ctx = provider_context(self.store, self.root / "warehouse", chunk_bytes=1024)
        out = []
        for table, stream in (
            (
                ("ml", "small" + suffix),
                export_experiment(ExportExperiment("small", overwrite_filter), ctx),
            ),
            (("ml", "small_model" + suffix), export_model(ExportModel("small-model"), ctx)),
        ):
            out.append(
                str(ctx.table_store.write(table, stream.batches, content=stream.content).location)
            )
        return out[0], out[1]


BASE_TS = 1_700_000_000_000


def build_small(store: Any, root: Path) -> Small:
    """Runs parent (with a logged model and a chunked file), child (nested), running."""
    from mlflow.entities import LoggedModelOutput, Metric, Param, RunTag

    client = store.client()
    eid = client.create_experiment(
        "small", artifact_location=str(root / "mlruns" / "small"), tags={"team": "ml"}
    )
    parent = client.create_run(
        eid, run_name="parent", start_time=BASE_TS, tags={"mlflow.user": "ann"}
    ).info.run_id
    src = root / "src"
    (src / "plots").mkdir(parents=True)
    (src / "plots" / "loss.txt").write_text("0.5 0.4 0.3\n")
    (src / "weights.bin").write_bytes(bytes(range(256)) * 9)  # 2304 bytes: 3 chunks of 1024
    client.log_artifacts(parent, str(src))
    lm = client.create_logged_model(
        eid, name="model", source_run_id=parent, tags={"flavor": "none"}, params={"alpha": "1"}
    )
    mdir = root / "model-src"
    mdir.mkdir()
    (mdir / "MLmodel").write_text("flavors:\n  python_function:\n    python_version: 3.11.7\n")
    (mdir / "requirements.txt").write_text("scikit-learn==1.9.1\n# comment\nnumpy\n")
    client.log_model_artifacts(lm.model_id, str(mdir))
    client.finalize_logged_model(lm.model_id, "READY")
    client.log_outputs(parent, [LoggedModelOutput(lm.model_id, 3)])
    client.log_batch(
        parent,
        metrics=[Metric("loss", 1.0 / (i + 1), BASE_TS + i, i) for i in range(5)]
        + [
            Metric(
                "acc",
                0.9,
                BASE_TS + 9,
                4,
                model_id=lm.model_id,
                dataset_name="d",
                dataset_digest="abc",
            )
        ],
        params=[Param("lr", "0.1")],
        tags=[RunTag("stage", "train")],
    )
    client.set_terminated(parent, "FINISHED", end_time=BASE_TS + 60_000)
    child = client.create_run(
        eid, run_name="child", start_time=BASE_TS + 10, tags={"mlflow.parentRunId": parent}
    ).info.run_id
    client.log_batch(child, metrics=[Metric("loss", 0.25, BASE_TS + 20, 0)])
    client.set_terminated(child, "FINISHED", end_time=BASE_TS + 30_000)
    running = client.create_run(eid, run_name="running", start_time=BASE_TS + 100).info.run_id
    client.log_batch(running, metrics=[Metric("loss", 0.9, BASE_TS + 101, 0)])

    client.create_registered_model("small-model", tags={"owner": "ann"}, description="small")
    client.create_model_version(
        "small-model", f"models:/{lm.model_id}", run_id=parent, description="first", tags={"v": "1"}
    )
    client.create_model_version(
        "small-model", f"runs:/{parent}/model", run_id=parent, description="second"
    )
    client.set_registered_model_alias("small-model", "champion", "1")
    return Small(store, root, eid, parent, child, running, lm.model_id)


# -- a whole store, byte for byte ------------------------------------------------------------------
def _proto(entity: Any) -> Any:
    """An MLflow entity as plain data (every field its protobuf carries), lists sorted."""
    from google.protobuf.json_format import MessageToDict

    return _sorted(MessageToDict(entity.to_proto(), preserving_proto_field_name=True))


def _sorted(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _sorted(v) for k, v in node.items()}
    if isinstance(node, list):
        return sorted((_sorted(x) for x in node), key=lambda x: json.dumps(x, sort_keys=True))
    return node


def _paged(call: Any, **kw: Any) -> list[Any]:
    out: list[Any] = []
    token = None
    while True:
        page = call(max_results=1000, page_token=token, **kw)
        out += list(page)
        token = page.token
        if not token:
            return out


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root``: relative path -> SHA-256 (empty directories too)."""
    out: dict[str, str] = {}
    for dirpath, dirs, names in os.walk(root):
        base = Path(dirpath)
        if not dirs and not names:
            out[base.relative_to(root).as_posix() + "/"] = "directory"
        for name in names:
            full = base / name
            out[full.relative_to(root).as_posix()] = sha(full.read_bytes())
    return out


def whole_store(store: Any, *roots: Path) -> dict[str, Any]:
    """Everything a store holds, read through MLflow's API, plus the files under ``roots``.

    Experiments and runs deleted ones included; each run with its params, tags, latest
    metrics, full metric histories, dataset and model inputs and outputs; logged models;
    registered models with tags and aliases; every visible version; prompts with their
    versions and aliases; registered scorers and evaluation datasets; traces (info, spans,
    assessments). Files: path -> SHA-256 under each root (the store's directory holds the sqlite database and its artifacts), so
    two snapshots are equal only when nothing was written at all.
    """
    from mlflow.entities import ViewType

    client = store.client()
    exps = _paged(client.search_experiments, view_type=ViewType.ALL)
    ids = [e.experiment_id for e in exps]
    runs = _paged(client.search_runs, experiment_ids=ids, run_view_type=ViewType.ALL) if ids else []
    histories = {
        r.info.run_id: {
            key: sorted(
                (_proto(m) for m in client.get_metric_history(r.info.run_id, key)),
                key=lambda x: json.dumps(x, sort_keys=True),
            )
            for key in r.data.metrics
        }
        for r in runs
    }
    models = _paged(client.search_logged_models, experiment_ids=ids) if ids else []
    registered = _paged(client.search_registered_models)
    versions = [
        mv
        for rm in registered
        for mv in client.search_model_versions(f"name = '{rm.name}'")
        if mv.name == rm.name
    ]
    return {
        "experiments": {e.experiment_id: _proto(e) for e in exps},
        "runs": {r.info.run_id: _proto(r) for r in runs},
        "histories": histories,
        "logged_models": {m.model_id: _proto(m) for m in models},
        "registered_models": {rm.name: _proto(rm) for rm in registered},
        "versions": {f"{mv.name}/{mv.version}": _proto(mv) for mv in versions},
        "prompts": _prompts(client),
        "genai": _genai(client, ids),
        "traces": _traces(store.tracking_uri, ids),
        "files": {str(root): _tree(root) for root in roots if root.exists()},
    }


def _traces(tracking_uri: str, experiment_ids: list[str]) -> dict[str, Any]:
    """Every trace of the experiments, whole (``Trace.to_dict()``), incomplete ones too."""
    from mlflow.tracing.client import TracingClient

    client, out = TracingClient(tracking_uri), {}
    for eid in experiment_ids:
        token = None
        while True:
            page = client.search_traces(locations=[eid], max_results=100, page_token=token,
                                        include_spans=False)  # fmt: skip
            ids = [t.info.trace_id for t in page]
            out.update({t.info.trace_id: t.to_dict() for t in page})
            if ids:
                out.update({t.info.trace_id: t.to_dict() for t in client.batch_get_traces(ids)})
            if not (token := page.token):
                break
    return out


def _genai(client: Any, experiment_ids: list[str]) -> dict[str, Any]:
    """Every registered scorer version and evaluation dataset (with its records and times) of
    the experiments, read at the store level (MLflow's helpers use the global tracking URI)."""
    store = client._tracking_client.store
    scorers = {
        f"{eid}/{sv.scorer_name}/{sv.scorer_version}": sv._serialized_scorer
        for eid in experiment_ids
        for latest in store.list_scorers(eid)
        for sv in store.list_scorer_versions(eid, latest.scorer_name)
    }
    datasets: dict[str, Any] = {}
    if experiment_ids:
        for ds in _paged(client.search_datasets, experiment_ids=experiment_ids):
            records, token = [], None
            while True:
                page, token = store._load_dataset_records(
                    ds.dataset_id, max_results=1000, page_token=token
                )
                records += [r.to_dict() for r in page]
                if not token:
                    break
            datasets[ds.dataset_id] = {
                "name": ds.name,
                "tags": ds.tags,
                "last_update_time": ds.last_update_time,
                "records": sorted(records, key=lambda r: r["dataset_record_id"]),
            }
    return {"scorers": scorers, "datasets": datasets}


def _prompts(client: Any) -> dict[str, Any]:
    """Every prompt (MLflow hides them from the model API) with every live version, read
    with ``get_prompt_version`` (the only read that gives aliases)."""
    out: dict[str, Any] = {}
    for p in _paged(client.search_prompts):
        numbers = [v.version for v in _paged(client.search_prompt_versions, name=p.name)]
        versions = [client.get_prompt_version(p.name, n) for n in sorted(numbers)]
        out[p.name] = {
            "description": p.description,
            "tags": dict(p.tags),
            "versions": {
                v.version: {
                    "template": v.template,
                    "commit_message": v.commit_message,
                    "tags": dict(v.tags),
                    "response_format": v.response_format,
                    "model_config": v.model_config,
                    "aliases": sorted(v.aliases),
                }
                for v in versions
            },
        }
    return out


def modules_left_by(
    statement: str, cwd: Path, modules: tuple[str, ...], **settings: str
) -> list[str]:
    """The ``modules`` left loaded by running ``statement`` in a fresh interpreter (which
    must succeed)."""
    code = (
        "import json, sys, arcuate\n"
        f"arcuate.execute({statement!r}, progress=False, **{settings!r})\n"
        f"print(json.dumps([m for m in {modules!r} if m in sys.modules]))\n"
    )
    loaded: list[str] = json.loads(_fresh_python(code, cwd).stdout.strip().splitlines()[-1])
    return loaded


def _fresh_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter in ``cwd`` on this checkout, without the global
    MLflow URIs; it must exit 0."""
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


#: What a tiny ``arcuate run`` of an experiment export or import has no use for: pandas
#: (pyarrow imports it on its first Python-to-Arrow conversion unless the command defers it,
#: :mod:`arcuate.frontends.lazy`), MLflow, the official sharing client and cryptography (only
#: a signature check needs it).
NOT_FOR_TINY = ("pandas", "mlflow", "delta_sharing", "cryptography", "pyspark")


def command_modules_left_by(
    statement: str, cwd: Path, modules: tuple[str, ...], **settings: str
) -> list[str]:
    """The ``modules`` left loaded by ``arcuate run --format json`` of ``statement`` in a fresh
    interpreter (the console script's entry point, called as the script calls it), which must
    succeed. ``settings`` become the command's options (``tracking_uri`` -> ``--tracking-uri``).
    """
    cwd.mkdir(parents=True, exist_ok=True)
    script = cwd / "step.arcsql"
    script.write_text(statement + "\n", encoding="utf-8")
    args = ["run", "--format", "json", str(script)]
    for key, value in settings.items():
        args += [f"--{key.replace('_', '-')}", value]
    code = (
        "import json, sys\n"
        "from arcuate.frontends.cli import main\n"
        "status = 0\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exc:\n"
        "    status = exc.code or 0\n"
        "sys.stdout.flush()\n"
        f"print(json.dumps([status, [m for m in {modules!r} if m in sys.modules]]))\n"
    )
    proc = _fresh_python(code, cwd)
    status, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return list(loaded)
