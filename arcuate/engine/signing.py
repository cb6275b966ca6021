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

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

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
    batches: Iterator[pa.RecordBatch | ChunkedFile], content: Content, key: Path, table: str
) -> Iterator[pa.RecordBatch | ChunkedFile]:
    """``batches`` passed on, digested on the way, then the signature row (same commit)."""
    from arcuate.backends.signer import sign_resources

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
            extra = model_signature_batch(models, key)
            digest(extra)
            yield extra
    if len(times) > 1:
        raise InputError("the exported rows carry more than one exported_at: cannot sign them")
    at = times.pop() if times else datetime.now().astimezone().isoformat()
    when = datetime.fromisoformat(at)
    sequence = int(when.timestamp() * 1_000_000)
    claim = mf.table_claim(table, sequence, uuid.uuid4().hex, at)
    digests[mf.TABLE_RESOURCE] = hashlib.sha256(claim).hexdigest()
    bundle = sign_resources(digests, key, table)
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


def model_signature_batch(models: list[_ModelDirs], key: Path) -> pa.RecordBatch:
    """One ``model_signature`` row per record with model directories: a ``model.sig`` for
    each, the bundle ``model_signing verify key`` checks the imported directory with."""
    from arcuate.backends.signer import sign_model_files

    rows = []
    for record in models:
        files = []
        for owner, paths in sorted(record.dirs.items()):
            name = owner.removeprefix(OWNER_LOGGED_MODEL_PREFIX) if owner != OWNER_MODEL else ""
            bundle = sign_model_files(paths, key, name or record.name, mf.MODEL_SIG_IGNORED)
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
class Verified:
    """What a verified table was: its signer, shared name and export sequence."""

    signer: str
    table: str
    sequence: int
    exported_at: str


def verify(
    sig: Carried | None,
    digests: dict[str, str],
    times: set[str],
    key_pem: bytes,
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
    resources = mf.verify_key_bundle(sig.bundle, key_pem)
    signer = mf.key_fingerprint(key_pem)
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
    return Verified(signer, name, sequence, at)


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


def pinned_key(verify_key: str | None, required: bool) -> bytes | None:
    """The key an import verifies with: ``VERIFIED BY``'s; none needed unless ``required``.

    Raises:
        ConfigurationError: ``require_signature`` is on and no key is named.
        InputError: the named key cannot be read.
    """
    if verify_key:
        return read_key(verify_key)
    if required:
        raise ConfigurationError(
            "require_signature is on: name the provider's key with VERIFIED BY"
            " '<public key or certificate>'; nothing was written"
        )
    return None


def check_spool(spool: Any, key: bytes | None, source: str) -> Verified | None:
    """Verify an ingested spool's signature with ``key`` (None: the import does not verify)."""
    if key is None:
        return None
    return verify(spool.signature, spool.digests or {}, spool.exported_at, key, source)


def signature_note(seen: Verified | None) -> dict[str, Any]:
    """What an import's summary says of the signature it verified (and remembers it)."""
    if seen is None:
        return {}
    out = {"signature": f"verified (key {seen.signer[:16]}, export {seen.exported_at})"}
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
