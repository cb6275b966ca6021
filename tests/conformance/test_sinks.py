"""The sink contract (``RunSink``, ``VersionSink`` in ``arcuate/backends/protocols.py``), the
same tests over every way arcuate writes an import:

* ``bulk``: a sqlite MLflow store, new runs written whole by the bulk SQL path;
* ``api``: the same store through MLflow's public API only;
* ``server``: a real ``mlflow server`` (REST), the public API.
* ``bulk-postgresql``: a ``postgresql://`` store (a throwaway cluster), the bulk SQL path.

What a kind does not do is declared in :data:`GAPS` (as ibis declares ``notimpl``): the test
runs and is expected to fail with the given error, so support that appears shows up as an
unexpected pass. Records go into the sink exactly as an import hands them over: rows of the
format validated and spooled by :class:`~arcuate.engine.imports.Spool`.
"""

from __future__ import annotations

import hashlib
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "imports"))

from import_helpers import batches_of, file_entry, run_row, version_row

from arcuate.backends.mlflow.connect import spark_guard
from arcuate.backends.mlflow.sink import MlflowSink
from arcuate.backends.protocols import BulkRunSink, ModelSink, Provenance, RunSink, VersionSink
from arcuate.engine.imports import Spool
from arcuate.errors import BackendError, ConflictError
from tests.conftest import make_store

NAN, INF = float("nan"), float("inf")
T = 1_700_000_000_000
#: What each kind does not do: test name -> {kind: the error its test fails with}.
GAPS: dict[str, dict[str, type[BaseException]]] = {
    "test_new_runs_are_written_all_or_none": {"api": BackendError, "server": BackendError},
}
STAMP = Provenance("p.share#s.sch.t", "http://provider#s.sch.t", "experiment")


@dataclass
class Target:
    """A sink under test and a client reading the same store."""

    kind: str
    sink: ModelSink
    uri: str
    #: a prefix for experiment and model names (the server is shared by the session)
    prefix: str

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.uri, self.uri)

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"


@pytest.fixture(autouse=True)
def _no_spark_connect() -> Iterator[None]:
    with spark_guard():
        yield


@pytest.fixture(
    params=[
        "bulk",
        "api",
        pytest.param("server", marks=pytest.mark.server),
        pytest.param("bulk-postgresql", marks=pytest.mark.postgres),
    ]
)
def target(request: pytest.FixtureRequest, mlflow_template: Path, workdir: Path) -> Target:
    kind = request.param
    gap = GAPS.get(request.node.originalname, {}).get(kind)
    if gap is not None:
        request.applymarker(pytest.mark.xfail(raises=gap, strict=True, reason=f"{kind}: gap"))
    if kind == "server":
        server = request.getfixturevalue("mlflow_server")
        uri, prefix = server.tracking_uri, f"c{uuid.uuid4().hex[:8]}-"
        return Target(kind, MlflowSink(uri, uri), uri, prefix)
    if kind == "bulk-postgresql":
        store = request.getfixturevalue("postgres").new_store(workdir / "store")
    else:
        store = make_store(mlflow_template, workdir / "store")
    path = "auto" if kind.startswith("bulk") else "api"
    sink = MlflowSink(store.tracking_uri, store.registry_uri, import_path=path)
    return Target(kind, sink, store.tracking_uri, "")


def spooled(rows: list[dict[str, Any]], content: str = "experiment") -> Iterator[Any]:
    """The records (and their files, with local paths) an import would hand the sink."""
    with Spool.open(content) as spool:  # type: ignore[arg-type]
        spool.ingest(batches_of(rows))
        yield [(spool.load(i), e) for i, e in enumerate(spool.entries)]


@pytest.fixture
def shared() -> Iterator[list[tuple[dict[str, Any], Any]]]:
    """A parent run (metrics with NaN and inf, a file, a logged model) and its child."""
    parent = run_row(
        "a" * 32,
        name="parent",
        metrics=[("loss", NAN, 0, T), ("loss", 0.5, 1, T), ("acc", INF, 0, T)],
        files=[
            file_entry("plots/a.txt", b"a"),
            file_entry("MLmodel", b"flavors: {}\n", owner="logged_models/m-" + "1" * 32),
        ],
    )
    parent["run"]["logged_models"] = [
        {
            "model_id": "m-" + "1" * 32,
            "name": "model",
            "model_type": None,
            "status": "READY",
            "status_message": None,
            "creation_time": None,
            "step": 1,
            "tags": [{"key": "flavor", "value": "none"}],
            "params": [{"key": "alpha", "value": "1"}],
        }
    ]
    child = run_row("b" * 32, name="child", parent="a" * 32, files=[])
    yield from spooled([parent, child])


def write_new(t: Target, eid: str, records: list[tuple[dict[str, Any], Any]]) -> dict[str, str]:
    """New runs written the sink's way (whole where it can, else run by run): source -> id."""
    sink = t.sink
    bulk = isinstance(sink, BulkRunSink) and sink.bulk_runs(eid)
    run_ids: dict[str, str] = {}
    model_ids: dict[str, str] = {}
    for record, entry in records:
        if bulk:
            run_ids[entry.key] = sink.new_run_id()
            for lm in record["run"]["logged_models"]:
                model_ids[lm["model_id"]] = sink.new_model_id()
        else:
            run_ids[entry.key] = sink.create_run(
                eid, record["run"], source_run_id=entry.key, provenance=STAMP
            )
            for lm in record["run"]["logged_models"]:
                model_ids[lm["model_id"]] = sink.create_logged_model(eid, run_ids[entry.key], lm)
    if bulk:
        runs = [_new(record, entry, run_ids[entry.key]) for record, entry in records]
        sink.write_new_runs(
            eid, runs, run_ids=run_ids, model_ids=model_ids, exact=False, provenance=STAMP
        )
        return run_ids
    for record, entry in records:
        run_id = run_ids[entry.key]
        sink.fill_run(
            run_id, record["run"], entry.files, run_ids=run_ids, model_ids=model_ids,
            fresh=True, exact=False,
        )  # fmt: skip
        sink.finish_run(run_id, content_hash=entry.content_hash, provenance=STAMP)
    return run_ids


def _new(record: dict[str, Any], entry: Any, run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "source_run_id": entry.key,
        "run": record["run"],
        "files": entry.files,
        "content_hash": entry.content_hash,
        "deleted": False,
    }


# -- the protocols --------------------------------------------------------------------------------
def test_the_mlflow_sink_is_every_sink(target: Target) -> None:
    assert isinstance(target.sink, RunSink)
    assert isinstance(target.sink, BulkRunSink)  # it says per experiment whether it bulks
    assert isinstance(target.sink, VersionSink)


# -- experiments ----------------------------------------------------------------------------------
def test_prepare_experiment_is_idempotent_and_sets_no_arcuate_tag(target: Target) -> None:
    sink, name = target.sink, target.name("e")
    tags = {"team": "ml", "arcuate.origin": "forged"}
    eid = sink.prepare_experiment(name, tags)
    assert sink.prepare_experiment(name, {"team": "ml"}) == eid
    got = target.client().get_experiment(eid).tags
    assert got.get("team") == "ml" and "arcuate.origin" not in got
    state = sink.experiment_state(name)
    assert state is not None and state["experiment_id"] == eid
    assert state["lifecycle_stage"] == "active" and state["provenance"].owner is None
    assert sink.experiment_state(target.name("missing")) is None


def test_a_deleted_experiment_is_a_conflict_unless_restored(target: Target) -> None:
    sink, name = target.sink, target.name("gone")
    eid = sink.prepare_experiment(name, {})
    target.client().delete_experiment(eid)
    with pytest.raises(ConflictError, match="is deleted"):
        sink.prepare_experiment(name, {})
    assert sink.prepare_experiment(name, {}, restore=True) == eid
    assert target.client().get_experiment(eid).lifecycle_stage == "active"


def test_an_owned_experiment_is_refused_to_another_owner(target: Target) -> None:
    sink, name = target.sink, target.name("models/m")
    eid = sink.prepare_experiment(name, {}, owner="model:m")
    state = sink.experiment_state(name)
    assert state is not None and state["provenance"].owner == "model:m"
    assert sink.prepare_experiment(name, {}, owner="model:m") == eid
    with pytest.raises(ConflictError, match="not created by arcuate for model:n"):
        sink.prepare_experiment(name, {}, owner="model:n")


def test_the_lease_is_held_by_one_import_at_a_time(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = target.name("leased")
    other = MlflowSink(target.uri, target.uri, lock_wait=0)
    with target.sink.lock("experiment", name) as lease:
        assert lease.waited < 1
        refused = pytest.raises(ConflictError, match="another import into experiment")
        with refused, other.lock("experiment", name):
            pass
    with other.lock("experiment", name):  # given back
        pass


# -- runs -----------------------------------------------------------------------------------------
def test_new_runs_read_back_as_shared(target: Target, shared: list[Any]) -> None:
    sink = target.sink
    eid = sink.prepare_experiment(target.name("runs"), {})
    run_ids = write_new(target, eid, shared)
    states = {s["source_run_id"]: s for s in sink.list_runs(eid)}
    assert set(states) == {"a" * 32, "b" * 32}
    for record, entry in shared:
        state = states[entry.key]
        assert state["run_id"] == run_ids[entry.key]
        assert state["content_hash"] == entry.content_hash
        assert state["provenance"] == STAMP
        assert state["run_name"] == record["run"]["run_name"]
        assert state["lifecycle_stage"] == "active"
    client = target.client()
    parent = client.get_run(run_ids["a" * 32])
    assert parent.data.params == {"lr": "0.1"}
    history = [(m.step, m.value) for m in client.get_metric_history(parent.info.run_id, "loss")]
    assert sorted(history, key=lambda p: p[0])[1] == (1, 0.5)
    assert str(sorted(history, key=lambda p: p[0])[0][1]) == "nan"
    assert client.get_metric_history(parent.info.run_id, "acc")[0].value == 1.7976931348623157e308
    child = client.get_run(run_ids["b" * 32])
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert sink.same_files(parent.info.artifact_uri, shared[0][1].files[:1])
    (model,) = sink.list_logged_models(eid)
    assert model["source_model_id"] == "m-" + "1" * 32
    assert model["run_id"] == parent.info.run_id


def test_new_runs_are_written_all_or_none(target: Target, shared: list[Any]) -> None:
    """Only the bulk path writes new runs whole (``GAPS``)."""
    sink = target.sink
    eid = sink.prepare_experiment(target.name("whole"), {})
    if not (isinstance(sink, BulkRunSink) and sink.bulk_runs(eid)):
        raise BackendError(f"{target.kind} writes new runs one by one")
    run_ids = write_new(target, eid, shared)
    assert {s["run_id"] for s in sink.list_runs(eid)} == set(run_ids.values())


def test_filling_a_run_again_writes_nothing(target: Target, shared: list[Any]) -> None:
    sink = target.sink
    eid = sink.prepare_experiment(target.name("again"), {})
    run_ids = write_new(target, eid, shared)
    record, entry = shared[1]
    again = sink.fill_run(
        run_ids[entry.key], record["run"], entry.files, run_ids=run_ids, model_ids={},
        fresh=False, exact=False,
    )  # fmt: skip
    assert again == {"metric_points": 0, "files": 0, "bytes": 0, "unlinked": 0}
    (state,) = [s for s in sink.list_runs(eid) if s["source_run_id"] == entry.key]
    assert sink.reconcile_run(state, record["run"], run_ids=run_ids, exact=False) is False


def test_a_run_that_cannot_change_in_place_says_why(target: Target, shared: list[Any]) -> None:
    sink = target.sink
    eid = sink.prepare_experiment(target.name("rebuild"), {})
    run_ids = write_new(target, eid, shared)
    record, entry = shared[1]
    run_id = run_ids[entry.key]
    assert sink.rebuild_reason(run_id, record["run"], exact=True, artifact_paths=[]) is None
    changed = dict(record["run"], params={"lr": "0.2"})
    assert sink.rebuild_reason(run_id, changed, exact=False, artifact_paths=[]) == (
        "param 'lr' changed"
    )
    fewer = dict(record["run"], params={})
    assert sink.rebuild_reason(run_id, fewer, exact=False, artifact_paths=[]) is None
    assert "no longer shared" in str(
        sink.rebuild_reason(run_id, fewer, exact=True, artifact_paths=[])
    )


def test_runs_are_found_by_their_source_and_deleted_with_their_models(
    target: Target, shared: list[Any]
) -> None:
    sink = target.sink
    eid = sink.prepare_experiment(target.name("found"), {})
    run_ids = write_new(target, eid, shared)
    parent = run_ids["a" * 32]
    assert [s["run_id"] for s in sink.find_runs("a" * 32) if s["experiment_id"] == eid] == [parent]
    state = sink.run_state(parent)
    assert state is not None and state["experiment_name"] == target.name("found")
    assert sink.run_state("0" * 32) is None
    sink.delete_runs(eid, [parent])
    assert target.client().get_run(parent).info.lifecycle_stage == "deleted"
    assert sink.list_logged_models(eid) == []


def test_missing_and_altered_files_are_written_again(target: Target, shared: list[Any]) -> None:
    sink = target.sink
    eid = sink.prepare_experiment(target.name("repair"), {})
    run_ids = write_new(target, eid, shared)
    run = target.client().get_run(run_ids["b" * 32])  # a run without files
    uri = run.info.artifact_uri
    files = [_file(b"hello\n", "extra/readme.txt")]
    assert sink.upload_run_files(run.info.run_id, files, "") == {"files": 1, "bytes": 6}
    assert sink.upload_run_files(run.info.run_id, files, "") == {"files": 0, "bytes": 0}
    assert sink.same_files(uri, files)
    target.client().log_text(run.info.run_id, "tampered!", "extra/readme.txt")  # another size
    assert not sink.same_files(uri, files)
    assert sink.repair_run_files(uri, files, {}) == {"files": 1, "bytes": 6}
    assert sink.same_files(uri, files)
    # a file the comparison is told to ignore (the model.sig of another signed table)
    target.client().log_text(run.info.run_id, "{}", "model.sig")
    assert not sink.same_files(uri, files)
    assert sink.same_files(uri, files, ignore=frozenset({"model.sig"}))


def _file(data: bytes, path: str) -> dict[str, Any]:
    """A file as an import hands it over: its metadata and a local copy of its bytes."""
    local = Path.cwd() / f"file-{uuid.uuid4().hex}"
    local.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    return {"owner": "artifacts", "path": path, "size": len(data), "sha256": digest,
            "local": str(local), "chunks": 0}  # fmt: skip


# -- versions -------------------------------------------------------------------------------------
@pytest.fixture
def shared_version() -> Iterator[tuple[dict[str, Any], Any]]:
    """Shared version 3 of ``provider-model``, its files a ``runs:/`` path."""
    for records in spooled([version_row(3, aliases=["prod"])], "model"):
        yield records[0]


def test_versions_keep_their_numbers_and_their_provenance(
    target: Target, shared_version: tuple[dict[str, Any], Any]
) -> None:
    sink, name = target.sink, target.name("m")
    record, entry = shared_version
    mv = record["model_version"]
    state = sink.prepare_registered_model(name, description="d", tags={"k": "v"}, exact=False)
    assert state["created"] is True and state["versions"] == []
    number = sink.create_version(
        name, mv, entry.files, source="s3://bucket/model", run_id=None, model_id=None,
        provenance=STAMP,
    )  # fmt: skip
    assert number == 3
    (found,) = sink.prepare_registered_model(name, description="d", tags={}, exact=False)[
        "versions"
    ]
    assert (found["version"], found["source_model"], found["source_version"]) == (
        3, "provider-model", 3,
    )  # fmt: skip
    assert found["imported"] and not found["placeholder"]
    assert found["content_hash"] is None  # incomplete until finished
    assert found["source_uri"] == mv["source"]
    assert found["provenance"].source == STAMP.source
    assert found["provenance"].origin == STAMP.origin
    sink.finish_version(name, 3, content_hash=entry.content_hash)
    (done,) = sink.prepare_registered_model(name, description="d", tags={}, exact=False)["versions"]
    assert done["content_hash"] == entry.content_hash
    assert target.client().get_model_version(name, "3").description == mv["description"]


def test_versions_change_in_place_and_aliases_follow(
    target: Target, shared_version: tuple[dict[str, Any], Any]
) -> None:
    sink, name = target.sink, target.name("m2")
    record, entry = shared_version
    mv = record["model_version"]
    sink.prepare_registered_model(name, description=None, tags={}, exact=False)
    number = sink.create_version(
        name, mv, entry.files, source="s3://bucket/model", run_id=None, model_id=None,
        provenance=STAMP,
    )  # fmt: skip
    (current,) = sink.prepare_registered_model(name, description=None, tags={}, exact=False)[
        "versions"
    ]
    changed = dict(mv, description="new", stage="Staging")
    assert sink.update_version(
        name, number, changed, entry.files, current=current, provenance=STAMP, exact=True
    )
    got = target.client().get_model_version(name, str(number))
    assert (got.description, got.current_stage) == ("new", "Staging")
    sink.set_aliases(name, {"prod": number}, remove=[])
    aliases = target.client().get_registered_model(name).aliases
    assert {a: int(v) for a, v in aliases.items()} == {"prod": number}
    sink.set_aliases(name, {}, remove=["prod"])
    sink.delete_versions(name, [number])
    state = sink.prepare_registered_model(name, description=None, tags={}, exact=False)
    assert state["versions"] == [] and state["aliases"] == {}


def test_runs_a_version_uses_are_named(target: Target, shared: list[Any]) -> None:
    sink, name = target.sink, target.name("used")
    eid = sink.prepare_experiment(target.name("usedexp"), {})
    run_ids = write_new(target, eid, shared)
    parent = run_ids["a" * 32]
    sink.prepare_registered_model(name, description=None, tags={}, exact=False)
    mv = {"name": "p", "version": 1, "description": None, "tags": {}, "stage": "None",
          "source": None, "run_link": None}  # fmt: skip
    source = f"{target.client().get_run(parent).info.artifact_uri}/plots"
    number = sink.create_version(
        name, mv, [], source=source, run_id=parent, model_id=None, provenance=STAMP
    )
    assert sink.versions_using([parent, run_ids["b" * 32]]) == {parent: [f"{name}/{number}"]}


def test_a_logged_model_lists_versions_only_as_the_shared_one_did(
    target: Target, shared: list[Any]
) -> None:
    sink, name = target.sink, target.name("linked")
    eid = sink.prepare_experiment(target.name("linkexp"), {})
    write_new(target, eid, shared)
    (model,) = sink.list_logged_models(eid)
    plain = {"tags": {"flavor": "none"}}
    listed = {"tags": {"mlflow.modelVersions": "[]"}}
    sink.link_logged_model(model["model_id"], plain, name, 1)
    tags = target.client().get_logged_model(model["model_id"]).tags
    assert "mlflow.modelVersions" not in tags
    sink.link_logged_model(model["model_id"], listed, name, 1)
    sink.link_logged_model(model["model_id"], listed, name, 1)  # once
    tags = target.client().get_logged_model(model["model_id"]).tags
    assert tags["mlflow.modelVersions"] == f'[{{"name": "{name}", "version": 1}}]'
