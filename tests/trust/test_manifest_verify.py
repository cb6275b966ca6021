"""The cryptography-only verifier of model-signing bundles (issue 16 item 1, first part).

Bundles are written here in model-signing's format (DSSE + in-toto v1, key hint = SHA-256 of
the public PEM), as research/trust/spike.py showed the library writes them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from arcuate.errors import ShareDataError
from arcuate.format import manifest

RESOURCES = {"record/run/r1": "aa" * 32, "record/run/r2": "bb" * 32}


def _keypair() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, pem


def _bundle(key: ec.EllipticCurvePrivateKey, pem: bytes, resources: dict[str, str]) -> bytes:
    statement = {
        "_type": manifest.STATEMENT_TYPE,
        "subject": [{"name": "t", "digest": {"sha256": "00" * 32}}],
        "predicateType": manifest.PREDICATE_TYPE,
        "predicate": {
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": False},
            "resources": [
                {"name": n, "algorithm": "sha256", "digest": d} for n, d in sorted(resources.items())
            ],
        },
    }
    payload = json.dumps(statement).encode()
    sig = key.sign(manifest.pae(manifest.PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    return json.dumps(
        {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"publicKey": {"hint": hashlib.sha256(pem).hexdigest()}},
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": manifest.PAYLOAD_TYPE,
                "signatures": [{"sig": base64.b64encode(sig).decode()}],
            },
        }
    ).encode()


def test_honest_bundle_verifies_and_matches() -> None:
    key, pem = _keypair()
    signed = manifest.verify_key_bundle(_bundle(key, pem, RESOURCES), pem)
    assert signed == RESOURCES
    manifest.check_resources(signed, dict(RESOURCES))


def test_another_key_is_refused() -> None:
    key, pem = _keypair()
    _, other_pem = _keypair()
    with pytest.raises(ShareDataError, match="another key") as info:
        manifest.verify_key_bundle(_bundle(key, pem, RESOURCES), other_pem)
    assert info.value.code == "ARC620"


def test_resigned_with_claimed_hint_is_refused() -> None:
    """Someone else signs but copies the provider's hint: the ECDSA check still refuses."""
    _, pem = _keypair()
    other, _ = _keypair()
    with pytest.raises(ShareDataError, match="does not verify"):
        manifest.verify_key_bundle(_bundle(other, pem, RESOURCES), pem)


def test_edited_statement_is_refused() -> None:
    key, pem = _keypair()
    loaded = json.loads(_bundle(key, pem, RESOURCES))
    payload = base64.b64decode(loaded["dsseEnvelope"]["payload"]).replace(b"aaaa", b"abaa", 1)
    loaded["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    with pytest.raises(ShareDataError, match="does not verify"):
        manifest.verify_key_bundle(json.dumps(loaded).encode(), pem)


@pytest.mark.parametrize("bad", [b"", b"[]", b"{}", b'{"dsseEnvelope": {"signatures": 3}}'])
def test_malformed_bundle_is_refused(bad: bytes) -> None:
    _, pem = _keypair()
    with pytest.raises(ShareDataError, match="signature"):
        manifest.verify_key_bundle(bad, pem)


@pytest.mark.parametrize(
    ("actual", "reason"),
    [
        ({"record/run/r1": "aa" * 32}, "missing"),
        ({**RESOURCES, "record/run/r3": "cc" * 32}, "not covered"),
        ({**RESOURCES, "record/run/r2": "cc" * 32}, "differ"),
    ],
)
def test_records_must_match_the_signed_set(actual: dict[str, str], reason: str) -> None:
    with pytest.raises(ShareDataError, match=reason):
        manifest.check_resources(RESOURCES, actual)


FILE = {"path": "m/a.bin", "size": 3, "sha256": "ab" * 32, "data": b"abc", "chunks": 0}
ROW: dict[str, Any] = {
    "format_version": 2,
    "kind": "run",
    "key": "r1",
    "exported_at": datetime(2026, 12, 1, tzinfo=UTC),
    "files": [FILE],
}


def test_record_digest_covers_values_not_inline_bytes() -> None:
    digest = manifest.record_digest(ROW)
    assert manifest.record_digest(dict(ROW)) == digest
    assert manifest.record_digest({**ROW, "key": "r2"}) != digest
    moved = {**ROW, "files": [{**FILE, "data": None, "chunks": 1}]}
    assert manifest.record_digest(moved) != digest  # the layout is signed too
    assert manifest.record_resource(ROW) == "record/run/r1"


def _signed_claim(table: str, sequence: int) -> tuple[dict[str, str], bytes]:
    claim = manifest.table_claim(table, sequence, "e1")
    return {manifest.TABLE_RESOURCE: hashlib.sha256(claim).hexdigest()}, claim


def test_claim_for_this_table_and_a_newer_export_passes() -> None:
    signed, claim = _signed_claim("share.schema.t", 5)
    assert manifest.check_claim(signed, claim, "share.schema.t", 4) == 5
    assert manifest.check_claim(signed, claim, "share.schema.t", None) == 5


@pytest.mark.parametrize(
    ("table", "last", "reason"),
    [("share.schema.other", None, "for table"), ("share.schema.t", 6, "replayed")],
)
def test_claim_for_another_table_or_an_older_export_is_refused(
    table: str, last: int | None, reason: str
) -> None:
    signed, claim = _signed_claim("share.schema.t", 5)
    with pytest.raises(ShareDataError, match=reason):
        manifest.check_claim(signed, claim, table, last)


def test_claim_not_the_signed_one_is_refused() -> None:
    signed, _ = _signed_claim("share.schema.t", 5)
    forged = manifest.table_claim("share.schema.t", 9, "e1")
    with pytest.raises(ShareDataError, match="not the one that was signed"):
        manifest.check_claim(signed, forged, "share.schema.t", None)
