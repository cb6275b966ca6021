"""Storage options (object-store settings and credentials) from the environment, and a
warehouse in object storage without a catalog file named (issue 13 item 2)."""

from __future__ import annotations

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


def test_a_local_warehouse_keeps_its_catalog_inside(tmp_path: object) -> None:
    assert resolve_settings(None, warehouse="wh").catalog_path.endswith("wh/shares.yaml")
    assert resolve_settings(None, warehouse="file:///data/wh").catalog_path == (
        "/data/wh/shares.yaml"
    )
