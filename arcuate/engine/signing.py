"""Signed tables (issue 16 item 1): the provider's signature row and the recipient's check.

The provider signs a manifest of every record's digest plus a table claim (the shared name,
an export sequence and id) and writes the bundle as one more row of the same Delta commit,
kind ``signature``: the signature travels inside the share. The recipient recomputes every
record's digest while it validates the rows (pass 1), then, before anything is written,
checks the bundle with the pinned key, the claim and the set of digests; file bytes are
checked against their signed SHA-256 by pass 1 already. Each record's model directories (a
version's files, a run's logged models) also get a ``model.sig`` of their own, in a
``model_signature`` row, which the import writes beside ``MLmodel`` for the stock
``model_signing verify`` command. See docs/trust.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from arcuate.backends.protocols import ChunkedFile
from arcuate.engine.imports.spool import Spool
from arcuate.errors import ConfigurationError, InputError, ShareDataError
from arcuate.format import manifest as mf
from arcuate.format import validate as v
from arcuate.format.manifest import Carried
from arcuate.format.schema import (
    CHUNK,
    FORMAT_VERSION,
    OWNER_LOGGED_MODEL_PREFIX,
    OWNER_MODEL,
    SCHEMA,
    Content,
)

if TYPE_CHECKING:
    from arcuate.config import Settings
    from arcuate.plan.ops import WriteTable

# -- provider ---------------------------------------------------------------------------------


def check_signing_key(path: str) -> Path:
    """The provider's private key file, checked before any table is touched.

    Raises:
        InputError: the sign extra is missing; no such file, not a PEM private key,
            encrypted, or not an ECDSA key.
    """
    import importlib.util

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if importlib.util.find_spec("model_signing") is None:
        raise InputError("signing needs the sign extra: pip install 'arcuate[sign]'")

    key_path = Path(path).expanduser()
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as error:
        raise InputError(f"cannot read the signing key {path!r}: {error.strerror}") from None
    except (ValueError, TypeError) as error:
        raise InputError(
            f"the signing key {path!r} is not an unencrypted PEM private key ({error})"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError(f"the signing key {path!r} must be an ECDSA P-256/384/521 key")
    return key_path


@dataclass(frozen=True)
class Signing:
    """How an export is signed, checked before any table is touched."""

    method: Literal["key", "certificate", "sigstore"]
    key: Path | None = None
    certificate: Path | None = None
    chain: tuple[Path, ...] = ()
    #: the Sigstore signer (it holds the OIDC identity token: a secret, never shown)
    sigstore: Any = field(default=None, repr=False)
    #: what the statement's summary says under ``signed_by``
    shown: str = ""


def signing_for(step: WriteTable, settings: Settings) -> Signing | None:
    """The signer of a WriteTable step: its SIGNED BY clause, else the settings
    (``signing_key``, with ``signing_certificate`` and ``signing_certificate_chain``).

    Raises:
        ConfigurationError: a certificate setting without ``signing_key``.
        InputError: a key, certificate or chain that cannot be used (see the checks).
    """
    if step.signing_sigstore:
        return check_sigstore()
    if step.signing_certificate:
        return check_signing_certificate(
            step.signing_key, step.signing_certificate, step.signing_chain
        )
    if step.signing_key:
        return _key_signing(step.signing_key)
    certificate = settings.signing_certificate
    chain = settings.signing_certificate_chain
    if (certificate or chain) and not settings.signing_key:
        raise ConfigurationError(
            "signing_certificate needs signing_key, the certificate's private key"
            " (ARCUATE_SIGNING_KEY); nothing was written"
        )
    if certificate:
        return check_signing_certificate(
            settings.signing_key, certificate, (chain,) if chain else ()
        )
    if chain:
        raise ConfigurationError(
            "signing_certificate_chain needs signing_certificate (ARCUATE_SIGNING_CERTIFICATE);"
            " nothing was written"
        )
    return _key_signing(settings.signing_key) if settings.signing_key else None


def _key_signing(path: str) -> Signing:
    key = check_signing_key(path)
    return Signing("key", key, shown=public_fingerprint(str(key)))


def _load_certificates(path: str, what: str) -> list[Any]:
    return _read_certificates(path, what)[1]


def _read_certificates(path: str, what: str) -> tuple[bytes, list[Any]]:
    """The PEM text of the file at ``path`` and the certificates in it (``what``: how errors
    name the file)."""
    from cryptography import x509

    try:
        pem = Path(path).expanduser().read_bytes()
    except OSError as error:
        raise InputError(f"cannot read the {what} {path!r}: {error.strerror}") from None
    try:
        found = x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise InputError(f"the {what} {path!r} is not a PEM certificate ({error})") from None
    return pem, found


def check_signing_certificate(key: str | None, certificate: str, chain: Sequence[str]) -> Signing:
    """The provider's certificate, its private key and intermediates, checked before any table
    is touched: the certificate is the key's, valid now and allowed to sign (so recipients
    will not refuse it for that), each chain file holds certificates.

    Raises:
        InputError: a file cannot be read or is not what it should be.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import ExtendedKeyUsage, ExtensionNotFound, KeyUsage
    from cryptography.x509.oid import ExtendedKeyUsageOID

    if not key:
        raise InputError(f"the signing certificate {certificate!r} needs its private key (KEY)")
    key_path = check_signing_key(key)
    leaf = _load_certificates(certificate, "signing certificate")[0]
    private = serialization.load_pem_private_key(key_path.read_bytes(), None)
    if leaf.public_key() != private.public_key():
        raise InputError(
            f"the signing certificate {certificate!r} is not for the key {key!r}"
            " (their public keys differ)"
        )
    now = datetime.now(UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise InputError(
            f"the signing certificate {certificate!r} is not valid now (valid from"
            f" {leaf.not_valid_before_utc.isoformat()} to {leaf.not_valid_after_utc.isoformat()}):"
            " recipients would refuse the table"
        )
    with contextlib.suppress(ExtensionNotFound):
        if not leaf.extensions.get_extension_for_class(KeyUsage).value.digital_signature:
            raise InputError(
                f"the signing certificate {certificate!r} does not allow digital signatures"
                " (key usage)"
            )
    with contextlib.suppress(ExtensionNotFound):
        usages = set(leaf.extensions.get_extension_for_class(ExtendedKeyUsage).value)
        signing = {ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
        if not usages & signing:
            raise InputError(
                f"the signing certificate {certificate!r} is not for code signing"
                " (extended key usage)"
            )
    chain_paths = []
    for path in chain:
        _load_certificates(path, "certificate chain file")
        chain_paths.append(Path(path).expanduser())
    subject, issuer = mf.describe_name(leaf.subject), mf.describe_name(leaf.issuer)
    return Signing(
        "certificate",
        key_path,
        Path(certificate).expanduser(),
        tuple(chain_paths),
        shown=f"certificate {subject} (issuer {issuer})",
    )


#: where an explicit Sigstore identity token is read from (sigstore-python's variable)
SIGSTORE_TOKEN_VARIABLE = "SIGSTORE_ID_TOKEN"


def check_sigstore() -> Signing:
    """A Sigstore keyless signer: the OIDC identity is ``SIGSTORE_ID_TOKEN``, else ambient
    credentials (CI workload identity); arcuate never starts the interactive browser flow.
    Made before any table is touched (it reaches Sigstore: offline, it fails here).

    Raises:
        InputError: the sign extra is missing, no identity token was found, or Sigstore cannot
            be reached.
    """
    import importlib.util

    if importlib.util.find_spec("model_signing") is None:
        raise InputError("signing needs the sign extra: pip install 'arcuate[sign]'")
    token = os.environ.get(SIGSTORE_TOKEN_VARIABLE) or None
    if token is None:
        from sigstore.oidc import IdentityError, detect_credential

        try:
            token = detect_credential()
        except IdentityError as error:
            raise InputError(f"SIGNED BY SIGSTORE: ambient credentials failed ({error})") from None
    if not token:
        raise InputError(
            f"SIGNED BY SIGSTORE needs an OIDC identity token: set {SIGSTORE_TOKEN_VARIABLE}, or"
            " run where ambient credentials are found (GitHub Actions, GitLab CI, Google Cloud,"
            " Buildkite, CircleCI); arcuate does not start a browser sign-in. Nothing was written"
        )
    from arcuate.backends.signer import sigstore_signer

    return Signing("sigstore", sigstore=sigstore_signer(token), shown="sigstore (keyless)")


def _text_time(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def batch_digests(
    batch: pa.RecordBatch,
    first: int,
    content: Content,
    models: list[_ModelDirs] | None = None,
) -> Iterator[tuple[str, str, str]]:
    """(resource, digest, exported_at) of each record row of ``batch``, as the recipient will
    compute them: the same conversion to Python values and the same validation. ``models``,
    if given, is told each record's model directories (what a ``model.sig`` signs)."""
    if batch.num_rows == 0:
        return
    records = batch.filter(pc.not_equal(batch.column("kind"), CHUNK))  # chunks: by FILE.sha256
    reader = Spool(Path(), content, create=False)
    for offset, row in enumerate(reader.python_rows(records, first)):
        kind = row.get("kind")
        if kind in mf.UNSIGNED_KINDS:
            continue
        at = _text_time(row.get("exported_at"))
        if kind not in mf.VALIDATED_KINDS:  # prompt versions, scorers, eval records, traces
            yield mf.record_resource(row), mf.row_digest(row), at
            continue
        item = v.parse_row(row, first + offset, content)
        if isinstance(item, v.SharedRecord):
            yield mf.record_resource(row), mf.shared_digest(item, at), at
            if models is not None:
                dirs = mf.model_directories(
                    item.kind, ((f.owner, f.path, f.sha256) for f in item.files)
                )
                if dirs:
                    models.append(_ModelDirs(item.key, _model_name(item), row["exported_at"], dirs))


def signed(
    batches: Iterator[pa.RecordBatch | ChunkedFile],
    content: Content,
    key: Path | Signing,
    table: str,
) -> Iterator[pa.RecordBatch | ChunkedFile]:
    """``batches`` passed on, digested on the way, then the signature row (same commit)."""
    from arcuate.backends.signer import sign_resources

    how = key if isinstance(key, Signing) else Signing("key", key)
    digests: dict[str, str] = {}
    times: set[str] = set()
    first = 0

    def digest(batch: pa.RecordBatch, models: list[_ModelDirs] | None = None) -> None:
        nonlocal first
        for resource, value, at in batch_digests(batch, first, content, models):
            if resource in digests:
                raise InputError(f"cannot sign the table: two rows are {resource!r}")
            digests[resource] = value
            times.add(at)
        first += batch.num_rows

    for item in batches:
        models: list[_ModelDirs] = []
        if isinstance(item, pa.RecordBatch):
            digest(item, models)
        yield item
        del item
        if models:  # each model directory's model.sig, in rows of the same commit
            extra = model_signature_batch(models, how)
            digest(extra)
            yield extra
    if len(times) > 1:
        raise InputError("the exported rows carry more than one exported_at: cannot sign them")
    at = times.pop() if times else datetime.now().astimezone().isoformat()
    when = datetime.fromisoformat(at)
    sequence = int(when.timestamp() * 1_000_000)
    claim = mf.table_claim(table, sequence, uuid.uuid4().hex, at)
    digests[mf.TABLE_RESOURCE] = hashlib.sha256(claim).hexdigest()
    bundle = sign_resources(
        digests, how.key, table, certificate=how.certificate, chain=how.chain,
        sigstore=how.sigstore,
    )  # fmt: skip
    yield signature_batch(bundle, claim, when)


@dataclass(frozen=True)
class _ModelDirs:
    """A record's model directories: owner -> (path -> sha256), as its model.sig signs them."""

    key: str
    name: str
    exported_at: Any
    dirs: dict[str, dict[str, str]]


def _model_name(record: v.SharedRecord) -> str:
    """The informational model name a ``model.sig`` carries."""
    if record.model_version is not None:
        return f"{record.model_version['name']} version {record.key}"
    return f"run {record.key}"


def model_signature_batch(models: list[_ModelDirs], how: Signing) -> pa.RecordBatch:
    """One ``model_signature`` row per record with model directories: a ``model.sig`` for
    each, signed as the table is, the bundle ``model_signing verify key`` (``verify
    certificate``) checks the imported directory with."""
    from arcuate.backends.signer import sign_model_files

    rows = []
    for record in models:
        files = []
        for owner, paths in sorted(record.dirs.items()):
            name = owner.removeprefix(OWNER_LOGGED_MODEL_PREFIX) if owner != OWNER_MODEL else ""
            bundle = sign_model_files(
                paths, name or record.name, mf.MODEL_SIG_IGNORED, private_key=how.key,
                certificate=how.certificate, chain=how.chain, sigstore=how.sigstore,
            )  # fmt: skip
            files.append(dict(_file(mf.MODEL_SIG_PATH, bundle), owner=owner))
        if sum(len(f["data"]) for f in files) > mf.MAX_BUNDLE_BYTES:
            raise InputError(
                f"cannot sign the model directories of record {record.key!r}: their model.sig "
                f"files exceed {mf.MAX_BUNDLE_BYTES} bytes"
            )
        rows.append(
            {
                "format_version": FORMAT_VERSION,
                "kind": mf.MODEL_SIGNATURE_KIND,
                "key": record.key,
                "exported_at": record.exported_at,
                "files": files,
            }
        )
    return pa.RecordBatch.from_pylist(rows, schema=SCHEMA)


def _file(path: str, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    return {"owner": mf.SIGNATURE_OWNER, "path": path, "size": len(data), "sha256": digest,
            "data": data, "chunks": 0}  # fmt: skip


def signature_batch(bundle: bytes, claim: bytes, exported_at: datetime) -> pa.RecordBatch:
    """The one row that carries a table's signature: the bundle and the claim as its files."""
    row = {
        "format_version": FORMAT_VERSION,
        "kind": mf.SIGNATURE_KIND,
        "key": mf.SIGNATURE_KEY,
        "exported_at": exported_at,
        "files": [_file(mf.BUNDLE_PATH, bundle), _file(mf.CLAIM_PATH, claim)],
    }
    return pa.RecordBatch.from_pylist([row], schema=SCHEMA)


# -- recipient --------------------------------------------------------------------------------


def shared_name(coordinate: str) -> str | None:
    """``share.schema.table`` of a coordinate (``profile#share.schema.table``), else None."""
    if "#" not in coordinate:
        return None
    return coordinate.rsplit("#", 1)[1]


def read_key(path: str) -> bytes:
    """The pinned public key (PEM), or a certificate's key: ``VERIFIED BY '<file>'``.

    Raises:
        InputError: no such file, or neither a PEM public key nor a PEM certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        pem = Path(path).expanduser().read_bytes()
    except OSError as error:
        raise InputError(f"cannot read the verification key {path!r}: {error.strerror}") from None
    if b"BEGIN CERTIFICATE" in pem:
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError as error:
            raise InputError(f"{path!r} is not a PEM certificate ({error})") from None
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if b"BEGIN PUBLIC KEY" not in pem:
        raise InputError(f"{path!r} is not a PEM public key or certificate")
    return pem


@dataclass(frozen=True)
class Pin:
    """What a recipient pins: a public key (PEM), or CA certificates (``VERIFIED BY CA``)."""

    pem: bytes
    #: the pinned CA certificates (cryptography objects); empty for a key pin
    roots: tuple[Any, ...] = ()

    @property
    def ca(self) -> bool:
        return bool(self.roots)


def read_ca(path: str) -> Pin:
    """The pinned CA certificate(s) of ``VERIFIED BY CA '<file>'`` (one PEM file, one or more
    certificates, each a CA).

    Raises:
        InputError: no such file, no PEM certificate in it, or a certificate that is not a CA.
    """
    from cryptography import x509

    pem, roots = _read_certificates(path, "CA certificate")
    for root in roots:
        try:
            is_ca = root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise InputError(
                f"{path!r} holds a certificate that is not a CA ({mf.describe_name(root.subject)}"
                " has no basicConstraints CA:TRUE); to pin a signer's own certificate, use"
                " VERIFIED BY '<certificate>'"
            )
    return Pin(pem, tuple(roots))


@dataclass(frozen=True)
class Verified:
    """What a verified table was: its signer, shared name and export sequence."""

    #: the replay state's name for the signer: a key fingerprint, or the CA and the subject
    signer: str
    table: str
    sequence: int
    exported_at: str
    #: how the import's summary names the signer
    shown: str = ""


def verify(
    sig: Carried | None,
    digests: dict[str, str],
    times: set[str],
    key_pem: bytes | Pin,
    coordinate: str,
) -> Verified:
    """Refuse a table that is unsigned, signed by another key, not this table or export, a
    replay of an older export, or whose records differ from the signed ones.

    Raises:
        ShareDataError: (ARC620) what failed; nothing has been written.
    """
    if sig is None:
        raise ShareDataError(
            "the table is not signed (no signature row), and this import requires a signature"
            " (VERIFIED BY, require_signature); nothing was written",
            field="signature",
            code=mf.CODE,
        )
    pin = key_pem if isinstance(key_pem, Pin) else Pin(key_pem)
    if pin.ca:
        resources, who = mf.verify_certificate_bundle(sig.bundle, list(pin.roots), _claimed(sig))
        signer = f"ca {who.anchor_sha256} {who.subject}"
        shown = f"certificate {who.subject}, issuer {who.issuer}, CA {who.anchor}"
    else:
        resources = mf.verify_key_bundle(sig.bundle, pin.pem)
        signer = mf.key_fingerprint(pin.pem)
        shown = f"key {signer[:16]}"
    table = shared_name(coordinate)
    mf.check_claim(resources, sig.claim, table, None)  # the signed claim, of this table
    claimed = json.loads(sig.claim)
    name = str(claimed["table"])
    sequence = mf.check_claim(resources, sig.claim, table, ReplayState().last(signer, name))
    at = str(claimed.get("exported_at", ""))
    other = sorted(times - {at})
    if other:
        raise ShareDataError(
            f"the signature is for the export of {at}, but rows were exported at {other[0]}"
            " (a manifest for another table version)",
            field="signature",
            code=mf.CODE,
        )
    mf.check_resources({k: d for k, d in resources.items() if k != mf.TABLE_RESOURCE}, digests)
    return Verified(signer, name, sequence, at, shown)


def _claimed(sig: Carried) -> datetime:
    """The export time the claim states: the time a certificate chain is checked at (offline
    there is no trusted timestamp; the claim is covered by the signature, checked next)."""
    try:
        at = datetime.fromisoformat(str(json.loads(sig.claim)["exported_at"]))
    except (ValueError, KeyError, TypeError) as error:
        raise ShareDataError(
            f"the table claim has no usable export time ({error}): a certificate's validity"
            " cannot be checked",
            field="signature",
            code=mf.CODE,
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


# -- replay state -----------------------------------------------------------------------------


class ReplayState:
    """The highest export sequence imported per signer key and shared table.

    Kept per user (``$XDG_STATE_HOME/arcuate/signed-tables.json``), not on the import's
    target: a replay is an attack on the recipient, whichever model or experiment it then
    writes to, and a tag on the target would be editable by anyone who can write it.
    """

    def __init__(self) -> None:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "state"
        )
        self.path = Path(base) / "arcuate" / "signed-tables.json"

    def _load(self) -> dict[str, int]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise ConfigurationError(
                f"the signed-table state {self.path} cannot be read ({error}); it guards "
                "against replayed exports, so fix or remove it knowingly"
            ) from None
        return {str(k): int(n) for k, n in doc.items()} if isinstance(doc, dict) else {}

    @staticmethod
    def _key(signer: str, table: str) -> str:
        return f"{signer} {table.lower()}"

    def last(self, signer: str, table: str) -> int | None:
        """The highest sequence imported from ``table`` signed by ``signer``, if any."""
        return self._load().get(self._key(signer, table))

    def record(self, seen: Verified) -> None:
        """Remember an imported export (after its import succeeded); written atomically."""
        state = self._load()
        key = self._key(seen.signer, seen.table)
        state[key] = max(seen.sequence, state.get(key, seen.sequence))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".signed-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(state, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


# -- the import's policy ----------------------------------------------------------------------


def pinned_key(verify_key: str | None, required: bool, ca: bool = False) -> Pin | None:
    """What an import verifies with: ``VERIFIED BY``'s key (or, ``ca``, its CA certificates);
    none needed unless ``required``.

    Raises:
        ConfigurationError: ``require_signature`` is on and no key is named.
        InputError: the named key or CA cannot be read.
    """
    if verify_key:
        return read_ca(verify_key) if ca else Pin(read_key(verify_key))
    if required:
        raise ConfigurationError(
            "require_signature is on: name the provider's key with VERIFIED BY"
            " '<public key or certificate>'; nothing was written"
        )
    return None


def check_spool(spool: Any, key: Pin | bytes | None, source: str) -> Verified | None:
    """Verify an ingested spool's signature with ``key`` (None: the import does not verify)."""
    if key is None:
        return None
    return verify(spool.signature, spool.digests or {}, spool.exported_at, key, source)


def signature_note(seen: Verified | None) -> dict[str, Any]:
    """What an import's summary says of the signature it verified (and remembers it)."""
    if seen is None:
        return {}
    shown = seen.shown or f"key {seen.signer[:16]}"
    out = {"signature": f"verified ({shown}, export {seen.exported_at})"}
    try:
        ReplayState().record(seen)
    except (OSError, ConfigurationError) as error:  # the import is done: say so, do not fail
        out["replay_state"] = f"not recorded ({error}): a replay of an older export goes unseen"
    return out


def public_fingerprint(private_key: str) -> str:
    """The fingerprint recipients see for a provider's private key (of its public PEM)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(Path(private_key).expanduser().read_bytes(), None)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return mf.key_fingerprint(pem)
