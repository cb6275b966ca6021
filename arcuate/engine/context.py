"""The engine's view of the world: settings plus backends, built lazily on first use.

Building a backend imports its engine (MLflow, delta-rs, Spark), so a statement that only
needs the share catalog never pays for MLflow, and EXPLAIN pays for nothing. Backends come
from the registry by the names in the settings (``factory(settings, retry)``) and are checked
against their role's Protocol; a caller may give its own instead:
``Context(settings, model_sink=my_sink)``.

What the configured backends can do, read from their plug-in records without building them,
is handed to the planner as plain data (:func:`capabilities`), and what only a backend can
show in EXPLAIN comes from its record too (:func:`explain_details`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from arcuate.backends import registry
from arcuate.backends.protocols import ShareCatalog, ShareReader, TableStore
from arcuate.backends.retry import RetryPolicy
from arcuate.config import Settings
from arcuate.errors import BackendUnavailableError
from arcuate.plan import ops
from arcuate.plan.capabilities import SPARK_HINT, Capabilities

if TYPE_CHECKING:
    from arcuate.backends.protocols import ModelSink, ModelSource
    from arcuate.plan.explain import Details

#: The model backend: MLflow is the only one (its stores are chosen by URI).
MODEL_BACKEND = "mlflow"


def capabilities(settings: Settings, *, spark_hint: str | None = None) -> Capabilities:
    """What the configured backends can do, for the planner: read from their plug-in records
    (nothing is built). ``spark_hint`` is the front end's way to give a SparkSession."""
    table = registry.get_plugin("table", settings.table_backend)
    catalog = registry.get_plugin("catalog", settings.share_catalog)
    return Capabilities(
        table_backend=settings.table_backend,
        share_catalog=settings.share_catalog,
        has_spark=settings.spark is not None,
        spark_hint=spark_hint or SPARK_HINT,
        table=table.capabilities_for(settings),
        catalog=catalog.capabilities_for(settings),
        redaction_key=bool(settings.redaction_key),
    )


def explain_details(settings: Settings) -> Details | None:
    """What EXPLAIN shows under a step that only the backend knows: the SQL statements a
    share catalog runs to add a table (Unity Catalog), from its plug-in record."""
    plugin = registry.get_plugin("catalog", settings.share_catalog)
    if plugin.add_table_sql is None:
        return None

    def details(step: ops.Operator) -> Sequence[str]:
        if not isinstance(step, ops.AddToShare) or not step.table_parts:
            return ()
        sql = plugin.sql_for_add_table()
        assert sql is not None
        statements = sql(step.share, step.table_parts, shared_as=(step.schema, step.table))
        return [f"SQL: {statement}" for statement in statements]

    return details


def _notice(message: str) -> None:
    sys.stderr.write(f"arcuate: {message}\n")
    sys.stderr.flush()


def _not_a(kind: type, backend: object, role: str, name: str) -> BackendUnavailableError:
    """The error for a plugin whose factory built something that is not its role's Protocol."""
    wanted = [n for n in (*getattr(kind, "__annotations__", {}), *vars(kind)) if n[0] != "_"]
    missing = sorted({n for n in wanted if not hasattr(backend, n)})
    return BackendUnavailableError(
        f"the {name} {registry.ROLES[role]} built a {type(backend).__name__}, which is not a "
        f"{kind.__name__} (missing: {', '.join(missing) or 'nothing by name'})"
    )


class Context:
    """Settings and the backends a plan's steps reach through their Protocols.

    Each backend given here is used as is (tests, Spark tasks, a caller's own store);
    the others are built from the registry when first used.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model_source: ModelSource | None = None,
        model_sink: ModelSink | None = None,
        table_store: TableStore | None = None,
        share_catalog: ShareCatalog | None = None,
    ) -> None:
        self.settings = settings
        self._model_source = model_source
        self._model_sink = model_sink
        self._table_store = table_store
        self._share_catalog = share_catalog

    @property
    def progress(self) -> bool:
        """Show progress bars: as configured, else on a terminal and in a notebook."""
        from arcuate.engine.progress import show_progress

        return show_progress(self.settings.progress)

    @property
    def retry(self) -> RetryPolicy:
        """Retry a server that does not answer for ``retry_seconds``; say so where progress
        shows."""
        return RetryPolicy(self.settings.retry_seconds, notify=_notice if self.progress else None)

    @cached_property
    def model_source(self) -> ModelSource:
        if self._model_source is not None:
            return self._model_source
        source: ModelSource = registry.build(
            "model_source", MODEL_BACKEND, self.settings, self.retry
        )
        return source

    @cached_property
    def model_sink(self) -> ModelSink:
        if self._model_sink is not None:
            return self._model_sink
        sink: ModelSink = registry.build("model_sink", MODEL_BACKEND, self.settings, self.retry)
        return sink

    @cached_property
    def table_store(self) -> TableStore:
        if self._table_store is not None:
            return self._table_store
        name = self.settings.table_backend
        store = registry.build("table", name, self.settings, self.retry)
        if not isinstance(store, TableStore):
            raise _not_a(TableStore, store, "table", name)
        return store

    @cached_property
    def share_catalog(self) -> ShareCatalog:
        if self._share_catalog is not None:
            return self._share_catalog
        name = self.settings.share_catalog
        catalog = registry.build("catalog", name, self.settings, self.retry)
        if not isinstance(catalog, ShareCatalog):
            raise _not_a(ShareCatalog, catalog, "catalog", name)
        return catalog

    def reader(self, flavor: str) -> ShareReader:
        """A reader of shared tables for ``AS <flavor>`` (``pandas``, ``spark``)."""
        plugin = registry.find("reader", flavor=flavor)
        if plugin is None:
            raise BackendUnavailableError(f"no share reader reads AS {flavor.upper()}")
        reader = plugin.load()(self.settings, self.retry)
        if not isinstance(reader, ShareReader):
            raise _not_a(ShareReader, reader, "reader", plugin.name)
        return reader
