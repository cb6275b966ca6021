"""MLflow evaluation datasets: read with their records for export, re-created on import.

Everything goes through the client's own tracking store: ``EvaluationDataset.records``,
``merge_records`` and ``mlflow.genai.datasets`` resolve the GLOBAL tracking URI, and
``merge_records`` adds the importing user's ``mlflow.user`` tag to every record (research
notes, issue 14, §0 and §3). Records are written with ``upsert_dataset_records``, which keys
them by their inputs; dataset and record ids are new (MLflow offers no way to set them), so an
imported dataset carries its provider id in a provenance tag.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from arcuate.backends.mlflow.connect import is_light, mlflow_errors
from arcuate.backends.mlflow.tags import ORIGIN, SOURCE, SOURCE_DATASET_ID, is_managed
from arcuate.backends.protocols import Record
from arcuate.format.genai import inputs_hash

if TYPE_CHECKING:
    from mlflow import MlflowClient

_PAGE: Final = 1000
_FIELDS: Final = ("outputs", "expectations", "tags", "source")


def _store(client: MlflowClient) -> Any:
    if is_light(client):  # arcuate's REST client finds datasets; MLflow's reads records
        client = client.mlflow  # type: ignore[attr-defined]
    return client._tracking_client.store


def _datasets(client: MlflowClient, experiment_id: str) -> list[Any]:
    found: list[Any] = []
    token = None
    while True:
        page = client.search_datasets(
            experiment_ids=[experiment_id], max_results=_PAGE, page_token=token
        )
        found.extend(page)
        token = page.token
        if not token:
            return found


def _records(client: MlflowClient, dataset_id: str) -> Iterator[dict[str, Any]]:
    store = _store(client)
    token = None
    while True:
        page, token = store._load_dataset_records(dataset_id, max_results=_PAGE, page_token=token)
        for record in page:
            yield record.to_dict()
        if not token:
            return


def iter_eval_records(client: MlflowClient, experiment_id: str) -> Iterator[Record]:
    """The ``eval_record`` records of every dataset linked to the experiment, page by page
    (arcuate's own provenance tags left out)."""
    with mlflow_errors(f"could not read the evaluation datasets of experiment {experiment_id}"):
        datasets = _datasets(client, experiment_id)
    for ds in sorted(datasets, key=lambda d: d.dataset_id):
        tags = [
            {"key": k, "value": v} for k, v in sorted((ds.tags or {}).items()) if not is_managed(k)
        ]
        with mlflow_errors(f"could not read the records of dataset {ds.dataset_id}"):
            for r in _records(client, ds.dataset_id):
                yield {
                    "dataset_id": ds.dataset_id,
                    "dataset_name": ds.name,
                    "dataset_tags": tags,
                    "record_id": r["dataset_record_id"],
                    "inputs": json.dumps(r["inputs"]),
                    **{f: (json.dumps(r[f]) if f in r else None) for f in _FIELDS},
                }


# -- the recipient side -----------------------------------------------------------------------
def dataset_state(client: MlflowClient, experiment_id: str, origin: str) -> dict[str, Record]:
    """Datasets linked to the experiment that this table imported (provider id -> ``{id,
    name, tags, records: inputs hash -> record with its ``id`` here}``)."""
    out: dict[str, Record] = {}
    with mlflow_errors(f"could not read the evaluation datasets of experiment {experiment_id}"):
        for ds in _datasets(client, experiment_id):
            tags = ds.tags or {}
            src = tags.get(SOURCE_DATASET_ID)
            if not src or tags.get(ORIGIN, "") != origin:
                continue
            records = {
                inputs_hash(r["inputs"]): {
                    "id": r["dataset_record_id"],
                    **{k: r[k] for k in ("inputs", *_FIELDS) if k in r},
                }
                for r in _records(client, ds.dataset_id)
            }
            user = {k: v for k, v in tags.items() if not is_managed(k)}
            out[src] = {"id": ds.dataset_id, "name": ds.name, "tags": user, "records": records}
    return out


def write_dataset(
    client: MlflowClient,
    experiment_id: str,
    dataset: Record,
    records: Iterable[dict[str, Any]],
    *,
    here: Record | None,
    source: str,
    origin: str,
) -> str:
    """Create dataset ``dataset`` (name, tags, ``source_id``) linked to the experiment, or
    update ``here``'s tags; then upsert ``records`` (1,000 a call). Returns its id here."""
    store = _store(client)
    managed = {SOURCE_DATASET_ID: dataset["source_id"], ORIGIN: origin}
    if source:
        managed[SOURCE] = source
    with mlflow_errors(f"could not import evaluation dataset {dataset['name']!r}"):
        if here is None:
            made = client.create_dataset(
                name=dataset["name"],
                experiment_id=[experiment_id],
                tags={**dataset["tags"], **managed},
            )
            dataset_id = str(made.dataset_id)
        else:
            dataset_id = str(here["id"])
            changed = {k: v for k, v in dataset["tags"].items() if here["tags"].get(k) != v}
            if changed:
                store.set_dataset_tags(dataset_id, changed)
        pending = iter(records)
        while chunk := list(itertools.islice(pending, _PAGE)):
            store.upsert_dataset_records(dataset_id, chunk)
    return dataset_id


def delete_dataset_records(client: MlflowClient, dataset_id: str, record_ids: list[str]) -> None:
    """Delete records of a dataset by their ids here (1,000 a call)."""
    store = _store(client)
    with mlflow_errors(f"could not delete records of evaluation dataset {dataset_id}"):
        for start in range(0, len(record_ids), _PAGE):
            store.delete_dataset_records(dataset_id, record_ids[start : start + _PAGE])


def delete_dataset(client: MlflowClient, dataset_id: str) -> None:
    """Delete a dataset (with its records)."""
    with mlflow_errors(f"could not delete evaluation dataset {dataset_id}"):
        _store(client).delete_dataset(dataset_id)
