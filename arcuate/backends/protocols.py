"""The small Protocols operators use to reach storage; nothing else touches a backend.

Signatures use primitives and arcuate-owned types only: record dicts shaped like the
structs of :mod:`arcuate.format.schema`, :class:`FileRef`, Arrow record batches. No MLflow,
Delta or Spark object crosses this line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import pyarrow as pa

from arcuate.format.files import ChunkedFile as ChunkedFile
from arcuate.format.files import FileRef as FileRef
from arcuate.format.files import Record as Record
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
    """Adds tables to shares."""

    def add_table(
        self, share: str, schema: str, table: str, location: str, *, if_not_exists: bool = True
    ) -> AddResult:
        """Add a table to a share (creating the share). Same definition again: ``exists``."""
        ...


@runtime_checkable
class ShareReader(Protocol):
    """Reads a shared table as a stream of record batches."""

    def batches(self, coordinate: str) -> Iterator[pa.RecordBatch]:
        """Record batches of the table at ``profile#share.schema.table``."""
        ...
