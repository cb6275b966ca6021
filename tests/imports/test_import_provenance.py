"""Which runs an import may match and change: provenance, ownership, and what survives.

A run is matched only within the same provider (the profile's endpoint), share and table; a
model import never changes a run another import owns; the runs it recreates go into the
experiment ``models/<target model>``; a provider-side change of a logged model's files keeps
the version numbers; ``CREATE EXPERIMENT OVERWRITE`` keeps the runs model versions use.

Shares are served by two real sharing servers (two providers), read with the real
``delta_sharing`` client, and imported into real sqlite stores.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import arcuate
from arcuate.backends.deltalake.store import DeltaLakeTableStore
from arcuate.backends.sharing.reader import DeltaSharingReader
from arcuate.engine.imports import import_experiment, import_model
from arcuate.errors import ConflictError
from tests.imports.import_helpers import (
    Small,
    batches_of,
    file_entry,
    read_tree,
    recipient_context,
    run_row,
    store_state,
    table_batches,
    version_row,
)

A = "a" * 32
B = "b" * 32


@dataclass
class Provider:
    """A sharing server with shares ``ml`` and ``other``, granted to recipient ``ann``."""

    root: Path
    catalog: Path
    profile: Path

    def publish(self, share: str, name: str, rows: list[dict[str, Any]], content: str) -> str:
        """Rows as a Delta table added to ``share``; its coordinate."""
        from arcuate.backends.sharing.catalog import LocalShareCatalog

        store = DeltaLakeTableStore(str(self.root / "warehouse"))
        location = store.write((share, name), batches_of(rows), content=content).location  # type: ignore[arg-type]
        LocalShareCatalog(self.catalog).add_table(share, "default", name, location)
        return f"{self.profile}#{share}.default.{name}"

    def publish_location(self, share: str, name: str, location: str) -> str:
        from arcuate.backends.sharing.catalog import LocalShareCatalog

        LocalShareCatalog(self.catalog).add_table(share, "default", name, location)
        return f"{self.profile}#{share}.default.{name}"


def _provider(root: Path) -> Iterator[Provider]:
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    catalog = LocalShareCatalog(root / "shares.yaml")
    seed = DeltaLakeTableStore(str(root / "warehouse"))
    for share in ("ml", "other"):
        loc = seed.write((share, "seed"), batches_of([run_row()]), content="experiment").location
        catalog.add_table(share, "default", "seed", loc)
    _record, token = catalog.create_recipient("ann")
    assert token is not None
    for share in ("ml", "other"):
        catalog.grant(share, "ann")
    handle = serve_in_thread(str(root / "shares.yaml"))
    try:
        profile = write_profile(root / "ann.share", handle.endpoint, token)
        yield Provider(root, root / "shares.yaml", profile)
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def p1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    yield from _provider(tmp_path_factory.mktemp("provider-1"))


@pytest.fixture(scope="module")
def p2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    yield from _provider(tmp_path_factory.mktemp("provider-2"))


def _uniq(workdir: Path, name: str) -> str:
    return f"{name}_{abs(hash(str(workdir))) % 10**8}"


def _exp_runs(store: Any, name: str) -> list[Any]:
    client = store.client()
    exp = client.get_experiment_by_name(name)
    return [] if exp is None else list(client.search_runs([exp.experiment_id]))


def _run_files(store: Any, run_id: str) -> dict[str, bytes]:
    client = store.client()
    with tempfile.TemporaryDirectory() as tmp:
        return read_tree(client.download_artifacts(run_id, "", tmp))


def _version_files(store: Any, name: str, version: int) -> dict[str, bytes]:
    """A version's files as MLflow serves them, downloaded into a temporary directory."""
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    from arcuate.backends.mlflow.connect import global_uris

    with tempfile.TemporaryDirectory() as tmp, global_uris(store.tracking_uri, store.registry_uri):
        repo = ModelsArtifactRepository(f"models:/{name}/{version}")
        files = read_tree(repo.download_artifacts("", dst_path=tmp))
    files.pop("registered_model_meta", None)  # written into dst_path by the download itself
    return files


def _stored_model_files(store: Any, name: str, version: int) -> set[str]:
    """The files stored for a version whose source is a logged model (``models:/m-...``)."""
    client = store.client()
    mv = client.get_model_version(name, str(version))
    assert mv.source.startswith("models:/m-"), mv.source
    location = client.get_logged_model(mv.source.removeprefix("models:/")).artifact_location
    return set(os.listdir(location.removeprefix("file://")))


def _execute(store: Any, text: str) -> Any:
    return arcuate.execute(
        text, tracking_uri=store.tracking_uri, registry_uri=store.registry_uri, progress=False
    )


def _exp_rows(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [run_row(A, files=files)]


def _model_rows(mlmodel: bytes, run_id: str = A) -> list[dict[str, Any]]:
    return [version_row(1, run_id=run_id, files=[file_entry("MLmodel", mlmodel, owner="model")])]


# -- item 3: a model table never changes a run another import owns ----------------------------
@pytest.mark.parametrize("where", ["another share", "another provider", "same share"])
def test_model_table_cannot_change_another_imports_run(
    where: str, p1: Provider, p2: Provider, recipient_store: Any, workdir: Path
) -> None:
    """Table A is imported as an experiment; a model table B claims A's run id with other bytes.

    Whatever share or provider B comes from, A's run keeps its bytes, the version gets its own
    copy (in ``models/m``), and importing A again finds nothing to repair.
    """
    a = p1.publish(
        "ml",
        _uniq(workdir, "runs_a"),
        _exp_rows([file_entry("model/MLmodel", b"original\n")]),
        "experiment",
    )
    b_provider, b_share = {
        "another share": (p1, "other"),
        "another provider": (p2, "ml"),
        "same share": (p1, "ml"),
    }[where]
    b = b_provider.publish(b_share, _uniq(workdir, "model_b"), _model_rows(b"evil\n"), "model")
    _execute(recipient_store, f"CREATE EXPERIMENT `imported-A` AS '{a}'")
    (run_a,) = _exp_runs(recipient_store, "imported-A")
    before = _run_files(recipient_store, run_a.info.run_id)
    (result,) = _execute(recipient_store, f"CREATE MODEL m AS '{b}'")
    assert result.summary["added"] == 1
    assert _run_files(recipient_store, run_a.info.run_id) == before == {
        "model/MLmodel": b"original\n"
    }
    assert _version_files(recipient_store, "m", 1) == {"MLmodel": b"evil\n"}
    (own,) = _exp_runs(recipient_store, "models/m")
    mv = recipient_store.client().get_model_version("m", "1")
    assert mv.run_id == own.info.run_id != run_a.info.run_id
    assert own.data.tags["arcuate.owner"] == "model:m"
    (again,) = _execute(recipient_store, f"CREATE EXPERIMENT `imported-A` AS '{a}'")
    assert again.summary["unchanged"] == 1 and again.summary["files"] == 0


def test_same_share_model_reuses_the_experiment_run_without_writing(
    p1: Provider, recipient_store: Any, workdir: Path
) -> None:
    """The README's flow: experiment table and model table of one share, the same bytes. The
    version links to the imported experiment's run, and that run is left exactly as it was."""
    files = [file_entry("model/MLmodel", b"same\n"), file_entry("notes.txt", b"n\n")]
    e = p1.publish("ml", _uniq(workdir, "runs"), _exp_rows(files), "experiment")
    m = p1.publish("ml", _uniq(workdir, "model"), _model_rows(b"same\n"), "model")
    _execute(recipient_store, f"CREATE EXPERIMENT churn AS '{e}'")
    (run,) = _exp_runs(recipient_store, "churn")
    client = recipient_store.client()
    (result,) = _execute(recipient_store, f"CREATE MODEL churn AS '{m}'")
    assert result.summary["added"] == 1
    mv = client.get_model_version("churn", "1")
    assert mv.run_id == run.info.run_id
    assert mv.source == f"runs:/{run.info.run_id}/model"
    after = client.get_run(run.info.run_id)
    assert after.data.tags == run.data.tags and after.data.params == run.data.params
    assert _run_files(recipient_store, run.info.run_id) == {
        "model/MLmodel": b"same\n",
        "notes.txt": b"n\n",
    }
    assert _exp_runs(recipient_store, "models/churn") == []
    (again,) = _execute(recipient_store, f"CREATE MODEL churn AS '{m}'")
    assert again.summary["unchanged"] == 1


def test_experiment_import_matches_runs_of_its_own_table_only(
    p1: Provider, p2: Provider, recipient_store: Any, workdir: Path
) -> None:
    """Two providers' tables with the same run id imported into one experiment: two runs, each
    import updates only its own (and never the other's files)."""
    one = p1.publish(
        "ml", _uniq(workdir, "one"), _exp_rows([file_entry("f.txt", b"one\n")]), "experiment"
    )
    two = p2.publish(
        "ml", _uniq(workdir, "two"), _exp_rows([file_entry("f.txt", b"two\n")]), "experiment"
    )
    _execute(recipient_store, f"CREATE EXPERIMENT e AS '{one}'")
    (result,) = _execute(recipient_store, f"CREATE EXPERIMENT e AS '{two}'")
    assert result.summary["added"] == 1
    runs = _exp_runs(recipient_store, "e")
    assert sorted(_run_files(recipient_store, r.info.run_id)["f.txt"] for r in runs) == [
        b"one\n",
        b"two\n",
    ]
    (again,) = _execute(recipient_store, f"CREATE EXPERIMENT e AS '{one}'")
    assert again.summary["unchanged"] == 1


# -- item 3, second half: an altered file is detected and repaired on re-import ----------------
def test_altered_files_of_an_imported_run_are_repaired(recipient_store: Any) -> None:
    lm = {
        "model_id": "m-" + "1" * 32,
        "name": "model",
        "model_type": None,
        "status": "READY",
        "status_message": None,
        "creation_time": None,
        "step": 1,
        "tags": [],
        "params": [],
    }
    rows = [
        run_row(
            A,
            files=[
                file_entry("model/MLmodel", b"original\n"),
                file_entry("MLmodel", b"logged\n", owner=f"logged_models/{lm['model_id']}"),
            ],
            logged_models=[lm],
        )
    ]
    ctx = recipient_context(recipient_store)
    import_experiment(batches_of(rows), "e", ctx, source="label#s.d.t")
    client = recipient_store.client()
    (run,) = _exp_runs(recipient_store, "e")
    (model,) = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    # the same sizes, other bytes: only the content tells them apart
    local_run = Path(run.info.artifact_uri.removeprefix("file://")) / "model" / "MLmodel"
    local_model = Path(model.artifact_location.removeprefix("file://")) / "MLmodel"
    local_run.write_bytes(b"tampered\n")
    local_model.write_bytes(b"altered\n")
    again = import_experiment(batches_of(rows), "e", ctx, source="label#s.d.t")
    assert again.summary["updated"] == 1 and again.summary["files"] == 2, again.summary
    assert local_run.read_bytes() == b"original\n"
    assert local_model.read_bytes() == b"logged\n"
    third = import_experiment(batches_of(rows), "e", ctx, source="label#s.d.t")
    assert third.summary["unchanged"] == 1 and third.summary["files"] == 0


# -- item 5: recreated runs go into models/<target>, never into an experiment the share names --
def test_model_import_never_writes_into_the_experiment_the_share_names(
    recipient_store: Any,
) -> None:
    client = recipient_store.client()
    victim = client.create_experiment("victim")
    mine = client.create_run(victim, run_name="mine").info.run_id
    rows = _model_rows(b"m\n")
    rows[0]["experiment"]["name"] = "victim"
    before = store_state(recipient_store)
    result = import_model(batches_of(rows), "m", recipient_context(recipient_store))
    assert result.summary["added"] == 1
    (run,) = _exp_runs(recipient_store, "victim")
    assert run.info.run_id == mine and run.data.tags == {"mlflow.runName": "mine"}
    assert [r for r in store_state(recipient_store)["runs"] if r[0] == mine] == [
        r for r in before["runs"] if r[0] == mine
    ]
    (own,) = _exp_runs(recipient_store, "models/m")
    assert own.data.tags["arcuate.source_run_id"] == A
    exp = client.get_experiment_by_name("models/m")
    assert exp.tags["arcuate.owner"] == "model:m"
    assert client.get_model_version("m", "1").run_id == own.info.run_id


def test_model_import_refuses_an_experiment_it_did_not_create(recipient_store: Any) -> None:
    client = recipient_store.client()
    client.create_experiment("models/m")
    before = store_state(recipient_store)
    with pytest.raises(ConflictError, match="'models/m'") as err:
        import_model(batches_of(_model_rows(b"m\n")), "m", recipient_context(recipient_store))
    assert "was not created by arcuate for model 'm'" in str(err.value)
    assert store_state(recipient_store) == before


def test_a_deleted_model_experiment_is_restored_only_by_overwrite(recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    rows = _model_rows(b"m\n")
    import_model(batches_of(rows), "m", ctx)
    client = recipient_store.client()
    client.delete_experiment(client.get_experiment_by_name("models/m").experiment_id)
    before = store_state(recipient_store)
    with pytest.raises(ConflictError, match="'models/m', where the runs of model 'm' are kept"):
        import_model(batches_of(rows), "m", ctx)
    assert store_state(recipient_store) == before
    result = import_model(batches_of(rows), "m", ctx, overwrite=True)
    assert result.summary["versions"] == 1
    assert client.get_experiment_by_name("models/m").lifecycle_stage == "active"
    (version,) = client.search_model_versions("name = 'm'")
    assert client.get_run(version.run_id).info.lifecycle_stage == "active"


# -- item 11: a provider-side change of a logged model's files keeps version numbers -----------
def _loads(store: Any, uri: str) -> None:
    """What ``mlflow.pyfunc.load_model(uri)`` does to a local artifact store: MLflow writes
    ``registered_model_meta`` into the logged model's own directory."""
    import mlflow

    from arcuate.backends.mlflow.connect import global_uris

    with global_uris(store.tracking_uri, store.registry_uri):
        mlflow.artifacts.download_artifacts(uri)


def _provider_loads(small: Small, uri: str) -> None:
    _loads(small.store, uri)
    location = small.client.get_logged_model(small.model_id).artifact_location
    assert "registered_model_meta" in os.listdir(location.removeprefix("file://"))


def test_changed_logged_model_files_keep_version_numbers(
    small: Small, recipient_store: Any
) -> None:
    ctx = recipient_context(recipient_store)
    _, model_loc = small.export()
    first = import_model(table_batches(model_loc), "m", ctx, source="label#ml.default.m")
    assert first.summary["added"] == 2
    _provider_loads(small, "models:/small-model/1")
    _, model_loc = small.export()
    result = import_model(table_batches(model_loc), "m", ctx, source="label#ml.default.m")
    assert "version_map" not in result.summary, result.summary
    assert result.summary["updated"] == 2 and result.summary["added"] == 0
    client = recipient_store.client()
    assert sorted(int(v.version) for v in client.search_model_versions("name = 'm'")) == [1, 2]
    assert int(client.get_model_version_by_alias("m", "champion").version) == 1
    assert "registered_model_meta" in _stored_model_files(recipient_store, "m", 1)
    again = import_model(table_batches(model_loc), "m", ctx, source="label#ml.default.m")
    assert again.summary["unchanged"] == 2
    # loading the model here rewrites that file (it names model m): not a change to repair
    _loads(recipient_store, "models:/m/1")
    third = import_model(table_batches(model_loc), "m", ctx, source="label#ml.default.m")
    assert third.summary["unchanged"] == 2 and third.summary["files"] == 0, third.summary


def test_changed_files_of_a_reused_run_keep_numbers(
    small: Small, p1: Provider, recipient_store: Any, workdir: Path
) -> None:
    """Experiment and model of one share: the version uses the experiment's run. After the
    provider's change, the model import alone leaves that run alone and says so; once the
    experiment is imported again, the model import updates the version in place."""
    suffix = _uniq(workdir, "")
    exp_loc, model_loc = small.export(suffix=suffix)
    e = p1.publish_location("ml", f"small{suffix}", exp_loc)
    m = p1.publish_location("ml", f"small_model{suffix}", model_loc)
    _execute(recipient_store, f"CREATE EXPERIMENT small AS '{e}';\nCREATE MODEL sm AS '{m}'")
    client = recipient_store.client()
    parent = next(r for r in _exp_runs(recipient_store, "small") if r.info.run_name == "parent")
    assert client.get_model_version("sm", "1").run_id == parent.info.run_id
    _provider_loads(small, "models:/small-model/1")
    small.export(suffix=suffix)
    (stale,) = _execute(recipient_store, f"CREATE MODEL sm AS '{m}'")
    assert "version_map" not in stale.summary
    assert stale.summary["stale"] == 2, stale.summary
    assert {r["action"] for r in stale.rows} == {"stale"}
    assert all("CREATE EXPERIMENT" in r["reason"] for r in stale.rows), stale.rows
    assert "registered_model_meta" not in _stored_model_files(recipient_store, "sm", 1)
    exp, model = _execute(
        recipient_store, f"CREATE EXPERIMENT small AS '{e}';\nCREATE MODEL sm AS '{m}'"
    )
    assert exp.summary["updated"] >= 1
    assert "version_map" not in model.summary and model.summary["updated"] == 2, model.summary
    assert sorted(int(v.version) for v in client.search_model_versions("name = 'sm'")) == [1, 2]
    assert client.get_model_version("sm", "1").run_id == parent.info.run_id
    assert "registered_model_meta" in _stored_model_files(recipient_store, "sm", 1)


# -- issue 11 item 14: OVERWRITE keeps the runs model versions use ------------------------------
def test_overwrite_keeps_runs_that_model_versions_use(
    p1: Provider, recipient_store: Any, workdir: Path
) -> None:
    """The README's flow: experiment churn, model churn, then CREATE EXPERIMENT OVERWRITE churn
    from a share without those runs. The runs the versions use stay, reported as kept."""
    files = [file_entry("model/MLmodel", b"same\n")]
    e = p1.publish(
        "ml", _uniq(workdir, "runs"), [*_exp_rows(files), run_row(B, name="b")], "experiment"
    )
    m = p1.publish("ml", _uniq(workdir, "model"), _model_rows(b"same\n"), "model")
    later = p1.publish(
        "ml", _uniq(workdir, "runs_later"), [run_row("c" * 32, name="c")], "experiment"
    )
    _execute(recipient_store, f"CREATE EXPERIMENT churn AS '{e}';\nCREATE MODEL churn AS '{m}'")
    client = recipient_store.client()
    used = client.get_model_version("churn", "1").run_id
    (result,) = _execute(recipient_store, f"CREATE EXPERIMENT OVERWRITE churn AS '{later}'")
    assert result.summary["kept"] == 1 and result.summary["removed"] == 1, result.summary
    assert result.summary["runs"] == 1 and result.summary["added"] == 1
    kept = [r for r in result.rows if r["action"] == "kept"]
    assert kept == [
        {
            "source_run_id": A,
            "run_id": used,
            "run_name": "run",
            "action": "kept",
            "reason": "model version churn/1 uses it",
        }
    ]
    assert client.get_run(used).info.lifecycle_stage == "active"
    names = sorted(r.info.run_name for r in _exp_runs(recipient_store, "churn"))
    assert names == ["c", "run"]
    assert _version_files(recipient_store, "churn", 1) == {"MLmodel": b"same\n"}


def test_overwrite_keeps_a_run_a_users_version_points_to(recipient_store: Any) -> None:
    """Not only imported versions: any registered model's version counts."""
    ctx = recipient_context(recipient_store)
    import_experiment(batches_of([run_row(A), run_row(B, name="b")]), "e", ctx)
    client = recipient_store.client()
    run_b = next(r for r in _exp_runs(recipient_store, "e") if r.info.run_name == "b")
    client.create_registered_model("mine")
    client.create_model_version("mine", f"runs:/{run_b.info.run_id}/x", run_b.info.run_id)
    result = import_experiment(batches_of([run_row(A)]), "e", ctx, overwrite=True)
    assert result.summary["kept"] == 1 and result.summary["removed"] == 0, result.summary
    (row,) = [r for r in result.rows if r["action"] == "kept"]
    assert row["reason"] == "model version mine/1 uses it"
    assert client.get_run(run_b.info.run_id).info.lifecycle_stage == "active"


def test_origin_names_the_provider_by_its_endpoint(p1: Provider) -> None:
    """The provenance of a coordinate: the profile's endpoint (never its path or token)."""
    import json

    from arcuate.engine.provenance import origin_of

    coord = f"{p1.profile}#ml.default.seed"
    assert list(DeltaSharingReader().batches(coord))
    origin = origin_of(coord)
    assert origin.tag.endswith("#ml.default.seed") and origin.tag.startswith("http://127.0.0.1:")
    assert origin.family == origin.tag.rsplit("#", 1)[0] + "#ml"
    token = json.loads(p1.profile.read_text())["bearerToken"]
    assert str(p1.profile) not in origin.tag and token not in origin.tag
    label = origin_of("no-such-profile.share#ml.default.t")
    assert (label.tag, label.family) == ("no-such-profile.share#ml.default.t", "")


def test_a_share_cannot_claim_an_owner_or_an_origin(recipient_store: Any) -> None:
    """``arcuate.owner`` / ``arcuate.origin`` in shared rows are replaced by this import's, and
    an experiment tagged so by a share is still not the model import's."""
    forged = {"arcuate.owner": "model:m", "arcuate.origin": "http://other#ml.default.t"}
    row = run_row(A, tags={"team": "ml", **forged})
    row["experiment"]["tags"] = [{"key": k, "value": v} for k, v in forged.items()]
    ctx = recipient_context(recipient_store)
    import_experiment(batches_of([row]), "models/m", ctx, source="label#ml.default.t")
    (run,) = _exp_runs(recipient_store, "models/m")
    assert run.data.tags["arcuate.owner"] == "experiment"
    assert run.data.tags["arcuate.origin"] == "label#ml.default.t"
    exp = recipient_store.client().get_experiment_by_name("models/m")
    assert "arcuate.owner" not in exp.tags and "arcuate.origin" not in exp.tags
    version = _model_rows(b"m\n")[0]
    version["model_version"]["tags"] = [{"key": k, "value": v} for k, v in forged.items()]
    with pytest.raises(ConflictError, match="was not created by arcuate for model 'm'"):
        import_model(batches_of([version]), "m", ctx, source="label#ml.default.t")
    import_model(batches_of([version]), "m2", ctx, source="label#ml.default.t")
    mv = recipient_store.client().get_model_version("m2", "1")
    assert mv.tags["arcuate.origin"] == "label#ml.default.t" and "arcuate.owner" not in mv.tags
