"""Spark: the Spark table backend, the Unity Catalog share catalog and the ``AS SPARK`` reader.

Their plug-in records; pyspark is imported only when a backend is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from arcuate.backends.deltalake import TABLE_NAMES
from arcuate.backends.registry import BackendPlugin
from arcuate.plan.capabilities import BackendCapabilities

if TYPE_CHECKING:
    from arcuate.backends.protocols import ShareCatalog, ShareReader, TableStore
    from arcuate.backends.retry import RetryPolicy
    from arcuate.config import Settings

#: Unity Catalog adds tables to shares; recipients, grants and share changes are kept there.
UNITY: Final = BackendCapabilities(
    needs_spark=True,
    catalog_actions=frozenset(),
    instead="manage recipients and grants in Databricks, or use share_catalog='local' "
    "with arcuate serve",
)


def table_capabilities(settings: Settings) -> BackendCapabilities:
    """Catalog tables take any name (every part is quoted); a path warehouse, path names."""
    warehouse = settings.warehouse or ""
    catalog = warehouse == "" or warehouse.startswith("catalog:")  # store.CATALOG_PREFIX
    return BackendCapabilities(needs_spark=True, table_names=None if catalog else TABLE_NAMES)


def table_store(settings: Settings, retry: RetryPolicy) -> TableStore:
    """Delta tables through ``settings.spark`` (paths under the warehouse, or catalog tables)."""
    from arcuate.backends.spark.store import SparkTableStore

    return SparkTableStore(settings.spark, settings.warehouse)


def unity_catalog(settings: Settings, retry: RetryPolicy) -> ShareCatalog:
    """Unity Catalog shares, changed through Spark SQL on ``settings.spark``."""
    from arcuate.backends.spark.unity import UnityShareCatalog

    return UnityShareCatalog(settings.spark)


def reader(settings: Settings, retry: RetryPolicy) -> ShareReader:
    """Shared tables as Spark DataFrames on ``settings.spark``."""
    from arcuate.backends.spark.reader import SparkShareReader

    return SparkShareReader(settings.spark, retry=retry)


PLUGINS: Final = (
    BackendPlugin("table", "spark", table_store, table_capabilities, extra="spark"),
    BackendPlugin(
        "catalog",
        "unity",
        unity_catalog,
        UNITY,
        extra="spark",
        add_table_sql="arcuate.backends.spark.unity:unity_sql",
    ),
    BackendPlugin(
        "reader",
        "spark",
        reader,
        BackendCapabilities(needs_spark=True, flavor="spark"),
        extra="spark",
    ),
)
