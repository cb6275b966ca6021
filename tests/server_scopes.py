"""pytest-xdist: every server the suite starts runs once per test session, not once per worker.

A session fixture runs in each xdist worker that needs it, so with ``--dist load`` a server
whose tests were dealt to both workers started twice. This plugin's scheduler (used for
``--dist load``) deals every test that uses a server as one unit with every other test that
uses the same servers, so one worker runs them all: each server starts once. Other tests are
dealt one by one to whichever worker is free, and the server units go first (the largest
first), so the other worker runs the rest meanwhile.

The scheduler runs in the controlling process, which collects nothing; the workers write which
tests use which servers to a file the controller names (``workerinput``) while they collect,
before the scheduler reads it. A server asked for by name (``request.getfixturevalue``) is
found through :data:`DYNAMIC_SERVERS`; one that is missing there fails the test that starts
it. Each worker counts the servers it started, and the controller prints the sums at the end
of the run (``servers started:``).

pytest-xdist's own ``--dist loadgroup`` would do this with marks, but it renames node ids,
which pytest 9.2 no longer reads, so it deals test by test.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from typing import Any, Final

import pytest

#: Session fixtures that start a server process.
SERVERS: Final = frozenset(
    {"postgres", "s3", "azurite", "mlflow_server_pg", "sail_port", "mlflow_server"}
)
#: Module fixtures that take a minute or more to build: the tests that use one are kept on
#: one worker (with the servers any of them uses), so it is built once, not once per worker.
BUILDS: Final = frozenset({"torture_provider"})
#: Files whose tests ask for a server only through ``request.getfixturevalue`` (so it is not in
#: ``item.fixturenames``), with the mark such a test carries and the server it asks for.
DYNAMIC_SERVERS: Final[dict[str, dict[str, str]]] = {
    "tests/conformance/test_table_store.py": {"spark": "sail_port"},
    "tests/conformance/test_share_reader.py": {"spark": "sail_port"},
    "tests/conformance/test_sinks.py": {"postgres": "postgres", "server": "mlflow_server"},
    "tests/imports/test_import_paths.py": {"postgres": "postgres"},
}
_SCOPES_KEY: Final = "arcuate_server_scopes"
_STARTED_KEY: Final = "arcuate_servers_started"
_started: Counter[str] = Counter()
#: This process's units (test -> unit name), from its collection.
_units: dict[str, str] = {}


def server_units(used: dict[str, set[str]]) -> dict[str, str]:
    """Test -> unit name for the tests that use a server (or a costly build, :data:`BUILDS`):
    tests sharing one share a unit (joined transitively), named by what it holds."""
    units: list[tuple[set[str], set[str]]] = []  # (servers and builds, tests)
    for test, fixtures in sorted(used.items()):
        servers = set(fixtures & (SERVERS | BUILDS))
        if not servers:
            continue
        joined = [u for u in units if u[0] & servers]
        for u in joined:
            units.remove(u)
            servers |= u[0]
        tests = {test}.union(*(u[1] for u in joined))
        units.append((servers, tests))
    return {test: "servers:" + ",".join(sorted(s)) for s, tests in units for test in tests}


def _used(items: list[pytest.Item]) -> dict[str, set[str]]:
    """Test -> the fixtures it uses, the servers it asks for by name included."""
    used: dict[str, set[str]] = {}
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for mark, server in DYNAMIC_SERVERS.get(item.nodeid.split("::")[0], {}).items():
            if item.get_closest_marker(mark) is not None:
                fixtures.add(server)
        used[item.nodeid] = fixtures
    return used


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Work out the units; in a worker, write them for the controller's scheduler (each worker
    writes the same; a rename makes each write whole)."""
    _units.clear()
    _units.update(server_units(_used(items)))
    target = getattr(config, "workerinput", {}).get(_SCOPES_KEY)
    if not target:
        return
    part = f"{target}.{config.workerinput['workerid']}"
    with open(part, "w", encoding="utf-8") as f:
        json.dump(_units, f)
    os.replace(part, target)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Any:
    """Count a server fixture each time its setup runs (and succeeds) in this process; refuse
    to start one for a file outside that server's unit (it would start a second copy)."""
    if fixturedef.argname in SERVERS:
        item = getattr(request, "_pyfuncitem", None)
        test = item.nodeid if item is not None else ""
        servers = _units.get(test, "servers:").split(":", 1)[1].split(",")
        if _units and fixturedef.argname not in servers:
            raise pytest.UsageError(
                f"{test} asks for the server {fixturedef.argname!r} through getfixturevalue: "
                "add its file, mark and server to DYNAMIC_SERVERS in tests/server_scopes.py"
            )
    result = yield
    if fixturedef.argname in SERVERS:
        _started[fixturedef.argname] += 1
    return result


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a worker: hand the counts to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[_STARTED_KEY] = json.dumps(dict(_started))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """In the controller: where the workers write the units."""
    folder = node.config.__dict__.setdefault("_arcuate_scopes_dir", tempfile.mkdtemp())
    node.workerinput[_SCOPES_KEY] = os.path.join(folder, "units.json")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    counts = json.loads(getattr(node, "workeroutput", {}).get(_STARTED_KEY, "{}"))
    _started.update(counts)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not _started:
        return
    line = ", ".join(f"{name} {n}x" for name, n in sorted(_started.items()))
    terminalreporter.write_line(f"servers started: {line}")


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.__dict__.get("_arcuate_scopes_dir")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Server units for ``--dist load``; xdist's own scheduler for any other mode."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ServerScopeScheduling(LoadScopeScheduling):
        """``--dist loadscope`` whose units are the server units and single tests."""

        units: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.units is None:
                folder = config.__dict__.get("_arcuate_scopes_dir", "")
                try:
                    with open(os.path.join(folder, "units.json"), encoding="utf-8") as f:
                        self.units = json.load(f)
                except FileNotFoundError:  # no worker wrote it: deal test by test
                    self.units = {}
            return self.units.get(nodeid, nodeid)

    return ServerScopeScheduling(config, log)
