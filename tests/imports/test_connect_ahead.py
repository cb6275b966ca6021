"""An import starts building MLflow's client (importing MLflow, opening the store) on a thread
while it reads the share: the client it then uses is that one, and a store that cannot be
opened fails the statement as it did when the client was built on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.mlflow.sink import MlflowSink


def test_the_client_built_ahead_is_the_one_used(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sink = MlflowSink(uri)
    sink.connect_ahead()
    ahead = sink._ahead
    assert ahead is not None
    assert ahead._thread.name == "arcuate-connect"
    client = sink.client
    assert not ahead._thread.is_alive()
    assert client is sink.client
    assert client._tracking_client.tracking_uri == uri
    assert client.get_experiment_by_name("Default") is not None
    sink.connect_ahead()  # built already: nothing more
    assert sink._ahead is None


def test_a_rest_client_is_not_built_ahead() -> None:
    sink = MlflowSink("http://127.0.0.1:1")
    sink.connect_ahead()
    assert sink._ahead is None


def test_a_failure_building_the_client_is_raised_at_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What building the client raised on the thread is raised where the client is first
    used, and an import statement fails with it."""
    import arcuate
    from arcuate.backends.mlflow import sink as sink_module
    from arcuate.config import resolve_settings
    from arcuate.engine.context import Context
    from arcuate.engine.imports import import_experiment
    from tests.imports.import_helpers import batches_of
    from tests.imports.test_import_paths import edge_rows

    def refused(tracking_uri: str, registry_uri: str) -> Any:
        raise OSError(f"the store at {tracking_uri} refused the connection")

    monkeypatch.setattr(sink_module, "make_client", refused)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sink = MlflowSink(uri)
    sink.connect_ahead()
    with pytest.raises(OSError, match="refused the connection"):
        sink.client  # noqa: B018 - building it is the point
    ctx = Context(resolve_settings(tracking_uri=uri, registry_uri=uri, progress=False))
    with pytest.raises(arcuate.ArcuateError, match="refused the connection"):
        import_experiment(batches_of(edge_rows()), "e", ctx)
