"""The cryptography-only verifier of model-signing bundles (issue 16 item 1, first part).

Bundles are written here in model-signing's format (DSSE + in-toto v1, key hint = SHA-256 of
the public PEM), as research/trust/spike.py showed the library writes them.
"""

from __future__ import annotations

import base64
import hashlib
import json

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
