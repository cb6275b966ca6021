"""Recipients, tokens and grants in the local share catalog, and the reference-server export."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
import yaml

from arcuate.backends.sharing.catalog import LocalShareCatalog
from arcuate.backends.sharing.server.state import CatalogView
from arcuate.errors import ConfigurationError, ConflictError, NotFoundError


def _holder(catalog: LocalShareCatalog, token: str) -> str | None:
    """Who the sharing server lets in with ``token``: its holder, unless the token expired."""
    found, _ = CatalogView(catalog.load()).recipient_by_token(token)
    return None if found is None or found.expired() else found.name


def _shares(catalog: LocalShareCatalog, recipient: str) -> list[str]:
    record = catalog.recipient(recipient)
    assert record is not None
    return list(record["shares"])


@pytest.fixture
def catalog(tmp_path: Path) -> LocalShareCatalog:
    cat = LocalShareCatalog(tmp_path / "shares.yaml")
    cat.add_table("models", "mlflow", "runs", "s3://bucket/wh/runs")
    cat.add_table("models", "mlflow", "local", str(tmp_path / "wh" / "local"))
    cat.add_table("other", "default", "t", "abfss://c@acct.dfs.core.windows.net/t")
    return cat


def test_a_token_is_shown_once_and_stored_only_as_a_salted_hash(catalog: LocalShareCatalog) -> None:
    record, token = catalog.create_recipient("alice", comment="partner team")
    assert token and len(token) >= 40
    text = catalog.path.read_text()
    assert token not in text
    entry = yaml.safe_load(text)["recipients"][0]
    assert set(entry["token"]) == {"id", "salt", "sha256", "created_at", "expires_at"}
    assert record == {
        "name": "alice",
        "comment": "partner team",
        "created_at": record["created_at"],
        "token_created_at": record["token_created_at"],
        "token_expires_at": None,
        "token_active": True,
        "profile_endpoint": None,
        "shares": [],
        "authentication_type": "TOKEN",
        "client_id": None,
        "rotated_token_expires_at": None,
        "activation_link_expires_at": None,
        "ip_access_list": None,
        "rate_limit": None,
    }
    assert _holder(catalog, token) == "alice"
    assert _holder(catalog, token + "x") is None
    assert _holder(catalog, "") is None
    _, other = catalog.create_recipient("bob")
    assert other != token and _holder(catalog, other) == "bob"


def test_the_same_token_hashes_differently_per_recipient(catalog: LocalShareCatalog) -> None:
    catalog.create_recipient("a")
    catalog.create_recipient("b")
    salts = {r["token"]["salt"] for r in catalog.load()["recipients"]}
    assert len(salts) == 2


def test_create_twice(catalog: LocalShareCatalog) -> None:
    catalog.create_recipient("alice")
    with pytest.raises(ConflictError, match="already exists"):
        catalog.create_recipient("ALICE")
    record, token = catalog.create_recipient("alice", if_not_exists=True)
    assert token is None and record["name"] == "alice"
    with pytest.raises(ConfigurationError, match="invalid recipient name"):
        catalog.create_recipient("bad name")
    with pytest.raises(ConfigurationError, match="positive"):
        catalog.create_recipient("zed", expires_in_seconds=0)


def test_expiry_and_rotation(catalog: LocalShareCatalog) -> None:
    record, token = catalog.create_recipient("alice", expires_in_seconds=3600)
    expires = datetime.datetime.fromisoformat(record["token_expires_at"].replace("Z", "+00:00"))
    left = (expires - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert 3590 < left <= 3600
    assert token is not None and _holder(catalog, token) == "alice"
    with catalog.editing() as doc:
        doc["recipients"][0]["token"]["expires_at"] = "2020-01-01T00:00:00.000Z"
    assert _holder(catalog, token) is None
    assert catalog.recipient("alice")["token_active"] is False  # type: ignore[index]
    new = catalog.rotate_token("alice")
    assert _holder(catalog, new) == "alice" and _holder(catalog, token) is None
    assert catalog.recipient("alice")["token_expires_at"] is None  # type: ignore[index]
    with pytest.raises(NotFoundError):
        catalog.rotate_token("nobody")


def test_grants(catalog: LocalShareCatalog) -> None:
    catalog.create_recipient("alice")
    catalog.create_recipient("bob")
    assert catalog.grant("models", "alice") is True
    assert catalog.grant("MODELS", "Alice") is False  # already
    catalog.grant("other", "alice")
    catalog.grant("other", "bob")
    assert _shares(catalog, "alice") == ["models", "other"]
    assert _shares(catalog, "bob") == ["other"]
    assert catalog.revoke("models", "alice") is True
    assert catalog.revoke("models", "alice") is False
    assert _shares(catalog, "alice") == ["other"]
    with pytest.raises(NotFoundError, match="share 'nope'"):
        catalog.grant("nope", "alice")
    with pytest.raises(NotFoundError, match="recipient 'carol'"):
        catalog.grant("models", "carol")
    assert catalog.drop_recipient("alice") is True
    assert catalog.load()["grants"] == {"other": ["bob"]}
    assert catalog.drop_recipient("alice", if_exists=True) is False
    with pytest.raises(NotFoundError):
        catalog.drop_recipient("alice")


def test_remove_table_and_drop_share(catalog: LocalShareCatalog) -> None:
    catalog.create_recipient("bob")
    catalog.grant("other", "bob")
    catalog.remove_table("models", "MLFLOW", "runs")
    assert catalog.table("models", "mlflow", "runs") is None
    assert catalog.table("models", "mlflow", "local") is not None
    with pytest.raises(NotFoundError, match=r"has no table mlflow\.runs"):
        catalog.remove_table("models", "mlflow", "runs")
    catalog.remove_table("models", "mlflow", "local")
    assert catalog.find(catalog.shares(), "models")["schemas"] == []  # type: ignore[index]
    assert catalog.drop_share("other") is True
    assert _shares(catalog, "bob") == [] and catalog.load()["grants"] == {}
    assert catalog.drop_share("other", if_exists=True) is False
    with pytest.raises(NotFoundError):
        catalog.drop_share("other")


def test_the_file_keeps_the_reference_layout(catalog: LocalShareCatalog) -> None:
    catalog.create_recipient("alice")
    catalog.grant("models", "alice")
    doc = yaml.safe_load(catalog.path.read_text())
    assert doc["version"] == 1
    assert set(doc) == {"version", "shares", "recipients", "grants"}
    table = doc["shares"][0]["schemas"][0]["tables"][0]
    assert set(table) == {"name", "location", "id", "historyShared", "startVersion"}


def test_export_for_the_reference_server(catalog: LocalShareCatalog) -> None:
    catalog.create_recipient("alice")
    export = catalog.export_reference_yaml(port=9000)
    doc = yaml.safe_load(export.yaml)
    assert doc["authorization"] == {"bearerToken": export.bearer_token}
    assert doc["version"] == 1 and doc["port"] == 9000 and doc["endpoint"] == "/delta-sharing"
    assert "recipients" not in doc and "grants" not in doc
    tables = {
        (s["name"], sc["name"], t["name"]): t
        for s in doc["shares"]
        for sc in s["schemas"]
        for t in sc["tables"]
    }
    assert set(tables) == {("models", "mlflow", "runs"), ("other", "default", "t")}
    assert tables["models", "mlflow", "runs"]["location"] == "s3a://bucket/wh/runs"
    assert tables["models", "mlflow", "runs"]["historyShared"] is True
    assert export.skipped == ["models.mlflow.local"]
    only = catalog.export_reference_yaml(shares=["OTHER"], bearer_token="t0k", include_local=True)
    assert [s["name"] for s in yaml.safe_load(only.yaml)["shares"]] == ["other"]
    assert only.bearer_token == "t0k"
    with pytest.raises(NotFoundError):
        catalog.export_reference_yaml(shares=["nope"])


def test_signing_key_is_private(tmp_path: Path) -> None:
    from arcuate.backends.sharing.server.signing import key_path_for, load_or_create_key

    path = key_path_for(tmp_path / "shares.yaml")
    key = load_or_create_key(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by other users"):
        load_or_create_key(path)
