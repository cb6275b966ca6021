"""Signed exports write a ``model.sig`` into each imported model directory (issue 16 item 1):
the stock ``model_signing verify key`` command checks a model downloaded from the recipient's
MLflow with the provider's public key, offline, and fails once one byte of it changes.

The provider's run logs a model (``MLmodel``, a weights file cut into chunks, a file in a
subdirectory) as an MLflow 3 logged model, registered as version 1 (``models:/``), and the
same files as plain run artifacts registered as version 2 (``runs:/<run>/legacy``).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import arcuate
from arcuate.backends.mlflow.connect import spark_guard
from arcuate.errors import ShareDataError
from arcuate.format import manifest as mf
from benchmarks.runner import make_keys
from tests.conftest import make_store
from tests.imports.import_helpers import batches_of, recipient_context, whole_store
from tests.trust.test_signing_certificate import Pki, pki  # noqa: F401 - the certificates

pytest.importorskip("model_signing")

WEIGHTS = bytes(range(256)) * 12  # 3072 bytes: three chunks of 1024


class Provider:
    """A provider store with experiment ``exp`` (one run, one logged model) and model
    ``churn`` (versions 1 and 2), and its key pair and warehouse."""

    def __init__(self, root: Path, template: Path) -> None:
        self.root = root
        self.store = make_store(template, root / "store")
        self.key, self.pub = make_keys(root)
        self.warehouse = root / "warehouse"
        with pytest.MonkeyPatch.context() as mp:  # MLflow resolves models:/ with its global URIs
            mp.setenv("MLFLOW_TRACKING_URI", self.store.tracking_uri)
            mp.setenv("MLFLOW_REGISTRY_URI", self.store.registry_uri)
            self.model_id = self._build(root)

    def _build(self, root: Path) -> str:
        from mlflow.entities import LoggedModelOutput

        client = self.store.client()
        eid = client.create_experiment("exp", artifact_location=str(root / "mlruns"))
        self.run_id = client.create_run(eid, run_name="train").info.run_id
        src = root / "model-src"
        (src / "sub").mkdir(parents=True)
        (src / "MLmodel").write_text("flavors:\n  python_function:\n    python_version: 3.11\n")
        (src / "weights.bin").write_bytes(WEIGHTS)
        (src / "sub" / "vocab.txt").write_text("a\nb\n")
        lm = client.create_logged_model(eid, name="model", source_run_id=self.run_id)
        client.log_model_artifacts(lm.model_id, str(src))
        client.finalize_logged_model(lm.model_id, "READY")
        client.log_outputs(self.run_id, [LoggedModelOutput(lm.model_id, 0)])
        client.log_artifacts(self.run_id, str(src), "legacy")
        client.set_terminated(self.run_id, "FINISHED")
        client.create_registered_model("churn")
        client.create_model_version("churn", f"models:/{lm.model_id}", run_id=self.run_id)
        client.create_model_version("churn", f"runs:/{self.run_id}/legacy", run_id=self.run_id)
        return str(lm.model_id)

    def export(self, table: str, source: str, *, signed: bool = True, by: str = "") -> str:
        clause = f" SIGNED BY {by or repr(str(self.key))}" if signed else ""
        result = arcuate.execute(
            f"CREATE SHARE ml WITH TABLE default.{table} FROM {source}{clause}",
            tracking_uri=self.store.tracking_uri,
            registry_uri=self.store.registry_uri,
            warehouse=str(self.warehouse),
            chunk_bytes=1024,
            progress=False,
        )[-1]
        return str(result.summary["location"])


@pytest.fixture(scope="module")
def provider(mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Provider:
    root = tmp_path_factory.mktemp("model-sig-provider")
    with spark_guard():
        return Provider(root, mlflow_template)


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with spark_guard():
        yield


def rows_of(location: str) -> list[dict[str, Any]]:
    from deltalake import DeltaTable

    return DeltaTable(location).to_pyarrow_table().to_pylist()  # type: ignore[no-any-return]


def _import(store: Any, rows: list[dict[str, Any]], kind: str, key: Path | None) -> Any:
    from arcuate.engine.imports import import_experiment, import_model

    ctx = recipient_context(store)
    verify = str(key) if key else None
    batches = batches_of(rows, size=3)
    if kind == "model":
        return import_model(batches, "churn", ctx, source="local", verify_key=verify)
    return import_experiment(batches, "exp", ctx, source="local", verify_key=verify)


def _download(store: Any, uri: str, dst: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model directory downloaded as a user would, with MLflow (explicit URIs)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", store.registry_uri)
    dst.mkdir(parents=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))


def stock_verify(
    model: Path, pub: Path, signature: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m model_signing verify key`` (model-signing 1.1), in a subprocess."""
    sig = signature or model / "model.sig"
    args = ["verify", "key", "--signature", str(sig), "--public_key", str(pub), str(model)]
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *args], capture_output=True, text=True, timeout=120
    )


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))


def _assert_checks(model: Path, pub: Path) -> None:
    """The stock command verifies the directory, then refuses it once a weight byte flips."""
    assert (model / "MLmodel").is_file() and (model / "model.sig").is_file()
    assert (model / "weights.bin").read_bytes() == WEIGHTS
    ok = stock_verify(model, pub)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Verification succeeded" in ok.stdout
    _flip(model / "weights.bin")
    bad = stock_verify(model, pub)
    assert bad.returncode != 0
    assert "weights.bin" in bad.stdout + bad.stderr


# -- the stock command on imported models ---------------------------------------------------------


def test_model_versions_verify_with_the_stock_command(
    provider: Provider, recipient_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = rows_of(provider.export("model", "MODEL churn"))
    sigs = [r for r in rows if r["kind"] == mf.MODEL_SIGNATURE_KIND]
    assert sorted(r["key"] for r in sigs) == ["1", "2"]
    result = _import(recipient_store, rows, "model", provider.pub)
    assert result.summary["signature"].startswith("verified")
    for version in (1, 2):  # a logged model's directory, and a run's artifact path
        model = _download(recipient_store, f"models:/churn/{version}", tmp_path / f"v{version}",
                          monkeypatch)  # fmt: skip
        assert (model / "registered_model_meta").is_file()  # MLflow's: the bundle ignores it
        _assert_checks(model, provider.pub)


def test_logged_models_of_an_experiment_verify_with_the_stock_command(
    provider: Provider, recipient_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = rows_of(provider.export("exp", "EXPERIMENT exp"))
    (sig,) = [r for r in rows if r["kind"] == mf.MODEL_SIGNATURE_KIND]
    assert sig["key"] == provider.run_id
    assert [f["owner"] for f in sig["files"]] == [f"logged_models/{provider.model_id}"]
    _import(recipient_store, rows, "experiment", provider.pub)
    client = recipient_store.client()
    eid = client.get_experiment_by_name("exp").experiment_id
    (lm,) = client.search_logged_models(experiment_ids=[eid])
    model = _download(recipient_store, lm.artifact_location, tmp_path / "lm", monkeypatch)
    _assert_checks(model, provider.pub)
    # the run's plain artifacts are no model directory: no model.sig there
    run = client.search_runs([eid])[0]
    assert "model.sig" not in {f.path for f in client.list_artifacts(run.info.run_id, "legacy")}


def test_model_sig_is_written_without_verified_by_and_checked_later(
    provider: Provider, recipient_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = rows_of(provider.export("model", "MODEL churn"))
    _import(recipient_store, rows, "model", None)
    model = _download(recipient_store, "models:/churn/1", tmp_path / "v1", monkeypatch)
    assert stock_verify(model, provider.pub).returncode == 0
    _, other_pub = make_keys(tmp_path, "mallory")
    refused = stock_verify(model, other_pub)
    assert refused.returncode != 0


def test_unsigned_exports_write_no_model_sig(
    provider: Provider, recipient_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = rows_of(provider.export("plain", "MODEL churn", signed=False))
    assert {r["kind"] for r in rows} <= {"model_version", "chunk"}
    _import(recipient_store, rows, "model", None)
    model = _download(recipient_store, "models:/churn/1", tmp_path / "v1", monkeypatch)
    assert not (model / "model.sig").exists()
    assert (model / "weights.bin").read_bytes() == WEIGHTS


# -- the provider's own model.sig -----------------------------------------------------------------


def test_a_provider_model_sig_travels_as_is_and_gets_none_of_ours(
    mlflow_template: Path, recipient_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = Provider(tmp_path / "own", mlflow_template)
    client = provider.store.client()
    theirs = b'{"provider": "signed this with their own tool"}'
    (tmp_path / "own-sig").mkdir()
    (tmp_path / "own-sig" / "model.sig").write_bytes(theirs)
    client.log_model_artifacts(provider.model_id, str(tmp_path / "own-sig"))
    rows = rows_of(provider.export("model", "MODEL churn"))
    (sig,) = [r for r in rows if r["kind"] == mf.MODEL_SIGNATURE_KIND]
    assert sig["key"] == "2"  # version 1's directory holds the provider's model.sig
    _import(recipient_store, rows, "model", provider.pub)
    model = _download(recipient_store, "models:/churn/1", tmp_path / "v1", monkeypatch)
    assert (model / "model.sig").read_bytes() == theirs


# -- a hostile model_signature row ----------------------------------------------------------------


@pytest.fixture(scope="module")
def model_rows(provider: Provider) -> list[dict[str, Any]]:
    return rows_of(provider.export("hostile", "MODEL churn"))


def _sig_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in rows if r["kind"] == mf.MODEL_SIGNATURE_KIND and r["key"] == "1")


def _with_data(rows: list[dict[str, Any]], data: bytes, **fields: Any) -> list[dict[str, Any]]:
    import copy

    out = copy.deepcopy(rows)
    f = _sig_row(out)["files"][0]
    f.update(data=data, size=len(data), sha256=hashlib.sha256(data).hexdigest(), **fields)
    return out


def _refused(store: Any, rows: list[dict[str, Any]], match: str, key: Path | None = None) -> str:
    before = whole_store(store, store.root)
    with pytest.raises(ShareDataError, match=match) as err:
        _import(store, rows, "model", key)
    assert err.value.code == "ARC620"
    assert whole_store(store, store.root) == before
    return str(err.value)


def test_a_model_sig_over_other_files_is_refused(
    provider: Provider, model_rows: list[dict[str, Any]], recipient_store: Any
) -> None:
    from arcuate.backends.signer import sign_model_files

    other = sign_model_files(
        {"MLmodel": "00" * 32}, "x", mf.MODEL_SIG_IGNORED, private_key=provider.key
    )
    rows = _with_data(model_rows, other)
    _refused(recipient_store, rows, "does not sign exactly the directory's files")
    _refused(recipient_store, rows, "does not sign exactly", provider.pub)


def test_a_model_sig_re_signed_by_another_key_is_refused_when_verified(
    provider: Provider, model_rows: list[dict[str, Any]], recipient_store: Any, tmp_path: Path
) -> None:
    """Right files, another signer: the table's signature covers the model_signature row."""
    from arcuate.backends.signer import sign_model_files

    version = next(r for r in model_rows if r["kind"] == "model_version" and r["key"] == "1")
    files = {f["path"]: f["sha256"] for f in version["files"]}
    mallory, _ = make_keys(tmp_path, "mallory")
    forged = sign_model_files(files, "churn", mf.MODEL_SIG_IGNORED, private_key=mallory)
    _refused(recipient_store, _with_data(model_rows, forged), "differ from the signed digest",
             provider.pub)  # fmt: skip


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not json", "not valid JSON"),
        (b"[" * 100 + b"]" * 100, "nested deeper"),
        (b'{"dsseEnvelope": {"signatures": []}}', "one in-toto DSSE signature"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_malformed_model_sig_is_refused(
    model_rows: list[dict[str, Any]], recipient_store: Any, data: bytes, match: str
) -> None:
    _refused(recipient_store, _with_data(model_rows, data), match)


def test_a_model_sig_that_would_replace_the_providers_or_escape_is_refused(
    model_rows: list[dict[str, Any]], recipient_store: Any
) -> None:
    import copy

    sig = _sig_row(model_rows)["files"][0]
    escaped = _with_data(model_rows, sig["data"], path="../model.sig")
    _refused(recipient_store, escaped, "path must be 'model.sig'")
    artifacts = _with_data(model_rows, sig["data"], owner="artifacts")
    _refused(recipient_store, artifacts, "is not a model directory")
    chunked = _with_data(model_rows, sig["data"], chunks=1)
    _refused(recipient_store, chunked, "travels inline")
    # the version's files already hold a model.sig: ours would replace it
    both = copy.deepcopy(model_rows)
    version = next(r for r in both if r["kind"] == "model_version" and r["key"] == "1")
    version["files"].append(dict(sig, owner="model"))
    _refused(recipient_store, both, "would replace the model.sig")
    # a model.sig for a record the table does not hold
    stray = copy.deepcopy(model_rows)
    _sig_row(stray)["key"] = "7"
    _refused(recipient_store, stray, "which has no record")


def test_a_model_sig_over_the_size_bound_is_refused(
    model_rows: list[dict[str, Any]], recipient_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mf, "MAX_BUNDLE_BYTES", 100)
    _refused(recipient_store, model_rows, "exceed 100 bytes")


def test_a_removed_model_sig_row_is_refused_when_verified(
    provider: Provider, model_rows: list[dict[str, Any]], recipient_store: Any
) -> None:
    rows = [r for r in model_rows if r is not _sig_row(model_rows)]
    _refused(recipient_store, rows, "missing", provider.pub)


def test_describe_checks_model_signature_rows(
    provider: Provider, model_rows: list[dict[str, Any]]
) -> None:
    from arcuate.engine.imports.describe import describe_shared

    honest = describe_shared(batches_of(model_rows, size=3), "local", str(provider.pub)).summary
    assert honest["valid"] is True and honest["signature"] == "verifies"
    bad = describe_shared(batches_of(_with_data(model_rows, b"{}"), size=3), "local").summary
    assert bad["valid"] is False and "model.sig" in bad["problem"]


def test_a_new_export_replaces_the_model_sig(
    provider: Provider, recipient_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = rows_of(provider.export("again", "MODEL churn"))
    _import(recipient_store, first, "model", provider.pub)
    again = _import(recipient_store, first, "model", provider.pub)
    assert again.summary["unchanged"] == 2
    second = rows_of(provider.export("again", "MODEL churn"))  # the same files, signed anew
    newer = _sig_row(second)["files"][0]["data"]
    assert newer != _sig_row(first)["files"][0]["data"]
    _import(recipient_store, second, "model", provider.pub)
    model = _download(recipient_store, "models:/churn/1", tmp_path / "v1", monkeypatch)
    assert (model / "model.sig").read_bytes() == newer
    assert stock_verify(model, provider.pub).returncode == 0


# -- a model table of the same share as an imported experiment ------------------------------------


@pytest.mark.parametrize("signed", [True, False])
def test_a_model_table_links_to_the_experiment_import_of_its_share(
    provider: Provider,
    recipient_store: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    signed: bool,
) -> None:
    """Both tables of one share, signed or not: the versions link to the run the experiment
    import brought (its logged model holds the same files, and when signed its own model.sig)
    instead of a second copy."""
    import json

    from arcuate.engine.imports import import_experiment, import_model

    profile = tmp_path / "acme.share"
    profile.write_text(
        json.dumps({"shareCredentialsVersion": 1, "endpoint": "https://sharing.example.com/ds"})
    )
    exp = rows_of(provider.export(f"exp{signed:d}", "EXPERIMENT exp", signed=signed))
    model = rows_of(provider.export(f"model{signed:d}", "MODEL churn", signed=signed))
    key = str(provider.pub) if signed else None
    ctx = recipient_context(recipient_store)
    source = f"{profile}#ml.default."
    import_experiment(batches_of(exp), "exp", ctx, source=f"{source}exp{signed:d}", verify_key=key)
    import_model(batches_of(model), "churn", ctx, source=f"{source}model{signed:d}", verify_key=key)
    client = recipient_store.client()
    (run,) = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert client.get_experiment_by_name("models/churn") is None
    assert client.get_model_version("churn", "1").run_id == run.info.run_id
    downloaded = _download(recipient_store, "models:/churn/1", tmp_path / "v1", monkeypatch)
    if signed:  # the experiment import's model.sig, over the very same files
        assert stock_verify(downloaded, provider.pub).returncode == 0
    else:
        assert not (downloaded / "model.sig").exists()


def test_a_certificate_signed_model_verifies_with_the_stock_certificate_command(
    provider: Provider,
    pki: Pki,  # noqa: F811 - the fixture imported above
    recipient_store: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGNED BY CERTIFICATE: each model.sig carries the leaf and its chain, so the stock
    ``model_signing verify certificate`` checks the imported directory against the root."""
    from arcuate.engine.imports import import_model

    by = f"CERTIFICATE '{pki.leaf}' KEY '{pki.leaf_key}' CHAIN '{pki.inter}'"
    rows = rows_of(provider.export("model_cert", "MODEL churn", by=by))
    result = import_model(batches_of(rows, size=3), "churn", recipient_context(recipient_store),
                          source="local", verify_key=str(pki.root), verify_ca=True)  # fmt: skip
    assert result.summary["signature"].startswith("verified (certificate")
    model = _download(recipient_store, "models:/churn/1", tmp_path / "v1", monkeypatch)
    sig = model / "model.sig"
    args = ["verify", "certificate", "--signature", str(sig), str(model)]

    def stock(root: Path) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "model_signing", *args, "--certificate_chain", str(root)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    ok = stock(pki.root)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert stock(pki.other_root).returncode != 0
    _flip(model / "weights.bin")
    assert stock(pki.root).returncode != 0
