"""The catalog file is checked for shape on load: a hand edit of the wrong shape is an error
naming the field, for statements and for the server alike (which keeps its last good view)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from arcuate.backends.sharing.catalog import LocalShareCatalog
from arcuate.errors import ConfigurationError


@pytest.fixture
def catalog(tmp_path: Path) -> LocalShareCatalog:
    cat = LocalShareCatalog(tmp_path / "shares.yaml")
    cat.add_table("ml", "mlflow", "runs", str(tmp_path / "runs"))
    cat.create_recipient("acme", expires_in_seconds=3600)
    cat.grant("ml", "acme")
    return cat


def edit(catalog: LocalShareCatalog, change: Any) -> None:
    doc = yaml.safe_load(catalog.path.read_text())
    change(doc)
    catalog.path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("grants", ["ml"], "grants"),
        ("grants.ml", "acme", "grants.ml"),
        ("grants.ml", [["acme"]], "grants.ml[0]"),
        ("recipients", {"acme": 1}, "recipients"),
        ("recipients.0", "acme", "recipients[0]"),
        ("recipients.0.name", ["acme"], "recipients[0].name"),
        ("recipients.0.comment", {"a": 1}, "recipients[0].comment"),
        ("recipients.0.created_at", "yesterday", "recipients[0].created_at"),
        ("recipients.0.token", "abc", "recipients[0].token"),
        ("recipients.0.token.expires_at", "tomorrow", "recipients[0].token.expires_at"),
        ("recipients.0.token.expires_at", 1700000000, "recipients[0].token.expires_at"),
        ("recipients.0.token.salt", "not hex", "recipients[0].token.salt"),
        ("recipients.0.token.sha256", 5, "recipients[0].token.sha256"),
        ("recipients.0.token.id", ["x"], "recipients[0].token.id"),
        ("shares", {"ml": 1}, "shares"),
        ("shares.0", "ml", "shares[0]"),
        ("shares.0.name", 7.5, "shares[0].name"),
        ("shares.0.schemas", {"mlflow": 1}, "shares[0].schemas"),
        ("shares.0.schemas.0.name", None, "shares[0].schemas[0].name"),
        ("shares.0.schemas.0.tables", "runs", "shares[0].schemas[0].tables"),
        ("shares.0.schemas.0.tables.0.location", 5, "shares[0].schemas[0].tables[0].location"),
        ("shares.0.schemas.0.tables.0.id", [1], "shares[0].schemas[0].tables[0].id"),
        (
            "shares.0.schemas.0.tables.0.startVersion",
            "abc",
            "shares[0].schemas[0].tables[0].startVersion",
        ),
        (
            "shares.0.schemas.0.tables.0.startVersion",
            -1,
            "shares[0].schemas[0].tables[0].startVersion",
        ),
        (
            "shares.0.schemas.0.tables.0.historyShared",
            "sometimes",
            "shares[0].schemas[0].tables[0].historyShared",
        ),
        ("version", [1], "version"),
    ],
)
def test_a_wrong_shape_names_the_field(
    catalog: LocalShareCatalog, path: str, value: Any, named: str
) -> None:
    edit(catalog, lambda doc: _set(doc, path, value))
    with pytest.raises(ConfigurationError) as info:
        catalog.load()
    assert named in info.value.message
    assert str(catalog.path) in info.value.message
    # statements see the same error instead of a crash deep inside
    with pytest.raises(ConfigurationError):
        catalog.recipients()
    with pytest.raises(ConfigurationError):
        catalog.grant("ml", "acme")


def test_a_top_level_list_is_refused(catalog: LocalShareCatalog) -> None:
    catalog.path.write_text("- a\n- b\n")
    with pytest.raises(ConfigurationError, match="mapping"):
        catalog.load()


def test_valid_variants_still_load(catalog: LocalShareCatalog) -> None:
    def loosen(doc: dict[str, Any]) -> None:
        r = doc["recipients"][0]
        r["comment"] = None
        r["token"]["expires_at"] = None
        doc["grants"]["ml"] = None  # an emptied grant list
        t = doc["shares"][0]["schemas"][0]["tables"][0]
        del t["id"], t["historyShared"], t["startVersion"]  # the reference server's minimum

    edit(catalog, loosen)
    doc = catalog.load()
    assert doc["shares"][0]["name"] == "ml"
    # YAML timestamps (not strings) are accepted where the catalog has timestamps
    catalog.path.write_text(
        catalog.path.read_text().replace("expires_at: null", "expires_at: 2030-01-01 00:00:00")
    )
    assert catalog.load()["recipients"][0]["name"] == "acme"


def test_an_empty_file_is_an_empty_catalog(tmp_path: Path) -> None:
    path = tmp_path / "shares.yaml"
    path.write_text("")
    assert LocalShareCatalog(path).load()["shares"] == []


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("version: 1\nshares: !!python/object/apply:os.system ['touch {marker}']\n", "python"),
        ("version: 1\nshares: [unclosed\n", "unclosed"),
    ],
    ids=["python-tag", "not-yaml"],
)
def test_a_catalog_that_is_not_safe_yaml_is_refused_naming_the_file(
    tmp_path: Path, text: str, what: str
) -> None:
    """Read with a safe loader: a Python tag is never constructed (nothing runs), and any YAML
    error is a ConfigurationError naming the catalog, not a bare parser traceback."""
    marker = tmp_path / "ran"
    path = tmp_path / "shares.yaml"
    path.write_text(text.format(marker=marker), encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        LocalShareCatalog(path).load()
    assert f"share catalog {path} is not valid YAML" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("loader", ["libyaml", "pure-python"])
def test_a_yaml_error_names_the_line_not_its_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loader: str
) -> None:
    """The catalog holds credential hashes and storage settings: a broken line is named by its
    number, never quoted (PyYAML's own message quotes it; libyaml's does not)."""
    from arcuate.backends.sharing import catalog as catalog_module

    if loader == "pure-python":
        monkeypatch.setattr(catalog_module, "_LOADER", yaml.SafeLoader)
    path = tmp_path / "shares.yaml"
    path.write_text("version: 1\nrecipients:\n  - name: ann\n    token_hash: hunter2: [x\n")
    with pytest.raises(ConfigurationError) as info:
        LocalShareCatalog(path).load()
    text = str(info.value)
    assert f"share catalog {path} is not valid YAML" in text and "line 4" in text, text
    assert "hunter2" not in text and "token_hash" not in text, text
