"""Signing a manifest with OpenSSF model-signing (the `arcuate[sign]` extra), provider side.

model-signing's public API only signs a path on disk, hashing every file again; arcuate
already holds each record digest and file SHA-256, and a table has no directory at all. So
this adapter builds the manifest from those digests through private names of model-signing
1.1 (pinned in pyproject): its key, certificate and Sigstore signers; tests cross-check its
bundles with arcuate's own verifier and the stock `model_signing verify` command, so an
upstream change fails CI, not users (research/trust/NOTES.md §3).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from arcuate.errors import InputError


def sign_resources(
    resources: Mapping[str, str],
    private_key: Path | None,
    name: str,
    *,
    certificate: Path | None = None,
    chain: Sequence[Path] = (),
    identity_token: str | None = None,
) -> bytes:
    """A model-signing bundle (method `files`, SHA-256) over name -> sha256 hex.

    Signed with ``private_key`` alone (the key path), with it and ``certificate`` (plus the
    intermediates in ``chain``: the bundle carries them all), or, with ``identity_token``,
    through Sigstore (Fulcio and Rekor: needs the network).

    Raises:
        InputError: the sign extra is missing, or Sigstore signing failed (never naming the
            token).
    """
    try:
        from model_signing import manifest
        from model_signing._hashing.hashing import Digest
        from model_signing._signing import sign_certificate, sign_ec_key, signing
    except ImportError as error:
        raise InputError(
            f"signing needs the sign extra: pip install 'arcuate[sign]' ({error})"
        ) from None
    items = [
        manifest.FileManifestItem(path=PurePosixPath(p), digest=Digest("sha256", bytes.fromhex(h)))
        for p, h in sorted(resources.items())
    ]
    kind = manifest._FileSerialization("sha256", allow_symlinks=False)
    payload = signing.Payload(manifest.Manifest(name, items, kind))
    if identity_token is not None:
        bundle = _sigstore_sign(payload, identity_token)
    elif certificate is not None and private_key is not None:
        # model-signing 1.1 cannot load an empty chain: give it the leaf, then carry none
        signer = sign_certificate.Signer(private_key, certificate, list(chain) or [certificate])
        if not chain:
            signer._trust_chain = []
        bundle = signer.sign(payload)
    elif private_key is not None:
        bundle = sign_ec_key.Signer(private_key).sign(payload)
    else:
        raise InputError("nothing to sign with: name a key, a certificate or SIGSTORE")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bundle.sig"
        bundle.write(out)
        return out.read_bytes()


def _sigstore_sign(payload: Any, token: str) -> Any:
    """Sign through Sigstore's public instance; any failure (offline, a refused token) is an
    InputError whose text never holds the token."""
    from model_signing._signing import sign_sigstore

    try:
        signer = sign_sigstore.Signer(identity_token=token, use_ambient_credentials=False)
        return signer.sign(payload)
    except Exception as error:  # network, OIDC, Fulcio, Rekor: all one answer
        reason = str(error)
        if token in reason or len(reason) > 300:
            reason = ""
        raise InputError(
            f"Sigstore signing failed ({type(error).__name__}{': ' if reason else ''}{reason});"
            " it needs the network (the OIDC issuer, Fulcio, Rekor); the table was not committed"
        ) from None
