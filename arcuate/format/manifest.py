"""Signed manifests (issue 16 item 1): verify a model-signing bundle with `cryptography` alone.

A bundle is what OpenSSF `model-signing` writes (Sigstore bundle v0.3, a DSSE envelope over an
in-toto v1 statement whose predicate lists `resources`: name -> SHA-256). Verification lives
here, not in the `arcuate[sign]` extra, because importing model_signing costs ~1 s (sigstore is
imported eagerly), far beyond the 5 % import budget, and so that a recipient can make
verification mandatory without installing anything (research/trust/NOTES.md §5).

The signature travels inside the table as one extra row of kind ``signature`` (key
``table``) whose two files are the bundle and the table claim it binds (docs/trust.md);
:mod:`arcuate.engine.signing` writes and checks it. Each model directory's own ``model.sig``
travels in ``model_signature`` rows, shaped and bounded here (:func:`model_signatures`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import operator
import re
import sys
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from arcuate.errors import ShareDataError
from arcuate.format import validate as v
from arcuate.format.limits import MAX_FILES_PER_RECORD

if TYPE_CHECKING:  # cryptography is imported where a signature is checked, not by every import
    from cryptography.hazmat.primitives.asymmetric import ec

CODE = "ARC620"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # a bundle is ~225 B a resource: far above any real table
#: the most certificates a bundle's chain (leaf included) and a verified path may hold
MAX_CHAIN = 8
#: curve -> the name of its hash in ``cryptography.hazmat.primitives.hashes``
_HASHES: dict[str, str] = {
    "secp256r1": "SHA256",
    "secp384r1": "SHA384",
    "secp521r1": "SHA512",
}


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: the bytes the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def key_fingerprint(public_pem: bytes) -> str:
    """The signer shown to users: model-signing's `hint`, the SHA-256 of the public key PEM."""
    return hashlib.sha256(public_pem).hexdigest()


def _refuse(message: str) -> ShareDataError:
    return ShareDataError(message, field="signature", code=CODE)


def _load_bundle(bundle: bytes) -> dict[str, Any]:
    if len(bundle) > MAX_BUNDLE_BYTES:
        raise _refuse(f"the signature bundle is {len(bundle)} bytes, over {MAX_BUNDLE_BYTES}")
    try:
        loaded = json.loads(bundle)
        envelope = loaded["dsseEnvelope"]
        signatures = envelope["signatures"]
        if not isinstance(loaded, dict) or not isinstance(signatures, list):
            raise TypeError("not an object")
    except (ValueError, KeyError, TypeError) as error:
        raise _refuse(f"the signature bundle is not a model-signing bundle ({error})") from None
    if envelope.get("payloadType") != PAYLOAD_TYPE or len(signatures) != 1:
        raise _refuse("the signature bundle must hold one in-toto DSSE signature")
    return loaded


def _public_key(public_pem: bytes) -> ec.EllipticCurvePublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _HASHES:
        raise ValueError("the verification key must be an ECDSA P-256, P-384 or P-521 key")
    return key


_SIGSTORE_REFUSED = (
    "signed with Sigstore keyless, which arcuate cannot verify yet (it needs Sigstore's trust"
    " root and transparency log); ask for a key- or certificate-signed table"
    " (SIGNED BY '<key>' or SIGNED BY CERTIFICATE)"
)


def _material(loaded: dict[str, Any]) -> dict[str, Any]:
    material = loaded.get("verificationMaterial")
    return material if isinstance(material, dict) else {}


def _chain_der(loaded: dict[str, Any]) -> list[bytes] | None:
    """The DER certificates of a certificate-signed bundle (leaf first), else None.

    Raises:
        ShareDataError: (ARC620) the chain is malformed or longer than :data:`MAX_CHAIN`.
    """
    chain = _material(loaded).get("x509CertificateChain")
    if chain is None:
        return None
    try:
        items = chain["certificates"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_CHAIN:
            raise ValueError(f"1 to {MAX_CHAIN} certificates expected")
        return [base64.b64decode(c["rawBytes"], validate=True) for c in items]
    except (KeyError, TypeError, ValueError, binascii.Error) as error:
        raise _refuse(f"the signature bundle's certificate chain is malformed ({error})") from None


def _verify_envelope(loaded: dict[str, Any], key: ec.EllipticCurvePublicKey, who: str) -> bytes:
    """The DSSE payload, once its signature verifies with ``key``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    envelope = loaded["dsseEnvelope"]
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
    except (KeyError, TypeError, binascii.Error):
        raise _refuse("the signature bundle's envelope is not base64") from None
    algorithm = getattr(hashes, _HASHES[key.curve.name])()
    try:
        key.verify(signature, pae(PAYLOAD_TYPE, payload), ec.ECDSA(algorithm))
    except InvalidSignature:
        raise _refuse(f"the signature does not verify with {who}") from None
    return payload


def verify_key_bundle(bundle: bytes, public_pem: bytes) -> dict[str, str]:
    """Check a key-signed bundle against the pinned key; return its resources (name -> sha256).

    A certificate-signed bundle verifies too when the pinned key is its leaf certificate's
    (the chain is then not checked: the key itself is pinned).

    Raises:
        ShareDataError: (ARC620) malformed bundle, another key, or a signature that fails.
        ValueError: the pinned key itself is not a usable ECDSA key (a user error).
    """
    key = _public_key(public_pem)
    loaded = _load_bundle(bundle)
    chain = _chain_der(loaded)
    if chain is not None:
        leaf = _certificate(chain[0])
        leaf_pem = _spki_pem(leaf)
        if leaf_pem != _spki_pem_of(key):
            raise _refuse(
                f"signed by another key (certificate {describe_name(leaf.subject)}, key"
                f" fingerprint {key_fingerprint(leaf_pem)})"
            )
    elif "certificate" in _material(loaded):
        raise _refuse(_SIGSTORE_REFUSED)
    else:
        key_hint = _material(loaded).get("publicKey")
        hint = key_hint.get("hint") if isinstance(key_hint, dict) else None
        if hint != key_fingerprint(public_pem):
            raise _refuse(f"signed by another key (fingerprint {str(hint)[:64]!r})")
    return _resources(_verify_envelope(loaded, key, "the pinned key"))


def _spki_pem_of(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _spki_pem(certificate: Any) -> bytes:
    return _spki_pem_of(certificate.public_key())


def _certificate(der: bytes) -> Any:
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as error:
        raise _refuse(f"a certificate in the signature bundle is malformed ({error})") from None


def describe_name(name: Any) -> str:
    """An X.509 name as one short printable line (RFC 4514): shared text reaches a terminal."""
    try:
        text = name.rfc4514_string()
    except ValueError:
        text = "<unreadable name>"
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 200 else text[:199] + "…"


@dataclass(frozen=True)
class CertificateSigner:
    """Who signed a certificate-signed table, once its chain verified."""

    subject: str
    issuer: str
    #: the pinned CA certificate the chain ends at: its subject and SHA-256 (of its DER)
    anchor: str
    anchor_sha256: str


def _ca_policy(x509: Any, xv: Any) -> Any:
    def key_usage(policy: Any, cert: Any, usage: Any) -> None:
        if usage is not None and not usage.key_cert_sign:
            raise ValueError("a CA certificate's key usage does not allow certificate signing")

    return (
        xv.ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, xv.Criticality.AGNOSTIC, None)
        .may_be_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, key_usage)
    )


def _check_leaf_usage(x509: Any, leaf: Any, subject: str) -> None:
    """The leaf's key usage and extended key usage, checked first for a clearer message (the
    path validation checks them again through :func:`_leaf_policy`)."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    allowed = {ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    with contextlib.suppress(x509.ExtensionNotFound):
        if not leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            raise _refuse(f"the signing certificate {subject} may not sign (key usage)")
    with contextlib.suppress(x509.ExtensionNotFound):
        usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if not allowed & set(usage):
            raise _refuse(
                f"the signing certificate {subject} is not for code signing (extended key usage)"
            )


def _leaf_policy(x509: Any, xv: Any) -> Any:
    from cryptography.x509.oid import ExtendedKeyUsageOID

    def key_usage(policy: Any, cert: Any, usage: Any) -> None:
        if usage is not None and not usage.digital_signature:
            raise ValueError("the signing certificate's key usage does not allow signatures")

    def extended(policy: Any, cert: Any, usage: Any) -> None:
        allowed = {ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
        if usage is not None and not allowed & set(usage):
            raise ValueError("the signing certificate's extended key usage is not code signing")

    return (
        xv.ExtensionPolicy.permit_all()
        .may_be_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, key_usage)
        .may_be_present(x509.ExtendedKeyUsage, xv.Criticality.AGNOSTIC, extended)
    )


def verify_certificate_bundle(
    bundle: bytes, roots: list[Any], at: datetime
) -> tuple[dict[str, str], CertificateSigner]:
    """Check a certificate-signed bundle against pinned CA certificates, at time ``at``.

    The leaf certificate (the bundle's first) must chain to one of ``roots`` through the
    bundle's other certificates, every certificate valid at ``at`` (the signed export time:
    offline there is no trusted timestamp), each CA marked a CA (and allowed to sign
    certificates, if it has a key usage), the leaf allowed to sign (key usage digital
    signature, extended key usage code signing, each if present); then the DSSE signature
    must verify with the leaf's key. Return the resources and who signed.

    Raises:
        ShareDataError: (ARC620) a key-signed or Sigstore bundle, a malformed chain, a leaf
            outside its validity at ``at``, a chain that does not end at a pinned CA, or a
            signature that fails.
        ConfigurationError: the installed ``cryptography`` has no path validation (< 45).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        from cryptography.x509 import verification as xv

        xv.ExtensionPolicy  # noqa: B018 (cryptography >= 45)
    except (ImportError, AttributeError):
        from arcuate.errors import ConfigurationError

        raise ConfigurationError(
            "VERIFIED BY CA needs cryptography 45 or later (certificate path validation)",
            hint="pip install 'cryptography>=45'",
        ) from None
    loaded = _load_bundle(bundle)
    chain = _chain_der(loaded)
    if chain is None:
        material = _material(loaded)
        if "certificate" in material:
            raise _refuse(_SIGSTORE_REFUSED)
        hint = material.get("publicKey")
        fingerprint = hint.get("hint") if isinstance(hint, dict) else None
        raise _refuse(
            f"signed with a bare key (fingerprint {str(fingerprint)[:64]!r}), not a certificate:"
            " VERIFIED BY CA needs a certificate-signed table; pin the provider's public key"
            " with VERIFIED BY '<public key>' instead"
        )
    certificates = [_certificate(der) for der in chain]
    leaf = certificates[0]
    subject = describe_name(leaf.subject)
    when = at if at.tzinfo else at.replace(tzinfo=UTC)
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not start <= when <= end:
        raise _refuse(
            f"the signing certificate {subject} was not valid at the export time"
            f" {when.isoformat()} (valid from {start.isoformat()} to {end.isoformat()})"
        )
    try:
        _check_leaf_usage(x509, leaf, subject)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as error:
        bad = f"the signing certificate {subject} has malformed extensions"
        raise _refuse(f"{bad} ({type(error).__name__})") from None
    verifier = (
        xv.PolicyBuilder()
        .store(xv.Store(roots))
        .time(when)
        .max_chain_depth(MAX_CHAIN)
        .extension_policies(ca_policy=_ca_policy(x509, xv), ee_policy=_leaf_policy(x509, xv))
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, certificates[1:])
    except xv.VerificationError as error:
        reason = "".join(c if c.isprintable() else "?" for c in str(error))[:300]
        raise _refuse(
            f"the signing certificate {subject} does not chain to the pinned CA at the export"
            f" time {when.isoformat()} ({reason})"
        ) from None
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _HASHES:
        raise _refuse(f"the signing certificate {subject} has no ECDSA P-256/384/521 key")
    payload = _verify_envelope(loaded, key, f"the key of the certificate {subject}")
    anchor = verified.chain[-1]
    signer = CertificateSigner(
        subject,
        describe_name(leaf.issuer),
        describe_name(anchor.subject),
        hashlib.sha256(anchor.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )
    return _resources(payload), signer


def _identity(certificate: Any) -> str:
    """A Fulcio certificate's identity: its first subject alternative name (an e-mail address
    or a URI), else its subject."""
    from cryptography import x509

    with contextlib.suppress(x509.ExtensionNotFound, ValueError, StopIteration):
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        first = str(next(iter(names.value)).value)
        return "".join(c if c.isprintable() else "?" for c in first)[:200]
    return describe_name(certificate.subject)


def bundle_signer(bundle: bytes) -> str:
    """Who a bundle says signed it, unverified: ``key <fingerprint>``, ``certificate <subject>
    (issuer <issuer>)`` or ``sigstore <identity>``; ``unknown`` when it says nothing usable."""
    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError, ShareDataError):
        loaded = json.loads(bundle)
        chain = _chain_der(loaded) if isinstance(loaded, dict) else None
        if chain:
            leaf = _certificate(chain[0])
            subject, issuer = describe_name(leaf.subject), describe_name(leaf.issuer)
            return f"certificate {subject} (issuer {issuer})"
        material = _material(loaded)
        if isinstance(material.get("certificate"), dict):
            leaf = _certificate(base64.b64decode(material["certificate"]["rawBytes"]))
            return f"sigstore certificate {_identity(leaf)} (unverified)"
        hint = material["publicKey"]["hint"]
        return f"key {str(hint)[:64]}"
    return "unknown"


def _resources(payload: bytes) -> dict[str, str]:
    try:
        statement = json.loads(payload)
        if statement["_type"] != STATEMENT_TYPE or statement["predicateType"] != PREDICATE_TYPE:
            raise ValueError("not a model-signing statement")
        items = statement["predicate"]["resources"]
        resources = {str(r["name"]): str(r["digest"]) for r in items}
    except (ValueError, KeyError, TypeError) as error:
        raise _refuse(f"the signed statement is malformed ({error})") from None
    if len(resources) != len(items):
        raise _refuse("the signed statement names a resource twice")
    return resources


def check_resources(signed: Mapping[str, str], actual: Mapping[str, str]) -> None:
    """Refuse unless what was read is exactly what was signed: none missing, added or changed."""
    missing = sorted(signed.keys() - actual.keys())
    added = sorted(actual.keys() - signed.keys())
    changed = sorted(n for n in signed.keys() & actual.keys() if signed[n] != actual[n])
    if missing:
        raise _refuse(f"{len(missing)} signed record(s) missing (truncated?), first {missing[0]!r}")
    if added:
        raise _refuse(f"{len(added)} record(s) not covered by the signature, first {added[0]!r}")
    if changed:
        first = changed[0]
        raise _refuse(f"{len(changed)} record(s) differ from the signed digest, first {first!r}")


TABLE_RESOURCE = "arcuate/table"
#: The row that carries the signature: kind, key, file owner, and its two files' paths.
SIGNATURE_KIND = "signature"
SIGNATURE_KEY = "table"
SIGNATURE_OWNER = "signature"
BUNDLE_PATH = "bundle.sig"
CLAIM_PATH = "claim.json"
MAX_CLAIM_BYTES = 64 * 1024


def _plain(value: Any) -> Any:
    """JSON for the values an Arrow row holds (timestamps, bytes); nothing else is expected."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    raise TypeError(f"cannot encode {type(value).__name__} in a record digest")


def record_digest(row: Mapping[str, Any]) -> str:
    """SHA-256 of a record row's canonical JSON, inline file bytes left out.

    File bytes are covered by each file's `sha256`, which the import already checks, so the
    digest need not hash them again: that keeps signing and verifying one small hash a record.
    """
    files = [{k: v for k, v in f.items() if k != "data"} for f in (row.get("files") or [])]
    body = {k: v for k, v in row.items() if k != "files"} | {"files": files}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()


def record_resource(row: Mapping[str, Any]) -> str:
    """The resource name a record is signed under: `record/<kind>/<key>`."""
    return f"record/{row['kind']}/{row['key']}"


#: the kinds whose rows are digested from their validated record (:func:`shared_digest`);
#: every other record row (prompt versions, scorers, eval records, traces, kinds to come) is
#: digested as read (:func:`row_digest`); chunks are covered by their file's signed sha256
VALIDATED_KINDS = frozenset({"run", "model_version"})
UNSIGNED_KINDS = frozenset({"chunk", SIGNATURE_KIND})


def _pruned(value: Any) -> Any:
    """``value`` with null struct fields left out, and a struct of nulls as null: a null
    struct reads back as None or as a struct of Nones depending on how a batch was sliced
    or rebuilt, and a column added to the format later is null in older kinds' rows."""
    if isinstance(value, dict):
        kept = {k: p for k, p in ((k, _pruned(x)) for k, x in value.items()) if p is not None}
        return kept or None
    if isinstance(value, list):
        return [_pruned(x) for x in value]
    return value


def row_digest(row: Mapping[str, Any]) -> str:
    """The signed digest of a row of a kind not in :data:`VALIDATED_KINDS`: every column as
    Arrow gives it to Python (canonical JSON, nulls pruned, inline file bytes left out: they
    are checked against each file's sha256, which is covered)."""
    body = _pruned(dict(row)) or {}
    files = body.get("files")
    if isinstance(files, list):
        body["files"] = [
            {k: x for k, x in f.items() if k != "data"} if isinstance(f, dict) else f for f in files
        ]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_loose)
    return hashlib.sha256(text.encode()).hexdigest()


def _loose(value: Any) -> Any:
    """:func:`_plain`, and any other value by its type and repr: only a hostile row holds
    one (a column of another kind filled in), and its digest then differs from the signed."""
    try:
        return _plain(value)
    except TypeError:
        return f"{type(value).__name__}:{value!r}"


def add_digest(digests: dict[str, str], resource: str, digest: str, i: int) -> None:
    """Keep a record's digest; a name seen before is refused, never overwritten (two rows
    signed as one would let one stand for the other).

    Raises:
        ShareDataError: (ARC620) ``resource`` is already among ``digests``.
    """
    if resource in digests:
        raise ShareDataError(
            f"record {resource!r} appears twice in the table", row=i, field="key", code=CODE
        )
    digests[resource] = digest


#: Prefixes every record digest: names the encoding below, so a change to it can never make an
#: old digest match a new record.
RECORD_DIGEST_V2 = b"arcuate/shared-record/2\n"
_SERIES = operator.itemgetter("key", "model_id", "dataset_name", "dataset_digest")
_VALUE = operator.itemgetter("value")
_STEP = operator.itemgetter("step")
_TIMESTAMP = operator.itemgetter("timestamp")


def _frame(digest: Any, data: bytes) -> None:
    """Length-prefixed: the concatenation of frames is unambiguous."""
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def _frame_pairs(digest: Any, pairs: Mapping[str, Any]) -> None:
    """A params or tags map: its count, then each key and value, sorted by key, as UTF-8."""
    digest.update(len(pairs).to_bytes(8, "big"))
    for key in sorted(pairs):
        _frame(digest, key.encode("utf-8", "surrogatepass"))
        _frame(digest, _canonical_json(pairs[key]))


def _big_endian(kind: str, values: Any) -> bytes:
    column = array(kind, values)
    if sys.byteorder == "little":
        column.byteswap()
    return column.tobytes()


def _frame_metrics(digest: Any, points: list[dict[str, Any]]) -> None:
    """A metric history as fixed-width columns, not JSON (1,000 points a run made JSON the
    digest's whole cost): each distinct (key, model_id, dataset_name, dataset_digest) once, as
    JSON in first-seen order, then per point its series index, value (IEEE-754 double), step
    and timestamp (signed 64-bit), all big-endian. Validation bounds steps and timestamps to
    64 bits, so every point has exactly one encoding."""
    series: dict[tuple[Any, ...], int] = {}
    index = [series.setdefault(s, len(series)) for s in map(_SERIES, points)]
    _frame(digest, _canonical_json(list(series)))
    _frame(digest, _big_endian("q", index))
    _frame(digest, _big_endian("d", map(_VALUE, points)))
    _frame(digest, _big_endian("q", map(_STEP, points)))
    _frame(digest, _big_endian("q", map(_TIMESTAMP, points)))


def shared_digest(record: v.SharedRecord, exported_at: str) -> str:
    """SHA-256 of a validated record's canonical encoding: what provider and recipient both hash.

    Both sides hash the values :func:`arcuate.format.validate.parse_row` returns for the row
    as Arrow holds it, so the provider's digest is the recipient's exactly; files count by
    (owner, path, size, sha256, chunks): their bytes are checked against ``sha256`` anyway.
    The small, irregular fields are canonical JSON; a run's params and tags are sorted
    length-prefixed UTF-8 and its metric history fixed-width binary (:func:`_frame_metrics`),
    which keeps verification within issue 16's 5 % of an import.
    """
    run = record.run
    lists = ("params", "tags", "metrics")
    head = {
        "kind": record.kind,
        "key": record.key,
        "exported_at": exported_at,
        "experiment": record.experiment,
        "run": None if run is None else {k: x for k, x in run.items() if k not in lists},
        "model_version": record.model_version,
        "files": [[f.owner, f.path, f.size, f.sha256, f.chunks] for f in record.files],
    }
    digest = hashlib.sha256(RECORD_DIGEST_V2)
    _frame(digest, _canonical_json(head))
    if run is not None:  # the head says whether these three frames follow
        _frame_pairs(digest, run["params"])
        _frame_pairs(digest, run["tags"])
        _frame_metrics(digest, run["metrics"])
    return digest.hexdigest()


def table_claim(table: str, sequence: int, export_id: str, exported_at: str = "") -> bytes:
    """The canonical bytes that bind a signature to one table and one export of it."""
    claim: dict[str, Any] = {"table": table, "sequence": sequence, "export_id": export_id}
    if exported_at:
        claim["exported_at"] = exported_at
    return json.dumps(claim, sort_keys=True, separators=(",", ":")).encode()


def check_claim(
    signed: Mapping[str, str], claim: bytes, table: str | None, last_sequence: int | None
) -> int:
    """Refuse a claim that is not the signed one, names another table (``table`` None: the
    reader does not know the table's shared name), or replays an older export than the
    recipient already imported; return its sequence."""
    if signed.get(TABLE_RESOURCE) != hashlib.sha256(claim).hexdigest():
        raise _refuse("the table claim is not the one that was signed")
    try:
        loaded = json.loads(claim)
        named, sequence = str(loaded["table"]), loaded["sequence"]
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
            raise TypeError("sequence is not a count")
    except (ValueError, KeyError, TypeError) as error:
        raise _refuse(f"the table claim is malformed ({error})") from None
    if table is not None and named.lower() != table.lower():
        raise _refuse(f"the signature is for table {named!r}, not {table!r}")
    if last_sequence is not None and sequence < last_sequence:
        raise _refuse(f"replayed export: sequence {sequence}, already imported {last_sequence}")
    return sequence


@dataclass
class Carried:
    """The signature a table carries: its bundle and claim, and the row it sat in."""

    row: int
    bundle: bytes
    claim: bytes

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "bundle": base64.b64encode(self.bundle).decode(),
                "claim": base64.b64encode(self.claim).decode()}  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Carried:
        return cls(int(doc["row"]), base64.b64decode(doc["bundle"]), base64.b64decode(doc["claim"]))

    def signer(self) -> str:
        """Who the bundle says signed it, unverified (:func:`bundle_signer`)."""
        return bundle_signer(self.bundle)


def carried(row: dict[str, Any], i: int, seen: Carried | None) -> Carried:
    """The signature of a ``signature`` row, its files checked (two, named, each digest).

    Raises:
        ShareDataError: (ARC620) a second signature row, or a malformed one.
    """

    def bad(message: str) -> ShareDataError:
        return ShareDataError(message, row=i, field="files", code=CODE)

    if seen is not None:
        raise ShareDataError(
            f"a second signature row (the first is row {seen.row})", row=i, field="kind",
            code=CODE,
        )  # fmt: skip
    files = row.get("files")
    if not isinstance(files, list) or len(files) != 2:
        raise bad("a signature row holds exactly two files (bundle.sig, claim.json)")
    found: dict[str, bytes] = {}
    for f in files:
        data = f.get("data") if isinstance(f, dict) else None
        path = f.get("path") if isinstance(f, dict) else None
        if path not in (BUNDLE_PATH, CLAIM_PATH) or not isinstance(data, bytes):
            raise bad(f"a signature row holds bundle.sig and claim.json inline, not {path!r}")
        if hashlib.sha256(data).hexdigest() != f.get("sha256"):
            raise bad(f"{path}'s bytes do not match its sha256")
        found[path] = data
    claim = found.get(CLAIM_PATH, b"")
    if len(found) != 2 or len(claim) > MAX_CLAIM_BYTES:
        raise bad("a signature row holds one bundle.sig and one small claim.json")
    return Carried(i, found[BUNDLE_PATH], claim)


# -- model.sig: a model directory's own signature (issue 16 item 1) ----------------------------
#: The row kind that carries the ``model.sig`` of a record's model directories (its key is
#: the record's), and the name each one takes at the root of its directory.
MODEL_SIGNATURE_KIND = "model_signature"
MODEL_SIG_PATH = "model.sig"
#: Root paths a ``model.sig`` leaves out, and asks ``model_signing verify`` to ignore (the
#: bundle's ``ignore_paths``): the signature itself, the git files the stock command ignores
#: by default, and the file MLflow adds to a registered model it downloads.
MODEL_SIG_IGNORED = (
    MODEL_SIG_PATH,
    "registered_model_meta",
    ".git",
    ".gitattributes",
    ".github",
    ".gitignore",
)
#: Records with model directories, and which of their file owners are one.
_VERSION_KIND = "model_version"
_MODEL_OWNER = "model"
_LOGGED_MODEL_PREFIX = "logged_models/"
_MAX_OWNER_LENGTH = len(_LOGGED_MODEL_PREFIX) + 256
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def is_model_directory(kind: str, owner: str) -> bool:
    """Whether a record's files of ``owner`` are a model directory: a version's model files,
    or a logged model's files (a run's)."""
    if kind == _VERSION_KIND:
        return owner == _MODEL_OWNER
    return owner.startswith(_LOGGED_MODEL_PREFIX)


def model_directories(
    kind: str, files: Iterable[tuple[str, str, str]]
) -> dict[str, dict[str, str]]:
    """owner -> (path -> sha256) of each model directory of a record, as its ``model.sig``
    signs it: every file but those at the root that the signature leaves out
    (:data:`MODEL_SIG_IGNORED`). ``files``: (owner, path, sha256). Directories with a
    ``model.sig`` of their own (the provider's file) are left out: none is made or written."""
    dirs: dict[str, dict[str, str]] = {}
    own: set[str] = set()
    for owner, path, sha256 in files:
        if not is_model_directory(kind, owner):
            continue
        if path == MODEL_SIG_PATH:
            own.add(owner)
        if path.split("/", 1)[0] in MODEL_SIG_IGNORED:
            continue
        dirs.setdefault(owner, {})[path] = sha256
    return {owner: paths for owner, paths in dirs.items() if owner not in own and paths}


@dataclass(frozen=True)
class ModelSig:
    """One shared ``model.sig``: its record (``key``), directory (``owner``), bytes and what
    it signs (path -> sha256)."""

    row: int
    key: str
    owner: str
    data: bytes
    signs: dict[str, str]


def model_signatures(row: Mapping[str, Any], i: int) -> list[ModelSig]:
    """The ``model.sig`` files of a ``model_signature`` row, checked: inline, bounded, their
    digests, one per directory, and each a model-signing bundle whose statement lists files.
    Its signature is not checked here (the stock command does that, with the provider's key;
    the table's signature covers the row).

    Raises:
        ShareDataError: (ARC620) the row or a bundle is malformed.
    """

    def bad(message: str, name: str = "files") -> ShareDataError:
        return ShareDataError(message, row=i, field=name, code=CODE)

    key = row.get("key")
    if not isinstance(key, str) or not key:
        raise bad(f"key must be a non-empty string, got {str(key)[:80]!r}", "key")
    for column, value in row.items():
        if column in ("format_version", "kind", "key", "exported_at", "files"):
            continue
        if value is not None and _pruned(value) not in (None, []):
            raise bad(f"a model_signature row carries no {column}", column)
    files = row.get("files")
    if not isinstance(files, list) or not files:
        raise bad("a model_signature row holds at least one model.sig")
    if len(files) > MAX_FILES_PER_RECORD:
        raise bad(f"a model_signature row holds {len(files)} files, over the bound")
    out: list[ModelSig] = []
    owners: set[str] = set()
    total = 0
    for j, f in enumerate(files):
        where = f"files[{j}]"
        if not isinstance(f, dict):
            raise bad("is not a file", where)
        owner, data = f.get("owner"), f.get("data")
        if not isinstance(owner, str) or not (
            owner == _MODEL_OWNER
            or (owner.startswith(_LOGGED_MODEL_PREFIX) and len(owner) <= _MAX_OWNER_LENGTH)
        ):
            raise bad(f"owner {str(owner)[:80]!r} is not a model directory", f"{where}.owner")
        if owner in owners:
            raise bad(f"two model.sig files for {owner}", f"{where}.owner")
        owners.add(owner)
        if f.get("path") != MODEL_SIG_PATH:
            raise bad(f"path must be {MODEL_SIG_PATH!r}", f"{where}.path")
        if not isinstance(data, bytes) or f.get("chunks") != 0:
            raise bad("a model.sig travels inline", f"{where}.data")
        total += len(data)
        if total > MAX_BUNDLE_BYTES:
            raise bad(f"the row's model.sig files exceed {MAX_BUNDLE_BYTES} bytes", where)
        if f.get("size") != len(data) or hashlib.sha256(data).hexdigest() != f.get("sha256"):
            raise bad("the model.sig bytes do not match its size and sha256", where)
        out.append(ModelSig(i, key, owner, data, _signed_files(data, i, where)))
    return out


def _signed_files(data: bytes, i: int, where: str) -> dict[str, str]:
    """What a ``model.sig`` signs (path -> sha256): its JSON and statement parsed, bounded."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ShareDataError(
            "the model.sig is not UTF-8 JSON", row=i, field=where, code=CODE
        ) from None
    _bounded_json(text, i, where)  # depth bounded before json.loads recurses
    try:
        loaded = _load_bundle(data)
    except ShareDataError as error:
        raise _model_sig_error(error, i, where) from None
    try:
        payload = base64.b64decode(loaded["dsseEnvelope"]["payload"], validate=True)
        sig = loaded["dsseEnvelope"]["signatures"][0]["sig"]
        if not isinstance(sig, str) or not isinstance(loaded.get("verificationMaterial"), dict):
            raise TypeError("no signature or verification material")
        _bounded_json(payload.decode("utf-8"), i, where)
    except (KeyError, TypeError, binascii.Error, UnicodeDecodeError) as error:
        raise ShareDataError(
            f"the model.sig is not a model-signing bundle ({error})", row=i, field=where, code=CODE
        ) from None
    try:
        signs = _resources(payload)
    except ShareDataError as error:
        raise _model_sig_error(error, i, where) from None
    for name, digest in signs.items():
        if not _SHA256_HEX.match(digest):
            raise ShareDataError(
                f"the model.sig signs {name[:80]!r} with a digest that is not a SHA-256",
                row=i, field=where, code=CODE,
            )  # fmt: skip
    return signs


def _model_sig_error(error: ShareDataError, i: int, where: str) -> ShareDataError:
    """A bundle or JSON check's error, said of the model.sig at row ``i``, ``where``."""
    message = str(error).split(": ", 1)[-1].replace("the signature bundle ", "")
    joined = (
        f"the model.sig: {message}" if message.startswith("the ") else f"the model.sig {message}"
    )
    return ShareDataError(joined, row=i, field=where, code=CODE)


def _bounded_json(text: str, i: int, where: str) -> None:
    try:
        v.parse_json(text, i, f"{where}.data")
    except ShareDataError as error:
        raise _model_sig_error(error, i, where) from None


def check_model_sig(sig: ModelSig, kind: str, files: Iterable[tuple[str, str, str]]) -> None:
    """A ``model.sig`` is written only into a model directory of its record that has none of
    its own, and only when it signs exactly that directory's files.

    Raises:
        ShareDataError: (ARC620) it names no model directory of the record, the provider's
            directory holds a ``model.sig`` already (never overwritten), or it signs other files.
    """
    listed = list(files)
    dirs = model_directories(kind, listed)

    def bad(message: str) -> ShareDataError:
        return ShareDataError(
            f"the model.sig of {sig.owner} (record {sig.key!r}) {message}",
            row=sig.row, field="files", code=CODE,
        )  # fmt: skip

    if any(o == sig.owner and p == MODEL_SIG_PATH for o, p, _ in listed):
        raise bad("would replace the model.sig the provider's directory holds")
    wanted = dirs.get(sig.owner)
    if wanted is None:
        raise bad("names no model directory of the record")
    if sig.signs != wanted:
        raise bad("does not sign exactly the directory's files")
