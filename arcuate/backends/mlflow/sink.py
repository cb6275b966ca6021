"""The MLflow side of an import: experiments, runs, logged models, files, registry versions.

The importer (:mod:`arcuate.engine.imports`) decides *what* to write; this module knows *how*
MLflow wants it written (``docs/recipient.md`` lists what survives). Everything crosses the
boundary as plain record dicts (the normalised shapes of :mod:`arcuate.format.validate`) and
local file paths; no MLflow object leaves this module.

Choices worth knowing:

* Every client gets explicit tracking and registry URIs. New experiments get an explicit
  artifact location next to a sqlite database, so two stores opened from one directory never
  share ``./mlruns/<id>``.
* Each run is created with its start time, name and user (``mlflow.user`` is read only at
  creation), then filled: params, tags with id-bearing ones remapped, every metric point
  (re-linked to the imported logged models), dataset inputs, logged models (files byte for
  byte, finalized, linked as outputs), artifacts, and finally status and end time.
* Provenance lives in ``arcuate.*`` tags (:mod:`arcuate.backends.mlflow.tags`).
  ``arcuate.content_hash`` is written last, so a run without it is known to be incomplete (an
  interrupted import) and is finished next time.
* Registering a ``models:/m-...`` source makes MLflow resolve the logged model through a bare
  ``MlflowClient()``, i.e. the global URIs: they point at this sink for that call only.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote, urlparse

from arcuate.backends.mlflow import artifacts
from arcuate.backends.mlflow.connect import (
    client_for,
    error_code,
    every,
    failures,
    global_uris,
    is_rest,
    mlflow_errors,
    mlflow_of,
    redact_uri,
)
from arcuate.backends.mlflow.lease import WAIT, ExperimentTags, Lease, ModelTags, tell
from arcuate.backends.mlflow.points import PointKey, point_key
from arcuate.backends.mlflow.tags import (
    CONTENT_HASH,
    FILES_HASH,
    MAX_VERSION,
    MODEL_VERSIONS_TAG,
    OWNER,
    PLACEHOLDER,
    RUN_NAME_TAG,
    SOURCE_MODEL_ID,
    SOURCE_RUN_ID,
    USER_TAG,
    created_run_tags,
    files_digest,
    is_managed,
    lists_versions,
    logged_model_tags,
    provenance_of,
    provenance_tags,
    run_state,
    run_tags,
    stale_tags,
    version_state,
    version_tags,
)
from arcuate.backends.protocols import Provenance, Record
from arcuate.errors import BackendError, ConfigurationError, ConflictError
from arcuate.format.schema import OWNER_ARTIFACTS, OWNER_LOGGED_MODEL_PREFIX

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

    from arcuate.backends.mlflow.bulk import BulkRunWriter
    from arcuate.backends.protocols import (
        BulkRunSink,
        GenAISink,
        ModelSink,
        PromptSink,
        TraceSink,
    )
    from arcuate.format.traces import SharedTrace

_PAGE: Final = 1000
#: MLflow's ``ViewType.ACTIVE_ONLY`` and ``ViewType.ALL``
_ACTIVE_ONLY: Final = 1
_ALL: Final = 3
#: How new runs are written: ``auto`` (the bulk path where it is eligible, else the public
#: API), ``api`` (always the public API) or ``bulk`` (the bulk path, an error where it is not
#: eligible). Read from this environment variable when a sink is built.
IMPORT_PATH_ENV: Final = "ARCUATE_IMPORT_PATH"
IMPORT_PATHS: Final = ("auto", "api", "bulk")
#: Runs written at the same time against a remote tracking server (each is a few requests in
#: a row; overlapping them hides the network's latency), unless the sink is given another
#: number (the ``rest_concurrency`` setting). Local stores write one at a time.
REMOTE_WRITERS: Final = 8
#: MLflow's limits of one ``log_batch`` call (mlflow.utils.validation)
_BATCH_ENTITIES: Final = 1000
_BATCH_PARAMS_TAGS: Final = 100
_CREATED_CACHE: Final = 1000
_NO_COUNTS: Final = {"metric_points": 0, "files": 0, "bytes": 0, "unlinked": 0}


def log_batches(
    metrics: list[Any], params: list[Any], tags: list[Any], last: list[Any]
) -> Iterator[tuple[list[Any], list[Any], list[Any]]]:
    """(metrics, params, tags) of full ``log_batch`` calls, each within MLflow's limits (so
    the client sends each as one request), with the tags ``last`` in the last call.

    ``last`` holds fewer than 100 tags."""
    p = t = m = 0
    calls: list[tuple[list[Any], list[Any], list[Any]]] = []
    while p < len(params) or t < len(tags) or m < len(metrics):
        cp, ct = params[p : p + _BATCH_PARAMS_TAGS], tags[t : t + _BATCH_PARAMS_TAGS]
        p, t = p + len(cp), t + len(ct)
        room = _BATCH_ENTITIES - len(cp) - len(ct)
        cm = metrics[m : m + room]
        m += len(cm)
        calls.append((cm, cp, list(ct)))
    if calls and (
        len(calls[-1][2]) + len(last) <= _BATCH_PARAMS_TAGS
        and sum(map(len, calls[-1])) + len(last) <= _BATCH_ENTITIES
    ):
        calls[-1][2].extend(last)
    else:
        calls.append(([], [], list(last)))
    yield from calls


def _dataset_ident(d: Record) -> tuple[Any, ...]:
    return (d["name"], d["digest"], tuple(sorted(d["tags"].items())))


def _mlflow_dataset_ident(d: Any) -> tuple[Any, ...]:
    return (d.dataset.name, d.dataset.digest, tuple(sorted((t.key, t.value) for t in d.tags)))


def _version_order(text: str) -> tuple[str, int]:
    name, _, number = text.rpartition("/")
    return (name, int(number) if number.isdigit() else 0)


def _version_links(value: str | None) -> list[Any]:
    """The entries of an ``mlflow.modelVersions`` tag, each once, numbers as integers (an
    older arcuate wrote ``"1"``); a value that is not a JSON list reads as empty."""
    try:
        doc = json.loads(value or "[]")
    except (ValueError, RecursionError):
        return []
    out: list[Any] = []
    for entry in doc if isinstance(doc, list) else ():
        number = entry.get("version") if isinstance(entry, dict) else None
        if isinstance(number, str) and number.isascii() and number.isdigit():
            entry = {**entry, "version": int(number)}
        if entry not in out:
            out.append(entry)
    return out


def _names(entry: Any, name: str, numbers: set[int]) -> bool:
    """Whether an ``mlflow.modelVersions`` entry names version ``name``/one of ``numbers``."""
    return isinstance(entry, dict) and entry.get("name") == name and entry.get("version") in numbers


class MlflowSink:
    """Writes imported runs, logged models, files and registry versions into one MLflow.

    ``artifact_root``: where new experiments keep their artifacts (``<root>/<uuid>``); by
    default next to a sqlite database, else MLflow's own default (a server's artifact root).
    ``import_path``: how new runs are written (the ``import_path`` setting,
    ``ARCUATE_IMPORT_PATH``); ``lock_wait``: seconds to wait for another import of the same
    target (the ``lock_wait`` setting); ``concurrency``: runs written at once to a tracking
    server (the ``rest_concurrency`` setting).
    """

    def __init__(
        self,
        tracking_uri: str,
        registry_uri: str | None = None,
        *,
        artifact_root: str | None = None,
        import_path: str = "auto",
        lock_wait: float = WAIT,
        concurrency: int = REMOTE_WRITERS,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.artifact_root = artifact_root
        self._client: Any = None
        self._next_version: dict[str, int] = {}
        self._created: dict[str, Any] = {}
        # a fresh run's params, tags and metrics, written by finish_run in the batches that
        # complete it (run id -> (metrics, params, tags)); writer threads share both dicts
        self._deferred: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
        self._mutex = threading.Lock()
        #: datasets (experiment id, name, digest) this sink has logged; a run logging one it
        #: has not must hold the lock below (see :meth:`_log_datasets`)
        self._logged_datasets: set[tuple[str, str, str]] = set()
        self._first_datasets = threading.Lock()
        self.concurrency = max(1, concurrency)
        path = import_path.strip().lower()
        if path not in IMPORT_PATHS:
            raise ConfigurationError(
                f"import_path {import_path!r} is not one of {', '.join(IMPORT_PATHS)}"
                " (ARCUATE_IMPORT_PATH)"
            )
        self.import_path = path
        self._bulk: BulkRunWriter | None = None
        self._bulk_reason: str | None = None
        self.lock_wait = lock_wait
        self._leases: list[Lease] = []

    def __repr__(self) -> str:
        return f"MlflowSink({redact_uri(self.tracking_uri)!r}, {redact_uri(self.registry_uri)!r})"

    @property
    def client(self) -> Any:
        """The client, built on first use with both URIs explicit: arcuate's REST client for a
        tracking server (:func:`~arcuate.backends.mlflow.connect.client_for`), MLflow's
        ``MlflowClient`` otherwise."""
        if self._client is None:
            self._client = client_for(self.tracking_uri, self.registry_uri)
        return self._client

    @property
    def mlflow_client(self) -> MlflowClient:
        """MLflow's own client (for what the REST client does not write: GenAI entities,
        prompts)."""
        return mlflow_of(self.client)

    def _store(self) -> Any:
        """What ``create_run``/``update_run_info`` go to: the tracking store behind MLflow's
        client, or arcuate's REST client (which has both, with the store's signatures). Behind
        arcuate's SQL client, runs written through the public API are MLflow's store's."""
        client = self.client
        return client if is_rest(client) else mlflow_of(client)._tracking_client.store

    def _entities(self) -> Any:
        """The module whose entity classes (``Metric``, ``Param``, ``RunTag``, ``Dataset``...)
        go to the client: MLflow's, or the light ones of :mod:`arcuate.backends.mlflow.rest`."""
        if is_rest(self.client):
            from arcuate.backends.mlflow import rest

            return rest
        import mlflow.entities

        return mlflow.entities

    def _repo(self, uri: str) -> ArtifactRepository:
        client = self.client
        if is_rest(client):
            served = client.artifact_repo(uri)
            if served is not None:  # written through the server, without MLflow
                return served  # type: ignore[no-any-return]
        return artifacts.repository(uri, self.tracking_uri, self.registry_uri)

    # -- experiments ------------------------------------------------------------------------
    def _new_artifact_location(self) -> str | None:
        """An explicit, unique artifact location for a new experiment, or None for the default."""
        name = uuid.uuid4().hex
        if self.artifact_root:
            return f"{self.artifact_root.rstrip('/')}/{name}"
        parsed = urlparse(self.tracking_uri)
        if parsed.scheme == "sqlite":
            db = unquote(self.tracking_uri[len("sqlite:///") :])
            if db and db != ":memory:" and not db.startswith("file:"):
                return str(Path(db).absolute().parent / "mlruns" / name)
        return None

    def _experiment(self, name: str, tags: dict[str, str]) -> tuple[str, Any]:
        """Experiment ``name``: its id, and the experiment when it existed (None when this
        call created it, with ``tags``). Another import creating it at the same moment is
        not an error."""
        client = self.client
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id), exp
        try:
            eid = client.create_experiment(
                name, artifact_location=self._new_artifact_location(), tags=tags or None
            )
        except failures() as exc:
            if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id), exp
        return str(eid), None

    @staticmethod
    def _deleted_experiment(name: str, eid: str) -> ConflictError:
        return ConflictError(
            f"experiment {name!r} exists but is deleted (MLflow keeps its name)",
            hint="use OVERWRITE to restore and replace it, restore it with "
            f"`mlflow experiments restore --experiment-id {eid}`, or pick another name",
        )

    def prepare_experiment(
        self,
        name: str,
        tags: dict[str, str],
        *,
        exact: bool = False,
        update_tags: bool = True,
        restore: bool = False,
        owner: str | None = None,
    ) -> str:
        """The id of experiment ``name``, created (with ``tags``) if missing.

        An existing one gets the shared tags (and, when ``exact``, loses tags the share does
        not have). A deleted one is restored when ``restore``, else it is a conflict: MLflow
        keeps deleted names reserved. Shared tags never set arcuate's own (``arcuate.*``, lease
        tags included). With ``owner``, the experiment is created with that ``arcuate.owner``
        tag, and an existing one without it is a conflict.
        """
        client = self.client
        tags = {k: v for k, v in tags.items() if not is_managed(k)}
        with mlflow_errors(f"could not prepare experiment {name!r}"):
            eid, exp = self._experiment(name, {**tags, OWNER: owner} if owner else tags)
            if exp is None:
                return eid
            if owner is not None and (exp.tags or {}).get(OWNER) != owner:
                raise ConflictError(
                    f"experiment {name!r} exists and was not created by arcuate for {owner}"
                )
            if exp.lifecycle_stage == "deleted":
                if not restore:
                    raise self._deleted_experiment(name, eid)
                client.restore_experiment(eid)
            if update_tags:
                current = dict(exp.tags or {})
                for key, value in tags.items():
                    if current.get(key) != value:
                        client.set_experiment_tag(eid, key, value)
                if exact:
                    for key in current:
                        if key not in tags and not is_managed(key):
                            client.delete_experiment_tag(eid, key)
            return eid

    # -- the import lease ---------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(
        self, kind: Literal["experiment", "model"], name: str, *, restore: bool = False
    ) -> Iterator[Lease]:
        """Hold the import lease on experiment or registered model ``name`` (``kind``),
        created if missing (:mod:`arcuate.backends.mlflow.lease`); waits for another import
        of it for up to :attr:`lock_wait` seconds, saying so on stderr.

        Raises:
            ConflictError: another import held it for too long, or the experiment is deleted
                and ``restore`` is not set.
        """
        what = f"could not take the import lease on {kind} {name!r}"
        # the lease talks through a client of its own: its calls (renewals, from a thread)
        # are not the import's
        client = client_for(self.tracking_uri, self.registry_uri)
        tags: ExperimentTags | ModelTags
        created = False
        with mlflow_errors(what):
            if kind == "experiment":
                tags = ExperimentTags(client, self._lock_experiment(name, restore), name)
            else:
                created = self._lock_model(name)
                tags = ModelTags(client, name)
        lease = Lease(tags, wait=self.lock_wait, on_wait=tell)
        with mlflow_errors(what):
            lease.acquire()
        self._leases.append(lease)
        try:
            yield lease
        except BaseException:
            if created:
                self._drop_if_empty(name)
            raise
        finally:
            self._leases.remove(lease)
            lease.release()

    def _drop_if_empty(self, name: str) -> None:
        """Delete registered model ``name`` that the lease created, when the import failed
        before giving it a version: a refused import leaves the registry as it was. (An
        experiment cannot be undone so: MLflow keeps a deleted experiment's name reserved.)"""
        with contextlib.suppress(Exception):
            if not self.client.search_model_versions(f"name = '{name}'", max_results=1):
                self.client.delete_registered_model(name)

    def _check_leases(self) -> None:
        """Refuse to create or delete runs or versions once a lease this sink holds is lost
        (another import may be writing the same target now)."""
        for lease in self._leases:
            lease.check()

    def _lock_experiment(self, name: str, restore: bool) -> str:
        """The id of experiment ``name`` to lock, created (or, with ``restore``, restored)."""
        client = self.client
        eid, exp = self._experiment(name, {})
        if exp is not None and exp.lifecycle_stage == "deleted":
            if not restore:
                raise self._deleted_experiment(name, eid)
            try:
                client.restore_experiment(eid)
            except failures():
                if client.get_experiment(eid).lifecycle_stage != "active":
                    raise  # not restored by another import meanwhile
        return eid

    def _lock_model(self, name: str) -> bool:
        """Registered model ``name`` to lock, created if missing; whether this call created it."""
        try:
            self.client.get_registered_model(name)
            return False
        except failures() as exc:
            if error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
            # MLflow hides a prompt from the model API, but it is a registered model in the
            # store: creating one under its name fails, and versions created there land
            # invisibly inside the prompt. Refuse before the lease writes anything.
            self.refuse_prompt(name)
            try:
                self.client.create_registered_model(name)
                return True
            except failures() as again:
                if error_code(again) != "RESOURCE_ALREADY_EXISTS":
                    raise
                return False

    # -- scorers and evaluation datasets (format 2) ----------------------------------------------
    def scorer_versions(self, experiment_id: str) -> dict[str, dict[int, str]]:
        """See :class:`~arcuate.backends.protocols.GenAISink`."""
        from arcuate.backends.mlflow import scorers

        return scorers.scorer_versions(self.mlflow_client, experiment_id)

    def write_scorers(
        self,
        experiment_id: str,
        creates: list[tuple[str, int, str]],
        placeholders: list[tuple[str, int]],
    ) -> None:
        """See :class:`~arcuate.backends.protocols.GenAISink`."""
        from arcuate.backends.mlflow import scorers

        scorers.write_scorers(self.mlflow_client, experiment_id, creates, placeholders)

    def dataset_state(self, experiment_id: str, origin: str) -> dict[str, Record]:
        """See :class:`~arcuate.backends.protocols.GenAISink`."""
        from arcuate.backends.mlflow import datasets

        return datasets.dataset_state(self.client, experiment_id, origin)

    def write_dataset(
        self,
        experiment_id: str,
        dataset: Record,
        records: Iterable[Record],
        *,
        here: Record | None,
        source: str,
        origin: str,
    ) -> str:
        """See :class:`~arcuate.backends.protocols.GenAISink`."""
        from arcuate.backends.mlflow import datasets

        return datasets.write_dataset(
            self.mlflow_client,
            experiment_id,
            dataset,
            records,
            here=here,
            source=source,
            origin=origin,
        )

    def delete_dataset_records(self, dataset_id: str, record_ids: list[str]) -> None:
        """See :class:`~arcuate.backends.protocols.GenAISink`."""
        from arcuate.backends.mlflow import datasets

        datasets.delete_dataset_records(self.mlflow_client, dataset_id, record_ids)

    def delete_dataset(self, dataset_id: str) -> None:
        """See :class:`~arcuate.backends.protocols.GenAISink`."""
        from arcuate.backends.mlflow import datasets

        datasets.delete_dataset(self.mlflow_client, dataset_id)

    # -- traces (format 2: :mod:`arcuate.backends.mlflow.traces`) -----------------------------
    def trace_ids(self, experiment_id: str) -> set[str]:
        """See :class:`~arcuate.backends.protocols.TraceSink`."""
        from arcuate.backends.mlflow import traces

        return traces.trace_ids(self.tracking_uri, experiment_id)

    def trace_experiments(self, trace_ids: list[str]) -> dict[str, str]:
        """See :class:`~arcuate.backends.protocols.TraceSink`."""
        from arcuate.backends.mlflow import traces

        return traces.trace_experiments(self.tracking_uri, trace_ids)

    def write_traces(
        self,
        experiment_id: str,
        traces: Sequence[SharedTrace],
        runs: Mapping[str, str],
        models: Mapping[str, str],
        *,
        new: Sequence[bool | None],
    ) -> list[int]:
        """See :class:`~arcuate.backends.protocols.TraceSink`."""
        from arcuate.backends.mlflow import traces as mlflow_traces

        uri = self.tracking_uri
        return mlflow_traces.write_traces(uri, experiment_id, traces, runs, models, new=new)

    # -- prompts (format 2: :mod:`arcuate.backends.mlflow.prompts`) ---------------------------
    def prompt_state(self, name: str) -> Record | None:
        """See :class:`~arcuate.backends.protocols.PromptSink`."""
        from arcuate.backends.mlflow import prompts

        return prompts.prompt_state(self.mlflow_client, name)

    def write_prompt(
        self,
        name: str,
        prompt: Record,
        versions: list[Record],
        *,
        state: Record | None,
        exact: bool,
        source: str,
        remove: list[int],
    ) -> None:
        """See :class:`~arcuate.backends.protocols.PromptSink`."""
        from arcuate.backends.mlflow import prompts

        prompts.write_prompt(
            self.mlflow_client,
            name,
            prompt,
            versions,
            state=state,
            exact=exact,
            source=source,
            remove=remove,
        )

    def refuse_prompt(self, name: str) -> None:
        """Refuse registered model ``name`` when it is a prompt here.

        Raises:
            ConflictError: ``name`` is a prompt on this registry.
        """
        from mlflow.prompt.registry_utils import is_prompt_supported_registry

        if not is_prompt_supported_registry(self.registry_uri):
            return  # a legacy Databricks workspace registry holds no prompts
        if self.mlflow_client.get_prompt(name) is not None:
            raise ConflictError(
                f"registered model {name!r} is a prompt in this registry; a model cannot be "
                "imported into it",
                hint="import the model under another name, or delete the prompt first",
            )

    def list_runs(self, experiment_id: str) -> list[Record]:
        """The states of every run of the experiment (deleted ones too): see
        :class:`~arcuate.backends.protocols.RunSink`."""

        def search(token: str | None) -> Any:
            return self.client.search_runs(
                [experiment_id], run_view_type=_ALL, max_results=_PAGE, page_token=token
            )

        with mlflow_errors(f"could not list the runs of experiment {experiment_id}"):
            return [self._run_state(run) for run in every(search)]

    def list_logged_models(self, experiment_id: str) -> list[Record]:
        """Logged models of the experiment with their provenance (``source_model_id``)."""

        def search(token: str | None) -> Any:
            return self.client.search_logged_models(
                experiment_ids=[experiment_id], max_results=100, page_token=token
            )

        with mlflow_errors(f"could not list the logged models of experiment {experiment_id}"):
            return [
                {
                    "model_id": lm.model_id,
                    "source_model_id": (lm.tags or {}).get(SOURCE_MODEL_ID),
                    "run_id": lm.source_run_id or None,  # a REST store says ""
                    "name": lm.name,
                    "artifact_location": lm.artifact_location,
                }
                for lm in every(search)
            ]

    def find_runs(self, source_run_id: str) -> list[Record]:
        """The states of every active run of any experiment carrying ``source_run_id`` as
        provenance (the importer decides which of them it may use)."""
        found: list[Record] = []
        what = f"could not look for the imported runs of source run {source_run_id}"
        with mlflow_errors(what):
            experiments = every(
                lambda token: self.client.search_experiments(max_results=_PAGE, page_token=token)
            )
            ids = [e.experiment_id for e in experiments]
            # ids are validated ([A-Za-z0-9_-]), so the filter cannot be broken out of
            filt = f"tags.`{SOURCE_RUN_ID}` = '{source_run_id}'"
            for start in range(0, len(ids), 100):
                runs = self.client.search_runs(
                    ids[start : start + 100],
                    filter_string=filt,
                    run_view_type=_ACTIVE_ONLY,
                    max_results=_PAGE,
                )
                found += [self._run_state(r) for r in runs]
        return found

    @staticmethod
    def _run_state(run: Any) -> Record:
        return run_state(
            run.info.run_id,
            dict(run.data.tags),
            experiment_id=str(run.info.experiment_id),
            artifact_uri=run.info.artifact_uri,
            lifecycle_stage=run.info.lifecycle_stage,
        )

    def run_state(self, run_id: str) -> Record | None:
        """A run's state, with ``experiment_name``; None when it does not exist."""
        with mlflow_errors(f"could not read run {run_id}"):
            try:
                run = self.client.get_run(run_id)
            except failures() as exc:
                if error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                    return None
                raise
            out = self._run_state(run)
            out["experiment_name"] = self.client.get_experiment(run.info.experiment_id).name
        return out

    def experiment_state(self, name: str) -> Record | None:
        """Experiment ``name``'s id, ``lifecycle_stage`` and ``provenance``; None when there
        is none."""
        with mlflow_errors(f"could not read experiment {name!r}"):
            exp = self.client.get_experiment_by_name(name)
        if exp is None:
            return None
        return {
            "experiment_id": str(exp.experiment_id),
            "lifecycle_stage": exp.lifecycle_stage,
            "provenance": provenance_of(dict(exp.tags or {})),
        }

    # -- the bulk path -------------------------------------------------------------------------
    def bulk_runs(self, experiment_id: str) -> bool:
        """Whether new runs of the experiment are written by the bulk path
        (:mod:`arcuate.backends.mlflow.bulk`): a SQL store at a covered schema revision,
        unless the ``api`` import path is chosen.

        Raises:
            ConfigurationError: the ``bulk`` path is required and the store is not eligible.
        """
        if self.import_path == "api":
            return False
        if self._bulk is None and self._bulk_reason is None:
            from arcuate.backends.mlflow.bulk import BulkRunWriter, eligible_store

            with mlflow_errors("could not inspect the tracking store"):
                engine, self._bulk_reason = eligible_store(self.client)
            if engine is not None:
                self._bulk = BulkRunWriter(engine, self.tracking_uri, self.registry_uri)
        if self._bulk is None and self.import_path == "bulk":
            raise ConfigurationError(
                f"the bulk import path cannot write to {redact_uri(self.tracking_uri)}: "
                f"{self._bulk_reason}",
                hint=f"unset {IMPORT_PATH_ENV} (or set it to auto) to use MLflow's public API",
            )
        return self._bulk is not None

    def remove_orphan_files(self, experiment_id: str) -> int:
        """Remove what killed bulk batches left in the experiment's artifact location (files
        of runs that were never committed); how many directories. Call it holding the
        experiment's import lease. Only stores the bulk path writes to can have any."""
        from arcuate.backends.mlflow.bulk import eligible_store, remove_orphans

        with mlflow_errors(f"could not clean the artifact location of experiment {experiment_id}"):
            engine, _why = eligible_store(self.client)
            return 0 if engine is None else remove_orphans(engine, experiment_id)

    def write_concurrency(self) -> int:
        """How many runs an import may write at the same time through this sink."""
        scheme = urlparse(self.tracking_uri).scheme.lower()
        return self.concurrency if scheme in ("http", "https", "databricks") else 1

    def bulk_concurrency(self) -> int:
        """Bulk transactions at the same time: as many as the database takes side by side
        (:attr:`BulkRunWriter.transactions`), 1 before :meth:`bulk_runs` said yes."""
        return self._bulk.transactions if self._bulk is not None else 1

    def new_run_id(self) -> str:
        """A run id for the bulk path (MLflow's form: 32 hex digits)."""
        return uuid.uuid4().hex

    def new_model_id(self) -> str:
        """A logged-model id for the bulk path (MLflow's form: ``m-`` and 32 hex digits)."""
        return f"m-{uuid.uuid4().hex}"

    def write_new_runs(
        self,
        experiment_id: str,
        runs: list[Record],
        *,
        run_ids: dict[str, str],
        model_ids: dict[str, str],
        exact: bool,
        provenance: Provenance,
    ) -> Record:
        """Create complete runs in one transaction, committed once their files are up: all of
        them or none.

        Each item has ``run_id`` (from :meth:`new_run_id`), ``source_run_id``, ``run`` (the
        shared record), ``files``, ``content_hash`` and ``deleted``; the runs' own logged
        models are in ``model_ids`` (ids from :meth:`new_model_id`). Returns the counters of
        :meth:`fill_run`, added up.
        """
        from arcuate.backends.mlflow.bulk import NewRun

        if not runs:
            return dict(_NO_COUNTS)
        if not self.bulk_runs(experiment_id) or self._bulk is None:
            raise BackendError("the bulk import path is not available for this store")
        self._check_leases()
        items = [
            NewRun(
                run_id=r["run_id"],
                source_run_id=r["source_run_id"],
                run=r["run"],
                files=r["files"],
                content_hash=r["content_hash"],
                deleted=bool(r.get("deleted")),
            )
            for r in runs
        ]
        first, last = items[0].source_run_id, items[-1].source_run_id
        what = f"could not write {len(items)} new runs (source runs {first} .. {last})"
        with mlflow_errors(what):
            stats = self._bulk.write(
                experiment_id,
                items,
                run_ids=run_ids,
                model_ids=model_ids,
                exact=exact,
                provenance=provenance,
            )
        return stats

    # -- runs ---------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        run: Record,
        *,
        source_run_id: str,
        provenance: Provenance,
    ) -> str:
        """A new run with the shared start time, name and user, tagged with its provenance."""
        run_tag = self._entities().RunTag
        tags = created_run_tags(source_run_id, run, provenance)
        # the user goes in the request's own field, not as an ``mlflow.user`` tag that a
        # second request would have to delete when the share has none (what the client does)
        user = tags.pop(USER_TAG, None) or "unknown"
        name = run.get("run_name") or run["tags"].get(RUN_NAME_TAG)
        self._check_leases()
        with mlflow_errors(f"could not create the run for source run {source_run_id}"):
            created = self._store().create_run(
                experiment_id=experiment_id,
                user_id=user,
                start_time=run.get("start_time") or int(time.time() * 1000),
                tags=[run_tag(k, v) for k, v in tags.items()],
                run_name=name,
            )
        # fill_run starts from what create_run returned (no get_run for a fresh run)
        with self._mutex:
            if len(self._created) >= _CREATED_CACHE:
                self._created.pop(next(iter(self._created)))
            self._created[created.info.run_id] = created
        return str(created.info.run_id)

    def rebuild_reason(
        self, run_id: str, run: Record, *, exact: bool, artifact_paths: list[str]
    ) -> str | None:
        """Why an existing run cannot be updated in place into the shared one, if it cannot.

        Params cannot change in MLflow; with ``exact`` (OVERWRITE), extra params, metric points,
        dataset inputs and artifact files cannot be removed either. Such runs are rebuilt, and
        the old one is deleted once the new one is complete.
        """
        with mlflow_errors(f"could not read run {run_id}"):
            current = self.client.get_run(run_id)
            params = dict(current.data.params)
            for key, value in run["params"].items():
                if key in params and params[key] != value:
                    return f"param {key!r} changed"
            if not exact:
                return None
            extra = sorted(set(params) - set(run["params"]))
            if extra:
                return f"param {extra[0]!r} is no longer shared"
            keys = {m["key"] for m in run["metrics"]}
            extra = sorted(set(current.data.metrics) - keys)
            if extra:
                return f"metric {extra[0]!r} is no longer shared"
            wanted = {
                point_key(m["key"], m["step"], m["timestamp"], m["value"]) for m in run["metrics"]
            }
            for key in sorted(keys & set(current.data.metrics)):
                for m in self.client.get_metric_history(run_id, key):
                    if point_key(m.key, m.step, m.timestamp, m.value) not in wanted:
                        return f"metric {key!r} has points that are no longer shared"
            shared = {_dataset_ident(d) for d in run["inputs"]}
            for d in current.inputs.dataset_inputs if current.inputs else ():
                if _mlflow_dataset_ident(d) not in shared:
                    return f"dataset input {d.dataset.name!r} is no longer shared"
            existing = artifacts.list_files(self._repo(current.info.artifact_uri))
            extra = sorted(set(existing) - set(artifact_paths))
            if extra:
                return f"artifact {extra[0]!r} is no longer shared"
        return None

    def create_logged_model(self, experiment_id: str, run_id: str | None, model: Record) -> str:
        """A new (PENDING) logged model for a shared one, linked to its provenance."""
        with mlflow_errors(f"could not create logged model {model['name']!r}"):
            lm = self.client.create_logged_model(
                experiment_id,
                name=model["name"],
                source_run_id=run_id,
                tags={SOURCE_MODEL_ID: model["model_id"]},
                params=model["params"] or None,
                model_type=model.get("model_type"),
            )
        return str(lm.model_id)

    def fill_run(
        self,
        run_id: str,
        run: Record,
        files: list[Record],
        *,
        run_ids: dict[str, str],
        model_ids: dict[str, str],
        fresh: bool,
        exact: bool,
    ) -> Record:
        """Write everything of a shared run that the run here lacks; idempotent.

        In this order: its logged models (metrics that belong to them need them to exist),
        params, tags and metrics, inputs and outputs, artifacts, and last its name, status
        and end time. Returns counters: ``metric_points``, ``files``, ``bytes`` written and
        ``unlinked`` (metric points or model inputs whose logged model was not shared).
        """
        stats: Record = dict(_NO_COUNTS)
        with mlflow_errors(f"could not write run {run_id} (source run {run['run_id']})"):
            with self._mutex:
                current = self._created.pop(run_id, None) if fresh else None
            if current is None:
                current = self.client.get_run(run_id)
            if current.info.lifecycle_stage == "deleted":
                self.client.restore_run(run_id)
            outputs = self._fill_run_models(current, run, files, model_ids, fresh, exact, stats)
            self._log_run_data(current, run, run_ids, model_ids, fresh, exact, stats)
            self._log_run_inputs(current, run, model_ids, outputs, stats)
            self._sync_run_artifacts(current, files, fresh, stats)
            self._finish_run_info(current, run)
        return stats

    def _fill_run_models(
        self,
        current: Any,
        run: Record,
        files: list[Record],
        model_ids: dict[str, str],
        fresh: bool,
        exact: bool,
        stats: Record,
    ) -> list[Any]:
        """The run's logged models filled (files included); the outputs the run lacks."""
        output = self._entities().LoggedModelOutput
        outputs = {o.model_id for o in (current.outputs.model_outputs if current.outputs else ())}
        new_outputs = []
        for lm in run["logged_models"]:
            new_id = model_ids[lm["model_id"]]
            owner = OWNER_LOGGED_MODEL_PREFIX + lm["model_id"]
            mine = [f for f in files if f["owner"] == owner]
            got = self.fill_logged_model(new_id, lm, mine, fresh=fresh, exact=exact)
            stats["files"] += got["files"]
            stats["bytes"] += got["bytes"]
            if lm.get("step") is not None and new_id not in outputs:
                new_outputs.append(output(new_id, int(lm["step"])))
        return new_outputs

    def _log_run_data(
        self,
        current: Any,
        run: Record,
        run_ids: dict[str, str],
        model_ids: dict[str, str],
        fresh: bool,
        exact: bool,
        stats: Record,
    ) -> None:
        """Params, tags (ids remapped, stale ones deleted) and the metric points the run lacks."""
        entities = self._entities()
        Param, RunTag = entities.Param, entities.RunTag
        run_id = current.info.run_id
        params = dict(current.data.params)
        tags = dict(current.data.tags)
        wanted_tags = run_tags(run, run_ids)
        new_params = [Param(k, v) for k, v in run["params"].items() if k not in params]
        new_tags = [RunTag(k, v) for k, v in wanted_tags.items() if tags.get(k) != v]
        metrics = self._new_metrics(current, run, model_ids, fresh, stats)
        if fresh:  # written with the tags that complete the run (finish_run), in full batches
            with self._mutex:
                self._deferred[run_id] = (metrics, new_params, new_tags)
        elif metrics or new_params or new_tags:
            self.client.log_batch(run_id, metrics=metrics, params=new_params, tags=new_tags)
        stats["metric_points"] = len(metrics)
        for key in stale_tags(tags, wanted_tags, exact=exact):
            self.client.delete_tag(run_id, key)

    def _points_here(
        self, current: Any, run: Record, model_ids: dict[str, str]
    ) -> tuple[set[PointKey], set[tuple[str, PointKey]]]:
        """The run's metric points here, and those linked to each of its logged models."""
        client, run_id = self.client, current.info.run_id
        existing: set[PointKey] = set()
        linked: set[tuple[str, PointKey]] = set()
        for key in sorted({m["key"] for m in run["metrics"]} & set(current.data.metrics)):
            for m in client.get_metric_history(run_id, key):
                existing.add(point_key(m.key, m.step, m.timestamp, m.value))
        targets = {model_ids.get(m["model_id"]) for m in run["metrics"] if m["model_id"]}
        for target in sorted(t for t in targets if t is not None):
            for m in client.get_logged_model(target).metrics or ():
                if m.run_id == run_id:
                    linked.add((target, point_key(m.key, m.step, m.timestamp, m.value)))
        return existing, linked

    def _new_metrics(
        self, current: Any, run: Record, model_ids: dict[str, str], fresh: bool, stats: Record
    ) -> list[Any]:
        """The shared metric points the run here lacks, linked to its logged models."""
        Metric = self._entities().Metric
        existing: set[PointKey] = set()
        linked: set[tuple[str, PointKey]] = set()
        if not fresh:
            existing, linked = self._points_here(current, run, model_ids)
        metrics = []
        for m in run["metrics"]:
            point = point_key(m["key"], m["step"], m["timestamp"], m["value"])
            mid = model_ids.get(m["model_id"]) if m["model_id"] else None
            if m["model_id"] and mid is None:
                stats["unlinked"] += 1
            if point in existing and (mid is None or (mid, point) in linked):
                continue
            metrics.append(
                Metric(
                    m["key"],
                    m["value"],
                    m["timestamp"],
                    m["step"],
                    model_id=mid,
                    dataset_name=m["dataset_name"] if mid else None,
                    dataset_digest=m["dataset_digest"] if mid else None,
                )
            )
        return metrics

    def _log_run_inputs(
        self,
        current: Any,
        run: Record,
        model_ids: dict[str, str],
        outputs: list[Any],
        stats: Record,
    ) -> None:
        """The dataset inputs, model inputs and model outputs the run lacks."""
        e = self._entities()
        Dataset, DatasetInput, InputTag = e.Dataset, e.DatasetInput, e.InputTag
        LoggedModelInput = e.LoggedModelInput
        run_id, inputs = current.info.run_id, current.inputs
        have = {_mlflow_dataset_ident(d) for d in (inputs.dataset_inputs if inputs else ())}
        datasets = []
        for d in run["inputs"]:
            ident = _dataset_ident(d)
            if ident in have:
                continue
            have.add(ident)
            shared = Dataset(
                d["name"], d["digest"], d["source_type"], d["source"], d["schema"], d["profile"]
            )
            datasets.append(DatasetInput(shared, [InputTag(k, v) for k, v in d["tags"].items()]))
        model_inputs = {m.model_id for m in (inputs.model_inputs if inputs else ()) or ()}
        new_model_inputs = []
        for src in run["model_inputs"]:
            input_id = model_ids.get(src)
            if input_id is None:
                stats["unlinked"] += 1
            elif input_id not in model_inputs:
                model_inputs.add(input_id)
                new_model_inputs.append(LoggedModelInput(input_id))
        for start in range(0, len(datasets), 1000):
            self._log_datasets(current, datasets[start : start + 1000])
        if new_model_inputs:
            self.client.log_inputs(run_id, models=new_model_inputs)
        if outputs:
            self.client.log_outputs(run_id, outputs)

    def _log_datasets(self, current: Any, datasets: list[Any]) -> None:
        """Dataset inputs of a run; the first logging of each dataset one run at a time.

        The server inserts a dataset the first time a run of the experiment logs it, and two
        runs written at once that both log a new one collide on its unique key (sqlite:
        ``IntegrityError``, the import failed); once it exists, runs log it concurrently.
        """
        eid = str(current.info.experiment_id)
        idents = {(eid, d.dataset.name, d.dataset.digest) for d in datasets}
        with self._mutex:
            known = idents <= self._logged_datasets
        if known:
            self.client.log_inputs(current.info.run_id, datasets=datasets)
            return
        with self._first_datasets:
            self.client.log_inputs(current.info.run_id, datasets=datasets)
            with self._mutex:
                self._logged_datasets |= idents

    def _sync_run_artifacts(
        self, current: Any, files: list[Record], fresh: bool, stats: Record
    ) -> None:
        """The run's artifact files, written where they differ (their digest says so)."""
        RunTag = self._entities().RunTag
        mine = [f for f in files if f["owner"] == OWNER_ARTIFACTS]
        digest = files_digest(mine)
        if fresh or current.data.tags.get(FILES_HASH) != digest:
            repo = self._repo(current.info.artifact_uri)
            n, size = artifacts.sync_files(repo, mine, fresh=fresh)
            stats["files"] += n
            stats["bytes"] += size
            with self._mutex:
                deferred = self._deferred.get(current.info.run_id)
            if deferred is not None:  # a fresh run: in the batch that completes it
                deferred[2].append(RunTag(FILES_HASH, digest))
            else:
                self.client.set_tag(current.info.run_id, FILES_HASH, digest)

    def _finish_run_info(self, current: Any, run: Record) -> None:
        """The run's name, status and end time, as shared."""
        run_id, info = current.info.run_id, current.info
        name = run.get("run_name")
        if name and info.run_name != name:
            self.client.update_run(run_id, name=name)
        status, end = run["status"], run.get("end_time")
        if end is not None and (info.status != status or info.end_time != end):
            self._terminate(run_id, status, end)
        elif end is None and info.status != status:
            self.client.update_run(run_id, status=status)

    def _terminate(self, run_id: str, status: str, end_time: int) -> None:
        """Status and end time of a finished run, written the way ``set_terminated`` does.

        Not through ``set_terminated`` itself: against a server it first reads the run back
        to print a "View run" link on ``sys.stdout``. Swapping ``sys.stdout`` to hide it is
        not possible here (the streams are the whole process's, and runs are written by
        several threads), and MLflow's switch for it is an environment variable, process-wide
        too. The store call it ends with is the same, and saves that read.
        """
        if is_rest(self.client):
            self.client.update_run_info(run_id, status, end_time, None)
            return
        from mlflow.entities import RunStatus

        store = self._store()
        store.update_run_info(
            run_id, run_status=RunStatus.from_string(status), end_time=end_time, run_name=None
        )

    def finish_run(
        self,
        run_id: str,
        *,
        content_hash: str,
        deleted: bool = False,
        provenance: Provenance,
    ) -> None:
        """Mark a run complete (its content hash, last) and delete it if the share says so.

        The ``provenance`` tags go in the same batch (a run imported before they existed gets
        them here).
        """
        RunTag = self._entities().RunTag
        tags = [RunTag(k, v) for k, v in provenance_tags(provenance).items()]
        with self._mutex:
            metrics, params, data_tags = self._deferred.pop(run_id, ([], [], []))
        with mlflow_errors(f"could not finish run {run_id}"):
            # the content hash, in the last batch (one transaction), is what completes the run
            last = [*tags, RunTag(CONTENT_HASH, content_hash)]
            for m, p, t in log_batches(metrics, params, data_tags, last):
                self.client.log_batch(run_id, metrics=m, params=p, tags=t)
            if deleted:
                self.client.delete_run(run_id)

    def reconcile_run(
        self, state: Record, run: Record, *, run_ids: dict[str, str], exact: bool
    ) -> bool:
        """Fix the tags of an unchanged run (a parent imported later; OVERWRITE's exactness).

        ``state`` is the run's entry from :meth:`list_runs`. Returns whether anything changed.
        """
        if state["lifecycle_stage"] == "deleted":
            return False
        current = state["tags"]
        wanted = run_tags(run, run_ids)
        changed = False
        with mlflow_errors(f"could not update the tags of run {state['run_id']}"):
            for key, value in wanted.items():
                if current.get(key) != value:
                    self.client.set_tag(state["run_id"], key, value)
                    changed = True
            for key in stale_tags(current, wanted, exact=exact):
                self.client.delete_tag(state["run_id"], key)
                changed = True
        return changed

    def delete_runs(self, experiment_id: str, run_ids: list[str]) -> None:
        """Delete runs and the logged models they produced."""
        if not run_ids:
            return
        self._check_leases()
        doomed = set(run_ids)
        with mlflow_errors(f"could not delete replaced runs of experiment {experiment_id}"):
            for lm in self.list_logged_models(experiment_id):
                if lm["run_id"] in doomed:
                    self.client.delete_logged_model(lm["model_id"])
            for rid in run_ids:
                run = self.client.get_run(rid)
                if run.info.lifecycle_stage != "deleted":
                    self.client.delete_run(rid)

    def delete_logged_models(self, model_ids: list[str]) -> None:
        """Delete logged models (duplicates left by an interrupted import)."""
        if model_ids:
            self._check_leases()
        with mlflow_errors("could not delete logged models"):
            for mid in model_ids:
                self.client.delete_logged_model(mid)

    # -- logged models and files ------------------------------------------------------------
    def fill_logged_model(
        self,
        model_id: str,
        model: Record,
        files: list[Record],
        *,
        fresh: bool,
        exact: bool,
        prune: bool = False,
    ) -> Record:
        """Tags, params, files (byte for byte) and status of a logged model; idempotent.

        ``prune``: files the model holds and ``files`` lacks are deleted (a model import's own
        copy of a version's files, updated in place).
        """
        client = self.client
        stats: Record = {"files": 0, "bytes": 0}
        with mlflow_errors(f"could not write logged model {model_id} (source {model['model_id']})"):
            lm = client.get_logged_model(model_id)
            tags = dict(lm.tags or {})
            self._sync_model_tags(model_id, tags, logged_model_tags(model["tags"]), exact)
            params = dict(lm.params or {})
            missing = {k: v for k, v in model["params"].items() if k not in params}
            if missing:
                client.log_model_params(model_id, missing)
            digest = files_digest(files)
            if fresh or prune or tags.get(FILES_HASH) != digest:
                repo = self._repo(lm.artifact_location)
                # the same digest: only a check, whose bytes are read where they are local
                deep = True if tags.get(FILES_HASH) != digest else None
                n, size = artifacts.sync_files(repo, files, fresh=fresh, prune=prune, deep=deep)
                stats["files"], stats["bytes"] = n, size
                if tags.get(FILES_HASH) != digest:
                    client.set_logged_model_tags(model_id, {FILES_HASH: digest})
            status = model.get("status")
            if status in ("READY", "FAILED") and str(lm.status) != status:
                client.finalize_logged_model(model_id, status)
        return stats

    def _sync_model_tags(
        self, model_id: str, current: dict[str, str], wanted: dict[str, str], exact: bool
    ) -> None:
        """A logged model's shared tags set (with ``exact``, others removed; arcuate's own and
        the versions a model import listed are kept)."""
        new_tags = {k: v for k, v in wanted.items() if current.get(k) != v}
        if new_tags:
            self.client.set_logged_model_tags(model_id, new_tags)
        if exact:
            for key in current:
                if key not in wanted and not is_managed(key) and key != MODEL_VERSIONS_TAG:
                    self.client.delete_logged_model_tag(model_id, key)

    def upload_run_files(
        self,
        run_id: str,
        files: list[Record],
        prefix: str,
        *,
        prune: bool = False,
        deep: bool | None = True,
    ) -> Record:
        """Files placed under ``prefix`` of a run's artifacts (those not already there, or
        there with other bytes: see ``deep`` in :func:`artifacts.differing`); with ``prune``,
        other files under ``prefix`` are deleted."""
        with mlflow_errors(f"could not upload files to run {run_id}"):
            repo = self._repo(self.client.get_run(run_id).info.artifact_uri)
            n, size = artifacts.sync_files(
                repo, files, fresh=False, prefix=prefix, prune=prune, deep=deep
            )
        return {"files": n, "bytes": size}

    def same_files(
        self,
        uri: str,
        files: list[Record],
        prefix: str = "",
        *,
        ignore: frozenset[str] = frozenset(),
    ) -> bool:
        """Whether ``uri`` holds exactly ``files`` under ``prefix``: every path, size and
        SHA-256 (read back, also from a remote store), and no other file (MLflow's own
        ``registered_model_meta`` aside, and files at the paths of ``ignore``)."""
        joined = artifacts.joined
        with mlflow_errors(f"could not read the files at {redact_uri(uri)}"):
            repo = self._repo(uri)
            existing = artifacts.list_files(repo, prefix or None)
            wanted = {joined(prefix, f["path"]) for f in files}
            allowed = {joined(prefix, p) for p in {artifacts.MLFLOW_MODEL_META, *ignore}}
            extra = set(existing) - wanted - allowed
            if extra or not files:
                return False
            return not artifacts.differing(repo, files, existing, prefix, deep=True)

    def repair_run_files(
        self, artifact_uri: str, files: list[Record], models: dict[str, str]
    ) -> Record:
        """Files of an imported run that are missing or differ from the shared ones, written
        again: the run's artifacts, and its logged models' files (``models``: owner ->
        artifact location). Sizes are compared everywhere, the bytes' SHA-256 on local
        artifact stores (on a remote one that would mean downloading every file)."""
        stats: Record = {"files": 0, "bytes": 0}
        by_owner: dict[str, list[Record]] = {}
        for f in files:
            by_owner.setdefault(f["owner"], []).append(f)
        with mlflow_errors(f"could not check the files at {redact_uri(artifact_uri)}"):
            for owner, mine in sorted(by_owner.items()):
                uri = artifact_uri if owner == OWNER_ARTIFACTS else models.get(owner)
                if uri is None:
                    continue
                n, size = artifacts.sync_files(self._repo(uri), mine, fresh=False, deep=None)
                stats["files"] += n
                stats["bytes"] += size
        return stats

    def ensure_logged_model(
        self,
        experiment_id: str,
        run_id: str | None,
        model: Record,
        files: list[Record],
        *,
        exact: bool = False,
    ) -> tuple[str, Record]:
        """The logged model holding a version's files: found by provenance, or created; its
        files made exactly ``files`` (a model import's own copy, updated in place)."""
        existing = [
            lm
            for lm in self.list_logged_models(experiment_id)
            if lm["source_model_id"] == model["model_id"] and lm["run_id"] == run_id
        ]
        if existing:
            mid = existing[0]["model_id"]
            fresh = False
        else:
            mid = self.create_logged_model(experiment_id, run_id, model)
            fresh = True
        stats = self.fill_logged_model(mid, model, files, fresh=fresh, exact=exact, prune=True)
        if run_id is not None and model.get("step") is not None:
            LoggedModelOutput = self._entities().LoggedModelOutput

            with mlflow_errors(f"could not link logged model {mid} to run {run_id}"):
                run = self.client.get_run(run_id)
                have = {o.model_id for o in (run.outputs.model_outputs if run.outputs else ())}
                if mid not in have:
                    self.client.log_outputs(run_id, [LoggedModelOutput(mid, int(model["step"]))])
        return mid, stats

    # -- registry -----------------------------------------------------------------------------
    def prepare_registered_model(
        self, name: str, *, description: str | None, tags: dict[str, str], exact: bool
    ) -> Record:
        """The registered model (created if missing) with its description and tags set.

        Returns ``created``, ``versions`` (the states of the visible ones, ascending: see
        :class:`~arcuate.backends.protocols.VersionSink`) and ``aliases`` (alias -> version).
        """
        client = self.client
        wanted = {k: v for k, v in tags.items() if not is_managed(k)}
        with mlflow_errors(f"could not prepare registered model {name!r}"):
            try:
                rm = client.get_registered_model(name)
            except failures() as exc:
                if error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                    raise
                rm = client.create_registered_model(
                    name, tags=wanted or None, description=description
                )
                self._next_version[name] = 1
                return {"created": True, "versions": [], "aliases": {}}
            if (rm.description or None) != (description or None):
                client.update_registered_model(name, description=description or "")
            current = dict(rm.tags or {})
            self._sync_registered_model_tags(name, current, wanted, exact)
            versions = self._versions(name)
            top = max([v["version"] for v in versions] + [int(current.get(MAX_VERSION, 0) or 0)])
            self._next_version[name] = top + 1
            return {
                "created": False,
                "versions": versions,
                "aliases": {a: int(v) for a, v in (rm.aliases or {}).items()},
            }

    def _sync_registered_model_tags(
        self, name: str, current: dict[str, str], wanted: dict[str, str], exact: bool
    ) -> None:
        for key, value in wanted.items():
            if current.get(key) != value:
                self.client.set_registered_model_tag(name, key, value)
        if exact:
            for key in current:
                if key not in wanted and not is_managed(key):
                    self.client.delete_registered_model_tag(name, key)

    def versions_using(
        self, run_ids: Iterable[str], model_ids: Iterable[str] = ()
    ) -> dict[str, list[str]]:
        """Model versions (of any registered model) that use the given runs (their run id) or
        logged models (a ``models:/<id>`` source): run or model id -> ``["<name>/<version>"]``."""
        out: dict[str, list[str]] = {}
        runs = list(run_ids)
        what = "could not look for the model versions that use runs about to be deleted"
        with mlflow_errors(what):
            for start in range(0, len(runs), 100):
                ids = ", ".join(f"'{r}'" for r in runs[start : start + 100])
                for mv in self._search_versions(f"run_id IN ({ids})"):
                    out.setdefault(mv.run_id, []).append(f"{mv.name}/{mv.version}")
            for mid in model_ids:
                for mv in self._search_versions(f"source_path = 'models:/{mid}'"):
                    out.setdefault(mid, []).append(f"{mv.name}/{mv.version}")
        return {k: sorted(set(v), key=_version_order) for k, v in out.items()}

    def _search_versions(self, filter_string: str) -> list[Any]:
        return every(
            lambda token: self.client.search_model_versions(
                filter_string, max_results=_PAGE, page_token=token
            )
        )

    def _versions(self, name: str) -> list[Record]:
        """The states of the visible versions of registered model ``name``, ascending."""
        quote = '"' if "'" in name else "'"
        found = [
            version_state(
                int(mv.version),
                dict(mv.tags or {}),
                run_id=mv.run_id or None,
                source=mv.source,
                stage=mv.current_stage or "None",
                description=mv.description,
            )
            for mv in self._search_versions(f"name = {quote}{name}{quote}")
            if mv.name == name
        ]
        return sorted(found, key=lambda v: v["version"])

    def create_version(
        self,
        name: str,
        version: Record,
        files: list[Record],
        *,
        source: str,
        run_id: str | None,
        model_id: str | None,
        provenance: Provenance,
    ) -> int:
        """Register shared ``version`` (description, tags with its provenance, stage) from
        ``source``, numbered as shared when MLflow's counter allows it.

        MLflow numbers versions max(all, deleted included) + 1, so gaps are recreated with
        placeholder versions that are deleted at once. Returns the number MLflow gave.
        """
        tags = version_tags(version, files, provenance)
        description = version["description"]
        number = self._register(
            name, int(version["version"]), source, run_id, model_id, tags, description,
            version.get("run_link"),
        )  # fmt: skip
        if version["stage"] != "None":
            current = {"description": description, "tags": tags, "stage": "None"}
            self._update_version(name, number, current, description, tags, version["stage"])
        return number

    def _register(
        self,
        name: str,
        want: int,
        source: str,
        run_id: str | None,
        model_id: str | None,
        tags: dict[str, str],
        description: str | None,
        run_link: str | None,
    ) -> int:
        """A new version numbered ``want`` if MLflow's counter allows it (placeholders first)."""
        client = self.client
        self._check_leases()
        nxt = self._next_version.get(name, 1)
        common: dict[str, Any] = {"run_id": run_id, "await_creation_for": 0}
        if model_id is not None:
            common["model_id"] = model_id
        placeholders: list[int] = []
        with (
            mlflow_errors(f"could not register a version of {name!r} from {source}"),
            global_uris(self.tracking_uri, self.registry_uri),
        ):
            while nxt < want:
                mv = client.create_model_version(name, source, tags={PLACEHOLDER: "true"}, **common)
                number = int(mv.version)
                client.delete_model_version(name, str(number))
                nxt = number + 1
                self._note_version(name, number)
                placeholders.append(number)
            mv = client.create_model_version(
                name, source, tags=tags, description=description, run_link=run_link, **common
            )
        if placeholders and model_id is not None:
            # a tracking server lists every version registered from a logged model in its
            # mlflow.modelVersions tag, placeholders too: they are gone, so is their entry
            self._edit_version_links(model_id, drop=(name, set(placeholders)))
        number = int(mv.version)
        self._note_version(name, number)
        self._next_version[name] = number + 1
        return number

    def _note_version(self, name: str, number: int) -> None:
        with mlflow_errors(f"could not tag registered model {name!r}"):
            self.client.set_registered_model_tag(name, MAX_VERSION, str(number))

    def update_version(
        self,
        name: str,
        number: int,
        version: Record,
        files: list[Record],
        *,
        current: Record,
        provenance: Provenance,
        exact: bool,
    ) -> bool:
        """Description, tags and stage of existing version ``number`` made shared ``version``'s
        (``current``: its state). Returns whether it changed."""
        tags = version_tags(version, files, provenance)
        return self._update_version(
            name, number, current, version["description"], tags, version["stage"], exact=exact
        )

    def _update_version(
        self,
        name: str,
        number: int,
        current: Record,
        description: str | None,
        tags: dict[str, str],
        stage: str,
        *,
        exact: bool = False,
    ) -> bool:
        client, version = self.client, str(number)
        changed = False
        with (
            mlflow_errors(f"could not update {name!r} version {number}"),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", FutureWarning)
            if (current.get("description") or None) != (description or None):
                client.update_model_version(name, version, description=description or "")
                changed = True
            have = current.get("tags") or {}
            for key, value in tags.items():
                if have.get(key) != value:
                    client.set_model_version_tag(name, version, key, value)
                    changed = True
            if exact:
                for key in have:
                    if key not in tags and not is_managed(key):
                        client.delete_model_version_tag(name, version, key)
                        changed = True
            if (current.get("stage") or "None") != stage:
                client.transition_model_version_stage(
                    name, version, stage, archive_existing_versions=False
                )
                changed = True
        return changed

    def finish_version(self, name: str, number: int, *, content_hash: str) -> None:
        """Mark a version complete (its content hash, written last)."""
        with mlflow_errors(f"could not tag {name!r} version {number}"):
            self.client.set_model_version_tag(name, str(number), CONTENT_HASH, content_hash)

    def link_logged_model(self, model_id: str, model: Record, name: str, number: int) -> None:
        """Add ``{name, version}`` to a logged model's ``mlflow.modelVersions`` tag, once (a
        tracking server may have added it already), the version an integer as MLflow writes
        it; only when shared logged model ``model`` listed its provider's versions."""
        if lists_versions(model):
            self._edit_version_links(model_id, add={"name": name, "version": int(number)})

    def _edit_version_links(
        self,
        model_id: str,
        *,
        add: dict[str, Any] | None = None,
        drop: tuple[str, set[int]] | None = None,
    ) -> None:
        """Rewrite a logged model's ``mlflow.modelVersions``: versions as integers, each entry
        once, ``add`` appended, the versions ``drop`` names removed; written if it changed."""
        with mlflow_errors(f"could not tag logged model {model_id}"):
            raw = (self.client.get_logged_model(model_id).tags or {}).get(MODEL_VERSIONS_TAG)
            links = _version_links(raw)
            if drop is not None:
                links = [e for e in links if not _names(e, *drop)]
            if add is not None and add not in links:
                links.append(add)
            text = json.dumps(links)
            if text != (raw or "[]"):
                self.client.set_logged_model_tags(model_id, {MODEL_VERSIONS_TAG: text})

    def set_aliases(self, name: str, aliases: dict[str, int], *, remove: list[str]) -> None:
        """Point aliases at versions and drop those in ``remove``."""
        with mlflow_errors(f"could not set the aliases of {name!r}"):
            for alias in remove:
                self.client.delete_registered_model_alias(name, alias)
            for alias, version in aliases.items():
                self.client.set_registered_model_alias(name, alias, str(version))

    def delete_versions(self, name: str, numbers: list[int]) -> None:
        """Delete versions (replaced ones, placeholders, or with OVERWRITE, unshared ones)."""
        if numbers:
            self._check_leases()
        with mlflow_errors(f"could not delete versions of {name!r}"):
            for number in numbers:
                self.client.delete_model_version(name, str(number))


if TYPE_CHECKING:

    def _conforms(
        sink: MlflowSink,
    ) -> tuple[ModelSink, BulkRunSink, PromptSink, GenAISink, TraceSink]:
        """mypy checks here that the MLflow sink implements the sink Protocols."""
        return sink, sink, sink, sink, sink
