"""The contracts of the backends: one small Protocol per role, used as annotations.

The engine reaches storage only through these (its Context is typed with them); each backend
package's factory returns one, so mypy checks every backend against its role. Signatures use
primitives and arcuate-owned types only: record dicts shaped like the structs of
:mod:`arcuate.format.schema`, :class:`FileRef`, Arrow record batches. No MLflow, Delta or
Spark object crosses this line.

Roles (see :mod:`arcuate.backends.registry`): ``model_source`` (:class:`ModelSource`),
``table`` (:class:`TableStore`), ``catalog`` (:class:`ShareCatalog`; one that also keeps
recipients and grants is a :class:`RecipientCatalog`), ``reader`` (:class:`ShareReader`).
The sinks an import writes through are declared at the end of this file.

Importing this module is cheap (Arrow is needed by annotations only).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

# The format's in-memory types live in the format layer; re-exported here for code that
# imported them from this module (kept for one release).
from arcuate.format.files import ChunkedFile as ChunkedFile
from arcuate.format.files import FileRef as FileRef
from arcuate.format.files import Record as Record

if TYPE_CHECKING:
    import pyarrow as pa

    from arcuate.format.schema import Content
    from arcuate.format.traces import SharedTrace

WriteMode = Literal["overwrite", "error"]
AddResult = Literal["added", "exists"]


@dataclass(frozen=True)
class TableVersion:
    """What a table write committed."""

    location: str
    version: int
    rows: int
    bytes_written: int = 0
    #: Peak resident bytes of a helper process that wrote part of the table (0: none did).
    helper_peak_rss: int = 0


@runtime_checkable
class ModelSource(Protocol):
    """Reads what an export needs from an MLflow tracking server and model registry."""

    def get_experiment(self, name: str) -> Record:
        """The experiment record (EXPERIMENT struct). Raises NotFoundError if missing."""
        ...

    def iter_runs(self, experiment_id: str, *, filter: str | None = None) -> Iterator[Record]:
        """Every run of the experiment matching ``filter`` (RUN_INFO structs, full history)."""
        ...

    def iter_run_files(self, run: Record) -> Iterator[FileRef]:
        """The run's artifact files and its logged models' files."""
        ...

    def get_model_versions(
        self, name: str, *, versions: tuple[int, ...] = (), aliases: tuple[str, ...] = ()
    ) -> list[Record]:
        """Versions of a registered model (MODEL_VERSION_INFO structs), ascending.

        Raises NotFoundError if the model, a named version or an alias does not exist.
        """
        ...

    def get_run(self, run_id: str) -> tuple[Record, Record] | None:
        """(experiment, run) records of a run, or None when it no longer exists."""
        ...

    def iter_version_files(self, version: Record) -> Iterator[FileRef]:
        """The model files of a version (owner ``model``)."""
        ...


@runtime_checkable
class FilesAhead(Protocol):
    """A source that reads the files of later runs while earlier ones are written."""

    def iter_runs_files(
        self, runs: Iterable[Record]
    ) -> Generator[tuple[Record, Iterator[FileRef]]]:
        """Each run with its files, in order; errors surface where ``iter_run_files`` would
        raise them. A generator: closing it removes whatever was read ahead and not used."""
        ...


@runtime_checkable
class TableStore(Protocol):
    """Writes and reads arcuate tables (Delta) by table name."""

    name: str

    def location(self, table: tuple[str, ...]) -> str:
        """Where a table name lives (a path, URI or catalog name)."""
        ...

    def write(
        self,
        table: tuple[str, ...],
        batches: Iterable[pa.RecordBatch | ChunkedFile],
        *,
        content: Content,
        mode: WriteMode = "overwrite",
    ) -> TableVersion:
        """Write the batches (and the chunk rows of each :class:`ChunkedFile` among them) as
        one atomic commit; a failure leaves the previous version."""
        ...

    def read(self, table: tuple[str, ...], *, version: int | None = None) -> pa.Table:
        """The whole table (tests and DESCRIBE; imports stream through a ShareReader)."""
        ...


@runtime_checkable
class ShareCatalog(Protocol):
    """Adds tables to shares (every share catalog can)."""

    def add_table(
        self, share: str, schema: str, table: str, location: str, *, if_not_exists: bool = True
    ) -> AddResult:
        """Add a table to a share (creating the share). Same definition again: ``exists``."""
        ...


@runtime_checkable
class RecipientCatalog(ShareCatalog, Protocol):
    """A share catalog that also keeps recipients, their tokens and grants (the catalog
    statements: ``CREATE RECIPIENT``, ``GRANT``, ``SHOW SHARES``...).

    Records are plain dicts: a share as the reference server's YAML has it (``name``,
    ``schemas`` of ``tables``), a recipient as :func:`~arcuate.backends.sharing.catalog.
    public_recipient` shows it (never a token or its hash).
    """

    def shares(self) -> list[dict[str, Any]]:
        """Every share, with its schemas and tables."""
        ...

    def remove_table(self, share: str, schema: str, table: str) -> None:
        """Remove a table from a share. Raises NotFoundError if it is not there."""
        ...

    def drop_share(self, name: str, *, if_exists: bool = False) -> bool:
        """Drop a share; False when it did not exist and ``if_exists``."""
        ...

    def recipients(self) -> list[dict[str, Any]]:
        """Every recipient (public fields only)."""
        ...

    def recipient(self, name: str) -> dict[str, Any] | None:
        """One recipient (public fields only), or None."""
        ...

    def create_recipient(
        self,
        name: str,
        *,
        if_not_exists: bool = False,
        comment: str | None = None,
        expires_in_seconds: int | None = None,
        endpoint: str | None = None,
        oauth: bool = False,
        access_token_seconds: int | None = None,
        activation_seconds: int | None = None,
    ) -> tuple[dict[str, Any], str | None]:
        """A new recipient and its secret (None: it existed and ``if_not_exists``): its bearer
        token, an OAuth recipient's client secret, or an activation link's code."""
        ...

    def rotate_token(
        self,
        name: str,
        *,
        expires_in_seconds: int | None = None,
        endpoint: str | None = None,
        keep_old_seconds: int | None = None,
        activation_seconds: int | None = None,
    ) -> str:
        """A new secret for the recipient; the old one stops working (after
        ``keep_old_seconds``)."""
        ...

    def drop_recipient(self, name: str, *, if_exists: bool = False) -> bool:
        """Drop a recipient (its token stops working); False when it did not exist."""
        ...

    def grant(self, share: str, recipient: str) -> bool:
        """Let the recipient read the share; False when it already could."""
        ...

    def revoke(self, share: str, recipient: str) -> bool:
        """Stop the recipient reading the share; False when it could not."""
        ...


@runtime_checkable
class AccessCatalog(RecipientCatalog, Protocol):
    """A recipient catalog whose server enforces per-recipient access policies (IP access
    lists, rate limits) and keeps an access log (``ALTER RECIPIENT ... SET IP ACCESS LIST``,
    ``SHOW ACCESS LOG``). Rows are plain dicts, one per request or per recipient.
    """

    def set_ip_access_list(self, name: str, entries: list[str] | None) -> list[str] | None:
        """Restrict the recipient to these addresses and ranges (None: lift it); the list as
        stored."""
        ...

    def set_rate_limit(self, name: str, requests: int | None, per_seconds: int = 60) -> None:
        """Allow the recipient ``requests`` per ``per_seconds`` (None: no limit)."""
        ...

    def access_log(
        self,
        *,
        recipient: str | None = None,
        share: str | None = None,
        since: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` requests served, newest first, filtered as asked."""
        ...

    def usage(
        self, *, recipient: str | None = None, share: str | None = None, since: str | None = None
    ) -> list[dict[str, Any]]:
        """Requests, refusals, bytes sent and first and last access, per recipient."""
        ...


@runtime_checkable
class ShareReader(Protocol):
    """Reads a shared table as a stream of record batches."""

    def batches(self, coordinate: str) -> Iterator[pa.RecordBatch]:
        """Record batches of the table at ``profile#share.schema.table``."""
        ...


# == The import side: sinks ======================================================================
# What an import writes to (MLflow: ``arcuate.backends.mlflow.sink.MlflowSink``). Records are
# the normalised dicts of :mod:`arcuate.format.validate` going in, and the small state dicts
# each method names coming out; files going in are dicts with ``owner``, ``path``, ``size``,
# ``sha256`` and ``local`` (a local path to the bytes). How the sink keeps provenance and
# completeness (MLflow: ``arcuate.*`` tags) is its own business: the engine sees fields.


@dataclass(frozen=True)
class Provenance:
    """Where an imported object comes from, and which import wrote it.

    The engine decides it when it writes; the sink keeps it with the object and hands it back
    as the ``provenance`` field of the states it lists, so that a later import can tell its
    own objects from anyone else's (``docs/recipient.md``, "Provenance").
    """

    #: the share coordinate as the statement gave it ("": none, or not recorded)
    source: str = ""
    #: provider, share and table, ``<endpoint>#<share>.<schema>.<table>`` (None: not recorded)
    origin: str | None = None
    #: which import wrote it: ``experiment`` or ``model:<name>`` (None: not recorded)
    owner: str | None = None


class HeldLease(Protocol):
    """An import lease while it is held."""

    #: seconds spent waiting for another import of the same target
    waited: float


class LeaseScope(Protocol):
    """``with sink.lock(...) as lease:``: the lease is held inside the block."""

    def __enter__(self) -> HeldLease: ...

    def __exit__(self, exc_type: Any, exc: Any, tb: Any, /) -> bool | None: ...


@runtime_checkable
class RunSink(Protocol):
    """Experiments, runs, their logged models and files, as an experiment import writes them.

    States of runs (from :meth:`list_runs`, :meth:`find_runs`, :meth:`run_state`) have
    ``run_id``, ``experiment_id``, ``run_name``, ``source_run_id`` (the shared run it was
    imported from, or None), ``content_hash`` (None until the run is complete),
    ``lifecycle_stage``, ``artifact_uri`` and ``provenance``; other keys are the sink's own.
    """

    def lock(
        self, kind: Literal["experiment", "model"], name: str, *, restore: bool = False
    ) -> LeaseScope:
        """Hold the import lease on an experiment or registered model (created if missing):
        two imports of one target never write at the same time. ``restore``: a deleted
        experiment is restored rather than refused."""
        ...

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
        """The id of experiment ``name``, created if missing, with the shared ``tags`` (all of
        them and no other with ``exact``). A deleted one is restored with ``restore``, else it
        is a ConflictError; with ``owner``, one another import did not create is one too."""
        ...

    def experiment_state(self, name: str) -> Record | None:
        """``experiment_id``, ``lifecycle_stage`` and ``provenance`` of an experiment, or None."""
        ...

    def remove_orphan_files(self, experiment_id: str) -> int:
        """Remove the files a killed import left in the experiment (hold its lease); how many
        places were cleaned."""
        ...

    def list_runs(self, experiment_id: str) -> list[Record]:
        """The states of every run of the experiment, deleted ones too."""
        ...

    def find_runs(self, source_run_id: str) -> list[Record]:
        """The states of the active runs of any experiment imported from ``source_run_id``."""
        ...

    def run_state(self, run_id: str) -> Record | None:
        """A run's state (with ``experiment_name``), or None when it does not exist."""
        ...

    def create_run(
        self,
        experiment_id: str,
        run: Record,
        *,
        source_run_id: str,
        provenance: Provenance,
    ) -> str:
        """A new, incomplete run for shared ``run`` (its start time, name and user); its id."""
        ...

    def rebuild_reason(
        self, run_id: str, run: Record, *, exact: bool, artifact_paths: list[str]
    ) -> str | None:
        """Why run ``run_id`` cannot become shared ``run`` in place (a param changed; with
        ``exact``, something it holds is no longer shared), or None when it can."""
        ...

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
        """Write what run ``run_id`` lacks of shared ``run`` and its ``files`` (ids remapped
        through ``run_ids``/``model_ids``; ``fresh``: just created). Idempotent. Counters:
        ``metric_points``, ``files``, ``bytes`` and ``unlinked``."""
        ...

    def finish_run(
        self,
        run_id: str,
        *,
        content_hash: str,
        deleted: bool = False,
        provenance: Provenance,
    ) -> None:
        """Mark a run complete (``content_hash``, written last) and deleted if it is so."""
        ...

    def reconcile_run(
        self, state: Record, run: Record, *, run_ids: dict[str, str], exact: bool
    ) -> bool:
        """Bring the tags of an unchanged run up to date; whether anything changed."""
        ...

    def delete_runs(self, experiment_id: str, run_ids: list[str]) -> None:
        """Delete runs and the logged models they produced."""
        ...

    def write_concurrency(self) -> int:
        """How many runs an import may write at the same time."""
        ...

    def list_logged_models(self, experiment_id: str) -> list[Record]:
        """The experiment's logged models: ``model_id``, ``source_model_id`` (the shared one it
        was imported from, or None), ``run_id``, ``name`` and ``artifact_location``."""
        ...

    def create_logged_model(self, experiment_id: str, run_id: str | None, model: Record) -> str:
        """A new, pending logged model for shared ``model``; its id."""
        ...

    def ensure_logged_model(
        self,
        experiment_id: str,
        run_id: str | None,
        model: Record,
        files: list[Record],
        *,
        exact: bool = False,
    ) -> tuple[str, Record]:
        """The logged model of run ``run_id`` imported from shared ``model`` (created if
        missing), holding exactly ``files``: its id and counters (``files``, ``bytes``)."""
        ...

    def delete_logged_models(self, model_ids: list[str]) -> None:
        """Delete logged models."""
        ...

    def upload_run_files(
        self,
        run_id: str,
        files: list[Record],
        prefix: str,
        *,
        prune: bool = False,
        deep: bool | None = True,
    ) -> Record:
        """Put ``files`` under ``prefix`` of a run's artifacts (those missing or different:
        by size, and by bytes when ``deep``, or where local when None); with ``prune``, remove
        the others there. Counters: ``files``, ``bytes``."""
        ...

    def same_files(
        self,
        uri: str,
        files: list[Record],
        prefix: str = "",
        *,
        ignore: frozenset[str] = frozenset(),
    ) -> bool:
        """Whether ``uri`` holds exactly ``files`` under ``prefix`` (paths, sizes, bytes); a
        file at a path of ``ignore`` (relative to ``prefix``) may be there too, whatever its
        bytes."""
        ...

    def repair_run_files(
        self, artifact_uri: str, files: list[Record], models: dict[str, str]
    ) -> Record:
        """Write again the files of an imported run (and of its logged models: owner ->
        artifact location in ``models``) that are missing or altered. Counters: ``files``,
        ``bytes``."""
        ...


@runtime_checkable
class BulkRunSink(Protocol):
    """New runs written whole, many at a time (optional: a sink without it gets every run
    through :class:`RunSink`, as does one whose :meth:`bulk_runs` says no)."""

    def bulk_runs(self, experiment_id: str) -> bool:
        """Whether new runs of the experiment can be written whole with :meth:`write_new_runs`."""
        ...

    def bulk_concurrency(self) -> int:
        """How many :meth:`write_new_runs` calls may run at the same time (1: one at a time)."""
        ...

    def new_run_id(self) -> str:
        """An id for a run :meth:`write_new_runs` will create."""
        ...

    def new_model_id(self) -> str:
        """An id for a logged model :meth:`write_new_runs` will create."""
        ...

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
        """Create complete new runs at once, all or none. Each has ``run_id``,
        ``source_run_id``, ``run``, ``files``, ``content_hash`` and ``deleted``. Counters as
        :meth:`RunSink.fill_run`'s, added up."""
        ...


@runtime_checkable
class VersionSink(Protocol):
    """Registered models, their versions and aliases, as a model import writes them.

    Version states (in :meth:`prepare_registered_model`) have ``version``, ``run_id``,
    ``source`` (where MLflow reads the files), ``source_model`` and ``source_version`` (the
    shared version it was imported from; None when unknown), ``imported`` (an import wrote
    it), ``content_hash`` (None until complete), ``source_uri`` (the shared version's source),
    ``placeholder`` (a gap-filler to delete) and ``provenance``; other keys are the sink's own.
    """

    def prepare_registered_model(
        self, name: str, *, description: str | None, tags: dict[str, str], exact: bool
    ) -> Record:
        """The registered model (created if missing) with the shared description and tags:
        ``created``, ``versions`` (their states, ascending) and ``aliases`` (alias -> version)."""
        ...

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
        """Register shared ``version`` (its description, tags and stage) from ``source``,
        keeping its number when the registry allows it; the number it got. Incomplete until
        :meth:`finish_version`."""
        ...

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
        """Bring version ``number`` (state ``current``) up to shared ``version``: description,
        tags (no others with ``exact``) and stage. Whether it changed."""
        ...

    def finish_version(self, name: str, number: int, *, content_hash: str) -> None:
        """Mark a version complete (``content_hash``, written last)."""
        ...

    def link_logged_model(self, model_id: str, model: Record, name: str, number: int) -> None:
        """List version ``number`` on logged model ``model_id``, as shared logged model
        ``model`` listed its provider's versions (nothing when it did not)."""
        ...

    def set_aliases(self, name: str, aliases: dict[str, int], *, remove: list[str]) -> None:
        """Point ``aliases`` at versions and drop those in ``remove``."""
        ...

    def delete_versions(self, name: str, numbers: list[int]) -> None:
        """Delete versions."""
        ...

    def versions_using(
        self, run_ids: Iterable[str], model_ids: Iterable[str] = ()
    ) -> dict[str, list[str]]:
        """Versions of any registered model using the runs or logged models: id ->
        ``["<name>/<version>"]``. (They keep a run or model from being deleted.)"""
        ...


class ModelSink(RunSink, VersionSink, Protocol):
    """One MLflow tracking store and model registry, as an import writes to them (and,
    where it can, :class:`BulkRunSink` too)."""


@runtime_checkable
class PromptSource(Protocol):
    """MLflow prompts, as an export reads them (format 2). A ``model_source`` that holds
    prompts implements this too."""

    def get_prompt_versions(
        self, name: str, *, versions: tuple[int, ...] = (), aliases: tuple[str, ...] = ()
    ) -> list[Record]:
        """``prompt_version`` records of prompt ``name``, ascending: every live version, or
        the named ones and those the aliases point at. Raises NotFoundError if missing."""
        ...


@runtime_checkable
class PromptSink(Protocol):
    """MLflow prompts, as an import writes them. A ``model_sink`` that holds prompts
    implements this too."""

    def prompt_state(self, name: str) -> Record | None:
        """Prompt ``name`` here (description, tags, versions number -> content, aliases,
        ``top``: the highest number used), or None; ConflictError if it is a model."""
        ...

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
        """Create or update the prompt, create ``versions`` with their numbers, set its
        aliases, delete the versions ``remove`` names."""
        ...


@runtime_checkable
class GenAISource(Protocol):
    """An experiment's registered scorers and evaluation datasets, as an export reads them
    (format 2). A ``model_source`` that holds them implements this too."""

    def get_scorers(self, experiment_id: str) -> tuple[list[Record], list[str]]:
        """The declarative ``scorer`` records (ascending), and a line for each version left
        out because it carries code (never loaded)."""
        ...

    def iter_eval_records(self, experiment_id: str) -> Iterator[Record]:
        """The ``eval_record`` records of every dataset linked to the experiment."""
        ...


@runtime_checkable
class GenAISink(Protocol):
    """An experiment's registered scorers and evaluation datasets, as an import writes them."""

    def scorer_versions(self, experiment_id: str) -> dict[str, dict[int, str]]:
        """Every scorer version here: name -> version -> serialized JSON."""
        ...

    def write_scorers(
        self,
        experiment_id: str,
        creates: list[tuple[str, int, str]],
        placeholders: list[tuple[str, int]],
    ) -> None:
        """Register ``creates`` (name, number, JSON) in order, then delete ``placeholders``."""
        ...

    def dataset_state(self, experiment_id: str, origin: str) -> dict[str, Record]:
        """Datasets here imported from table ``origin``: provider id -> ``{id, name, tags,
        records: inputs hash -> record}``."""
        ...

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
        """Create (or update ``here``) dataset ``dataset`` and upsert ``records``; its id."""
        ...

    def delete_dataset_records(self, dataset_id: str, record_ids: list[str]) -> None:
        """Delete records of a dataset here by their ids (OVERWRITE)."""
        ...

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset here (OVERWRITE: one this table imported and no longer holds)."""
        ...


@runtime_checkable
class TraceSource(Protocol):
    """An experiment's MLflow traces, as an export reads them (format 2)."""

    def iter_traces(self, experiment_id: str, filter_string: str | None) -> Iterator[Record]:
        """The ``trace`` column values of the experiment's traces (those ``filter_string``,
        MLflow's trace search syntax, selects), a page at a time."""
        ...


@runtime_checkable
class TraceSink(Protocol):
    """An experiment's MLflow traces, as an import writes them (format 2)."""

    def trace_ids(self, experiment_id: str) -> set[str]:
        """The ids of the traces the experiment holds."""
        ...

    def trace_experiments(self, trace_ids: list[str]) -> dict[str, str]:
        """Of ``trace_ids``, those that exist here: trace id -> its experiment id."""
        ...

    def write_traces(
        self,
        experiment_id: str,
        traces: Sequence[SharedTrace],
        runs: Mapping[str, str],
        models: Mapping[str, str],
        *,
        new: Sequence[bool | None],
    ) -> list[int]:
        """Re-create ``traces`` (validated) with their ids, run and logged model links mapped
        through ``runs``/``models``; the number of assessments added to each. Per trace,
        ``new`` True: it is not here; False: it is, only the assessments it lacks are added;
        None: unknown."""
        ...
