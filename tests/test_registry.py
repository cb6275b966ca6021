"""The plug-in registry is the only list of backend names: a backend registered at run time or
installed as an ``arcuate.backends`` entry point works end to end, like a built-in one.

The toy backend is a real installation: a package and its ``.dist-info`` (``METADATA``,
``entry_points.txt``) in a directory on ``sys.path``, which ``importlib.metadata`` finds as it
finds any installed distribution.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import arcuate
from arcuate.backends import registry
from arcuate.backends.deltalake.store import DeltaLakeTableStore
from arcuate.backends.registry import BackendPlugin, register_backend, unregister_backend
from arcuate.backends.sharing.catalog import LocalShareCatalog
from arcuate.errors import BackendUnavailableError, ConfigurationError, PlanError
from arcuate.plan.capabilities import BackendCapabilities, NameRule
from tests.conftest import MlflowStore

TOY_INIT = '''
"""A toy table backend: Delta tables flattened into <warehouse>/toy/<a__b__c>."""
from arcuate.backends.registry import BackendPlugin
from arcuate.plan.capabilities import BackendCapabilities, NameRule

LOWER = NameRule("[a-z_]+", "lower-case letters and '_'")
PLUGIN = BackendPlugin(
    "table", "toy", "toy_backend.store:make", BackendCapabilities(table_names=LOWER)
)
'''
TOY_STORE = '''
from arcuate.backends.deltalake.store import DeltaLakeTableStore

WRITES = []


class ToyStore:
    name = "toy"

    def __init__(self, warehouse):
        self.inner = DeltaLakeTableStore(warehouse)

    def _flat(self, table):
        return ("toy", "__".join(table))

    def location(self, table):
        return self.inner.location(self._flat(table))

    def write(self, table, batches, *, content, mode="overwrite"):
        written = self.inner.write(self._flat(table), batches, content=content, mode=mode)
        WRITES.append((table, content, written.rows))
        return written

    def read(self, table, *, version=None):
        return self.inner.read(self._flat(table), version=version)


class NotAStore:
    name = "toy"


def make(settings, retry):
    return ToyStore(settings.warehouse)


def broken(settings, retry):
    return NotAStore()
'''
ENTRY_POINTS = """
[arcuate.backends]
table.toy = toy_backend:PLUGIN
table.bare = toy_backend.store:make
table.half = toy_backend.store:broken
table.missing = toy_backend.absent:PLUGIN
table.mislabelled = toy_backend:PLUGIN
"""


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``toy_backend`` 0.0 installed in a directory on ``sys.path``."""
    site = tmp_path / "site"
    package = site / "toy_backend"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(TOY_INIT))
    (package / "store.py").write_text(textwrap.dedent(TOY_STORE))
    info = site / "toy_backend-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-backend\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [m for m in sys.modules if m == "toy_backend" or m.startswith("toy_backend.")]:
        del sys.modules[name]


@pytest.fixture
def experiment(mlflow_store: MlflowStore) -> MlflowStore:
    """Experiment ``e`` with one run, in a fresh sqlite store."""
    from arcuate.backends.mlflow.connect import spark_guard

    with spark_guard():
        client = mlflow_store.client()
        eid = client.create_experiment("e")
        run = client.create_run(eid, run_name="r")
        client.log_param(run.info.run_id, "alpha", "0.5")
        client.set_terminated(run.info.run_id)
    return mlflow_store


def test_an_installed_plugin_runs_create_share_end_to_end(
    toy: Path, experiment: MlflowStore, workdir: Path
) -> None:
    settings = {"tracking_uri": experiment.tracking_uri, "warehouse": str(workdir / "wh")}
    assert "toy" in registry.available_backends("table")
    assert arcuate.resolve_settings(table_backend="toy").table_backend == "toy"
    assert "toy_backend.store" not in sys.modules  # names and capabilities load no engine

    [result] = arcuate.execute(
        "CREATE SHARE ml WITH TABLE team.runs FROM EXPERIMENT e", table_backend="toy", **settings
    )
    from toy_backend.store import WRITES  # type: ignore[import-not-found]

    assert WRITES == [(("team", "runs"), "experiment", 1)]
    location = str(workdir / "wh" / "toy" / "team__runs")
    assert result.summary["location"] == location
    shared = LocalShareCatalog(workdir / "wh" / "shares.yaml").table("ml", "team", "runs")
    assert shared is not None and shared["location"] == location
    table = DeltaLakeTableStore(str(workdir / "wh")).read(("toy", "team__runs"))
    assert table.num_rows == 1  # the run; its files would be further rows


def test_the_plugins_capabilities_reach_the_planner(
    toy: Path, experiment: MlflowStore, workdir: Path
) -> None:
    script = "SHOW SHARES;\nSHOW RECIPIENTS;\nCREATE SHARE ml WITH TABLE Runs FROM EXPERIMENT e"
    with pytest.raises(PlanError) as info:
        arcuate.execute(script, table_backend="toy", warehouse=str(workdir / "wh"))
    assert (info.value.code, info.value.line, info.value.col) == ("ARC203", 3, 28)
    assert info.value.message == (
        "table name part 'Runs' cannot name a table of the toy table store: use lower-case "
        "letters and '_'"
    )
    assert not (workdir / "wh").exists()  # nothing ran, not even line 1
    assert "toy_backend.store" not in sys.modules


def test_a_bare_factory_is_a_plugin_with_no_limits(toy: Path, workdir: Path) -> None:
    plugin = registry.get_plugin("table", "bare")
    assert plugin.capabilities == BackendCapabilities()
    store = plugin.load()(arcuate.resolve_settings(warehouse=str(workdir)), None)
    assert store.location(("a", "b")) == str(workdir / "toy" / "a__b")


def test_broken_plugins_fail_when_used_with_what_is_wrong(
    toy: Path, experiment: MlflowStore, workdir: Path
) -> None:
    with pytest.raises(BackendUnavailableError) as info:
        registry.get_backend("table", "missing")
    assert "the missing table backend plugin (toy_backend.absent:PLUGIN) failed to load" in str(
        info.value
    )
    with pytest.raises(BackendUnavailableError, match=r"its record says table\.toy"):
        registry.get_plugin("table", "mislabelled")
    with pytest.raises(BackendUnavailableError) as half:
        arcuate.execute(
            "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT e",
            table_backend="half",
            tracking_uri=experiment.tracking_uri,
            warehouse=str(workdir / "wh"),
        )
    assert "the half table backend built a NotAStore, which is not a TableStore" in str(
        half.value
    )
    assert "missing: location, read, write" in str(half.value)
    assert half.value.code == "ARC500"


def test_register_backend_makes_a_name_work_end_to_end(
    experiment: MlflowStore, workdir: Path
) -> None:
    built: list[Any] = []

    def s3(settings: Any, retry: Any) -> DeltaLakeTableStore:
        built.append(settings.warehouse)
        return DeltaLakeTableStore(settings.warehouse)

    with pytest.raises(ConfigurationError, match="Unknown table backend 's3'"):
        arcuate.resolve_settings(table_backend="s3")
    register_backend("table", "s3", s3)
    try:
        [result] = arcuate.execute(
            "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT e",
            table_backend="s3",
            tracking_uri=experiment.tracking_uri,
            warehouse=str(workdir / "wh"),
        )
        assert built == [str(workdir / "wh")]
        assert result.summary["location"] == str(workdir / "wh" / "runs")
        assert "s3" in registry.available_backends("table")
    finally:
        unregister_backend("table", "s3")
    assert "s3" not in registry.available_backends("table")


def test_unknown_names_get_a_close_match_and_the_known_names(toy: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        arcuate.resolve_settings(table_backend="deltalak")
    assert info.value.message == (
        "Unknown table backend 'deltalak'. Did you mean deltalake? "
        "Known: bare, deltalake, half, mislabelled, missing, spark, toy"
    )
    with pytest.raises(ConfigurationError) as cat:
        arcuate.resolve_settings(share_catalog="unit")
    assert cat.value.message == "Unknown share catalog 'unit'. Did you mean unity? Known: local, unity"
    with pytest.raises(ConfigurationError, match="Unknown backend role 'tables'"):
        registry.available_backends("tables")


def test_every_builtin_record_names_a_role_and_loads() -> None:
    for role in registry.ROLES:
        for name in registry.available_backends(role):
            plugin = registry.get_plugin(role, name)
            assert isinstance(plugin, BackendPlugin) and (plugin.role, plugin.name) == (role, name)
            if plugin.extra is None:  # the Spark ones need pyspark, installed or not
                assert callable(plugin.load())
    assert registry.available_backends("reader") == ["delta-sharing", "spark"]
    assert registry.available_backends("model_source") == ["mlflow"]
    assert registry.find("reader", flavor="pandas") == registry.get_plugin("reader", "delta-sharing")


def test_a_name_rule_accepts_whole_parts_only() -> None:
    rule = NameRule("[a-z]+", "lower-case letters")
    assert rule.accepts("abc") and not rule.accepts("abc1") and not rule.accepts("")
