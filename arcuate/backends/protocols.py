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

from collections.abc import Iterable, Iterator
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
    ) -> tuple[dict[str, Any], str | None]:
        """A new recipient and its bearer token (None: it existed and ``if_not_exists``)."""
        ...

    def rotate_token(
        self, name: str, *, expires_in_seconds: int | None = None, endpoint: str | None = None
    ) -> str:
        """A new bearer token for the recipient; the old one stops working."""
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
