"""Serialization formats told from content (issue 16, item 3): a corpus of real model files.

Each fixture is written here, in a temporary directory, by the library that makes it in
practice (scikit-learn + pickle, cloudpickle, joblib, skops, numpy, pyarrow) or, for formats
whose library is not installed (safetensors, ONNX, torch), byte for byte from the format's
specification. The checking subprocess classifies them all and must not have imported any
pickle-based library or used an unpickler.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression

from arcuate.format.serialization import (
    FORMATS,
    PICKLE_FORMATS,
    Bounds,
    classify,
    classify_path,
)

REPO = Path(__file__).resolve().parents[2]


def _estimator() -> LogisticRegression:
    return LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])


def _pyfunc() -> bytes:
    """A python_model.pkl as MLflow writes it: cloudpickle of a class defined in a notebook.

    A class defined inside a function cannot be imported by name, so cloudpickle pickles it
    by value, the way it does for ``__main__`` classes.
    """

    class AddOne:
        def predict(self, context: object, model_input: list[int]) -> list[int]:
            return [x + 1 for x in model_input]

    return cloudpickle.dumps(AddOne())


def _torch_pickle() -> bytes:
    """The data.pkl of ``torch.save({"weight": tensor})``, protocol 2 (torch is not installed)."""
    data = (
        b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01"
        b"X\x06\x00\x00\x00weightq\x02ctorch._utils\n_rebuild_tensor_v2\nq\x03("
        b"(X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x000q\x06"
        b"X\x03\x00\x00\x00cpuq\x07K\x04tq\x08QK\x00K\x04\x85q\tK\x01\x85q\n\x89tq\x0bRq\x0cs."
    )
    list(pickletools.genops(data))  # a well-formed pickle (parsed, never loaded)
    return data


def _torch_zip(path: Path, *, script: bool) -> None:
    """torch.save's zip layout, or torch.jit.save's (constants.pkl and code/)."""
    root = "model" if script else "archive"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        if script:
            z.writestr(f"{root}/data.pkl", b"\x80\x02c__torch__\nNet\nq\x00)\x81q\x01}b.")
            z.writestr(f"{root}/constants.pkl", b"\x80\x02).")
            z.writestr(f"{root}/code/__torch__/net.py", "class Net(Module):\n  pass\n")
        else:
            z.writestr(f"{root}/data.pkl", _torch_pickle())
            z.writestr(f"{root}/byteorder", "little")
            z.writestr(f"{root}/data/0", np.arange(4, dtype="<f4").tobytes())
        z.writestr(f"{root}/version", "3\n")


def _safetensors() -> bytes:
    """An 8-byte little-endian header length, a JSON header padded to 8 bytes, the tensor."""
    header = json.dumps(
        {"weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
         "__metadata__": {"format": "pt"}}
    ).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + np.ones(4, dtype="<f4").tobytes()


def _pb(number: int, payload: bytes | int) -> bytes:
    """One protobuf field: varint (wire type 0) or length-delimited (wire type 2)."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _onnx() -> bytes:
    """A ModelProto for y = Identity(x), float[1], opset 17 (onnx/onnx.proto field numbers)."""
    tensor_type = _pb(1, _pb(1, 1) + _pb(2, _pb(1, _pb(1, 1))))  # TypeProto.tensor_type
    node = _pb(1, b"x") + _pb(2, b"y") + _pb(4, b"Identity")
    graph = (_pb(1, node) + _pb(2, b"g") + _pb(11, _pb(1, b"x") + _pb(2, tensor_type))
             + _pb(12, _pb(1, b"y") + _pb(2, tensor_type)))
    return _pb(1, 9) + _pb(2, b"arcuate-test") + _pb(3, b"1") + _pb(7, graph) + _pb(8, _pb(2, 17))


def _overlapping_zip() -> bytes:
    """The zip-bomb shape: three directory entries pointing at one 1 MiB deflate stream."""
    raw = bytes(1 << 20)
    data, crc = zlib.compress(raw)[2:-4], zlib.crc32(raw)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), len(raw), 1, 0)
    local += b"a" + data
    central = b"".join(
        struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), len(raw),
                    1, 0, 0, 0, 0, 0, 0) + name
        for name in (b"a", b"b", b"c")
    )
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 3, 3, len(central), len(local), 0)
    return local + central + end


def _zipped(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def _deep() -> bytes:
    """A pickle inside gzip, zip, gzip, zip, gzip: five containers, one more than the bound."""
    data = pickle.dumps({"a": 1})
    for layer in range(5):
        data = gzip.compress(data) if layer % 2 == 0 else _zipped("inner", data)
    return data


def _npz(path: Path, *, objects: bool, compressed: bool = False) -> None:
    arrays = {"w": np.arange(6.0).reshape(2, 3)}
    if objects:
        arrays["meta"] = np.array([{"k": 1}, None], dtype=object)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


def _write(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _parquet(path: Path) -> None:
    pq.write_table(pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]}), path)


MLMODEL = """\
artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.pkl
    python_version: 3.11.7
  sklearn:
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.9.1
mlflow_version: 3.8.0
"""

#: file name -> (how to write it, expected format, expected layers)
CORPUS: dict[str, tuple[Callable[[Path], None], str, tuple[str, ...]]] = {
    "sklearn.pkl": (lambda p: p.write_bytes(pickle.dumps(_estimator())), "pickle", ()),
    "python_model.pkl": (lambda p: p.write_bytes(_pyfunc()), "cloudpickle", ()),
    "python_model.pkl.gz": (lambda p: p.write_bytes(gzip.compress(_pyfunc())), "cloudpickle",
                            ("gzip",)),
    "model.joblib": (lambda p: joblib.dump(_estimator(), p), "joblib", ()),
    "model_z.joblib": (lambda p: joblib.dump(_estimator(), p, compress=3), "joblib", ("zlib",)),
    "model_lzma.joblib": (lambda p: joblib.dump(_estimator(), p, compress="lzma"), "joblib",
                          ("lzma",)),
    "model.pkl.gz": (lambda p: p.write_bytes(gzip.compress(pickle.dumps(_estimator()))),
                     "pickle", ("gzip",)),
    "model.pkl.bz2": (lambda p: p.write_bytes(bz2.compress(pickle.dumps(_estimator()))),
                      "pickle", ("bz2",)),
    "protocol0.pkl": (_write(pickle.dumps({"a": [1, 2.5, "x"]}, protocol=0)), "pickle", ()),
    "protocol5.pkl": (_write(pickle.dumps({"a": b"x" * 100}, protocol=5)), "pickle", ()),
    "renamed.json": (lambda p: p.write_bytes(pickle.dumps(_estimator())), "pickle", ()),
    "truncated.pkl": (lambda p: p.write_bytes(pickle.dumps(_estimator())[:300]), "pickle", ()),
    "truncated0.pkl": (_write(pickle.dumps(list(range(200)), protocol=0)[:500]), "pickle", ()),
    "model.skops": (lambda p: skops.io.dump(_estimator(), p), "skops", ("zip",)),
    "model.safetensors": (_write(_safetensors()), "safetensors", ()),
    "model.onnx": (_write(_onnx()), "onnx", ()),
    "torchscript.pt": (lambda p: _torch_zip(p, script=True), "torchscript", ("zip",)),
    "torch_save.pt": (lambda p: _torch_zip(p, script=False), "pytorch", ("zip",)),
    "objects.npy": (lambda p: np.save(p, np.array([{"a": 1}, None], dtype=object)),
                    "npy-object", ()),
    "numbers.npy": (lambda p: np.save(p, np.arange(10.0)), "npy", ()),
    "arrays.npz": (lambda p: _npz(p, objects=False), "npz", ("zip",)),
    "arrays_compressed.npz": (lambda p: _npz(p, objects=False, compressed=True), "npz",
                              ("zip",)),
    "objects.npz": (lambda p: _npz(p, objects=True), "npz-object", ("zip",)),
    "data.parquet": (_parquet, "data", ()),
    "data.json": (_write(b'{"inputs": [[1.0, 2.0]], "params": {"k": "v"}}'), "data", ()),
    "MLmodel": (_write(MLMODEL.encode()), "data", ()),
    "data.csv": (_write(b"x,y\n1,a\n2,b\n"), "data", ()),
    "artifacts.zip": (_write(_zipped("model/model.pkl.gz", gzip.compress(pickle.dumps([1])))),
                      "pickle", ("zip", "gzip")),
    "docs.zip": (_write(_zipped("README.md", b"# model\n")), "zip", ("zip",)),
    "bomb.zip": (_write(_overlapping_zip()), "unknown", ()),
    "deep.gz": (_write(_deep()), "unknown", ("gzip", "zip", "gzip", "zip")),
    "weights.bin": (_write(np.linspace(0, 1, 256, dtype="<f4").tobytes()), "binary", ()),
    "model.lz4": (_write(b"\x04\x22\x4d\x18" + bytes(60)), "unknown", ()),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name, (write, _, _) in CORPUS.items():
        write(root / name)
    return root


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_file_is_classified_from_its_content(corpus: Path, name: str) -> None:
    _, expected, layers = CORPUS[name]
    found = classify_path(corpus / name)
    assert (found.format, found.layers) == (expected, layers), found
    assert found.pickle_family == (expected in PICKLE_FORMATS)
    assert found.evidence


def test_the_detector_imports_no_pickle_library_and_never_unpickles(corpus: Path) -> None:
    """A fresh interpreter: unpicklers booby-trapped, an audit hook on ``pickle.find_class``."""
    script = textwrap.dedent(
        """
        import json, pickle, _pickle, sys
        events = []
        sys.addaudithook(lambda event, args: event.startswith("pickle") and events.append(event))
        def trap(*args, **kwargs):
            raise AssertionError("an unpickler was used")
        for module in (pickle, _pickle):
            for attr in ("load", "loads", "Unpickler", "_load", "_loads", "_Unpickler"):
                if hasattr(module, attr):
                    setattr(module, attr, trap)
        import arcuate
        from arcuate.format.serialization import classify_path
        root = sys.argv[1]
        found = {name: classify_path(root + "/" + name).format for name in sys.argv[2:]}
        loaded = sorted(m for m in sys.modules
                        if m.split(".")[0] in ("cloudpickle", "joblib", "torch", "skops", "dill"))
        print(json.dumps({"found": found, "loaded": loaded, "events": events}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(corpus), *sorted(CORPUS)],
        capture_output=True, text=True, env=env, check=True, timeout=300,
    )
    report = json.loads(done.stdout)
    assert report["loaded"] == []
    assert report["events"] == []
    assert report["found"] == {name: fmt for name, (_, fmt, _) in CORPUS.items()}


def test_a_bzip2_bomb_member_is_read_only_as_far_as_needed(tmp_path: Path) -> None:
    """64 MiB of zeros in ~100 bytes; zipfile's own reader would inflate it in one call."""
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as z, z.open("w.bin", "w") as f:
        for _ in range(64):
            f.write(bytes(1 << 20))
    assert path.stat().st_size < 4096
    tracemalloc.start()
    try:
        found = classify_path(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (found.format, found.pickle_family) == ("zip", False)
    assert peak < 16 * 1024 * 1024


def test_a_zip_listing_too_many_members_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(101):
            z.writestr(f"m{i}", b"")
    found = classify_path(path, bounds=Bounds(zip_members=100))
    assert found.format == "unknown"
    assert "101 members" in found.evidence


def test_the_bomb_and_the_nesting_say_why(corpus: Path) -> None:
    assert "overlap" in classify_path(corpus / "bomb.zip").evidence
    assert "nested more than 4" in classify_path(corpus / "deep.gz").evidence


def test_a_pickle_is_found_in_the_first_bytes_of_a_file_too_large_to_read(corpus: Path) -> None:
    """A caller holding only the first chunk of a big file passes it with the file's size."""
    data = (corpus / "torch_save.pt").read_bytes()
    found = classify("big.pt", data[:1024], size=len(data) + (1 << 30))
    assert found.format == "pytorch"
    assert "local headers" in found.evidence


def test_names_do_not_decide_but_a_misleading_one_is_reported(corpus: Path) -> None:
    found = classify_path(corpus / "renamed.json")
    assert found.format == "pickle"
    assert "named '.json'" in found.evidence
    assert classify("model.pkl", (corpus / "data.json").read_bytes()).format == "data"


def test_truncated_and_corrupt_files_never_raise(corpus: Path) -> None:
    """Every prefix of a container gives an answer, never an exception, and never a wrong one.

    A prefix of a pickle-bearing file is a pickle or undecided (``unknown``); a prefix of a
    file without pickles is never called a pickle.
    """
    for name in ("model.skops", "torch_save.pt", "model.safetensors", "objects.npy",
                 "model_z.joblib", "model.onnx", "objects.npz", "data.parquet"):
        data = (corpus / name).read_bytes()
        pickled = CORPUS[name][1] in PICKLE_FORMATS
        for cut in (1, 7, 9, 11, 31, 64, 200, len(data) // 2, len(data) - 1):
            found = classify(name, data[:cut])
            assert found.format in FORMATS, found
            if not pickled:
                assert not found.pickle_family, (cut, found)
            elif cut >= 200:
                assert found.pickle_family or found.format == "unknown", (cut, found)
    found = classify("x.pkl", pickle.dumps(_estimator())[:300])
    assert "truncated" in found.evidence
