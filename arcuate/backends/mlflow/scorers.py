"""MLflow registered scorers (judges): read as JSON text for export, registered as JSON on import.

Scorers are read and written at the tracking store level only (``list_scorers``,
``list_scorer_versions``, ``register_scorer``, ``delete_scorer`` of the client's own store):
MLflow's ``mlflow.genai.scorers.list_scorers``/``get_scorer`` rebuild a scorer from its JSON,
and for a ``@scorer`` that runs its code (research notes, issue 14, §4). Nothing here turns the
JSON into a scorer; :func:`arcuate.format.genai.classify_scorer` decides what may travel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arcuate.backends.mlflow.connect import mlflow_errors
from arcuate.errors import ConflictError, ShareDataError
from arcuate.format.genai import classify_scorer

if TYPE_CHECKING:
    from mlflow import MlflowClient


def _store(client: MlflowClient) -> Any:
    # the client's own store: MLflow's scorer helpers resolve the GLOBAL tracking URI
    return client._tracking_client.store


def scorer_versions(client: MlflowClient, experiment_id: str) -> dict[str, dict[int, str]]:
    """Every registered scorer version of the experiment: name -> version -> JSON text."""
    store = _store(client)
    out: dict[str, dict[int, str]] = {}
    with mlflow_errors(f"could not read the scorers of experiment {experiment_id}"):
        for latest in store.list_scorers(experiment_id):
            for sv in store.list_scorer_versions(experiment_id, latest.scorer_name):
                out.setdefault(sv.scorer_name, {})[int(sv.scorer_version)] = sv._serialized_scorer
    return out


def read_scorers(
    client: MlflowClient, experiment_id: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """The experiment's declarative scorer versions as ``scorer`` records (ascending), and a
    line for each version left out because it carries code (classified by its JSON keys,
    never loaded)."""
    kept: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name, versions in sorted(scorer_versions(client, experiment_id).items()):
        for number, text in sorted(versions.items()):
            try:
                kind = classify_scorer(text, None)
            except ShareDataError as exc:
                skipped.append(f"scorer {name!r} version {number}: {exc.message}")
                continue
            kept.append(
                {"experiment_key": experiment_id, "name": name, "version": number,
                 "kind": kind, "serialized": text}
            )  # fmt: skip
    return kept, skipped


def write_scorers(
    client: MlflowClient,
    experiment_id: str,
    creates: list[tuple[str, int, str]],
    placeholders: list[tuple[str, int]],
) -> None:
    """Register ``creates`` (name, number, JSON) in order, each getting its number (the
    caller put placeholders for the gaps among them), then delete ``placeholders``.

    Raises:
        ConflictError: MLflow gave a version another number (a version deleted here).
    """
    store = _store(client)
    with mlflow_errors(f"could not register the scorers of experiment {experiment_id}"):
        for name, number, text in creates:
            made = int(store.register_scorer(experiment_id, name, text).scorer_version)
            if made != number:
                store.delete_scorer(experiment_id, name, made)
                raise ConflictError(
                    f"scorer {name!r}: MLflow numbered the new version {made}, not {number}; "
                    "version numbers cannot be kept",
                    hint="delete the scorer here, then import again",
                )
        for name, number in placeholders:
            store.delete_scorer(experiment_id, name, number)
