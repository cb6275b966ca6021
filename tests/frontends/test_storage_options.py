"""Storage options (object-store settings and credentials) from the environment, and a
warehouse in object storage without a catalog file named (issue 13 item 2)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from arcuate.config import Settings, resolve_settings
from arcuate.errors import ConfigurationError

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def test_storage_options_come_from_arcuate_storage_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "ARCUATE_STORAGE_OPTIONS",
        '{"aws_region": "eu-west-1", "aws_allow_http": true, "timeout": 30}',
    )
    settings = resolve_settings(None)
    assert settings.storage_options == {
        "aws_region": "eu-west-1",
        "aws_allow_http": "true",
        "timeout": "30",
    }


def test_explicit_storage_options_replace_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARCUATE_STORAGE_OPTIONS", '{"aws_region": "eu-west-1"}')
    settings = resolve_settings(None, storage_options={"aws_region": "us-east-2"})
    assert settings.storage_options == {"aws_region": "us-east-2"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"aws_secret_access_key": "' + SECRET + '"',
            "ARCUATE_STORAGE_OPTIONS is not JSON",
        ),
        ('["aws_secret_access_key", "' + SECRET + '"]', "must be a JSON object"),
        (
            '{"aws_secret_access_key": {"nested": "' + SECRET + '"}}',
            "ARCUATE_STORAGE_OPTIONS: the value of 'aws_secret_access_key' must be a string",
        ),
    ],
)
def test_a_bad_arcuate_storage_options_is_named_and_never_echoed(
    monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.setenv("ARCUATE_STORAGE_OPTIONS", text)
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(None)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.__cause__)


def test_settings_never_show_storage_options() -> None:
    """Settings end up in reprs, tracebacks and notebooks: the credentials stay out."""
    settings = Settings(storage_options={"aws_secret_access_key": SECRET})
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


@pytest.mark.parametrize("warehouse", ["s3://bucket/wh", "gs://bucket/wh", "az://c/wh"])
def test_a_warehouse_in_object_storage_needs_a_catalog_file(warehouse: str) -> None:
    """The catalog is a local file: no more 's3:/bucket/wh/shares.yaml' in the working
    directory."""
    settings = resolve_settings(None, warehouse=warehouse)
    with pytest.raises(ConfigurationError) as caught:
        settings.catalog_path  # noqa: B018
    assert f"the warehouse {warehouse} is in object storage" in str(caught.value)
    assert "ARCUATE_CATALOG" in str(caught.value)
    named = resolve_settings(None, warehouse=warehouse, catalog="/tmp/shares.yaml")
    assert named.catalog_path == "/tmp/shares.yaml"


def test_a_local_warehouse_keeps_its_catalog_inside() -> None:
    assert resolve_settings(None, warehouse="wh").catalog_path.endswith("wh/shares.yaml")
    assert resolve_settings(None, warehouse="file:///data/wh").catalog_path == (
        "/data/wh/shares.yaml"
    )


def _catalog_with_a_table_in_s3(path: Path) -> tuple[Path, str]:
    from arcuate.backends.sharing.catalog import LocalShareCatalog

    catalog = LocalShareCatalog(path / "shares.yaml")
    catalog.add_table("s", "default", "t", "s3://bucket/wh/t")
    _, token = catalog.create_recipient("alice")
    catalog.grant("s", "alice")
    assert token is not None
    return catalog.path, token


def test_without_obstore_serve_warns_and_answers_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tables in object storage need the ``objectstore`` extra on the server: the banner
    says so, and the recipient gets a 400 (not a 5xx) that points at the provider."""
    import importlib.util

    import requests

    from arcuate.backends.sharing.server import serve_in_thread
    from arcuate.frontends import serve_cli

    path, token = _catalog_with_a_table_in_s3(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "obstore" else real(name, *a)
    )
    serve_cli._check_object_stores(str(path))
    assert "1 table(s) in object storage (s.default.t) cannot be served without obstore: " in (
        capsys.readouterr().err
    )
    for name in ("obstore", "obstore.store", "obstore.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)
    with serve_in_thread(str(path)) as handle:
        response = requests.post(
            f"{handle.endpoint}/shares/s/schemas/default/tables/t/query",
            headers={"Authorization": f"Bearer {token}"},
            json={},
            timeout=30,
        )
        assert handle.sharing.stats.server_errors == 0
    assert response.status_code == 400
    assert response.json() == {
        "errorCode": "UNSUPPORTED_OPERATION",
        "message": "this table is stored in object storage, which this server is not set up "
        "to serve; ask the provider to check the server's log",
    }
