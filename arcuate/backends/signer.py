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
from collections.abc import Iterable, Mapping, Sequence
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
    sigstore: Any = None,
) -> bytes:
    """A model-signing bundle (method `files`, SHA-256) over name -> sha256 hex.

    Signed with ``private_key`` alone (the key path), with it and ``certificate`` (plus the
    intermediates in ``chain``: the bundle carries them all), or with ``sigstore``, a signer
    from :func:`sigstore_signer` (Fulcio and Rekor: needs the network).

    Raises:
        InputError: the sign extra is missing, or Sigstore signing failed (never naming the
            token).
    """
    return _sign(resources, name, (), private_key, certificate, chain, sigstore)


def sign_model_files(
    files: Mapping[str, str],
    name: str,
    ignore: Iterable[str],
    *,
    private_key: Path | None,
    certificate: Path | None = None,
    chain: Sequence[Path] = (),
    sigstore: Any = None,
) -> bytes:
    """A ``model.sig`` for a model directory: the bundle ``model_signing sign`` writes for it
    (method ``files``, SHA-256, ``ignore_paths``), over path -> sha256 hex of its files,
    relative to it, signed as :func:`sign_resources` signs; the stock ``model_signing
    verify key`` (or ``verify certificate``) checks it against the directory."""
    return _sign(files, name, ignore, private_key, certificate, chain, sigstore)


def _sign(
    resources: Mapping[str, str],
    name: str,
    ignore: Iterable[str],
    private_key: Path | None,
    certificate: Path | None,
    chain: Sequence[Path],
    sigstore: Any,
) -> bytes:
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
    kind = manifest._FileSerialization(
        "sha256", allow_symlinks=False, ignore_paths=[Path(p) for p in ignore]
    )
    payload = signing.Payload(manifest.Manifest(name, items, kind))
    if sigstore is not None:
        try:
            bundle = sigstore.sign(payload)
        except Exception as error:  # network, OIDC, Fulcio, Rekor: all one answer
            raise InputError(
                f"Sigstore signing failed ({_reason(error, sigstore.token)}); it needs the network"
                " (the OIDC issuer, Fulcio, Rekor); the table was not committed"
            ) from None
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


class _Sigstore:
    """model-signing's Sigstore signer and the token it holds (kept to keep it out of errors)."""

    def __init__(self, signer: Any, token: str) -> None:
        self.signer = signer
        self.token = token

    def __repr__(self) -> str:
        return "<Sigstore signer>"

    def sign(self, payload: Any) -> Any:
        return self.signer.sign(payload)


def sigstore_signer(token: str) -> Any:
    """A Sigstore keyless signer for the OIDC identity ``token``, made before any table is
    touched: it fetches Sigstore's trust root and the OIDC issuer's configuration, so offline
    it fails here, with nothing written.

    Raises:
        InputError: the sign extra is missing, or Sigstore cannot be reached (never naming the
            token).
    """
    try:
        from model_signing._signing import sign_sigstore
    except ImportError as error:
        raise InputError(
            f"signing needs the sign extra: pip install 'arcuate[sign]' ({error})"
        ) from None
    try:
        signer = sign_sigstore.Signer(identity_token=token, use_ambient_credentials=False)
    except Exception as error:  # network, TUF, OIDC discovery: all one answer
        raise InputError(
            f"Sigstore signing cannot start ({_reason(error, token)}); it needs the network"
            " (Sigstore's trust root, the OIDC issuer, Fulcio, Rekor); nothing was written"
        ) from None
    return _Sigstore(signer, token)


def _reason(error: Exception, token: str) -> str:
    """An exception as a short reason that never holds the token."""
    reason = str(error)
    if token in reason or len(reason) > 300 or not reason:
        return type(error).__name__
    return f"{type(error).__name__}: {reason}"
