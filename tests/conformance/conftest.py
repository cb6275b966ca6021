"""The conformance suite: the same contract tests over every implementation of a role.

A test asks for ``table_store`` or ``share_reader``; each is parametrized over every backend of
its role the registry knows (a new table store is covered without touching this suite; those
that need a SparkSession are marked ``spark`` and run on a real Sail server) and built through
the registry, as a statement builds them. What a backend does not do is declared on the test,
with a reason (ibis's markers):

* ``@pytest.mark.notimpl(["spark"], reason=..., raises=...)``: arcuate does not do it yet;
* ``@pytest.mark.notyet(["spark"], reason=..., raises=...)``: the engine underneath cannot yet;
* ``@pytest.mark.never(["spark"], reason=..., raises=...)``: it never will, by design.

Each becomes a strict ``xfail`` for the backends it names (a gap that closes fails the suite,
so the marker goes), and a marker naming an unknown backend, or without a reason, is an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arcuate.backends import registry
from arcuate.backends.retry import RetryPolicy
from arcuate.config import Settings, resolve_settings

MARKERS = ("notimpl", "notyet", "never")
#: The backends each suite runs over: every one of the role.
TABLE_STORES = tuple(registry.available_backends("table"))
SHARE_READERS = tuple(registry.available_backends("reader"))


def _needs_spark(role: str, name: str) -> bool:
    return registry.get_plugin(role, name).capabilities_for(Settings()).needs_spark


def _params(role: str, names: tuple[str, ...]) -> list[Any]:
    return [
        pytest.param(n, id=n, marks=[pytest.mark.spark] if _needs_spark(role, n) else [])
        for n in names
    ]


def check_marker(where: str, mark: pytest.Mark) -> None:
    """A gap marker must name known backends and say why.

    Raises:
        pytest.UsageError: it names no backend or an unknown one, or has no reason.
    """
    known = set(TABLE_STORES) | set(SHARE_READERS)
    names = set(mark.args[0]) if mark.args and not isinstance(mark.args[0], str) else set()
    unknown = sorted(names - known)
    if not names or unknown:
        raise pytest.UsageError(
            f"{where}: @{mark.name} must name known backends in a list, got "
            f"{list(mark.args[:1])} (unknown: {', '.join(unknown) or '-'}); "
            f"known: {', '.join(sorted(known))}"
        )
    if not mark.kwargs.get("reason"):
        raise pytest.UsageError(f"{where}: @{mark.name} needs reason=")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Reject gap markers naming a backend the suites do not run over, or without a reason."""
    for item in items:
        for kind in MARKERS:
            for mark in item.iter_markers(kind):
                check_marker(item.nodeid, mark)


def _declare_gaps(request: pytest.FixtureRequest, name: str) -> None:
    for kind in MARKERS:
        for mark in request.node.iter_markers(kind):
            if name in mark.args[0]:
                request.applymarker(
                    pytest.mark.xfail(
                        reason=f"{kind}: {mark.kwargs['reason']}",
                        raises=mark.kwargs.get("raises"),
                        strict=True,
                    )
                )


@dataclass
class Built:
    """A backend as a statement builds it, with the settings it was built from."""

    role: str
    name: str
    backend: Any
    settings: Settings

    @property
    def plugin(self) -> registry.BackendPlugin:
        return registry.get_plugin(self.role, self.name)


def _settings(request: pytest.FixtureRequest, role: str, name: str, **values: Any) -> Settings:
    if _needs_spark(role, name):
        values["spark"] = request.getfixturevalue("spark")
    return resolve_settings(**values)


@pytest.fixture(params=_params("table", TABLE_STORES))
def table_store(request: pytest.FixtureRequest, tmp_path: Path) -> Built:
    """Each table store, writing under a fresh warehouse directory."""
    name = str(request.param)
    _declare_gaps(request, name)
    settings = _settings(
        request, "table", name, table_backend=name, warehouse=str(tmp_path / "wh")
    )
    store = registry.build("table", name, settings, RetryPolicy(0))
    return Built("table", name, store, settings)


@pytest.fixture(params=_params("reader", SHARE_READERS))
def share_reader(request: pytest.FixtureRequest) -> Built:
    """Each share reader (retrying a server that does not answer for one second)."""
    name = str(request.param)
    _declare_gaps(request, name)
    settings = _settings(request, "reader", name, retry_seconds=1)
    reader = registry.build("reader", name, settings, RetryPolicy(1))
    return Built("reader", name, reader, settings)


@dataclass(frozen=True)
class Shared:
    """A running sharing server: a recipient's profile and the tables it may read."""

    profile: Path
    endpoint: str
    rows: list[dict[str, Any]]

    def coordinate(self, table: str, share: str = "conformance") -> str:
        return f"{self.profile}#{share}.default.{table}"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """Tables written by the deltalake store, shared by the real server over HTTP: ``runs``
    (an experiment: runs with files, a chunked file, a model version), ``empty``, and
    ``foreign`` (a Delta table that is not an arcuate table)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from arcuate.backends.deltalake.store import DeltaLakeTableStore
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile
    from arcuate.format.schema import SCHEMA
    from tests.server.conftest import experiment_rows

    root = tmp_path_factory.mktemp("conformance-share")
    store = DeltaLakeTableStore(str(root / "wh"))
    rows = experiment_rows(0)
    runs = store.write(("runs",), pa.Table.from_pylist(rows, schema=SCHEMA).to_batches(),
                       content="experiment")  # fmt: skip
    empty = store.write(("empty",), [], content="model")
    write_deltalake(str(root / "wh" / "foreign"), pa.table({"v": [1, 2]}))
    catalog = LocalShareCatalog(root / "shares.yaml")
    for name, location in (("runs", runs.location), ("empty", empty.location),
                           ("foreign", str(root / "wh" / "foreign"))):  # fmt: skip
        catalog.add_table("conformance", "default", name, location)
    _, token = catalog.create_recipient("reader")
    assert token is not None
    catalog.grant("conformance", "reader")
    handle = serve_in_thread(str(root / "shares.yaml"))
    try:
        profile = write_profile(root / "reader.share", handle.endpoint, token)
        yield Shared(Path(profile), str(handle.endpoint), rows)
    finally:
        handle.stop()
