"""What the configured backends can do, as plain data the planner receives.

The edge (:func:`arcuate.api.capabilities`) builds it from the registry's plugin records and
the settings; the planner only reads it, so planning stays pure and imports no backend. Each
backend declares its part as :class:`BackendCapabilities` in its plugin record.

This module imports only the standard library: every layer may read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

#: How to give a SparkSession through the Python API (front ends supply their own).
SPARK_HINT: Final = "pass spark=<SparkSession> to arcuate.execute()"


@dataclass(frozen=True, slots=True)
class NameRule:
    """What each part of a table name must look like for a table store to hold it."""

    #: A regular expression every part must match in full.
    pattern: str
    #: The rule in words, for the error: ``letters, digits, '_' and '-'``.
    allowed: str

    def accepts(self, part: str) -> bool:
        """Whether the store can hold a table with this name part."""
        return re.fullmatch(self.pattern, part) is not None


@dataclass(frozen=True, slots=True)
class BackendCapabilities:
    """What one backend can do, declared in its plugin record (defaults: no limits)."""

    #: The backend runs on a SparkSession (it cannot work without one).
    needs_spark: bool = False
    #: Table stores: the names they can hold (None: any name the language allows).
    table_names: NameRule | None = None
    #: Share catalogs: the catalog statements they run (``ops.CatalogCommand`` actions such
    #: as ``create_recipient``); None: all of them. Every catalog adds tables to shares.
    catalog_actions: frozenset[str] | None = None
    #: Share catalogs: what to do instead of a statement they cannot run.
    instead: str | None = None
    #: Share readers: the ``AS <flavor>`` of an import they read (``pandas``, ``spark``).
    flavor: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The facts the planner needs: which backends, what they can do, whether Spark is at hand."""

    table_backend: str = "deltalake"
    share_catalog: str = "local"
    has_spark: bool = False
    #: How to give a SparkSession in the calling front end, for the "needs Spark" hint.
    spark_hint: str = SPARK_HINT
    #: What the table store can do (its table names).
    table: BackendCapabilities = field(default_factory=BackendCapabilities)
    #: What the share catalog can do (its statements, whether it needs Spark).
    catalog: BackendCapabilities = field(default_factory=BackendCapabilities)
    #: A provider key for ``REDACT … HASH`` is configured (whether, never which).
    redaction_key: bool = False
