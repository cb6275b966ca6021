"""Signed exports (issue 16 item 1): the tamper suite.

A provider exports a small experiment and model with ``SIGNED BY``; each case changes the
signed table the way an attacker (or a broken copy) would, and the import with
``VERIFIED BY`` must refuse it before anything is written, naming what failed. The honest
table verifies and imports, also through the real sharing server and delta_sharing client.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import arcuate
from arcuate.backends.mlflow.connect import spark_guard
from arcuate.errors import ConfigurationError, ShareDataError
from benchmarks.runner import make_keys
from tests.conftest import make_store
from tests.imports.import_helpers import (
    Small,
    batches_of,
    build_small,
    whole_store,
)

pytest.importorskip("model_signing")


def _keypair(folder: Path, name: str) -> tuple[Path, Path]:
    return make_keys(folder, name)


class Provider:
    """A provider store with the small experiment and model, and its keys and warehouse."""

    def __init__(self, root: Path, small: Small) -> None:
        self.root = root
        self.small = small
        self.key, self.pub = _keypair(root, "provider")
        self.other_key, self.other_pub = _keypair(root, "mallory")
        self.warehouse = root / "warehouse"

    def export(self, table: str, source: str, key: Path | None = None) -> str:
        """``CREATE SHARE ml WITH TABLE default.<table> FROM <source> SIGNED BY <key>``."""
        store = self.small.store
        signed = f" SIGNED BY '{key or self.key}'"
        result = arcuate.execute(
            f"CREATE SHARE ml WITH TABLE default.{table} FROM {source}{signed}",
            tracking_uri=store.tracking_uri,
            registry_uri=store.registry_uri,
            warehouse=str(self.warehouse),
            chunk_bytes=1024,
            progress=False,
        )[-1]
        assert result.summary["signed_by"] == _fingerprint(key.with_suffix(".pub") if key else self.pub)
        return str(result.summary["location"])


def _fingerprint(pub: Path) -> str:
    return hashlib.sha256(pub.read_bytes()).hexdigest()


def rows_of(location: str) -> list[dict[str, Any]]:
    from deltalake import DeltaTable

    return DeltaTable(location).to_pyarrow_table().to_pylist()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def provider(mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Provider:
    root = tmp_path_factory.mktemp("signed-provider")
    store = make_store(mlflow_template, root / "store")
    with spark_guard(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
        mp.setenv("MLFLOW_REGISTRY_URI", store.registry_uri)
        return Provider(root, build_small(store, root))


@pytest.fixture(scope="module")
def exp_rows(provider: Provider) -> list[dict[str, Any]]:
    """The rows of the signed experiment table (export 1 of ml.default.exp)."""
    return rows_of(provider.export("exp", "EXPERIMENT small"))


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test has its own replay state (the per-user file of imported sequences)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with spark_guard():
        yield


def _import(
    recipient: Any, rows: list[dict[str, Any]], key: Path | None, *, kind: str = "experiment",
    source: str = "local", **settings: Any,
) -> Any:  # fmt: skip
    from arcuate.engine.imports import import_experiment, import_model
    from tests.imports.import_helpers import recipient_context

    ctx = recipient_context(recipient, **settings)
    verify = str(key) if key else None
    batches = batches_of(rows, size=3)
    if kind == "model":
        return import_model(batches, "m", ctx, source=source, verify_key=verify)
    return import_experiment(batches, "e", ctx, source=source, verify_key=verify)


def _refused(recipient: Any, rows: list[dict[str, Any]], key: Path, match: str, **kw: Any) -> str:
    """The import is refused with ARC6xx naming ``match``, and the store is untouched."""
    before = whole_store(recipient, recipient.root)
    with pytest.raises(ShareDataError, match=match) as err:
        _import(recipient, rows, key, **kw)
    assert err.value.code.startswith("ARC6")
    assert whole_store(recipient, recipient.root) == before
    return str(err.value)


def _index(rows: list[dict[str, Any]], kind: str) -> int:
    return next(i for i, r in enumerate(rows) if r["kind"] == kind)


# -- the honest table ---------------------------------------------------------------------------


def test_honest_table_verifies_and_imports(
    provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any
) -> None:
    assert sum(r["kind"] == "signature" for r in exp_rows) == 1
    result = _import(recipient_store, exp_rows, provider.pub)
    assert result.summary["added"] == 3
    assert result.summary["signature"].startswith(f"verified (key {_fingerprint(provider.pub)[:16]}")
    # a certificate-free pinned key is the public PEM; unsigned imports still read signed tables
    again = _import(recipient_store, exp_rows, None)
    assert again.summary["unchanged"] == 3 and "signature" not in again.summary


def test_honest_model_table_verifies(provider: Provider, recipient_store: Any) -> None:
    rows = rows_of(provider.export("model", "MODEL `small-model`"))
    result = _import(recipient_store, rows, provider.pub, kind="model")
    assert result.summary["added"] == 2 and "verified" in result.summary["signature"]


# -- the tamper cases ---------------------------------------------------------------------------


def test_changed_value(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    rows = copy.deepcopy(exp_rows)
    run = next(r for r in rows if r["kind"] == "run" and r["run"]["metrics"])
    run["run"]["metrics"][0]["value"] += 1.0  # one metric point
    text = _refused(recipient_store, rows, provider.pub, "differ from the signed digest")
    assert f"first 'record/run/{run['key']}'" in text


def test_changed_file_byte_with_its_checksum_fixed(
    provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any
) -> None:
    rows = copy.deepcopy(exp_rows)
    run = next(r for r in rows if r["kind"] == "run" and any(f["data"] for f in r["files"]))
    f = next(f for f in run["files"] if f["data"])
    f["data"] = bytes([f["data"][0] ^ 1]) + f["data"][1:]
    f["sha256"] = hashlib.sha256(f["data"]).hexdigest()  # an attacker fixes the checksum too
    _refused(recipient_store, rows, provider.pub, f"differ from the signed digest, first 'record/run/{run['key']}'")


def test_changed_file_byte(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    rows = copy.deepcopy(exp_rows)
    run = next(r for r in rows if r["kind"] == "run" and any(f["data"] for f in r["files"]))
    f = next(f for f in run["files"] if f["data"])
    f["data"] = bytes([f["data"][0] ^ 1]) + f["data"][1:]
    _refused(recipient_store, rows, provider.pub, "sha256")


def test_removed_row(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    rows = copy.deepcopy(exp_rows)
    gone = rows.pop(next(i for i, r in enumerate(rows) if r["kind"] == "run" and not any(f["chunks"] for f in r["files"])))
    _refused(recipient_store, rows, provider.pub, f"1 signed record\\(s\\) missing \\(truncated\\?\\), first 'record/run/{gone['key']}'")


def test_added_row(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    rows = copy.deepcopy(exp_rows)
    extra = copy.deepcopy(rows[next(i for i, r in enumerate(rows) if r["kind"] == "run" and not r["run"]["logged_models"])])
    extra["key"] = extra["run"]["run_id"] = "f" * 32
    rows.append(extra)
    _refused(recipient_store, rows, provider.pub, "1 record\\(s\\) not covered by the signature, first 'record/run/f{32}'")


def test_swapped_chunk(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    rows = copy.deepcopy(exp_rows)
    chunks = [r["chunk"] for r in rows if r["kind"] == "chunk"]
    a = chunks[0]
    b = next(c for c in chunks if c["path"] == a["path"] and c["data"] != a["data"])
    a["data"], b["data"] = b["data"], a["data"]  # two chunks of one file, in each other's place
    _refused(recipient_store, rows, provider.pub, "sha256|SHA-256|size|offset")


def test_signature_from_another_key(
    provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any
) -> None:
    text = _refused(recipient_store, exp_rows, provider.other_pub, "signed by another key")
    assert _fingerprint(provider.pub) in text  # names the key that did sign


def test_resigned_by_someone_else(provider: Provider, recipient_store: Any) -> None:
    """Mallory exports (changed) content under the same table name with her own key."""
    rows = rows_of(provider.export("resigned", "EXPERIMENT small", key=provider.other_key))
    _refused(recipient_store, rows, provider.pub, "signed by another key")


def test_stripped_signature(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    rows = [r for r in exp_rows if r["kind"] != "signature"]
    text = _refused(recipient_store, rows, provider.pub, "the table is not signed")
    assert "nothing was written" in text


def test_two_signature_rows(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    rows = [*exp_rows, copy.deepcopy(exp_rows[_index(exp_rows, "signature")])]
    _refused(recipient_store, rows, provider.pub, "a second signature row")


def test_manifest_for_another_table_version(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    """Export 2 of the same table, carrying export 1's signature row."""
    later = rows_of(provider.export("exp", "EXPERIMENT small"))
    rows = [r for r in later if r["kind"] != "signature"]
    rows.append(copy.deepcopy(exp_rows[_index(exp_rows, "signature")]))
    _refused(recipient_store, rows, provider.pub, "a manifest for another table version")


def test_signature_for_another_table(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    _refused(
        recipient_store, exp_rows, provider.pub,
        "the signature is for table 'ml.default.exp', not 'ml.default.other'",
        source="profile.share#ml.default.other",
    )  # fmt: skip


def test_replayed_older_version(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    newer = rows_of(provider.export("exp", "EXPERIMENT small"))
    coordinate = "profile.share#ml.default.exp"
    _import(recipient_store, newer, provider.pub, source=coordinate)
    _refused(recipient_store, exp_rows, provider.pub, "replayed export", source=coordinate)
    # the same export again is not a replay
    assert _import(recipient_store, newer, provider.pub, source=coordinate).summary["unchanged"] == 3


def test_truncated_table(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    """The table's last rows lost (a file of the version missing): the signature row stays."""
    plain = [r for r in exp_rows if r["kind"] == "run" and not any(f["chunks"] for f in r["files"])]
    lost = {r["key"] for r in plain[1:]}
    assert lost
    rows = [r for r in exp_rows if r["key"] not in lost]
    _refused(recipient_store, rows, provider.pub, "missing \\(truncated\\?\\)")


def test_tampered_claim(provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    rows = copy.deepcopy(exp_rows)
    sig = rows[_index(rows, "signature")]
    claim = next(f for f in sig["files"] if f["path"] == "claim.json")
    doc = json.loads(claim["data"])
    doc["sequence"] += 10**12
    claim["data"] = json.dumps(doc).encode()
    claim["sha256"] = hashlib.sha256(claim["data"]).hexdigest()
    claim["size"] = len(claim["data"])
    _refused(recipient_store, rows, provider.pub, "the table claim is not the one that was signed")


# -- the policy -----------------------------------------------------------------------------------


def test_require_signature_needs_a_key_and_a_signature(
    provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = whole_store(recipient_store, recipient_store.root)
    monkeypatch.setenv("ARCUATE_REQUIRE_SIGNATURE", "on")
    with pytest.raises(ConfigurationError, match="require_signature is on: name the provider's key"):
        _import(recipient_store, exp_rows, None)
    unsigned = [r for r in exp_rows if r["kind"] != "signature"]
    _refused(recipient_store, unsigned, provider.pub, "not signed")
    assert whole_store(recipient_store, recipient_store.root) == before
    assert _import(recipient_store, exp_rows, provider.pub).summary["added"] == 3


def test_verified_by_a_certificate_of_the_key(
    provider: Provider, exp_rows: list[dict[str, Any]], recipient_store: Any, tmp_path: Path
) -> None:
    """VERIFIED BY also takes a PEM certificate: its public key is the pinned one."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = serialization.load_pem_private_key(provider.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provider")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    pem = tmp_path / "provider.crt"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    assert _import(recipient_store, exp_rows, pem).summary["added"] == 3


# -- through the sharing server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(provider: Provider, exp_rows: list[dict[str, Any]]) -> Iterator[dict[str, str]]:
    """The signed table, an edited copy and an unsigned copy, shared by arcuate's server."""
    from arcuate.backends.deltalake.store import DeltaLakeTableStore
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    catalog = LocalShareCatalog(provider.warehouse / "shares.yaml")
    edited = copy.deepcopy(exp_rows)
    run = next(r for r in edited if r["kind"] == "run" and r["run"]["metrics"])
    run["run"]["metrics"][0]["value"] += 1.0
    store = DeltaLakeTableStore(str(provider.root / "tampered"))
    unsigned = [r for r in exp_rows if r["kind"] != "signature"]
    for name, rows in (("edited", edited), ("unsigned", unsigned)):
        location = store.write(("t", name), batches_of(rows), content="experiment").location
        catalog.add_table("ml", "default", name, location)
    # a man in the middle: a server of its own that shares the edited copy as ml.default.exp
    middle = LocalShareCatalog(provider.root / "middle.yaml")
    middle.add_table("ml", "default", "exp", str(provider.root / "tampered" / "t" / "edited"))
    profiles = {}
    handles = []
    try:
        for label, cat, path in (("p", catalog, provider.warehouse / "shares.yaml"),
                                 ("m", middle, provider.root / "middle.yaml")):  # fmt: skip
            _record, token = cat.create_recipient("ann")
            cat.grant("ml", "ann")
            handles.append(serve_in_thread(str(path)))
            assert token is not None
            profiles[label] = write_profile(provider.root / f"{label}.share", handles[-1].endpoint, token)
        yield {
            "exp": f"{profiles['p']}#ml.default.exp",
            "edited": f"{profiles['m']}#ml.default.exp",
            "renamed": f"{profiles['p']}#ml.default.edited",
            "unsigned": f"{profiles['p']}#ml.default.unsigned",
        }
    finally:
        for handle in handles:
            handle.stop()


def _execute(recipient: Any, sql: str) -> Any:
    return arcuate.execute(
        sql, tracking_uri=recipient.tracking_uri, registry_uri=recipient.registry_uri, progress=False
    )[-1]


def test_served_honest_table_verifies_and_imports(
    provider: Provider, served: dict[str, str], recipient_store: Any
) -> None:
    described = _execute(recipient_store, f"DESCRIBE '{served['exp']}' VERIFIED BY '{provider.pub}'")
    assert described.summary["signed_by"] == f"key {_fingerprint(provider.pub)}"
    assert described.summary["signature"] == "verifies"
    plain = _execute(recipient_store, f"DESCRIBE '{served['exp']}'")
    assert plain.summary["signature"].startswith("not checked")
    result = _execute(recipient_store, f"CREATE EXPERIMENT e AS '{served['exp']}' VERIFIED BY '{provider.pub}'")
    assert result.summary["added"] == 3 and "verified" in result.summary["signature"]


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ("edited", "differ from the signed digest"),
        ("renamed", "the signature is for table 'ml.default.exp', not 'ml.default.edited'"),
        ("unsigned", "the table is not signed"),
    ],
)
def test_served_tampered_tables_are_refused(
    provider: Provider, served: dict[str, str], recipient_store: Any, table: str, match: str
) -> None:
    before = whole_store(recipient_store, recipient_store.root)
    with pytest.raises(ShareDataError, match=match) as err:
        _execute(recipient_store, f"CREATE EXPERIMENT e AS '{served[table]}' VERIFIED BY '{provider.pub}'")
    assert err.value.code == "ARC620"
    assert whole_store(recipient_store, recipient_store.root) == before
    described = _execute(recipient_store, f"DESCRIBE '{served[table]}' VERIFIED BY '{provider.pub}'")
    expected = "none" if table == "unsigned" else "does not verify"
    assert described.summary["signature"].startswith(expected)


def test_explain_and_settings_show_the_policy() -> None:
    from arcuate.config import resolve_settings

    plan = arcuate.execute(
        "EXPLAIN CREATE SHARE ml WITH TABLE churn FROM MODEL churn SIGNED BY 'provider.pem';"
        "EXPLAIN CREATE MODEL m AS 'p#a.b.c' VERIFIED BY 'k.pub'",
        tracking_uri="sqlite:///unused.db",
        progress=False,
    )
    assert "signed by key 'provider.pem' as ml.default.churn" in plan[0].rows[1]["description"]
    assert "verifying the signature with 'k.pub' (before any write)" in plan[1].rows[1]["description"]
    assert resolve_settings(require_signature="on").require_signature is True
    with pytest.raises(ConfigurationError, match="require_signature must be on or off"):
        resolve_settings(require_signature="maybe")
    assert resolve_settings(signing_key="k.pem").signing_key == "k.pem"


def test_served_table_verified_in_the_helper_process(
    provider: Provider, served: dict[str, str], recipient_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large listed table is read by a helper process: the digests and the signature it
    found come back with the spool's index, and a tampered table is still refused."""
    import arcuate.engine.imports.worker as worker

    monkeypatch.setattr(worker, "WORKER_BYTES", 1)
    before = whole_store(recipient_store, recipient_store.root)
    with pytest.raises(ShareDataError, match="differ from the signed digest"):
        _execute(recipient_store, f"CREATE EXPERIMENT e AS '{served['edited']}' VERIFIED BY '{provider.pub}'")
    assert whole_store(recipient_store, recipient_store.root) == before
    result = _execute(recipient_store, f"CREATE EXPERIMENT e AS '{served['exp']}' VERIFIED BY '{provider.pub}'")
    assert result.summary["added"] == 3 and "verified" in result.summary["signature"]
    assert result.summary.get("helper_peak_rss")


def test_an_unusable_signing_key_is_refused_before_any_table_is_written(
    provider: Provider, tmp_path: Path
) -> None:
    from arcuate.errors import InputError

    store = provider.small.store
    settings = {"tracking_uri": store.tracking_uri, "registry_uri": store.registry_uri,
                "warehouse": str(tmp_path / "wh"), "progress": False}  # fmt: skip
    with pytest.raises(InputError, match="cannot read the signing key"):
        arcuate.execute(
            f"CREATE SHARE ml WITH TABLE t FROM EXPERIMENT small SIGNED BY '{tmp_path}/no.pem'",
            **settings,
        )
    with pytest.raises(InputError, match="is not an unencrypted PEM private key"):
        arcuate.execute(
            f"CREATE SHARE ml WITH TABLE t FROM EXPERIMENT small SIGNED BY '{provider.pub}'",
            **settings,
        )
    # the same through the signing_key setting
    with pytest.raises(InputError, match="cannot read the signing key"):
        arcuate.execute(
            "CREATE SHARE ml WITH TABLE t FROM EXPERIMENT small",
            signing_key=str(tmp_path / "no.pem"),
            **settings,
        )
    assert not (tmp_path / "wh" / "t").exists()


def test_provider_and_recipient_digests_agree(provider: Provider, exp_rows: list[dict[str, Any]]) -> None:
    """What the provider signed is, record for record, what the recipient computes from the
    shared rows (and what the provider's signer computes from the table read back)."""
    from arcuate.engine.imports.spool import Spool
    from arcuate.engine.signing import batch_digests
    from arcuate.format import manifest

    sig = exp_rows[_index(exp_rows, "signature")]
    bundle = next(f["data"] for f in sig["files"] if f["path"] == manifest.BUNDLE_PATH)
    signed = manifest.verify_key_bundle(bundle, provider.pub.read_bytes())
    signed.pop(manifest.TABLE_RESOURCE)
    with Spool.open("experiment") as spool:
        spool.digest_records()
        spool.ingest(batches_of(exp_rows, size=3))
        recipient = spool.digests
    records = [r for r in exp_rows if r["kind"] != "signature"]  # what the signer saw
    (whole,) = batches_of(records, size=len(records))
    resigned = {name: digest for name, digest, _ in batch_digests(whole, 0, "experiment")}
    assert len(signed) == 4 and any(r["kind"] == "run" and r["run"]["metrics"] for r in exp_rows)
    assert sum(name.startswith("record/model_signature/") for name in signed) == 1  # its model
    assert recipient == signed == resigned
