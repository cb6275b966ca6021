"""Delta Sharing: the local share catalog (served by ``arcuate serve``) and the reader.

Their plug-in records; the engines are imported only when a backend is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from arcuate.backends.registry import BackendPlugin
from arcuate.plan.capabilities import BackendCapabilities

if TYPE_CHECKING:
    from arcuate.backends.protocols import RecipientCatalog, ShareReader
    from arcuate.backends.retry import RetryPolicy
    from arcuate.config import Settings


def local_catalog(settings: Settings, retry: RetryPolicy) -> RecipientCatalog:
    """The catalog file of ``settings.catalog_path`` (reference-server YAML)."""
    from arcuate.backends.sharing.catalog import LocalShareCatalog

    return LocalShareCatalog(settings.catalog_path)


def reader(settings: Settings, retry: RetryPolicy) -> ShareReader:
    """arcuate's Delta Sharing reader, retrying a sharing server that does not answer."""
    from arcuate.backends.sharing.reader import DeltaSharingReader

    return DeltaSharingReader(retry=retry)


PLUGINS: Final = (
    BackendPlugin("catalog", "local", local_catalog),
    BackendPlugin("reader", "delta-sharing", reader, BackendCapabilities(flavor="pandas")),
)
