"""The serialization report and policy (issue 16 item 3): DESCRIBE names each file's format,
detected from its bytes; REFUSE PICKLE (or the refuse_pickle setting) refuses a table holding
a pickle-family file before anything is written; nothing is ever unpickled."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest

import arcuate
from arcuate.backends.deltalake.store import DeltaLakeTableStore
from arcuate.backends.sharing.catalog import LocalShareCatalog
from arcuate.engine.imports import describe_shared, import_experiment, import_model
from arcuate.errors import ConfigurationError, ShareDataError
from arcuate.format.schema import Content
from tests.imports.import_helpers import (
    Share,
    batches_of,
    chunk_rows,
    file_entry,
    recipient_context,
    run_row,
    store_state,
    version_row,
)

MLMODEL = b"flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n"
PICKLED = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)  # data only: never loaded here


def _safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x00\x00\x80?"


def _version(version: int, *files: tuple[str, bytes]) -> dict[str, Any]:
    entries = [file_entry(p, d, owner="model") for p, d in (("MLmodel", MLMODEL), *files)]
    return version_row(version, files=entries)


@pytest.fixture(autouse=True)
def _never_unpickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any unpickling during these tests fails them."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("something unpickled a shared file")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def test_describe_lists_each_files_format_from_its_bytes() -> None:
    chunked, chunks = chunk_rows("2", "model.joblib", PICKLED * 200, 4096, owner="model")
    v2 = _version(2)
    v2["files"].append(chunked)
    rows = [
        _version(1, ("model.pkl", PICKLED), ("weights.safetensors", _safetensors())),
        v2,
        *chunks,
        _version(3, ("renamed.json", gzip.compress(PICKLED))),  # a name that lies
    ]
    result = describe_shared(batches_of(rows), "local")
    by_version = {r["version"]: r["serialization"] for r in result.rows}
    assert by_version == {
        1: "model/model.pkl: pickle; model/weights.safetensors: safetensors",
        2: "model/model.joblib: pickle",
        3: "model/renamed.json: pickle",
    }
    assert result.summary["pickle_files"] == 3
    assert result.summary["serialization"] == "data: 3, pickle: 3, safetensors: 1"


def _shared(workdir: Path, share: Share, name: str, rows: list[Any], content: Content) -> str:
    store = DeltaLakeTableStore(str(workdir / "warehouse"))
    location = store.write(("policy", name), batches_of(rows), content=content).location
    LocalShareCatalog(share.catalog).add_table("ml", "default", name, location)
    return f"{share.profile}#ml.default.{name}"


def test_refuse_pickle_stops_a_model_import_before_any_write(
    share: Share, recipient_store: Any, workdir: Path, import_path: str
) -> None:
    rows = [_version(1, ("weights.safetensors", _safetensors())), _version(2, ("m.pkl", PICKLED))]
    coordinate = _shared(workdir, share, f"pickled_{import_path}", rows, "model")
    before = store_state(recipient_store)
    with pytest.raises(ShareDataError) as err:
        arcuate.execute(
            f"CREATE MODEL m AS '{coordinate}' REFUSE PICKLE",
            tracking_uri=recipient_store.tracking_uri,
            registry_uri=recipient_store.registry_uri,
            progress=False,
        )
    assert err.value.code == "ARC610"
    text = str(err.value)
    assert "version 2 holds model/m.pkl, a pickle file" in text and "wrote nothing" in text
    assert "field 'files[1]'" in text
    assert store_state(recipient_store) == before
    # without the policy the same table imports (the policy is what refused it)
    result = arcuate.execute(
        f"CREATE MODEL m AS '{coordinate}'",
        tracking_uri=recipient_store.tracking_uri,
        registry_uri=recipient_store.registry_uri,
        progress=False,
    )
    assert result[-1].summary["added"] == 2


def test_the_setting_refuses_for_every_import(recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store, refuse_pickle=True)
    run = run_row(files=[file_entry("model/model.pkl", gzip.compress(PICKLED))])
    before = store_state(recipient_store)
    with pytest.raises(ShareDataError, match=r"run a{32} holds artifacts/model/model.pkl"):
        import_experiment(batches_of([run]), "e", ctx)
    with pytest.raises(ShareDataError, match=r"version 1 holds model/m\.pkl"):
        import_model(batches_of([_version(1, ("m.pkl", PICKLED))]), "m", ctx)
    assert store_state(recipient_store) == before


def test_a_file_that_cannot_be_told_is_refused_too(recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store)
    corrupt = gzip.compress(PICKLED)[:10] + b"\xff" * 20  # a gzip stream that cannot be read
    with pytest.raises(ShareDataError, match=r"format cannot be told.*gzip stream corrupt"):
        import_model(
            batches_of([_version(1, ("m.bin", corrupt))]), "m", ctx, refuse_pickle=True
        )


def test_plain_data_passes_the_policy(recipient_store: Any) -> None:
    ctx = recipient_context(recipient_store, refuse_pickle=True)
    rows = [_version(1, ("weights.safetensors", _safetensors()), ("README.md", b"# model\n"))]
    result = import_model(batches_of(rows), "clean", ctx)
    assert result.summary["added"] == 1


def test_explain_shows_the_policy_and_the_setting_is_checked() -> None:
    plan = arcuate.explain("CREATE EXPERIMENT e AS SPARK 'p.share#a.b.c' REFUSE PICKLE")
    assert "refusing pickle-family files" in plan
    with pytest.raises(ConfigurationError, match="refuse_pickle must be on or off"):
        arcuate.execute("SHOW SHARES", refuse_pickle="maybe")


def test_describe_shows_the_licence_and_model_card() -> None:
    tagged = _version(1, ("README.md", b"\n# Churn model \x1b[31m\nPredicts churn.\n"))
    tagged["model_version"]["model_tags"] = [{"key": "License", "value": "Apache-2.0"}]
    with_file = _version(2, ("LICENSE", b"MIT License\n\nCopyright (c) 2026 Acme\n"))
    bare = _version(3)
    result = describe_shared(batches_of([tagged, with_file, bare]), "local")
    rows = {r["version"]: (r["license"], r["model_card"]) for r in result.rows}
    assert rows == {
        1: ("Apache-2.0", "model/README.md: Churn model [31m"),  # no escape reaches a terminal
        2: ("model/LICENSE: MIT License", ""),
        3: ("", ""),
    }
