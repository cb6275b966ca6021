"""arcuate's own artifact repositories (``arcuate/backends/mlflow/objects.py``) against
MLflow's, on a real moto S3 server and real directories: the same listings, the same object
keys, types and bytes; fewer requests for an export; hostile listings refused by name."""

from __future__ import annotations

import os
import stat
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.mlflow import objects
from arcuate.backends.mlflow.rest import RestError
from arcuate.config import Settings
from arcuate.engine.context import Context
from arcuate.engine.export import export_experiment
from arcuate.plan.ops import ExportExperiment
from tests.export.export_helpers import reassemble, rows_deltalake

pytestmark = pytest.mark.s3


def _tree(root: Path) -> Path:
    """A directory of files at several depths, with names whose types MLflow guesses."""
    for rel, data in {
        "a.txt": b"alpha\n",
        "MLmodel": b"flavors: {}\n",
        "sub/b.json": b'{"b": 1}',
        "sub/deep/c.bin": bytes(range(256)) * 40,
        "sub/x.tar.gz": b"\x1f\x8b not really",
        "empty.csv": b"",
    }.items():
        path = root.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _objects(s3: Any, prefix: str) -> dict[str, tuple[bytes, str, str, dict[str, str]]]:
    """Relative key -> (bytes, content type, content encoding, metadata) under ``prefix/``."""
    c = s3.client()
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", ()):
            got = c.get_object(Bucket=s3.bucket, Key=o["Key"])
            out[o["Key"][len(prefix) + 1 :]] = (
                got["Body"].read(),
                got.get("ContentType", ""),
                got.get("ContentEncoding", ""),
                got.get("Metadata", {}),
            )
    return out


def _infos(infos: list[Any]) -> list[tuple[str, bool, int | None]]:
    return [(i.path, i.is_dir, i.file_size) for i in infos]


def test_s3_repository_writes_lists_reads_and_deletes_as_mlflows(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

    monkeypatch.setenv("MLFLOW_S3_UPLOAD_EXTRA_ARGS", '{"Metadata": {"team": "a"}}')
    src = _tree(tmp_path / "src")
    base = f"objects/{uuid.uuid4().hex}"
    theirs = S3ArtifactRepository(f"s3://{s3.bucket}/{base}/mlflow/")
    mine = objects.S3Repo(f"s3://{s3.bucket}/{base}/arcuate/")
    for repo in (theirs, mine):
        repo.log_artifacts(str(src), "model")
        repo.log_artifact(str(src / "a.txt"))
        repo.log_artifact(str(src / "sub" / "b.json"), "x/y")
    assert _objects(s3, f"{base}/arcuate") == _objects(s3, f"{base}/mlflow")
    assert len(_objects(s3, f"{base}/arcuate")) == 8
    for path in (None, "model", "model/sub", "model/sub/", "model/a.txt", "nothing"):
        assert _infos(mine.list_artifacts(path)) == _infos(theirs.list_artifacts(path)), path
    walked = _infos(mine.walk())
    assert [p for p, _d, _s in walked] == sorted(_objects(s3, f"{base}/arcuate"))
    assert _infos(mine.walk("model/sub")) == [
        ("model/sub/b.json", False, 8),
        ("model/sub/deep/c.bin", False, 10240),
        ("model/sub/x.tar.gz", False, 13),
    ]
    for path in ("model/sub/deep/c.bin", "model/empty.csv", "model/sub"):
        (tmp_path / "d1").mkdir(exist_ok=True)
        (tmp_path / "d2").mkdir(exist_ok=True)
        got = mine.download_artifacts(path, str(tmp_path / "d1"))
        want = theirs.download_artifacts(path, str(tmp_path / "d2"))
        assert os.path.relpath(got, tmp_path / "d1") == os.path.relpath(want, tmp_path / "d2")
    assert _files(tmp_path / "d1") == _files(tmp_path / "d2") != {}
    with pytest.raises(RestError, match="No such artifact: 'model/gone'") as err:
        mine.download_artifacts("model/gone", str(tmp_path / "d1"))
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    for repo in (theirs, mine):
        repo.delete_artifacts("model/sub")
    assert sorted(_objects(s3, f"{base}/arcuate")) == sorted(_objects(s3, f"{base}/mlflow"))
    assert "model/a.txt" in _objects(s3, f"{base}/arcuate")
    for repo in (theirs, mine):
        repo.delete_artifacts()
    assert _objects(s3, f"{base}/arcuate") == _objects(s3, f"{base}/mlflow") == {}


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_local_repository_writes_lists_reads_and_deletes_as_mlflows(tmp_path: Path) -> None:
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    src = _tree(tmp_path / "src")
    os.chmod(src / "a.txt", 0o640)
    theirs = LocalArtifactRepository(str(tmp_path / "mlflow"))
    mine = objects.repository((tmp_path / "arcuate").as_uri())
    assert isinstance(mine, objects.LocalRepo)
    assert mine.artifact_dir == str(tmp_path / "arcuate")
    for repo in (theirs, mine):
        repo.log_artifacts(str(src), "model")
        repo.log_artifact(str(src / "a.txt"))
        repo.log_artifact(str(src / "sub" / "b.json"), "x/y")
    assert _files(tmp_path / "arcuate") == _files(tmp_path / "mlflow")
    for rel in _files(tmp_path / "arcuate"):
        a, b = (os.stat(tmp_path / side / rel) for side in ("arcuate", "mlflow"))
        assert (stat.S_IMODE(a.st_mode), a.st_mtime_ns) == (stat.S_IMODE(b.st_mode), b.st_mtime_ns)
    for path in (None, "model", "model/sub", "model/a.txt", "nothing"):
        assert _infos(mine.list_artifacts(path)) == _infos(theirs.list_artifacts(path)), path
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    for path in ("model/sub/deep/c.bin", "model/sub"):
        got = mine.download_artifacts(path, str(tmp_path / "d1"))
        want = theirs.download_artifacts(path, str(tmp_path / "d2"))
        assert os.path.relpath(got, tmp_path / "d1") == os.path.relpath(want, tmp_path / "d2")
    assert _files(tmp_path / "d1") == _files(tmp_path / "d2") != {}
    assert mine.download_artifacts("a.txt") == str(tmp_path / "arcuate" / "a.txt")
    for bad in ("../src/a.txt", "/etc/passwd", "model/../../src"):
        with pytest.raises(RestError, match="Invalid path"):
            mine.download_artifacts(bad, str(tmp_path / "d1"))
    for repo in (theirs, mine):
        repo.delete_artifacts("model/sub")
        repo.delete_artifacts("a.txt")
    assert _files(tmp_path / "arcuate") == _files(tmp_path / "mlflow")
    assert objects.repository("s3://b/p") is not None
    assert objects.repository("mlflow-artifacts:/x") is None


def _put(s3: Any, key: str, data: bytes = b"x") -> None:
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=data)


@pytest.mark.parametrize("lister", ["boto3", "obstore"])
def test_odd_and_hostile_keys(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lister: str
) -> None:
    """Empty ``dir/`` markers are skipped; ``..``, empty parts and a ``dir/`` key holding
    bytes are refused, naming the key; a listing that does not end is cut off. Through
    obstore (which drops a key's trailing ``/``), a ``dir/`` key holding bytes reads as a
    file that is not there: reading it fails, naming it."""
    if lister == "boto3":
        monkeypatch.setattr(objects, "obstore_for", lambda bucket: None)
    base = f"odd/{uuid.uuid4().hex}"
    _put(s3, f"{base}/run/ok.txt", b"fine")
    _put(s3, f"{base}/run/folder/", b"")
    _put(s3, f"{base}/run/folder/in.txt", b"in")
    repo = objects.S3Repo(f"s3://{s3.bucket}/{base}/run")
    assert _infos(repo.walk()) == [("folder/in.txt", False, 2), ("ok.txt", False, 4)]
    assert _infos(repo.list_artifacts()) == [("folder", True, None), ("ok.txt", False, 4)]
    hostile = [
        (f"{base}/dots/a/../../../escape.txt", "'..'"),
        (f"{base}/slashes//abs.txt", "an empty"),
        (f"{base}/ctl/a\x01b/", "ends in '/' but holds 3 bytes"),
    ]
    if lister == "boto3":
        hostile.append((f"{base}/marker/full/", "ends in '/' but holds 3 bytes"))
    for key, why in hostile:
        _put(s3, key, b"bad")
        root = key.split("/")[2]
        with pytest.raises(RestError, match=why) as err:
            objects.S3Repo(f"s3://{s3.bucket}/{base}/{root}").walk()
        assert repr(key) in str(err.value)
        assert "testing" not in str(err.value)  # the credentials
    if lister == "obstore":
        _put(s3, f"{base}/marker/full/", b"bad")
        marker = objects.S3Repo(f"s3://{s3.bucket}/{base}/marker")
        assert _infos(marker.walk()) == [("full", False, 3)]
        with pytest.raises(RestError, match=f"{base}/marker/full"):
            marker.download_artifacts("full", str(tmp_path / "down"))
    monkeypatch.setattr(objects, "PAGE_KEYS", 1)
    monkeypatch.setattr(objects, "MAX_PAGES", 2)
    with pytest.raises(RestError, match="did not end after 2 pages"):
        repo.walk()


def _experiment(store: Any, location: str, runs: int) -> str:
    client = store.client()
    eid = client.create_experiment(f"objects-{uuid.uuid4().hex[:8]}", artifact_location=location)
    for r in range(runs):
        rid = client.create_run(eid, run_name=f"run-{r}").info.run_id
        client.log_text(rid, f"run {r}\n", "out/a.txt")
        client.log_text(rid, f"run {r} deeper\n", "out/deep/b.txt")
        client.log_dict(rid, {"r": r}, "meta.json")
        client.set_terminated(rid)
    return str(client.get_experiment(eid).name)


def _export(store: Any, name: str, warehouse: Path) -> tuple[Any, Any]:
    ctx = Context(
        Settings(
            tracking_uri=store.tracking_uri,
            registry_uri=store.registry_uri,
            warehouse=str(warehouse),
            progress=False,
        )
    )
    stream = export_experiment(ExportExperiment(name), ctx)
    table = ctx.table_store.write(("s", "t"), stream.batches, content=stream.content)
    records, files = reassemble(rows_deltalake(table.location))
    for row in records.values():
        row.pop("exported_at", None)
    return records, files


@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """S3 operations called by any boto3 client of this process, by name, and objects read,
    written and listed through obstore (as ``GetObject``, ``PutObject``, ``ListObjectsV2``:
    an obstore listing is counted once, however many pages it reads)."""
    calls = _count_requests(
        monkeypatch, "{}", {"get": "GetObject", "put": "PutObject", "list": "ListObjectsV2"}
    )
    yield calls


def test_export_from_s3_equals_mlflows_with_one_listing_of_the_experiment(
    s3: Any,
    mlflow_store: Any,
    workdir: Path,
    s3_calls: Counter[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = 5
    name = _experiment(mlflow_store, f"s3://{s3.bucket}/export/{uuid.uuid4().hex}", runs)
    s3_calls.clear()
    mine = _export(mlflow_store, name, workdir / "mine")
    ours = dict(s3_calls)
    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", "mlflow")
    s3_calls.clear()
    theirs = _export(mlflow_store, name, workdir / "theirs")
    assert repr(mine) == repr(theirs)
    assert len(mine[1]) == 3 * runs
    # the first run's root, then the experiment's location once for the four others
    assert ours == {"ListObjectsV2": 2, "GetObject": 3 * runs}, ours
    assert s3_calls["ListObjectsV2"] >= 3 * runs, dict(s3_calls)  # MLflow: per folder, per file


@pytest.mark.parametrize("lister", ["boto3", "obstore"])
def test_an_experiment_location_past_the_bound_is_listed_run_by_run(
    s3: Any,
    mlflow_store: Any,
    workdir: Path,
    s3_calls: Counter[str],
    monkeypatch: pytest.MonkeyPatch,
    lister: str,
) -> None:
    """A location holding more than ``TREE_PAGES`` pages of keys (an experiment far larger
    than what is exported of it) is not read whole: each run's root is listed alone, and the
    table is the same."""
    runs = 4
    location = f"s3://{s3.bucket}/export/{uuid.uuid4().hex}"
    name = _experiment(mlflow_store, location, runs)
    whole = _export(mlflow_store, name, workdir / "whole")
    if lister == "boto3":
        monkeypatch.setattr(objects, "obstore_for", lambda bucket: None)
    monkeypatch.setattr(objects, "PAGE_KEYS", 3)  # a run's 3 files: one page
    monkeypatch.setattr(objects, "TREE_PAGES", 2)  # the location's 12 keys: 4 pages
    s3_calls.clear()
    assert repr(_export(mlflow_store, name, workdir / "alone")) == repr(whole)
    # the first run; the location, given up past two pages (boto3: at its third page;
    # obstore: one listing, its keys counted as they come); the other three runs
    location_calls = 3 if lister == "boto3" else 1
    assert s3_calls["ListObjectsV2"] == 1 + location_calls + (runs - 1), dict(s3_calls)


def test_a_run_whose_root_lies_elsewhere_is_listed_alone(tmp_path: Path, s3: Any) -> None:
    """Only ``<location>/<run id>/artifacts`` and ``<location>/models/m-<id>/artifacts``
    roots are read from their location's listing; any other root is walked as it is."""
    trees, top = objects.Trees(), uuid.uuid4().hex
    for n in range(2):
        _put(s3, f"{top}/odd/{n}/a.txt")
        assert [i.path for i in trees.walk(objects.S3Repo(f"s3://{s3.bucket}/{top}/odd/{n}"))] == [
            "a.txt"
        ]
    rid, mid = "ab" * 16, "m-" + "cd" * 16
    _put(s3, f"{top}/loc/{rid}/artifacts/x.txt")
    _put(s3, f"{top}/loc/{rid}x/artifacts/not-mine.txt")
    _put(s3, f"{top}/loc/models/{mid}/artifacts/MLmodel")
    _put(s3, f"{top}/loc/models/{mid}/artifacts/dir/", b"")  # a directory marker: skipped
    run, model = (
        objects.S3Repo(f"s3://{s3.bucket}/{top}/loc/{p}/artifacts") for p in (rid, f"models/{mid}")
    )
    assert [i.path for i in trees.walk(run)] == ["x.txt"]  # the first: walked alone
    assert [i.path for i in trees.walk(model)] == ["MLmodel"]  # from the location's listing
    assert trees.walk(run) == run.walk()


def test_an_unreachable_endpoint_is_named_without_its_credentials(
    s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.conftest import _free_port

    port = _free_port()  # nothing listens there
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://ann:hunter2@127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter3")
    repo = objects.S3Repo(f"s3://{s3.bucket}/nowhere")
    (tmp_path / "a.txt").write_bytes(b"alpha")
    assert objects.obstore_for(s3.bucket) is not None  # files: obstore's errors, worded
    for act in (
        repo.walk,
        lambda: repo.download_artifacts("a.txt", str(tmp_path / "d")),
        lambda: repo.log_artifact(str(tmp_path / "a.txt")),
    ):
        with pytest.raises(RestError) as err:
            act()
        text = str(err.value)
        assert f"127.0.0.1:{port}" in text and "s3://arcuate/nowhere" in text, text
        assert "hunter" not in text and "ann" not in text, text
        assert "\n" not in text and "Debug source" not in text, text


def test_an_export_stops_at_a_run_whose_listing_holds_a_hostile_key(
    s3: Any, mlflow_store: Any, workdir: Path
) -> None:
    """A key with a ``..`` part under a run's artifact root: the export fails naming the run
    and the key, and writes no table."""
    import arcuate

    name = _experiment(mlflow_store, f"s3://{s3.bucket}/hostile/{uuid.uuid4().hex}", 2)
    client = mlflow_store.client()
    eid = client.get_experiment_by_name(name).experiment_id
    run = client.search_runs([eid], filter_string="attributes.run_name = 'run-1'")[0]
    key = run.info.artifact_uri.removeprefix(f"s3://{s3.bucket}/")
    _put(s3, f"{key}/out/../../../escape.txt", b"outside")
    with pytest.raises(arcuate.ArcuateError) as err:
        _export(mlflow_store, name, workdir / "wh")
    text = str(err.value)
    assert f"run {run.info.run_id}" in text and "escape.txt" in text and "'..'" in text, text
    assert not list((workdir / "wh").rglob("*.parquet"))


def test_the_client_choice_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from arcuate.errors import ConfigurationError

    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", "boto")
    with pytest.raises(ConfigurationError, match="must be 'rest' or 'mlflow', got 'boto'"):
        objects.repository(str(tmp_path))
    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", "mlflow")
    assert objects.repository(str(tmp_path)) is None  # MLflow's repositories, then
    monkeypatch.setenv("ARCUATE_MLFLOW_CLIENT", "rest")
    assert isinstance(objects.repository(str(tmp_path)), objects.LocalRepo)


def test_one_client_built_once_for_threads_that_ask_at_once(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(objects, "_clients", {})
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: objects.client(), range(16)))
    assert len({id(c) for c in got}) == 1
    assert got[0].meta.config.max_pool_connections == objects.POOL_CONNECTIONS
    assert got[0].meta.endpoint_url == s3.endpoint
    monkeypatch.setenv("MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE", "path")
    assert objects.client() is not got[0]  # another configuration, another client
    assert objects.client().meta.config.s3 == {"addressing_style": "path"}


def test_a_location_that_cannot_be_listed_falls_back_to_each_run(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy may allow listing a run's prefix but not its experiment's location: the runs
    are then listed one by one, with the same result."""
    top = uuid.uuid4().hex
    runs = ["ab" * 16, "cd" * 16, "ef" * 16]
    for rid in runs:
        _put(s3, f"{top}/loc/{rid}/artifacts/x.txt")
    real = objects.S3Repo._pages

    def denied(self: Any, prefix: str, delimiter: bool) -> Any:
        if prefix == f"{top}/loc/":
            raise RestError("AccessDenied", "PERMISSION_DENIED")
        return real(self, prefix, delimiter)

    monkeypatch.setattr(objects.S3Repo, "_pages", denied)
    trees = objects.Trees()
    for rid in runs:
        repo = objects.S3Repo(f"s3://{s3.bucket}/{top}/loc/{rid}/artifacts")
        assert [i.path for i in trees.walk(repo)] == ["x.txt"]


# -- files through obstore --------------------------------------------------------------------
def _count_requests(
    monkeypatch: pytest.MonkeyPatch, boto: str, through: dict[str, str]
) -> Counter[str]:
    """Requests of this process counted by name: boto3's operations as ``boto`` formats
    them, obstore's ``get``/``put`` under the names ``through`` gives them."""
    import obstore
    from botocore.client import BaseClient

    calls: Counter[str] = Counter()
    real = BaseClient._make_api_call

    def counted(self: Any, operation: str, params: Any) -> Any:
        calls[boto.format(operation)] += 1
        return real(self, operation, params)

    def wrapped(name: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[through[name]] += 1
            return fn(*args, **kwargs)

        return call

    monkeypatch.setattr(BaseClient, "_make_api_call", counted)
    for name in ("get", "put", "list"):
        monkeypatch.setattr(obstore, name, wrapped(name, getattr(obstore, name)))
    return calls


def _sent(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Objects written, read and listed through obstore and through boto3, by who sent them."""
    names = {"get": "obstore get", "put": "obstore put", "list": "obstore list"}
    return _count_requests(monkeypatch, "boto3 {}", names)


def test_small_files_go_through_obstore_as_boto3_would_send_them(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With obstore installed, a file's upload and download are obstore's requests: the
    objects carry the type, encoding and metadata boto3's uploads give them, and read back
    byte for byte; a file from ``PUT_BYTES`` up still goes through boto3 (in parts)."""
    monkeypatch.setenv("MLFLOW_S3_UPLOAD_EXTRA_ARGS", '{"Metadata": {"team": "a"}}')
    monkeypatch.setattr(objects, "PUT_BYTES", 4096)
    src = _tree(tmp_path / "src")
    base = f"fast/{uuid.uuid4().hex}"
    boto = objects.S3Repo(f"s3://{s3.bucket}/{base}/boto")
    monkeypatch.setattr(objects, "obstore_for", lambda bucket: None)
    boto.log_artifacts(str(src))
    by_boto = boto.download_artifacts("sub", str(tmp_path / "down-boto"))
    with pytest.raises(RestError, match=r"No such artifact: 'gone\.txt'"):
        boto.download_artifacts("gone.txt", str(tmp_path / "down-boto"))
    monkeypatch.undo()
    monkeypatch.setenv("MLFLOW_S3_UPLOAD_EXTRA_ARGS", '{"Metadata": {"team": "a"}}')
    monkeypatch.setattr(objects, "PUT_BYTES", 4096)
    sent = _sent(monkeypatch)
    fast = objects.S3Repo(f"s3://{s3.bucket}/{base}/fast")
    fast.log_artifacts(str(src))
    assert sent == {"obstore put": 5, "boto3 PutObject": 1}, sent  # c.bin: 10 KiB
    assert _objects(s3, f"{base}/fast") == _objects(s3, f"{base}/boto")
    sent.clear()
    got = fast.download_artifacts("sub", str(tmp_path / "down"))
    assert sent == {"obstore list": 1, "obstore get": 4}, sent
    assert _files(Path(got)) == _files(Path(by_boto)) == _files(src / "sub")
    with pytest.raises(RestError, match=r"No such artifact: 'gone\.txt'"):
        fast.download_artifacts("gone.txt", str(tmp_path / "down"))
    assert not (tmp_path / "down" / "gone.txt").exists()


def test_what_obstore_cannot_send_stays_on_boto3(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload argument obstore has no header for keeps that upload on boto3; a
    configuration it cannot express keeps every request on boto3."""
    sent = _sent(monkeypatch)
    (tmp_path / "a.txt").write_bytes(b"alpha")
    repo = objects.S3Repo(f"s3://{s3.bucket}/keep/{uuid.uuid4().hex}")
    monkeypatch.setenv("MLFLOW_S3_UPLOAD_EXTRA_ARGS", '{"StorageClass": "STANDARD_IA"}')
    repo.log_artifact(str(tmp_path / "a.txt"))
    assert sent == {"boto3 PutObject": 1}, sent
    monkeypatch.delenv("MLFLOW_S3_UPLOAD_EXTRA_ARGS")
    assert objects.obstore_for(s3.bucket) is not None
    for name, value in (
        ("MLFLOW_EXPERIMENTAL_S3_SIGNATURE_VERSION", "s3"),
        ("MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE", "virtual"),
    ):
        with monkeypatch.context() as m:
            m.setenv("MLFLOW_S3_ENDPOINT_URL", "http://minio.example:9000")
            m.setenv(name, value)
            assert objects.obstore_for(s3.bucket) is None, name
    with monkeypatch.context() as m:  # real AWS, no region: boto3 follows S3's redirect
        m.setattr(objects, "_clients", {})
        m.setattr(objects, "_stores", {})
        for name in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                     "AWS_DEFAULT_REGION", "AWS_REGION"):  # fmt: skip
            m.delenv(name, raising=False)
        assert objects.obstore_for(s3.bucket) is None
        m.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        m.setattr(objects, "_clients", {})
        m.setattr(objects, "_stores", {})
        store = objects.obstore_for(s3.bucket)
        assert store is not None and store.config["region"] == "eu-west-1"
        assert store.config["virtual_hosted_style_request"] in (True, "true")
        assert "endpoint" not in store.config


def test_obstore_goes_where_boto3_goes_and_owner_is_sent(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's endpoint wins over ``AWS_ENDPOINT_URL_S3`` (which obstore would otherwise
    prefer), and an expected bucket owner is a header of every request."""
    from tests.conftest import _free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(objects, "_stores", {})
    (tmp_path / "a.txt").write_bytes(b"alpha")
    repo = objects.S3Repo(f"s3://{s3.bucket}/where/{uuid.uuid4().hex}")
    repo.log_artifact(str(tmp_path / "a.txt"))
    assert Path(repo.download_artifacts("a.txt", str(tmp_path / "d"))).read_bytes() == b"alpha"
    monkeypatch.setenv("MLFLOW_S3_EXPECTED_BUCKET_OWNER", "123456789012")
    store = objects.obstore_for(s3.bucket)
    assert store is not None
    assert store.client_options["default_headers"] == {
        "x-amz-expected-bucket-owner": b"123456789012"
    }


def test_an_explicit_endpoint_needs_no_boto3_client(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``MLFLOW_S3_ENDPOINT_URL`` the store is what boto3's client would use (endpoint,
    region, attempts), read without building that client (a quarter of a second of CPU)."""
    monkeypatch.setattr(objects, "_clients", {})
    monkeypatch.setattr(objects, "_stores", {})
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    store = objects.obstore_for(s3.bucket)
    assert store is not None and objects._clients == {}
    meta = objects.client().meta
    assert store.config["endpoint"] == meta.endpoint_url == s3.endpoint
    assert store.config["region"] == meta.region_name == "eu-central-1"
    assert store.retry_config["max_retries"] == meta.config.retries["total_max_attempts"] - 1


def test_a_key_obstore_cannot_name_is_sent_by_boto3(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose name holds a control character (S3 and MLflow take it; obstore's paths
    refuse it) is uploaded and downloaded through boto3, under its exact key."""
    sent = _sent(monkeypatch)
    base = f"ctl/{uuid.uuid4().hex}"
    name = "odd\x01name.txt"
    (tmp_path / "plain.txt").write_bytes(b"ctl bytes")
    repo = objects.S3Repo(f"s3://{s3.bucket}/{base}")
    repo.put_file(str(tmp_path / "plain.txt"), f"sub/{name}")
    # obstore is asked first and refuses the key before sending anything
    assert sent == {"obstore put": 1, "boto3 PutObject": 1}, sent
    sent.clear()
    got = repo.download_artifacts(f"sub/{name}", str(tmp_path / "down"))
    assert sent == {"obstore get": 1, "boto3 GetObject": 1}, sent
    assert Path(got).read_bytes() == b"ctl bytes"
    assert set(_objects(s3, base)) == {f"sub/{name}"}


_NO_BOTOCORE = """
import sys
from pathlib import Path
from arcuate.backends.mlflow import objects
store = objects.obstore_for(sys.argv[1])
repo = objects.S3Repo(f"s3://{sys.argv[1]}/{sys.argv[2]}")
repo.put_file(sys.argv[3], "a.txt")
got = repo.download_artifacts("a.txt", sys.argv[4])
print(store.config.get("region"), Path(got).read_text(), "botocore" in sys.modules)
"""


def test_keys_in_the_environment_need_no_botocore(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an explicit endpoint, the keys in ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
    and no shared config file, the files go up and down without importing botocore (a fifth
    of a second of a small command's CPU); a config file, a profile or a session token that
    expires are botocore's to read, as they are boto3's."""
    import subprocess
    import sys

    (tmp_path / "a.txt").write_text("env keys")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws/config
    for name in ("AWS_CONFIG_FILE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    base = f"env/{uuid.uuid4().hex}"

    def run(where: str) -> list[str]:
        args = [s3.bucket, f"{base}/{where}", str(tmp_path / "a.txt"), str(tmp_path / where)]
        done = subprocess.run(
            [sys.executable, "-c", _NO_BOTOCORE, *args], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()

    assert run("plain") == ["us-east-1", "env", "keys", "False"]
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    assert run("region") == ["eu-north-1", "env", "keys", "False"]
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)  # an empty one sets nothing
    assert run("devnull") == ["eu-north-1", "env", "keys", "False"]
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = eu-west-3\n")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert run("config") == ["eu-west-3", "env", "keys", "True"]
    monkeypatch.delenv("AWS_CONFIG_FILE")
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", "2099-01-01T00:00:00Z")
    assert run("expiring") == ["us-east-1", "env", "keys", "True"]
