"""The catalog statements' engine function, and a created recipient reading the share."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import delta_sharing
import pytest

from arcuate.config import Settings
from arcuate.engine.context import Context
from arcuate.engine.sharing import run_catalog_command
from arcuate.errors import NotFoundError
from arcuate.plan.ops import CatalogCommand
from tests.server.conftest import Sharing


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    from arcuate.backends.sharing.catalog import LocalShareCatalog

    settings = Settings(
        warehouse=str(tmp_path / "wh"), endpoint="http://example.test:8080/delta-sharing"
    )
    LocalShareCatalog(settings.catalog_path).add_table(
        "s", "default", "t", str(tmp_path / "wh" / "t")
    )
    return Context(settings)


def run(ctx: Context, action: str, **kw: object) -> object:
    return run_catalog_command(CatalogCommand(action, **kw), ctx, f"<{action}>")  # type: ignore[arg-type]


def test_create_recipient_writes_the_profile_once(ctx: Context, tmp_path: Path) -> None:
    path = tmp_path / "out" / "alice.share"
    res = run(
        ctx,
        "create_recipient",
        name="alice",
        comment="c",
        expires_in_seconds=60,
        profile_path=str(path),
    )
    profile = json.loads(path.read_text())
    assert profile["shareCredentialsVersion"] == 1
    assert profile["endpoint"] == "http://example.test:8080/delta-sharing"
    assert profile["expirationTime"].endswith("Z")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert res.text is None and profile["bearerToken"] not in str(res)  # type: ignore[attr-defined]
    assert res.summary["created"] is True and res.summary["profile_path"] == str(path)  # type: ignore[attr-defined]
    assert profile["bearerToken"] not in Path(ctx.settings.catalog_path).read_text()
    again = run(ctx, "create_recipient", name="alice", if_exists=True)
    assert again.text is None and again.summary["created"] is False  # type: ignore[attr-defined]
    assert "profile_path" not in again.summary  # type: ignore[attr-defined]


def test_an_activation_link_writes_no_file(ctx: Context) -> None:
    res = run(ctx, "create_recipient", name="bob", activation_link=True, link_seconds=60)
    link = res.summary["activation_link"]  # type: ignore[attr-defined]
    assert link.startswith("http://example.test:8080/delta-sharing/activation?code=")
    assert "profile_path" not in res.summary  # type: ignore[attr-defined]
    assert not (Path(ctx.settings.catalog_path).parent / "profiles").exists()
    assert link.split("code=")[1] not in Path(ctx.settings.catalog_path).read_text()
    again = run(ctx, "create_recipient", name="bob", if_exists=True, activation_link=True)
    assert again.summary["created"] is False and "activation_link" not in again.summary  # type: ignore[attr-defined]
    rotated = run(ctx, "rotate_token", name="bob", activation_link=True)
    assert rotated.summary["activation_link"] != link  # type: ignore[attr-defined]
    assert not (Path(ctx.settings.catalog_path).parent / "profiles").exists()


def test_a_profile_path_that_cannot_be_written_changes_nothing(
    ctx: Context, tmp_path: Path
) -> None:
    from arcuate.errors import ConfigurationError

    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigurationError, match="it is a directory"):
        run(ctx, "create_recipient", name="alice", profile_path=str(tmp_path / "taken"))
    assert run(ctx, "show_recipients").rows == []  # type: ignore[attr-defined]


def test_grant_show_describe_revoke_drop(ctx: Context) -> None:
    run(ctx, "create_recipient", name="alice")
    assert run(ctx, "grant", name="alice", share="s").summary == {  # type: ignore[attr-defined]
        "share": "s",
        "recipient": "alice",
        "granted": True,
    }
    shares = run(ctx, "show_shares")
    assert shares.rows == [{"name": "s", "schemas": 1, "tables": 1, "recipients": ["alice"]}]  # type: ignore[attr-defined]
    recipients = run(ctx, "show_recipients").rows  # type: ignore[attr-defined]
    assert [(r["name"], r["shares"]) for r in recipients] == [("alice", ["s"])]
    assert all("sha256" not in r and "salt" not in r for r in recipients)
    everything = run(ctx, "show_all_in_share", share="s").rows  # type: ignore[attr-defined]
    assert [(r["name"], r["type"], r["history_shared"]) for r in everything] == [
        ("default.t", "TABLE", True)
    ]
    assert run(ctx, "describe_share", share="S").summary["recipients"] == ["alice"]  # type: ignore[attr-defined]
    described = run(ctx, "describe_recipient", name="alice")
    assert described.summary["shares"] == ["s"]  # type: ignore[attr-defined]
    assert [(c["kind"], c["state"]) for c in described.rows] == [("bearer_token", "active")]  # type: ignore[attr-defined]
    assert run(ctx, "revoke", name="alice", share="s").summary["revoked"] is True  # type: ignore[attr-defined]
    res = run(ctx, "rotate_token", name="alice")
    assert json.loads(Path(res.summary["profile_path"]).read_text())["bearerToken"]  # type: ignore[attr-defined]
    assert run(ctx, "drop_recipient", name="alice").summary["dropped"] is True  # type: ignore[attr-defined]
    assert run(ctx, "drop_recipient", name="alice", if_exists=True).summary["dropped"] is False  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError, match="recipient 'alice' does not exist"):
        run(ctx, "describe_recipient", name="alice")


def test_remove_table_and_drop_share(ctx: Context) -> None:
    assert (
        run(ctx, "remove_table", share="s", table=("default", "t")).summary["removed"]
        == "default.t"
    )  # type: ignore[attr-defined]
    assert run(ctx, "show_all_in_share", share="s").rows == []  # type: ignore[attr-defined]
    assert run(ctx, "drop_share", share="s").summary["dropped"] is True  # type: ignore[attr-defined]
    assert run(ctx, "drop_share", share="s", if_exists=True).summary["dropped"] is False  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError, match="share 's' does not exist"):
        run(ctx, "describe_share", share="s")


def test_a_created_recipient_reads_the_share(sharing: Sharing, tmp_path: Path) -> None:
    settings = Settings(catalog=str(sharing.catalog_path), endpoint=sharing.endpoint)
    ctx = Context(settings)
    profile = tmp_path / "frank.share"
    run(ctx, "create_recipient", name="frank", profile_path=str(profile))
    run(ctx, "grant", name="frank", share="models")
    frame = delta_sharing.load_as_pandas(f"{profile}#models.mlflow.simple")
    assert sorted(frame["id"]) == [1, 3, 4]
    run(ctx, "drop_recipient", name="frank")
