"""Exports that must not write: missing names, rejected filters, failures midway, credentials."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pytest

from arcuate.backends.deltalake.parquet import ParquetFiles
from arcuate.backends.mlflow.source import MlflowSource
from arcuate.config import Settings
from arcuate.engine.context import Context
from arcuate.engine.export import export_experiment, export_model
from arcuate.errors import BackendError, NotFoundError
from arcuate.format.files import FileRef, Record
from arcuate.plan.ops import ExportExperiment, ExportModel
from tests.export.export_helpers import EXPERIMENT, Tricky, reassemble, rows_deltalake

SECRET = "s3cr3t-Tok3n"


def committed(location: Path) -> bool:
    return any((location / "_delta_log").glob("*.json")) if location.exists() else False


def test_missing_experiment_is_a_clear_error_that_writes_nothing(
    tricky: Tricky, workdir: Path
) -> None:
    ctx = tricky.context(workdir / "warehouse")
    with pytest.raises(NotFoundError) as info:
        export_experiment(ExportExperiment("/Users/ana@corp.com/chürn"), ctx)
    text = str(info.value)
    assert "experiment '/Users/ana@corp.com/chürn' does not exist" in text
    assert f"did you mean {EXPERIMENT!r}?" in text
    assert not committed(workdir / "warehouse" / "ml" / "t")
    assert not (workdir / "warehouse").exists()


def test_rejected_filter_fails_before_writing(tricky: Tricky, workdir: Path) -> None:
    ctx = tricky.context(workdir / "warehouse")
    with pytest.raises(BackendError) as info:
        export_experiment(ExportExperiment(EXPERIMENT, "params.kind ~ 'x'"), ctx)
    assert "with filter \"params.kind ~ 'x'\"" in str(info.value)
    assert not (workdir / "warehouse").exists()


class _Exploding(io.RawIOBase):
    """A file that yields ``good`` bytes, then fails like a dropped network read."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise OSError("connection reset while reading")
        n = min(len(buffer), self.left)
        buffer[:n] = b"\x01" * n
        self.left -= n
        return n


class _FailingSource(MlflowSource):
    """The real source, plus one large file whose second read breaks halfway."""

    size = 2 * 1024 * 1024

    def iter_run_files(self, run: Record) -> Iterator[FileRef]:
        yield from super().iter_run_files(run)
        opened = {"n": 0}

        def open_() -> IO[bytes]:
            opened["n"] += 1
            if opened["n"] == 1:  # the hashing pass reads it whole
                return io.BytesIO(b"\x01" * self.size)
            return io.BufferedReader(_Exploding(self.size * 3 // 4))

        yield FileRef("artifacts", "huge.bin", self.size, open_)


def test_failure_midway_leaves_the_previous_table_version(
    tricky: Tricky, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = workdir / "warehouse"
    ctx = tricky.context(warehouse, chunk_bytes=1024)
    stream = export_experiment(ExportExperiment(EXPERIMENT), ctx)
    first = ctx.table_store.write(("ml", "t"), stream.batches, content=stream.content)
    assert first.version == 0
    before = rows_deltalake(first.location)

    settings = tricky.context(warehouse, chunk_bytes=1024).settings
    failing = Context(settings, model_source=_FailingSource(tricky.store.tracking_uri))
    stream = export_experiment(ExportExperiment(EXPERIMENT), failing)
    delivered = []
    write = ParquetFiles.write

    def counted(self: ParquetFiles, batch: pa.RecordBatch) -> None:
        delivered.append(batch.num_rows)
        write(self, batch)

    monkeypatch.setattr(ParquetFiles, "write", counted)
    with pytest.raises(BackendError) as info:
        failing.table_store.write(("ml", "t"), stream.batches, content=stream.content)
    assert "could not read file artifacts/huge.bin of record" in str(info.value)
    assert sum(delivered) >= 1000, "the failure came after rows reached the Parquet writer"
    from deltalake import DeltaTable

    assert DeltaTable(first.location).version() == 0
    assert repr(rows_deltalake(first.location)) == repr(before)  # repr: NaN != NaN

    # and a first export that fails leaves no table at all
    stream = export_experiment(ExportExperiment(EXPERIMENT), failing)
    with pytest.raises(BackendError):
        failing.table_store.write(("ml", "new"), stream.batches, content=stream.content)
    assert not committed(warehouse / "ml" / "new")


@pytest.mark.server
def test_no_credentials_enter_the_table(mlflow_server: Any, workdir: Path) -> None:
    """A tracking URI with user:password, and secrets in tags, params, datasets, links."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from arcuate.backends.mlflow.connect import make_client

    uri = mlflow_server.tracking_uri.replace("http://", f"http://ana:{SECRET}@")
    client = make_client(uri, uri)
    exp_id = client.create_experiment("secrets", tags={"repo": f"https://ana:{SECRET}@git.corp/x"})
    run = client.create_run(
        exp_id,
        tags={"mlflow.source.git.repoURL": f"https://ana:{SECRET}@github.com/corp/churn.git"},
    )
    rid = run.info.run_id
    sas = f"https://acct.blob.core.windows.net/c/d.csv?sv=2022-11-02&sp=r&sig={SECRET}"
    client.log_param(rid, "data", sas)
    presigned = (
        "https://b.s3.amazonaws.com/d.csv?X-Amz-Credential=AKIA%2F&X-Amz-Signature=" + SECRET
    )
    ds = Dataset("d", "abc", "http", f'{{"url": "{presigned}"}}', None, None)
    client.log_inputs(rid, [DatasetInput(ds, [InputTag("mlflow.data.context", "train")])])
    src = workdir / "up"
    (src / "model").mkdir(parents=True)
    (src / "model" / "MLmodel").write_text("flavors: {}\n")
    (src / "notes.txt").write_text("remote artifact")
    client.log_artifacts(rid, str(src))
    client.set_terminated(rid)
    client.create_registered_model("secret-model")
    client.create_model_version(
        "secret-model",
        f"runs:/{rid}/model",
        run_id=rid,
        run_link=f"https://ana:{SECRET}@mlflow.corp/#/experiments/{exp_id}/runs/{rid}",
    )

    settings = Settings(
        tracking_uri=uri, registry_uri=uri, warehouse=str(workdir / "wh"), progress=False
    )
    ctx = Context(settings)
    stream = export_experiment(ExportExperiment("secrets"), ctx)
    exp_table = ctx.table_store.write(("s", "exp"), stream.batches, content=stream.content)
    stream = export_model(ExportModel("secret-model"), ctx)
    model_table = ctx.table_store.write(("s", "model"), stream.batches, content=stream.content)

    exp_rows = rows_deltalake(exp_table.location)
    model_rows = rows_deltalake(model_table.location)
    everything = repr(exp_rows) + repr(model_rows)
    assert SECRET not in everything
    for path in Path(exp_table.location).parent.parent.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    records, files = reassemble(exp_rows)
    run_row = records[rid]["run"]
    tags = {t["key"]: t["value"] for t in run_row["tags"]}
    assert tags["mlflow.source.git.repoURL"] == "https://github.com/corp/churn.git"
    params = {p["key"]: p["value"] for p in run_row["params"]}
    assert params["data"] == "https://acct.blob.core.windows.net/c/d.csv"
    assert run_row["inputs"][0]["source"] == '{"url": "https://b.s3.amazonaws.com/d.csv"}'
    exp_tags = {t["key"]: t["value"] for t in records[rid]["experiment"]["tags"]}
    assert exp_tags["repo"] == "https://git.corp/x"
    # files came through the server's artifact proxy (remote repository, temp downloads)
    assert files[(rid, "artifacts", "notes.txt")] == b"remote artifact"
    assert files[(rid, "artifacts", "model/MLmodel")] == b"flavors: {}\n"
    mrecords, mfiles = reassemble(model_rows)
    info = mrecords["1"]["model_version"]
    assert info["run_link"] == f"https://mlflow.corp/#/experiments/{exp_id}/runs/{rid}"
    assert mfiles == {("1", "model", "MLmodel"): b"flavors: {}\n"}

    with pytest.raises(NotFoundError) as err:
        export_experiment(ExportExperiment("secret"), ctx)
    assert SECRET not in str(err.value) and "did you mean 'secrets'?" in str(err.value)


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_links_that_lead_outside_the_artifacts_are_refused(
    mlflow_store: Any, workdir: Path, kind: str
) -> None:
    """A symbolic link in a run's artifact directory that leads outside it (here to a key
    file): the export is refused, naming the link, and nothing of the target is written.
    Files and directories alike (links that stay inside are followed, as MLflow does)."""
    import arcuate

    outside = workdir / "home"
    outside.mkdir()
    (outside / "id_rsa").write_bytes(SECRET.encode())
    client = mlflow_store.client()
    eid = client.create_experiment("links", artifact_location=str(workdir / "artifacts"))
    rid = client.create_run(eid).info.run_id
    src = workdir / "src"
    src.mkdir()
    (src / "ok.txt").write_text("fine")
    client.log_artifacts(rid, str(src))
    client.set_terminated(rid)
    artifacts = Path(client.get_run(rid).info.artifact_uri)
    (artifacts / "inside.txt").symlink_to(artifacts / "ok.txt")  # stays inside: exported
    link = "notes/key" if kind == "file" else "notes/home"
    (artifacts / "notes").mkdir()
    (artifacts / link).symlink_to(outside / "id_rsa" if kind == "file" else outside)

    settings = Settings(
        tracking_uri=mlflow_store.tracking_uri,
        registry_uri=mlflow_store.registry_uri,
        warehouse=str(workdir / "wh"),
        catalog=str(workdir / "shares.yaml"),
        progress=False,
    )
    with pytest.raises(BackendError) as info:
        arcuate.execute(
            "CREATE SHARE s WITH TABLE ml.links FROM EXPERIMENT links", settings=settings
        )
    text = str(info.value)
    assert info.value.code == "ARC430"
    assert f"artifact {link!r} of run {rid}" in text
    assert "symbolic link" in text and "outside the artifact directory" in text
    assert not committed(workdir / "wh" / "ml" / "links")
    for path in (workdir / "wh").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
