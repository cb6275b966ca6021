"""Certificate-signed exports (issue 16 item 1): ``SIGNED BY CERTIFICATE … KEY … CHAIN …`` and
``VERIFIED BY CA``.

A root CA, an intermediate and a code-signing leaf are made here with ``cryptography``, and so
are a second CA with its own leaf, an expired leaf and a TLS-only leaf. A provider exports real
tables through ``arcuate.execute``; the recipient pins the root and each refusal leaves its
store as it was. The stock ``model_signing verify certificate`` command accepts what arcuate
signs the same way, offline. ``SIGNED BY SIGSTORE`` is only checked offline: without an
identity token it is refused before any table is written.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import arcuate
from arcuate.backends.mlflow.connect import spark_guard
from arcuate.errors import ConfigurationError, InputError, ShareDataError
from arcuate.format import manifest
from tests.conftest import make_store
from tests.imports.import_helpers import batches_of, build_small, whole_store

pytest.importorskip("model_signing")

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    key: ec.EllipticCurvePrivateKey,
    subject: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: str,
    *,
    ca: bool,
    start: dt.datetime = NOW - DAY,
    end: dt.datetime = NOW + 30 * DAY,
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CODE_SIGNING,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        ku = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(ku, critical=True)
    else:
        ku = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
        builder = builder.add_extension(ku, critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    """PEM files: ``root``, ``inter``, ``leaf`` + ``leaf_key``, ``other_root``, ``other_leaf``
    + ``other_key`` (a second CA's), ``expired`` (of ``leaf_key``), ``tls`` + ``tls_key``,
    ``bare_key`` + ``bare_pub`` (a key with no certificate), ``mallory_pub``."""

    folder: Path

    def __getattr__(self, name: str) -> Path:
        return self.folder / f"{name}.pem"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _write_pub(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    keys = {
        n: ec.generate_private_key(ec.SECP256R1())
        for n in ("root", "inter", "leaf", "other_root", "other", "tls", "bare", "mallory")
    }
    certs = {
        "root": _cert(keys["root"], "Acme Root", keys["root"], "Acme Root", ca=True),
        "inter": _cert(keys["inter"], "Acme Signing CA", keys["root"], "Acme Root", ca=True),
        "leaf": _cert(keys["leaf"], "ml-exports", keys["inter"], "Acme Signing CA", ca=False),
        "other_root": _cert(
            keys["other_root"], "Evil Root", keys["other_root"], "Evil Root", ca=True
        ),
        "other_leaf": _cert(keys["other"], "ml-exports", keys["other_root"], "Evil Root", ca=False),
        "expired": _cert(
            keys["leaf"],
            "ml-exports",
            keys["inter"],
            "Acme Signing CA",
            ca=False,
            start=NOW - 60 * DAY,
            end=NOW - 30 * DAY,
        ),
        "tls": _cert(
            keys["tls"],
            "www",
            keys["inter"],
            "Acme Signing CA",
            ca=False,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
        ),
    }
    for name, cert in certs.items():
        _write_cert(folder / f"{name}.pem", cert)
    for name in ("leaf", "other", "tls", "bare"):
        _write_key(folder / f"{name}_key.pem", keys[name])
    _write_pub(folder / "bare_pub.pem", keys["bare"])
    _write_pub(folder / "mallory_pub.pem", keys["mallory"])
    return Pki(folder)


@dataclass
class Provider:
    store: Any
    warehouse: Path
    pki: Pki

    def export(self, table: str, signed: str, source: str = "EXPERIMENT small") -> tuple[str, str]:
        result = arcuate.execute(
            f"CREATE SHARE ml WITH TABLE default.{table} FROM {source} {signed}",
            tracking_uri=self.store.tracking_uri,
            registry_uri=self.store.registry_uri,
            warehouse=str(self.warehouse),
            chunk_bytes=1024,
            progress=False,
        )[-1]
        return str(result.summary["location"]), str(result.summary.get("signed_by"))


def rows_of(location: str) -> list[dict[str, Any]]:
    from deltalake import DeltaTable

    return DeltaTable(location).to_pyarrow_table().to_pylist()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def provider(mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Provider:
    root = tmp_path_factory.mktemp("cert-provider")
    store = make_store(mlflow_template, root / "store")
    with spark_guard(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
        mp.setenv("MLFLOW_REGISTRY_URI", store.registry_uri)
        build_small(store, root)
    return Provider(store, root / "warehouse", pki)


@pytest.fixture(scope="module")
def cert_rows(provider: Provider, pki: Pki) -> list[dict[str, Any]]:
    """The experiment table signed with the leaf, its intermediate carried (ml.default.exp)."""
    location, signed_by = provider.export(
        "exp", f"SIGNED BY CERTIFICATE '{pki.leaf}' KEY '{pki.leaf_key}' CHAIN '{pki.inter}'"
    )
    assert signed_by == "certificate CN=ml-exports,O=Acme (issuer CN=Acme Signing CA,O=Acme)"
    return rows_of(location)


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test has its own replay state."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with spark_guard():
        yield


def _import(recipient: Any, rows: list[dict[str, Any]], pin: Path, *, ca: bool) -> Any:
    from arcuate.engine.imports import import_experiment
    from tests.imports.import_helpers import recipient_context

    ctx = recipient_context(recipient)
    return import_experiment(
        batches_of(rows, size=3), "e", ctx, source="local", verify_key=str(pin), verify_ca=ca
    )


def _refused(
    recipient: Any, rows: list[dict[str, Any]], pin: Path, match: str, *, ca: bool = True
) -> str:
    before = whole_store(recipient, recipient.root)
    with pytest.raises(ShareDataError, match=match) as err:
        _import(recipient, rows, pin, ca=ca)
    assert err.value.code == "ARC620"
    assert whole_store(recipient, recipient.root) == before
    return str(err.value)


# -- the honest table ---------------------------------------------------------------------------


def test_certificate_signed_table_verifies_against_the_root(
    pki: Pki, cert_rows: list[dict[str, Any]], recipient_store: Any
) -> None:
    result = _import(recipient_store, cert_rows, pki.root, ca=True)
    assert result.summary["added"] == 3
    assert result.summary["signature"].startswith(
        "verified (certificate CN=ml-exports,O=Acme, issuer CN=Acme Signing CA,O=Acme,"
        " CA CN=Acme Root,O=Acme, export "
    )
    # the bundle carries the leaf and the intermediate, and the leaf's own key verifies it too
    sig = next(r for r in cert_rows if r["kind"] == "signature")
    bundle = json.loads(next(f["data"] for f in sig["files"] if f["path"] == manifest.BUNDLE_PATH))
    assert len(bundle["verificationMaterial"]["x509CertificateChain"]["certificates"]) == 2
    again = _import(recipient_store, cert_rows, pki.leaf, ca=False)
    assert again.summary["unchanged"] == 3 and "verified (key " in again.summary["signature"]


def test_certificate_signed_model_table(provider: Provider, pki: Pki, recipient_store: Any) -> None:
    from arcuate.engine.imports import import_model
    from tests.imports.import_helpers import recipient_context

    location, _ = provider.export(
        "model",
        f"SIGNED BY CERTIFICATE '{pki.leaf}' KEY '{pki.leaf_key}' CHAIN '{pki.inter}'",
        source="MODEL `small-model`",
    )
    ctx = recipient_context(recipient_store)
    batches = batches_of(rows_of(location), size=3)
    result = import_model(
        batches, "m", ctx, source="local", verify_key=str(pki.root), verify_ca=True
    )
    assert (
        result.summary["added"] == 2 and "certificate CN=ml-exports" in result.summary["signature"]
    )


def test_the_intermediate_can_be_the_pinned_ca(
    pki: Pki, cert_rows: list[dict[str, Any]], recipient_store: Any
) -> None:
    result = _import(recipient_store, cert_rows, pki.inter, ca=True)
    assert result.summary["added"] == 3 and "CA CN=Acme Signing CA" in result.summary["signature"]


# -- refusals, before any write ----------------------------------------------------------------


def test_leaf_from_another_ca(provider: Provider, pki: Pki, recipient_store: Any) -> None:
    location, _ = provider.export(
        "evil", f"SIGNED BY CERTIFICATE '{pki.other_leaf}' KEY '{pki.other_key}'"
    )
    text = _refused(recipient_store, rows_of(location), pki.root, "does not chain to the pinned CA")
    assert "CN=ml-exports,O=Acme" in text


def test_chain_missing_the_intermediate(provider: Provider, pki: Pki, recipient_store: Any) -> None:
    location, _ = provider.export(
        "nochain", f"SIGNED BY CERTIFICATE '{pki.leaf}' KEY '{pki.leaf_key}'"
    )
    rows = rows_of(location)
    _refused(recipient_store, rows, pki.root, "does not chain to the pinned CA")
    # the same table verifies once the recipient pins the intermediate itself
    assert _import(recipient_store, rows, pki.inter, ca=True).summary["added"] == 3


def test_expired_leaf(pki: Pki, cert_rows: list[dict[str, Any]], recipient_store: Any) -> None:
    """The same digests and claim, signed by a leaf whose validity ended before the export."""
    from arcuate.backends.signer import sign_resources

    rows = copy.deepcopy(cert_rows)
    sig = next(r for r in rows if r["kind"] == "signature")
    bundle_file = next(f for f in sig["files"] if f["path"] == manifest.BUNDLE_PATH)
    resources = manifest.verify_key_bundle(bundle_file["data"], _pub(pki.leaf))
    table = json.loads(next(f["data"] for f in sig["files"] if f["path"] == manifest.CLAIM_PATH))[
        "table"
    ]
    bundle = sign_resources(
        resources, pki.leaf_key, table, certificate=pki.expired, chain=[pki.inter]
    )
    bundle_file["data"] = bundle
    bundle_file["sha256"] = hashlib.sha256(bundle).hexdigest()
    bundle_file["size"] = len(bundle)
    text = _refused(recipient_store, rows, pki.root, "was not valid at the export time")
    assert "CN=ml-exports,O=Acme" in text


def _pub(cert: Path) -> bytes:
    return (
        x509.load_pem_x509_certificate(cert.read_bytes())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_certificate_signed_table_against_another_signers_key(
    pki: Pki, cert_rows: list[dict[str, Any]], recipient_store: Any
) -> None:
    text = _refused(recipient_store, cert_rows, pki.mallory_pub, "signed by another key", ca=False)
    assert "certificate CN=ml-exports,O=Acme" in text


def test_key_signed_table_against_a_ca_pin(
    provider: Provider, pki: Pki, recipient_store: Any
) -> None:
    location, _ = provider.export("keyed", f"SIGNED BY '{pki.leaf_key}'")
    _refused(recipient_store, rows_of(location), pki.root, "signed with a bare key")


def test_a_ca_pin_must_be_a_ca(
    pki: Pki, cert_rows: list[dict[str, Any]], recipient_store: Any
) -> None:
    before = whole_store(recipient_store, recipient_store.root)
    with pytest.raises(InputError, match="is not a CA"):
        _import(recipient_store, cert_rows, pki.leaf, ca=True)
    with pytest.raises(InputError, match="is not a PEM certificate"):
        _import(recipient_store, cert_rows, pki.bare_pub, ca=True)
    assert whole_store(recipient_store, recipient_store.root) == before


# -- the provider's checks, before any table is written ----------------------------------------


def test_unusable_certificates_are_refused_before_any_table_is_written(
    provider: Provider, pki: Pki, tmp_path: Path
) -> None:
    settings = {
        "tracking_uri": provider.store.tracking_uri,
        "registry_uri": provider.store.registry_uri,
        "warehouse": str(tmp_path / "wh"),
        "progress": False,
    }
    cases = [
        (f"CERTIFICATE '{pki.leaf}' KEY '{pki.other_key}'", "is not for the key"),
        (f"CERTIFICATE '{pki.expired}' KEY '{pki.leaf_key}'", "is not valid now"),
        (f"CERTIFICATE '{pki.tls}' KEY '{pki.tls_key}'", "is not for code signing"),
        (f"CERTIFICATE '{pki.bare_pub}' KEY '{pki.bare_key}'", "is not a PEM certificate"),
        (
            f"CERTIFICATE '{pki.leaf}' KEY '{pki.leaf_key}' CHAIN '{tmp_path}/no.pem'",
            "cannot read the certificate chain file",
        ),
    ]
    for clause, match in cases:
        with pytest.raises(InputError, match=match):
            arcuate.execute(
                f"CREATE SHARE ml WITH TABLE t FROM EXPERIMENT small SIGNED BY {clause}", **settings
            )
    with pytest.raises(ConfigurationError, match="signing_certificate needs signing_key"):
        arcuate.execute(
            "CREATE SHARE ml WITH TABLE t FROM EXPERIMENT small",
            signing_certificate=str(pki.leaf),
            **settings,
        )
    assert not (tmp_path / "wh" / "t").exists()


def test_settings_sign_with_the_certificate(
    provider: Provider, pki: Pki, recipient_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCUATE_SIGNING_KEY", str(pki.leaf_key))
    monkeypatch.setenv("ARCUATE_SIGNING_CERTIFICATE", str(pki.leaf))
    monkeypatch.setenv("ARCUATE_SIGNING_CERTIFICATE_CHAIN", str(pki.inter))
    location, signed_by = provider.export("fromsettings", "")
    assert signed_by.startswith("certificate CN=ml-exports,O=Acme")
    assert _import(recipient_store, rows_of(location), pki.root, ca=True).summary["added"] == 3


def test_sigstore_without_an_identity_is_refused_before_any_table_is_written(
    provider: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, with no token and no ambient credentials: a clear error, nothing written, and
    no network or browser flow is tried."""
    for name in (
        "SIGSTORE_ID_TOKEN",
        "GITHUB_ACTIONS",
        "GOOGLE_SERVICE_ACCOUNT_NAME",
        "BUILDKITE",
        "GITLAB_CI",
        "CIRCLECI",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="SIGNED BY SIGSTORE needs an OIDC identity token"):
        arcuate.execute(
            "CREATE SHARE ml WITH TABLE t FROM EXPERIMENT small SIGNED BY SIGSTORE",
            tracking_uri=provider.store.tracking_uri,
            registry_uri=provider.store.registry_uri,
            warehouse=str(tmp_path / "wh"),
            progress=False,
        )
    assert not (tmp_path / "wh").exists() or not any((tmp_path / "wh").iterdir())


def test_sigstore_offline_fails_before_any_table_is_written(
    provider: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a token but no network (every proxy a closed local port): Sigstore's trust root
    cannot be fetched, so the signer cannot start: a clear error that never shows the token,
    nothing written, in seconds."""
    import time

    token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbm5AZXhhbXBsZS5jb20ifQ."
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", token)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # TUF's metadata cache
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    started = time.monotonic()
    with pytest.raises(InputError, match="Sigstore signing cannot start") as err:
        arcuate.execute(
            "CREATE SHARE ml WITH TABLE t FROM EXPERIMENT small SIGNED BY SIGSTORE",
            tracking_uri=provider.store.tracking_uri,
            registry_uri=provider.store.registry_uri,
            warehouse=str(tmp_path / "wh"),
            progress=False,
        )
    assert time.monotonic() - started < 60
    assert token not in str(err.value) and "nothing was written" in str(err.value)
    assert not (tmp_path / "wh").exists() or not any((tmp_path / "wh").iterdir())


def test_explain_names_the_files_never_their_contents(pki: Pki) -> None:
    plan = arcuate.execute(
        f"EXPLAIN CREATE SHARE ml WITH TABLE churn FROM MODEL churn SIGNED BY CERTIFICATE"
        f" '{pki.leaf}' KEY '{pki.leaf_key}' CHAIN '{pki.inter}';"
        "EXPLAIN CREATE SHARE ml WITH TABLE churn FROM MODEL churn SIGNED BY SIGSTORE;"
        f"EXPLAIN CREATE MODEL m AS 'p#a.b.c' VERIFIED BY CA '{pki.root}';"
        f"EXPLAIN DESCRIBE 'p#a.b.c' VERIFIED BY CA '{pki.root}'",
        tracking_uri="sqlite:///unused.db",
        progress=False,
    )
    text = "\n".join(r["description"] for p in plan for r in p.rows)
    assert (
        f"signed by certificate '{pki.leaf}' with key '{pki.leaf_key}' and chain '{pki.inter}'"
        " as ml.default.churn" in text
    )
    assert "signed with Sigstore keyless (an OIDC identity; needs the network)" in text
    assert f"verifying the signature and its certificate chain to the CA '{pki.root}'" in text
    assert "BEGIN" not in text


# -- through the sharing server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(provider: Provider, cert_rows: list[dict[str, Any]]) -> Iterator[str]:
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    path = provider.warehouse / "shares.yaml"
    catalog = LocalShareCatalog(path)
    _record, token = catalog.create_recipient("ann")
    catalog.grant("ml", "ann")
    assert token is not None
    handle = serve_in_thread(str(path))
    try:
        profile = write_profile(provider.warehouse.parent / "ann.share", handle.endpoint, token)
        yield f"{profile}#ml.default.exp"
    finally:
        handle.stop()


def _execute(recipient: Any, sql: str) -> Any:
    return arcuate.execute(
        sql,
        tracking_uri=recipient.tracking_uri,
        registry_uri=recipient.registry_uri,
        progress=False,
    )[-1]


def test_served_certificate_signed_table(pki: Pki, served: str, recipient_store: Any) -> None:
    described = _execute(recipient_store, f"DESCRIBE '{served}' VERIFIED BY CA '{pki.root}'")
    assert described.summary["signed_by"] == (
        "certificate CN=ml-exports,O=Acme (issuer CN=Acme Signing CA,O=Acme)"
    )
    assert described.summary["signature"] == "verifies"
    other = _execute(recipient_store, f"DESCRIBE '{served}' VERIFIED BY CA '{pki.other_root}'")
    assert other.summary["signature"].startswith("does not verify: ")
    before = whole_store(recipient_store, recipient_store.root)
    with pytest.raises(ShareDataError, match="does not chain to the pinned CA"):
        _execute(
            recipient_store, f"CREATE EXPERIMENT e AS '{served}' VERIFIED BY CA '{pki.other_root}'"
        )
    assert whole_store(recipient_store, recipient_store.root) == before
    result = _execute(
        recipient_store, f"CREATE EXPERIMENT e AS '{served}' VERIFIED BY CA '{pki.root}'"
    )
    assert (
        result.summary["added"] == 3 and "certificate CN=ml-exports" in result.summary["signature"]
    )


# -- the stock model_signing command --------------------------------------------------------------


def test_stock_cli_verifies_certificate_bundles(pki: Pki, tmp_path: Path) -> None:
    """``model_signing verify certificate`` (offline) accepts a bundle arcuate's adapter signs
    with the leaf and its intermediate, and refuses it against another root."""
    from arcuate.backends.signer import sign_resources

    cli = str(Path(sys.executable).parent / "model_signing")
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "MLmodel").write_bytes(b"flavors: {}\n")
    (model / "sub" / "w.bin").write_bytes(b"\x00\x01" * 100)
    digests = {
        p.relative_to(model).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in model.rglob("*")
        if p.is_file()
    }
    bundle = sign_resources(digests, pki.leaf_key, "model", certificate=pki.leaf, chain=[pki.inter])
    (model / "model.sig").write_bytes(bundle)
    args = [cli, "verify", "certificate", str(model), "--signature", str(model / "model.sig")]
    ok = subprocess.run(
        [*args, "--certificate_chain", str(pki.root)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(
        [*args, "--certificate_chain", str(pki.other_root)], capture_output=True, text=True
    )
    assert bad.returncode != 0
    # and arcuate's own verifier agrees on the same bundle
    root = x509.load_pem_x509_certificate(pki.root.read_bytes())
    resources, who = manifest.verify_certificate_bundle(bundle, [root], NOW)
    assert resources == digests and who.anchor == "CN=Acme Root,O=Acme"


def test_a_sigstore_bundle_is_named_and_refused(pki: Pki) -> None:
    """What a Sigstore keyless bundle looks like to arcuate (one certificate, no chain, no key
    hint): DESCRIBE names its identity unverified, and every pin refuses it."""
    leaf = x509.load_pem_x509_certificate(pki.leaf.read_bytes())
    der = leaf.public_bytes(serialization.Encoding.DER)
    bundle = json.dumps({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"certificate": {"rawBytes": base64.b64encode(der).decode()}},
        "dsseEnvelope": {"payload": "", "payloadType": manifest.PAYLOAD_TYPE,
                         "signatures": [{"sig": ""}]},
    }).encode()  # fmt: skip
    assert (
        manifest.bundle_signer(bundle) == "sigstore certificate CN=ml-exports,O=Acme (unverified)"
    )
    with pytest.raises(ShareDataError, match="signed with Sigstore keyless"):
        manifest.verify_key_bundle(bundle, _pub(pki.leaf))
    root = x509.load_pem_x509_certificate(pki.root.read_bytes())
    with pytest.raises(ShareDataError, match="signed with Sigstore keyless"):
        manifest.verify_certificate_bundle(bundle, [root], NOW)


def test_a_leaf_may_not_sign_or_act_as_a_ca(pki: Pki, tmp_path: Path) -> None:
    """A TLS server leaf of the right CA is not for code signing; a leaf that issues another
    certificate is not a CA. arcuate's verifier refuses both (the signer is model-signing's,
    which checks neither)."""
    from arcuate.backends.signer import sign_resources

    root = x509.load_pem_x509_certificate(pki.root.read_bytes())
    resources = {"record/run/r1": "aa" * 32}
    tls = sign_resources(resources, pki.tls_key, "t", certificate=pki.tls, chain=[pki.inter])
    with pytest.raises(ShareDataError, match="is not for code signing"):
        manifest.verify_certificate_bundle(tls, [root], NOW)
    leaf_key = serialization.load_pem_private_key(pki.leaf_key.read_bytes(), None)
    assert isinstance(leaf_key, ec.EllipticCurvePrivateKey)
    fake_key = ec.generate_private_key(ec.SECP256R1())
    fake = _cert(fake_key, "fake", leaf_key, "ml-exports", ca=False)
    _write_cert(tmp_path / "fake.pem", fake)
    _write_key(tmp_path / "fake_key.pem", fake_key)
    (tmp_path / "chain.pem").write_bytes(pki.leaf.read_bytes() + pki.inter.read_bytes())
    bundle = sign_resources(
        resources, tmp_path / "fake_key.pem", "t", certificate=tmp_path / "fake.pem",
        chain=[tmp_path / "chain.pem"],
    )  # fmt: skip
    with pytest.raises(ShareDataError, match=r"basicConstraints\.cA must be asserted"):
        manifest.verify_certificate_bundle(bundle, [root], NOW)
