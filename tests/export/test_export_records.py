"""Packing files into rows: inline vs chunks, the inline budget, bounded batches, redaction."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pyarrow as pa
import pytest

from arcuate.backends.mlflow.connect import redact_json_uris, redact_uri, redact_value
from arcuate.engine.export import export_experiment
from arcuate.errors import BackendError
from arcuate.format.files import FileRef
from arcuate.format.records import PackStats, run_rows, to_batches, version_rows
from arcuate.format.schema import SCHEMA
from arcuate.plan.ops import ExportExperiment
from tests.export.export_helpers import EXPERIMENT, Tricky, reassemble, rows_deltalake

EXP = {"experiment_id": "1", "name": "e", "lifecycle_stage": "active", "tags": []}
RUN = {"run_id": "r1", "params": [], "tags": [], "metrics": []}


def ref(path: str, data: bytes, owner: str = "artifacts") -> FileRef:
    return FileRef(owner, path, len(data), lambda: io.BytesIO(data))


def pack(refs: list[FileRef], chunk: int, **kw: int) -> list[dict]:
    rows = list(run_rows(EXP, RUN, refs, chunk_bytes=chunk, **kw))
    batch = pa.Table.from_batches(list(to_batches(rows)), schema=SCHEMA)
    return batch.to_pylist()


def test_boundaries_inline_and_chunked() -> None:
    files = {
        "zero": b"",
        "exact": b"e" * 1024,
        "one-over": b"o" * 1025,
        "three": bytes(range(256)) * 12,  # 3072 = 3 chunks exactly
    }
    rows = pack([ref(p, d) for p, d in files.items()], 1024)
    entries = {f["path"]: f for f in rows[0]["files"]}
    assert [entries[p]["chunks"] for p in files] == [0, 0, 2, 3]
    assert entries["zero"]["data"] == b"" and entries["exact"]["data"] == files["exact"]
    chunks = [r for r in rows if r["kind"] == "chunk"]
    assert [(c["chunk"]["path"], c["chunk"]["index"], c["chunk"]["offset"]) for c in chunks] == [
        ("one-over", 0, 0),
        ("one-over", 1, 1024),
        ("three", 0, 0),
        ("three", 1, 1024),
        ("three", 2, 2048),
    ]
    assert all(len(c["chunk"]["data"]) <= 1024 for c in chunks)
    assert rows[0]["kind"] == "run" and all(c["key"] == "r1" for c in chunks)
    _, got = reassemble(rows)
    assert {p: d for (_k, _o, p), d in got.items()} == files


def test_small_files_spill_to_chunks_once_the_inline_budget_is_spent() -> None:
    data = {f"f{i}": bytes([i]) * 600 for i in range(5)}
    stats = PackStats()
    rows = list(
        run_rows(EXP, RUN, [ref(p, d) for p, d in data.items()], chunk_bytes=1024,
                 inline_budget=1500, stats=stats)
    )  # fmt: skip
    entries = [(f["path"], f["chunks"], f["data"] is None) for f in rows[0]["files"]]
    assert entries == [
        ("f0", 0, False),
        ("f1", 0, False),
        ("f2", 1, True),
        ("f3", 1, True),
        ("f4", 1, True),
    ]
    assert (stats.files, stats.bytes) == (5, 3000)
    _, got = reassemble(rows)
    assert {p: d for (_k, _o, p), d in got.items()} == data


def test_a_file_that_changes_between_reads_is_an_error() -> None:
    versions = iter([b"a" * 3000, b"b" * 3000])
    changing = FileRef("artifacts", "moving.bin", 3000, lambda: io.BytesIO(next(versions)))
    with pytest.raises(BackendError, match=r"artifacts/moving.bin of record r1 changed while"):
        list(run_rows(EXP, RUN, [changing], chunk_bytes=1024))


def test_open_failure_names_the_file() -> None:
    def broken() -> io.BytesIO:
        raise PermissionError("denied")

    with pytest.raises(
        BackendError, match=r"could not read file model/MLmodel of record 3: denied"
    ):
        list(
            version_rows(
                {"version": 3}, None, [FileRef("model", "MLmodel", 1, broken)], chunk_bytes=1024
            )
        )


def test_batches_are_bounded_by_rows_and_bytes() -> None:
    big = bytes(5000)
    rows = list(run_rows(EXP, RUN, [ref("big", big)], chunk_bytes=1024))  # 1 + 5 rows
    sizes = [b.num_rows for b in to_batches(rows, max_rows=4)]
    assert sizes == [4, 2]
    batches = list(to_batches(rows, max_bytes=2048))
    assert len(batches) > 1 and sum(b.num_rows for b in batches) == 6
    for b in batches:  # a batch closes at the row that crosses max_bytes
        data = sum(len(c["data"]) for c in b.column("chunk").to_pylist() if c is not None)
        assert data <= 2048 + 1024
    assert hashlib.sha256(big).hexdigest() == rows[0]["files"][0]["sha256"]


def test_no_matching_runs_writes_an_empty_table(tricky: Tricky, workdir: Path) -> None:
    ctx = tricky.context(workdir / "warehouse")
    stream = export_experiment(ExportExperiment(EXPERIMENT, "params.kind = 'none'"), ctx)
    written = ctx.table_store.write(("ml", "empty"), stream.batches, content=stream.content)
    assert rows_deltalake(written.location) == [] and stream.runs == 0


@pytest.mark.parametrize(
    ("uri", "clean"),
    [
        ("postgresql://ana:pw@db.corp:5432/mlflow", "postgresql://db.corp:5432/mlflow"),
        ("https://ghp_TOKEN@github.com/corp/x.git", "https://github.com/corp/x.git"),
        ("s3://bucket/path/model", "s3://bucket/path/model"),
        ("https://h/p?sv=2022&sp=r&sig=abc%2F", "https://h/p"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=A&X-Amz-Signature=f",
            "https://b.s3.amazonaws.com/k",
        ),
        ("https://h/p?versionId=3", "https://h/p?versionId=3"),
        ("https://h/cb#access_token=abc&x=1", "https://h/cb"),
        ("https://h/#/experiments/1/runs/2", "https://h/#/experiments/1/runs/2"),
        ("mysql://u:p@h/db?password=x&charset=utf8", "mysql://h/db"),
        ("runs:/abc/model", "runs:/abc/model"),
        ("models:/m-123", "models:/m-123"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("/plain/path?sig=x", "/plain/path?sig=x"),
        ("", ""),
    ],
)
def test_redact_uri(uri: str, clean: str) -> None:
    assert redact_uri(uri) == clean


def test_redacted_values_and_json() -> None:
    assert redact_value("just text with s3cr3t") == "just text with s3cr3t"
    assert redact_value("https://u:p@h/x") == "https://h/x"
    assert redact_value(None) is None
    doc = '{"uri":  "s3://b/k"}'
    assert redact_json_uris(doc) == doc  # untouched, spacing and all
    assert redact_json_uris('{"u": ["https://u:p@h/x"]}') == '{"u": ["https://h/x"]}'
    assert redact_json_uris("not json https://u:p@h") == "not json https://u:p@h"


def test_exports_stay_within_what_recipients_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider cannot write what every recipient refuses (arcuate.format.limits): chunks
    larger than a chunk row may be, or a file in more chunk rows than a file may have."""
    from arcuate.config import resolve_settings
    from arcuate.errors import ConfigurationError
    from arcuate.format import limits

    with pytest.raises(ConfigurationError, match="chunk_bytes must be at most 268435456"):
        resolve_settings(chunk_bytes=limits.MAX_CHUNK_BYTES + 1)
    assert resolve_settings(chunk_bytes=limits.MAX_CHUNK_BYTES).chunk_bytes == 256 * 1024**2
    monkeypatch.setattr(limits, "MAX_CHUNKS_PER_FILE", 4)
    assert len(pack([ref("four.bin", b"x" * 4096)], 1024)) == 5
    with pytest.raises(BackendError, match=r"artifacts/five.bin of record r1 needs 5 chunks"):
        pack([ref("five.bin", b"x" * 4097)], 1024)
