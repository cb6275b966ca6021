"""Settings are resolved once, at the edge: what the backends read comes from them, never from
the environment behind their back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arcuate.config import Settings, resolve_settings
from arcuate.engine.context import Context
from arcuate.errors import ConfigurationError


def test_import_path_and_lock_wait_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCUATE_IMPORT_PATH", "API")
    monkeypatch.setenv("ARCUATE_LOCK_WAIT", "2.5")
    resolved = resolve_settings()
    assert (resolved.import_path, resolved.lock_wait) == ("api", 2.5)
    assert resolve_settings(import_path="bulk", lock_wait=0).import_path == "bulk"
    assert (Settings().import_path, Settings().lock_wait) == ("auto", 600.0)


def test_rest_concurrency_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCUATE_REST_CONCURRENCY", "3")
    assert resolve_settings().rest_concurrency == 3
    assert Settings().rest_concurrency == 8
    source: Any = Context(Settings(tracking_uri="http://127.0.0.1:9", rest_concurrency=5))
    assert source.model_source.concurrency == 5


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("rest_concurrency", "0", "rest_concurrency must be a whole number from 1 to 64, "
         "got '0' (ARCUATE_REST_CONCURRENCY)"),
        ("rest_concurrency", "many", "rest_concurrency must be a whole number from 1 to 64, "
         "got 'many' (ARCUATE_REST_CONCURRENCY)"),
        ("import_path", "fast", "import_path must be one of auto, api, bulk, got 'fast' "
         "(ARCUATE_IMPORT_PATH)"),
        ("lock_wait", "-1", "lock_wait must be a number of seconds (>= 0), got '-1' "
         "(ARCUATE_LOCK_WAIT)"),
        ("lock_wait", "soon", "lock_wait must be a number of seconds (>= 0), got 'soon' "
         "(ARCUATE_LOCK_WAIT)"),
    ],
)  # fmt: skip
def test_bad_values_are_named_with_their_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_settings(**{name: value})
    assert info.value.message == message


def test_the_sink_reads_its_settings_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the environment says otherwise: only resolve_settings reads it, the sink must not
    monkeypatch.setenv("ARCUATE_IMPORT_PATH", "bulk")
    monkeypatch.setenv("ARCUATE_LOCK_WAIT", "7")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sink: Any = Context(
        Settings(tracking_uri=uri, import_path="api", lock_wait=3.0)
    ).model_sink
    assert (sink.import_path, sink.lock_wait) == ("api", 3.0)
    assert not (tmp_path / "mlflow.db").exists()  # building the sink opens no store


def test_the_mlflow_client_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracking servers get arcuate's REST client unless ARCUATE_MLFLOW_CLIENT=mlflow (or an
    auth plug-in MLflow must handle); database URIs always get MLflow's; a typo is refused."""
    from arcuate.backends.mlflow.rest import wanted
    from arcuate.errors import ConfigurationError

    monkeypatch.delenv("ARCUATE_MLFLOW_CLIENT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_AUTH", raising=False)
    assert wanted("http://127.0.0.1:5000") and wanted("HTTPS://mlflow.example.com/")
    assert not wanted("sqlite:///mlflow.db") and not wanted("databricks")
    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", " MLflow ")
    assert not wanted("http://127.0.0.1:5000")
    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", "rest")
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "my_plugin")
    assert not wanted("http://127.0.0.1:5000")
    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", "mlfow")
    with pytest.raises(
        ConfigurationError, match="ARCUATE_MLFLOW_CLIENT must be 'rest' or 'mlflow', got 'mlfow'"
    ):
        wanted("http://127.0.0.1:5000")
