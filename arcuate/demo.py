"""``arcuate demo``: the whole exchange on one machine, provider to recipient, in seconds.

1. A provider MLflow store (sqlite) gets a small real scikit-learn experiment: a few runs
   with per-epoch metric histories, a dataset input, artifacts and logged models, and a
   registered model with two versions and an alias.
2. The experiment and the model are exported to Delta tables and added to a share.
3. arcuate's Delta Sharing server serves the share on a free loopback port; a recipient is
   created, granted the share and given a profile file.
4. The recipient reads both tables over the Delta Sharing protocol (arcuate's own client)
   and imports them into a separate MLflow store.
5. A side-by-side summary compares provider and recipient through MLflow's API, including
   the predictions of the imported model.

Everything lives in one directory (a new temporary one unless given) that is kept, so the
stores, tables and profile can be inspected afterwards.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from arcuate.backends.mlflow.connect import spark_guard
from arcuate.errors import ArcuateError

if TYPE_CHECKING:
    from rich.console import Console

EXPERIMENT: Final = "arcuate-demo"
MODEL: Final = "arcuate-demo-classifier"
SHARE: Final = "demo"
SCHEMA: Final = "ml"
RECIPIENT: Final = "demo-recipient"
EPOCHS: Final = 8


def _sqlite(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """No MLflow progress bars or INFO lines while the demo prints its own story."""
    import logging

    loggers = [logging.getLogger(n) for n in ("mlflow", "mlflow.store.db.utils", "alembic")]
    levels = [lg.level for lg in loggers]
    bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = bar


def _train(uri: str, root: Path) -> dict[str, Any]:
    """The provider's experiment and registered model, built with MLflow's own APIs."""
    import warnings

    import mlflow
    import numpy as np
    import sklearn
    from mlflow.data.numpy_dataset import from_numpy
    from mlflow.models import infer_signature
    from sklearn.datasets import make_classification
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import train_test_split

    from arcuate.backends.mlflow.connect import global_uris, make_client

    client = make_client(uri, uri)
    x, y = make_classification(n_samples=400, n_features=6, n_informative=4, random_state=7)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=7)
    eid = client.create_experiment(
        EXPERIMENT,
        artifact_location=str(root / "provider" / "mlruns" / "demo"),
        tags={"team": "demo", "mlflow.note.content": "Churn-like toy problem, SGD logistic model"},
    )
    runs: list[dict[str, Any]] = []
    requirements = [f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}"]
    with global_uris(uri, uri), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.set_experiment(experiment_id=eid)
        dataset = from_numpy(x_train, targets=y_train, name="toy-train")
        for alpha in (0.01, 0.001, 0.0001):
            with mlflow.start_run(run_name=f"sgd alpha={alpha}") as run:
                model = SGDClassifier(loss="log_loss", alpha=alpha, random_state=0)
                mlflow.log_params({"alpha": alpha, "loss": "log_loss", "epochs": EPOCHS})
                mlflow.log_input(dataset, context="training")
                for epoch in range(EPOCHS):
                    model.partial_fit(x_train, y_train, classes=np.array([0, 1]))
                    mlflow.log_metrics(
                        {
                            "train_loss": log_loss(y_train, model.predict_proba(x_train)),
                            "test_accuracy": accuracy_score(y_test, model.predict(x_test)),
                        },
                        step=epoch,
                    )
                mlflow.log_text(
                    json.dumps({"coef": model.coef_.round(4).tolist()}, indent=2),
                    "reports/coefficients.json",
                )
                mlflow.log_dict({"alpha": alpha, "rows": len(x_train)}, "reports/config.json")
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(x_test, model.predict(x_test)),
                    # spelled out: inferring them runs the model in a subprocess (seconds)
                    pip_requirements=requirements,
                )
                accuracy = accuracy_score(y_test, model.predict(x_test))
                mlflow.log_metric("accuracy", accuracy, model_id=info.model_id, dataset=dataset)
                mlflow.set_tag("stage", "experiment")
                runs.append(
                    {"run_id": run.info.run_id, "model_id": info.model_id, "accuracy": accuracy}
                )
        mlflow.set_experiment(experiment_id="0")
    best = sorted(runs, key=lambda r: r["accuracy"])[-2:]
    client.create_registered_model(MODEL, tags={"owner": "demo"}, description="SGD classifier")
    with global_uris(uri, uri):
        for r in best:
            client.create_model_version(
                MODEL,
                f"models:/{r['model_id']}",
                run_id=r["run_id"],
                description=f"accuracy {r['accuracy']:.3f}",
                model_id=r["model_id"],
            )
    client.set_registered_model_alias(MODEL, "champion", "2")
    return {"experiment_id": eid, "runs": runs, "sample": x_test[:5]}


def _experiment_view(uri: str, imported: bool) -> dict[str, Any]:
    """What MLflow's API shows of each run of the demo experiment, keyed by source run id."""
    from arcuate.backends.mlflow.connect import make_client

    client = make_client(uri, uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    out: dict[str, Any] = {}
    if exp is None:
        return out
    for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]):
        key = run.data.tags.get("arcuate.source_run_id") if imported else run.info.run_id
        history = sorted(
            (m.key, m.step, m.timestamp, m.value)
            for k in run.data.metrics
            for m in client.get_metric_history(run.info.run_id, k)
        )
        out[str(key)] = (
            run.info.run_name,
            {
                "status": run.info.status,
                "start": run.info.start_time,
                "seconds": round(((run.info.end_time or 0) - run.info.start_time) / 1000, 1),
                "params": dict(run.data.params),
                "metric points": history,
                "files": _files(client, run.info.run_id),
                "datasets": len(run.inputs.dataset_inputs if run.inputs else ()),
                "models": len(run.outputs.model_outputs if run.outputs else ()),
            },
        )
    return out


def _files(client: Any, run_id: str, path: str | None = None) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for info in client.list_artifacts(run_id, path):
        out += _files(client, run_id, info.path) if info.is_dir else [(info.path, info.file_size)]
    return sorted(out)


def _model_view(uri: str, sample: Any) -> dict[str, Any]:
    """Each version (description, stage, aliases) and what it predicts on ``sample``."""
    import mlflow

    from arcuate.backends.mlflow.connect import global_uris, make_client

    client = make_client(uri, uri)
    rm = client.get_registered_model(MODEL)
    out: dict[str, Any] = {}
    with global_uris(uri, uri):
        versions = client.search_model_versions(f"name = '{MODEL}'")
        for mv in sorted(versions, key=lambda mv: int(mv.version)):
            model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{mv.version}")
            aliases = sorted(a for a, v in rm.aliases.items() if str(v) == str(mv.version))
            out[f"v{mv.version}"] = (
                f"{MODEL} v{mv.version}",
                {
                    "description": mv.description,
                    "stage": mv.current_stage,
                    "aliases": aliases,
                    "predictions": [int(p) for p in model.predict(sample)],
                },
            )
    return out


def _brief(facts: dict[str, Any]) -> str:
    """One cell: the facts that tell two runs or versions apart at a glance."""
    if "predictions" in facts:
        alias = f" @{','.join(facts['aliases'])}" if facts["aliases"] else ""
        return f"{facts['description']}{alias}, predicts {facts['predictions']}"
    return (
        f"{facts['status']}, {facts['seconds']} s, {len(facts['params'])} params, "
        f"{len(facts['metric points'])} points, {len(facts['files'])} files, "
        f"{facts['models']} model"
    )


def _side_by_side(console: Console, provider: dict[str, Any], recipient: dict[str, Any]) -> bool:
    """Print provider and recipient next to each other; True when every item is equal."""
    from rich.table import Table

    table = Table(title="provider vs recipient, read back through MLflow's API")
    table.add_column("run / model version")
    table.add_column("provider")
    table.add_column("recipient")
    table.add_column("same", justify="center")
    same = True
    for key in list(provider) + [k for k in recipient if k not in provider]:
        name, a = provider.get(key, (None, None))
        other, b = recipient.get(key, (None, None))
        ok = a is not None and a == b
        same = same and ok
        table.add_row(
            str(name or other),
            _brief(a) if a else "-",
            _brief(b) if b else "-",
            "[green]✓[/green]" if ok else "[red]✗[/red]",
        )
    console.print(table)
    return same


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 48 else text[:45] + "..."


def run_demo(directory: str | None = None, *, console: Console | None = None) -> dict[str, Any]:
    """Run the provider -> share -> recipient demo; return what it did and whether it matched.

    Args:
        directory: where the stores, tables, catalog and profile go (a new temporary
            directory if None; it is kept for inspection).
        console: a rich Console to print to (stdout by default).

    Returns:
        ``directory``, ``provider_uri``, ``recipient_uri``, ``profile``, the ``experiment``
        and ``model`` import summaries, ``matches`` and ``seconds``.

    Raises:
        ArcuateError: a step failed, or the recipient does not match the provider.
    """
    from rich.console import Console

    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.reader import DeltaSharingReader
    from arcuate.backends.sharing.server import serve_in_thread, write_profile
    from arcuate.config import Settings
    from arcuate.engine.context import Context
    from arcuate.engine.export import export_experiment, export_model
    from arcuate.engine.imports import import_experiment, import_model
    from arcuate.plan.ops import ExportExperiment, ExportModel

    started = time.monotonic()
    console = console or Console()
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="arcuate-demo-"))
    root = root.absolute()
    root.mkdir(parents=True, exist_ok=True)
    provider_uri = _sqlite(root / "provider" / "mlflow.db")
    recipient_uri = _sqlite(root / "recipient" / "mlflow.db")
    for uri in (provider_uri, recipient_uri):
        if Path(uri[len("sqlite:///") :]).exists():
            raise ArcuateError(
                f"{root} already holds a demo; give an empty directory or none",
                hint="arcuate demo --directory <new dir>",
            )
    catalog_path = root / "shares.yaml"

    with spark_guard(), _quiet_mlflow():
        console.print(f"[bold]1.[/bold] training in the provider's MLflow ({provider_uri})")
        trained = _train(provider_uri, root)

        console.print("[bold]2.[/bold] exporting experiment and model to Delta, sharing them")
        ctx = Context(
            Settings(
                tracking_uri=provider_uri,
                registry_uri=provider_uri,
                warehouse=str(root / "warehouse"),
                catalog=str(catalog_path),
                progress=False,
            )
        )
        catalog = LocalShareCatalog(catalog_path)
        for table, stream in (
            ("experiment", export_experiment(ExportExperiment(EXPERIMENT), ctx)),
            ("model", export_model(ExportModel(MODEL), ctx)),
        ):
            written = ctx.table_store.write((SHARE, table), stream.batches, content=stream.content)
            catalog.add_table(SHARE, SCHEMA, table, written.location)
            console.print(f"   {table}: {written.rows} rows -> {written.location}")

        console.print("[bold]3.[/bold] serving the share; recipient gets a profile")
        _record, token = catalog.create_recipient(RECIPIENT, comment="arcuate demo")
        catalog.grant(SHARE, RECIPIENT)
        handle = serve_in_thread(str(catalog_path))
        try:
            assert token is not None
            profile = write_profile(root / f"{RECIPIENT}.share", handle.endpoint, token)
            console.print(f"   {handle.endpoint}  profile: {profile}")

            console.print("[bold]4.[/bold] importing through the Delta Sharing protocol")
            reader = DeltaSharingReader()
            rctx = Context(
                Settings(tracking_uri=recipient_uri, registry_uri=recipient_uri, progress=False)
            )
            exp_coord = f"{profile}#{SHARE}.{SCHEMA}.experiment"
            model_coord = f"{profile}#{SHARE}.{SCHEMA}.model"
            exp_result = import_experiment(
                reader.batches(exp_coord), EXPERIMENT, rctx, source=exp_coord
            )
            model_result = import_model(
                reader.batches(model_coord), MODEL, rctx, source=model_coord
            )
        finally:
            handle.stop()
        console.print(f"   experiment: {_summary(exp_result.summary)}")
        console.print(f"   model: {_summary(model_result.summary)}")

        console.print("[bold]5.[/bold] comparing provider and recipient")
        provider = _experiment_view(provider_uri, imported=False)
        provider.update(_model_view(provider_uri, trained["sample"]))
        recipient = _experiment_view(recipient_uri, imported=True)
        recipient.update(_model_view(recipient_uri, trained["sample"]))
    matches = _side_by_side(console, provider, recipient)
    seconds = round(time.monotonic() - started, 1)
    verdict = "[green]they match[/green]" if matches else "[red]they differ[/red]"
    console.print(f"{verdict} ({seconds} s); everything is in {root}")
    if not matches:
        raise ArcuateError(f"demo: the recipient's MLflow differs from the provider's (see {root})")
    return {
        "directory": str(root),
        "provider_uri": provider_uri,
        "recipient_uri": recipient_uri,
        "profile": str(profile),
        "experiment": exp_result.summary,
        "model": model_result.summary,
        "matches": matches,
        "seconds": seconds,
    }


def _summary(summary: dict[str, Any]) -> str:
    keys = ("runs", "versions", "added", "updated", "unchanged", "files", "bytes", "seconds")
    return ", ".join(f"{k}={summary[k]}" for k in keys if k in summary)
