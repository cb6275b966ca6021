"""Signing a manifest with OpenSSF model-signing (the `arcuate[sign]` extra), provider side.

model-signing's public API only signs a path on disk, hashing every file again; arcuate
already holds each record digest and file SHA-256, and a table has no directory at all. So
this adapter builds the manifest from those digests through five private names of
model-signing 1.1 (pinned in pyproject); tests cross-check its bundles with arcuate's own
verifier, so an upstream change fails CI, not users (research/trust/NOTES.md §3).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from arcuate.errors import InputError


def sign_resources(resources: Mapping[str, str], private_key: Path, name: str) -> bytes:
    """A model-signing bundle (key path, method `files`, SHA-256) over name -> sha256 hex."""
    try:
        from model_signing import manifest
        from model_signing._hashing.hashing import Digest
        from model_signing._signing import sign_ec_key, signing
    except ImportError as error:
        raise InputError(
            f"signing needs the sign extra: pip install 'arcuate[sign]' ({error})"
        ) from None
    items = [
        manifest.FileManifestItem(path=PurePosixPath(p), digest=Digest("sha256", bytes.fromhex(h)))
        for p, h in sorted(resources.items())
    ]
    kind = manifest._FileSerialization("sha256", allow_symlinks=False)
    bundle = sign_ec_key.Signer(private_key).sign(
        signing.Payload(manifest.Manifest(name, items, kind))
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bundle.sig"
        bundle.write(out)
        return out.read_bytes()


def sign_model_files(
    files: Mapping[str, str], private_key: Path, name: str, ignore: Iterable[str]
) -> bytes:
    """A ``model.sig`` for a model directory: the bundle ``model_signing sign key`` writes for
    it (method ``files``, SHA-256, ``ignore_paths``), over path -> sha256 hex of its files,
    relative to it; the stock ``model_signing verify key`` checks it against the directory."""
    try:
        from model_signing import manifest
        from model_signing._hashing.hashing import Digest
        from model_signing._signing import sign_ec_key, signing
    except ImportError as error:
        raise InputError(
            f"signing needs the sign extra: pip install 'arcuate[sign]' ({error})"
        ) from None
    items = [
        manifest.FileManifestItem(path=PurePosixPath(p), digest=Digest("sha256", bytes.fromhex(h)))
        for p, h in sorted(files.items())
    ]
    kind = manifest._FileSerialization(
        "sha256", allow_symlinks=False, ignore_paths=[Path(p) for p in ignore]
    )
    bundle = sign_ec_key.Signer(private_key).sign(
        signing.Payload(manifest.Manifest(name, items, kind))
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.sig"
        bundle.write(out)
        return out.read_bytes()
