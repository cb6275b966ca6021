"""Credentials in the share catalog (issue 15): OAuth client secrets, rotation with a grace
window, one-time activation links and the history of each; what the file holds and how a
hand edit of the new fields is checked. The server side is in test_credentials.py."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from arcuate.backends.sharing import credentials as creds
from arcuate.backends.sharing.catalog import LocalShareCatalog, recipient_for_token
from arcuate.backends.sharing.server.state import CatalogView
from arcuate.errors import ConfigurationError

UTC = datetime.UTC


@pytest.fixture
def catalog(tmp_path: Path) -> LocalShareCatalog:
    cat = LocalShareCatalog(tmp_path / "shares.yaml")
    cat.add_table("ml", "mlflow", "runs", str(tmp_path / "runs"))
    return cat


def _entry(catalog: LocalShareCatalog, name: str) -> dict[str, Any]:
    doc = yaml.safe_load(catalog.path.read_text())
    return next(r for r in doc["recipients"] if r["name"] == name)  # type: ignore[no-any-return]


def _holder(catalog: LocalShareCatalog, token: str) -> str | None:
    found, _ = CatalogView(catalog.load()).recipient_by_token(token)
    return None if found is None or found.expired() else found.name


def _at(text: str) -> datetime.datetime:
    moment = creds.parse_time(text)
    assert moment is not None
    return moment


def test_an_oauth_recipient_keeps_a_client_id_and_only_the_secret_hash(
    catalog: LocalShareCatalog,
) -> None:
    record, secret = catalog.create_recipient("acme", oauth=True, access_token_seconds=900)
    assert secret is not None and secret not in catalog.path.read_text()
    assert record["authentication_type"] == "OAUTH_CLIENT_CREDENTIALS"
    entry = _entry(catalog, "acme")
    assert entry["oauth"] == {"client_id": record["client_id"], "access_token_seconds": 900}
    assert set(entry["token"]) == {"id", "salt", "sha256", "created_at", "expires_at"}
    # the client secret is no bearer token
    assert recipient_for_token(catalog.load(), secret) is None
    found = creds.client_credential(catalog.load(), record["client_id"], secret)
    assert found is not None and found[1]["id"] == entry["token"]["id"]
    assert creds.client_credential(catalog.load(), record["client_id"], secret + "x") is None
    assert creds.client_credential(catalog.load(), "nobody", secret) is None
    with pytest.raises(ConfigurationError, match="for OAuth recipients only"):
        catalog.create_recipient("plain", access_token_seconds=60)


def test_rotation_keeps_the_old_token_for_the_window_and_then_only_its_history(
    catalog: LocalShareCatalog,
) -> None:
    _, old = catalog.create_recipient("alice")
    assert old is not None
    new = catalog.rotate_token("alice", keep_old_seconds=600)
    assert _holder(catalog, old) == "alice" and _holder(catalog, new) == "alice"
    record = catalog.recipient("alice")
    assert record is not None
    ends = _at(record["rotated_token_expires_at"])
    assert 590 < (ends - creds.now()).total_seconds() <= 600
    assert [(c["kind"], c["state"]) for c in record["credentials"]] == [
        ("bearer_token", "active"),
        ("bearer_token", "grace"),
    ]
    assert all("salt" not in c and "sha256" not in c for c in record["credentials"])

    with catalog.editing() as doc:  # the window closes
        doc["recipients"][0]["history"][0]["revoked_at"] = "2020-01-01T00:00:00.000Z"
    assert _holder(catalog, old) is None and _holder(catalog, new) == "alice"
    catalog.rotate_token("alice")  # the next change forgets the closed window's hash
    past = _entry(catalog, "alice")["history"]
    assert [("sha256" in e, e["kind"]) for e in past] == [(False, "bearer_token")] * 2
    record = catalog.recipient("alice")
    assert record is not None and record["rotated_token_expires_at"] is None
    assert [c["state"] for c in record["credentials"]] == ["active", "revoked", "revoked"]


def test_a_grace_window_never_outlives_the_old_token(catalog: LocalShareCatalog) -> None:
    record, _ = catalog.create_recipient("alice", expires_in_seconds=60)
    catalog.rotate_token("alice", keep_old_seconds=86400)
    (past,) = _entry(catalog, "alice")["history"]
    assert past["revoked_at"] == record["token_expires_at"]
    with pytest.raises(ConfigurationError, match="grace window must be a positive"):
        catalog.rotate_token("alice", keep_old_seconds=0)


def test_an_activation_link_mints_the_token_once(catalog: LocalShareCatalog) -> None:
    record, code = catalog.create_recipient(
        "bob", expires_in_seconds=3600, activation_seconds=86400
    )
    assert code is not None and code not in catalog.path.read_text()
    assert record["token_active"] is False and record["activation_link_expires_at"]
    assert "token" not in _entry(catalog, "bob")
    assert catalog.activation(code) == "bob"  # a look changes nothing
    assert "token" not in _entry(catalog, "bob")

    got = catalog.activate(code, endpoint="https://sharing.example/ds")
    assert got.recipient == "bob" and got.client_id is None and got.secret not in repr(got)
    text = catalog.path.read_text()
    assert got.secret not in text and code not in text
    assert _holder(catalog, got.secret) == "bob"
    entry = _entry(catalog, "bob")
    assert entry["token"]["endpoint"] == "https://sharing.example/ds"
    left = _at(entry["token"]["expires_at"]) - creds.now()
    assert 3590 < left.total_seconds() <= 3600  # the token's lifetime counts from activation
    for attempt in (catalog.activate, lambda c, **_: catalog.activation(c)):
        with pytest.raises(creds.ActivationRefused, match="already used") as used:
            attempt(code, endpoint="x")
        assert used.value.status == 410 and used.value.code == "ACTIVATION_LINK_USED"
    with pytest.raises(creds.ActivationRefused) as unknown:
        catalog.activate("no-such-code", endpoint="x")
    assert unknown.value.status == 404
    described = catalog.recipient("bob")
    assert described is not None
    assert [(c["kind"], c["state"]) for c in described["credentials"]] == [
        ("bearer_token", "active"),
        ("activation_link", "used"),
    ]


def test_a_rotation_withdraws_a_pending_link_and_an_old_link_expires(
    catalog: LocalShareCatalog,
) -> None:
    _, first = catalog.create_recipient("bob", activation_seconds=60)
    second = catalog.rotate_token("bob", activation_seconds=60)
    assert first is not None
    with pytest.raises(creds.ActivationRefused, match="withdrawn") as withdrawn:
        catalog.activate(first, endpoint="x")
    assert (withdrawn.value.status, withdrawn.value.code) == (410, "ACTIVATION_LINK_REVOKED")
    with catalog.editing() as doc:
        doc["recipients"][0]["activation"]["expires_at"] = "2020-01-01T00:00:00.000Z"
    with pytest.raises(creds.ActivationRefused, match="expired") as expired:
        catalog.activate(second, endpoint="x")
    assert (expired.value.status, expired.value.code) == (410, "ACTIVATION_LINK_EXPIRED")
    record = catalog.recipient("bob")
    assert record is not None
    assert [(c["kind"], c["state"]) for c in record["credentials"]] == [
        ("activation_link", "expired"),
        ("activation_link", "revoked"),
    ]


def test_an_oauth_recipient_by_activation_link(catalog: LocalShareCatalog) -> None:
    record, code = catalog.create_recipient("acme", oauth=True, activation_seconds=60)
    assert code is not None
    got = catalog.activate(code, endpoint="http://h/ds")
    assert got.client_id == record["client_id"]
    assert creds.client_credential(catalog.load(), record["client_id"], got.secret) is not None


def test_a_catalog_from_before_these_fields_still_loads_and_authenticates(
    tmp_path: Path,
) -> None:
    salt = "00" * 16
    path = tmp_path / "shares.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "shares": [{"name": "ml", "schemas": []}],
                "recipients": [
                    {
                        "name": "old",
                        "comment": None,
                        "created_at": "2025-01-01T00:00:00.000Z",
                        "token": {
                            "id": "abc",
                            "salt": salt,
                            "sha256": creds.token_hash(salt, "the-old-token"),
                            "created_at": "2025-01-01T00:00:00.000Z",
                            "expires_at": None,
                        },
                    }
                ],
                "grants": {"ml": ["old"]},
            }
        )
    )
    catalog = LocalShareCatalog(path)
    assert _holder(catalog, "the-old-token") == "old"
    record = catalog.recipient("old")
    assert record is not None and record["authentication_type"] == "TOKEN"
    assert [c["state"] for c in record["credentials"]] == ["active"]
    new = catalog.rotate_token("old", keep_old_seconds=60)
    assert _holder(catalog, "the-old-token") == "old" and _holder(catalog, new) == "old"


def _edit(catalog: LocalShareCatalog, path: str, value: Any) -> None:
    doc = yaml.safe_load(catalog.path.read_text())
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    catalog.path.write_text(yaml.safe_dump(doc, sort_keys=False))


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("recipients.0.authentication_type", "PASSWORD", "recipients[0].authentication_type"),
        ("recipients.0.oauth", "id", "recipients[0].oauth"),
        ("recipients.0.oauth.client_id", 7, "recipients[0].oauth.client_id"),
        ("recipients.0.oauth.access_token_seconds", 0, "recipients[0].oauth.access_token_seconds"),
        ("recipients.0.oauth.access_token_seconds", True, "recipients[0].oauth.access_token_seconds"),
        ("recipients.0.oauth.client_id", "SAME", "recipients[1].oauth.client_id"),
        ("recipients.0.history", {"a": 1}, "recipients[0].history"),
        ("recipients.0.history.0", "old", "recipients[0].history[0]"),
        ("recipients.0.history.0.kind", "password", "recipients[0].history[0].kind"),
        ("recipients.0.history.0.id", None, "recipients[0].history[0].id"),
        ("recipients.0.history.0.revoked_at", None, "recipients[0].history[0].revoked_at"),
        ("recipients.0.history.0.revoked_at", "soon", "recipients[0].history[0].revoked_at"),
        ("recipients.0.history.0.salt", "xyz", "recipients[0].history[0].salt"),
        ("recipients.0.history.0.sha256", _DELETE, "recipients[0].history[0].sha256"),
        ("recipients.1.activation", [1], "recipients[1].activation"),
        ("recipients.1.activation.expires_at", None, "recipients[1].activation.expires_at"),
        ("recipients.1.activation.sha256", "no", "recipients[1].activation.sha256"),
        ("recipients.1.activation.token_seconds", -5, "recipients[1].activation.token_seconds"),
        ("recipients.1.history.0.used_at", "then", "recipients[1].history[0].used_at"),
    ],
)
def test_a_wrong_credential_field_names_itself(
    catalog: LocalShareCatalog, path: str, value: Any, named: str
) -> None:
    catalog.create_recipient("acme", oauth=True, expires_in_seconds=3600)
    catalog.rotate_token("acme", keep_old_seconds=600)
    catalog.create_recipient("bob", oauth=True, activation_seconds=60)
    catalog.rotate_token("bob", activation_seconds=60)
    if value == "SAME":
        value = _entry(catalog, "bob")["oauth"]["client_id"]
    _edit(catalog, path, value)
    with pytest.raises(ConfigurationError) as info:
        catalog.load()
    assert f"share catalog {catalog.path}: {named} must be" in str(info.value)
