"""The embedded table backend (delta-rs): Delta tables under a warehouse directory or URI.

Its plug-in record; the engine is imported only when a store is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from arcuate.backends.registry import BackendPlugin
from arcuate.plan.capabilities import BackendCapabilities, NameRule

if TYPE_CHECKING:
    from arcuate.backends.protocols import TableStore
    from arcuate.backends.retry import RetryPolicy
    from arcuate.config import Settings

#: A table name part becomes a directory of the warehouse, so it must be a plain path name
#: (``store._PART_RE``; the conformance suite checks that they agree).
TABLE_NAMES: Final = NameRule(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,254}", "letters, digits, '_' and '-'")


def table_store(settings: Settings, retry: RetryPolicy) -> TableStore:
    """The store of ``settings.warehouse`` (storage options passed through)."""
    from arcuate.backends.deltalake.store import DeltaLakeTableStore

    return DeltaLakeTableStore(settings.warehouse, settings.storage_options)


PLUGINS: Final = (
    BackendPlugin("table", "deltalake", table_store, BackendCapabilities(table_names=TABLE_NAMES)),
)
