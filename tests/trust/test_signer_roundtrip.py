"""Bundles written by model-signing (through arcuate's adapter) verify with arcuate's own
cryptography-only verifier and with the stock `model_signing verify` CLI, offline."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from arcuate.errors import ShareDataError
from arcuate.format import manifest

pytest.importorskip("model_signing")
from arcuate.backends.signer import sign_resources


def _keys(tmp: Path, name: str) -> tuple[Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp / f"{name}.pub").write_bytes(public)
    return private, public


def test_library_bundle_verifies_with_arcuate(tmp_path: Path) -> None:
    private, public = _keys(tmp_path, "provider")
    _, other = _keys(tmp_path, "other")
    resources = {"record/run/r1": "aa" * 32, manifest.TABLE_RESOURCE: "bb" * 32}
    bundle = sign_resources(resources, private, "t")
    assert manifest.verify_key_bundle(bundle, public) == resources
    with pytest.raises(ShareDataError, match="another key"):
        manifest.verify_key_bundle(bundle, other)


def test_stock_cli_verifies_files_signed_from_their_digests(tmp_path: Path) -> None:
    cli = str(Path(sys.executable).parent / "model_signing")  # the venv's, installed with it
    private, _ = _keys(tmp_path, "provider")
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "MLmodel").write_bytes(b"flavors: {}\n")
    (model / "sub" / "w.bin").write_bytes(b"\x00\x01" * 100)
    digests = {
        p.relative_to(model).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in model.rglob("*")
        if p.is_file()
    }
    (model / "model.sig").write_bytes(sign_resources(digests, private, "model"))
    args = [cli, "verify", "key", str(model), "--signature", str(model / "model.sig")]
    ok = subprocess.run(
        [*args, "--public_key", str(tmp_path / "provider.pub")], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    (model / "sub" / "w.bin").write_bytes(b"\x00\x02" * 100)
    bad = subprocess.run(
        [*args, "--public_key", str(tmp_path / "provider.pub")], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "w.bin" in bad.stdout + bad.stderr
