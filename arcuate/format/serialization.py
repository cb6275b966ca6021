"""Serialization formats of model files, told from their bytes, never from their names.

A model's files decide what loading it will execute: a pickle (and cloudpickle, joblib, a
``torch.save`` archive, a NumPy object array) runs code chosen by whoever wrote it, while
safetensors, ONNX, skops and plain data do not. Names prove nothing (a pickle renamed
``.json``; ``python_model.pkl.gz`` slipped past ModelScan because it was gzip-compressed), so
:func:`classify` reads content: magic numbers, the first fields of a header, a parse of the
first pickle opcodes, and the members of zip archives and gzip/bz2/xz/zlib/lzma streams.

Every file is hostile. A file may be gigabytes: only bounded pieces are read (:class:`Bounds`),
decompression never produces more than is asked for (a zip or gzip bomb costs nothing),
nesting (a zip in a gzip in a zip …) stops at a depth, and anything truncated, corrupt or
beyond a bound is ``unknown`` with the reason, never an exception.

Nothing is ever unpickled, imported or executed: pickles are *parsed* with
:func:`pickletools.genops` only (see :func:`_scan_pickle`). This module imports only the
standard library (``pickletools`` itself imports ``pickle``, for constants, and never calls
its unpickler).
"""

from __future__ import annotations

import ast
import bz2
import codecs
import io
import itertools
import json
import lzma
import os
import pickletools
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Final, Protocol

#: Formats whose loading unpickles (pickle opcodes run on load).
PICKLE_FORMATS: Final = frozenset(
    {"pickle", "cloudpickle", "joblib", "pytorch", "torchscript", "npy-object", "npz-object"}
)
#: Every format name :func:`classify` answers.
FORMATS: Final = PICKLE_FORMATS | frozenset(
    {"skops", "safetensors", "onnx", "npy", "npz", "zip", "hdf5", "data", "binary", "unknown"}
)


@dataclass(frozen=True, slots=True)
class Detection:
    """What a file's bytes are.

    ``format`` is one of :data:`FORMATS`; ``pickle_family`` says whether loading it unpickles.
    ``unknown`` means undecided (truncated, corrupt, beyond a bound: ``evidence`` says which),
    ``binary`` means recognised as none of the formats and not a pickle. ``layers`` are the
    containers around the call, outermost first (``gzip``, ``zip``); ``members`` the archive
    members that made it; ``globals`` the ``module.name`` globals a pickle names.
    """

    format: str
    pickle_family: bool
    evidence: str
    members: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    globals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much of one file :func:`classify` may read, decompress, open and nest."""

    head_bytes: int = 16 * 1024  # first bytes sniffed for magic numbers and text
    header_bytes: int = 1024 * 1024  # npy / safetensors header parsed in full
    pickle_scan_bytes: int = 1024 * 1024  # pickle opcodes parsed, from the start
    pickle_scan_ops: int = 100_000
    layer_bytes: int = 4 * 1024 * 1024  # decompressed bytes kept of one stream or member
    total_bytes: int = 256 * 1024 * 1024  # read plus decompressed, for the whole file
    depth: int = 4  # containers inside containers
    zip_members: int = 10_000  # members a zip may list
    zip_directory_bytes: int = 4 * 1024 * 1024
    inspected_members: int = 4096
    globals_kept: int = 64


DEFAULT_BOUNDS: Final = Bounds()


class _Undecided(Exception):
    """A bound, a truncation or corrupt bytes: the answer is ``unknown`` with this reason."""


def classify(
    name: str,
    source: bytes | BinaryIO,
    *,
    size: int | None = None,
    bounds: Bounds = DEFAULT_BOUNDS,
) -> Detection:
    """The serialization format of a file, from its content.

    Args:
        name: the file's path; used in the evidence only, never to decide.
        source: the file's bytes (all of them, or a prefix when ``size`` says the file is
            longer), or a binary file object read from position 0 (seekable: read in bounded
            pieces; not seekable: at most ``bounds.layer_bytes`` are read).
        size: the file's full size, when ``source`` is a prefix.
        bounds: the reading bounds.

    Returns:
        The detection; ``unknown`` (never an exception) for what cannot be decided.
    """
    budget = _Budget(bounds)
    try:
        found = _classify_blob(_open_source(source, size, budget), budget, 0)
    except _Undecided as undecided:
        found = Detection("unknown", False, str(undecided))
    except (Exception, RecursionError) as error:  # hostile bytes must never crash a caller
        found = Detection("unknown", False, f"detector stopped: {type(error).__name__}")
    return _note_name(name, found)


def classify_path(path: str | os.PathLike[str], *, bounds: Bounds = DEFAULT_BOUNDS) -> Detection:
    """:func:`classify` for a local file, read in bounded pieces."""
    with open(path, "rb") as stream:
        return classify(os.fspath(path), stream, bounds=bounds)


# -- reading: bounded views of a file, of a decompressed stream, of a zip member ----------------


class _Budget:
    """Bytes left to read or decompress for one file (a hostile file cannot make us spin)."""

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self.left = bounds.total_bytes

    def charge(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise _Undecided(f"read budget of {self.bounds.total_bytes} bytes used up")


class _Blob:
    """A file's bytes: in memory (maybe a prefix), a seekable stream, or a lazy stream."""

    def __init__(
        self,
        budget: _Budget,
        *,
        data: bytes = b"",
        whole: bool = True,
        stream: BinaryIO | None = None,
        size: int | None = None,
        reader: Callable[[int], bytes] | None = None,
    ) -> None:
        self.budget = budget
        self.data = bytearray(data) if reader else data
        self.whole = whole  # ``data`` (or the lazy reader) reaches the file's end
        self.stream = stream
        self.size = size
        self.reader = reader
        self.eof = reader is None

    def read(self, offset: int, count: int) -> bytes:
        """Up to ``count`` bytes at ``offset`` (fewer at the end of what can be read)."""
        if self.stream is not None:
            self.stream.seek(offset)
            piece = self.stream.read(max(0, min(count, (self.size or 0) - offset)))
            self.budget.charge(len(piece))
            return bytes(piece)
        if self.reader is not None:
            self._fill(offset + count)
        return bytes(self.data[offset : offset + count])

    def _fill(self, upto: int) -> None:
        assert self.reader is not None and isinstance(self.data, bytearray)
        upto = min(upto, self.budget.bounds.layer_bytes)
        while not self.eof and len(self.data) < upto:
            piece = self.reader(upto - len(self.data))
            self.budget.charge(len(piece))
            self.data += piece
            self.eof = not piece

    def at_end(self, offset: int) -> bool:
        """Whether the file (not only our view of it) ends at or before ``offset``."""
        if self.stream is not None:
            return offset >= (self.size or 0)
        if self.reader is not None:
            self._fill(offset + 1)
            return self.eof and offset >= len(self.data)
        return self.whole and offset >= len(self.data)

    def file(self) -> BinaryIO | None:
        """The whole file, seekable, when it is all within reach (zip needs its end)."""
        if self.stream is not None:
            return self.stream
        if self.reader is not None:
            self._fill(self.budget.bounds.layer_bytes)
            return io.BytesIO(bytes(self.data)) if self.eof else None
        return io.BytesIO(self.data) if self.whole else None


def _open_source(source: bytes | BinaryIO, size: int | None, budget: _Budget) -> _Blob:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return _Blob(budget, data=data, whole=size is None or size <= len(data), size=size)
    if source.seekable():
        end = source.seek(0, io.SEEK_END)
        return _Blob(budget, stream=source, size=end)
    limit = budget.bounds.layer_bytes
    data = source.read(limit + 1)
    budget.charge(len(data))
    return _Blob(budget, data=data[:limit], whole=len(data) <= limit)


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Inflate:
    """Decompress a byte range of a blob, never producing more than asked for.

    ``max_length`` is what keeps a bomb harmless: zipfile's own reader decompresses bzip2 and
    LZMA members without it (CPython 3.11 ``ZipExtFile._read1``), so members go through here.
    """

    def __init__(self, blob: _Blob, start: int, end: int | None, method: str) -> None:
        self.blob, self.pos, self.end, self.method = blob, start, end, method
        self.zlib_like = method in ("gzip", "zlib", "deflate")
        self.pending = b""  # input read but not yet taken by the decoder
        self.decoder: _Decompressor | None = None
        if method not in ("stored", "zip-lzma"):
            self.decoder = _decoder(method)

    def _input(self) -> bytes:
        count = 64 * 1024 if self.end is None else min(64 * 1024, self.end - self.pos)
        piece = self.blob.read(self.pos, max(0, count))
        self.pos += len(piece)
        return piece

    def __call__(self, count: int) -> bytes:
        if self.method == "stored":
            end = self.pos + count if self.end is None else min(self.end, self.pos + count)
            piece = self.blob.read(self.pos, max(0, end - self.pos))
            self.pos += len(piece)
            return piece
        if self.decoder is None:
            self.decoder, self.pending = _zip_lzma_decoder(self._input())
        out, stalls = bytearray(), 0
        while len(out) < count and not self.decoder.eof and stalls < 3:
            produced = self._step(count - len(out))
            if produced is None:
                break  # the input ended before the stream did: truncated
            stalls = 0 if produced else stalls + 1
            out += produced
        return bytes(out)

    def _step(self, want: int) -> bytes | None:
        assert self.decoder is not None
        data, self.pending = self.pending, b""
        if not data and (self.zlib_like or getattr(self.decoder, "needs_input", True)):
            data = self._input()
            if not data:
                return None
        try:
            produced = self.decoder.decompress(data, want)
        except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as error:
            raise _Undecided(f"{self.method} stream corrupt near byte {self.pos}") from error
        if self.zlib_like:
            self.pending = getattr(self.decoder, "unconsumed_tail", b"")
        return produced


def _decoder(method: str) -> _Decompressor:
    if method in ("gzip", "zlib", "deflate"):
        wbits = {"gzip": 16 + zlib.MAX_WBITS, "zlib": zlib.MAX_WBITS, "deflate": -zlib.MAX_WBITS}
        return zlib.decompressobj(wbits[method])  # type: ignore[return-value]
    if method == "bz2":
        return bz2.BZ2Decompressor()
    kind = {"xz": lzma.FORMAT_XZ, "lzma": lzma.FORMAT_ALONE}[method]
    return lzma.LZMADecompressor(kind)


def _zip_lzma_decoder(head: bytes) -> tuple[_Decompressor, bytes]:
    """Zip's LZMA: a 4-byte version/size header, 5 property bytes, then raw LZMA1."""
    if len(head) < 9 or head[2:4] != b"\x05\x00" or head[4] >= 225:
        raise _Undecided("zip LZMA member with a bad header")
    lc_lp_pb, dict_size = head[4], struct.unpack("<I", head[5:9])[0]
    filters = [
        {
            "id": lzma.FILTER_LZMA1,
            "dict_size": dict_size,
            "lc": lc_lp_pb % 9,
            "lp": (lc_lp_pb // 9) % 5,
            "pb": lc_lp_pb // 45,
        }
    ]
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters), head[9:]


# -- pickle: the PROTO opcode, or a bounded parse of the first opcodes -------------------------

#: Opcodes that push a string (a STACK_GLOBAL's module and name are the two pushed last).
_STRING_OPS: Final = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"}
    | {"STRING", "BINSTRING", "SHORT_BINSTRING"}
)
_MEMO_PUT_OPS: Final = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_GET_OPS: Final = frozenset({"GET", "BINGET", "LONG_BINGET"})
_NO_PUSH_OPS: Final = frozenset({"PROTO", "FRAME", "STOP"})
#: Every opcode byte (protocols 0 to 5), as pickletools lists them.
_OPCODES: Final = frozenset(op.code for op in pickletools.opcodes)


@dataclass
class _PickleScan:
    """What a parse of a pickle's opcodes saw (it never builds an object)."""

    ops: int = 0
    stopped: bool = False  # a STOP opcode was reached
    proto: int | None = None  # the PROTO opcode's version
    min_proto: int = 0  # the highest protocol an opcode seen needs
    error: str | None = None
    exhausted: bool = False  # the parse ran out of bytes (not into garbage)
    globals: list[str] = field(default_factory=list)
    # just enough of the stack and memo to name STACK_GLOBAL's module and name
    recent: list[str | None] = field(default_factory=list)
    memo: dict[int, str | None] = field(default_factory=dict)

    def push(self, value: str | None) -> None:
        self.recent = [*self.recent[-1:], value]

    def see(self, name: str, arg: Any, keep: int) -> None:
        """Follow one opcode: strings pushed, memo puts and gets, the globals named."""
        top = self.recent[-1] if self.recent else None
        if name in ("GLOBAL", "INST"):
            self._add_global(*str(arg).split(" ", 1), keep=keep)
            self.push(None)
        elif name == "STACK_GLOBAL":
            module, attr = ([None, None, *self.recent])[-2:]
            if isinstance(module, str) and isinstance(attr, str):
                self._add_global(module, attr, keep=keep)
            self.push(None)
        elif name in _STRING_OPS:
            self.push(str(arg))
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = top
        elif name in _MEMO_PUT_OPS:
            self.memo[int(arg)] = top
        elif name in _MEMO_GET_OPS:
            self.push(self.memo.get(int(arg)))
        elif name not in _NO_PUSH_OPS:
            self.push(None)

    def _add_global(self, module: str, attr: str = "", *, keep: int) -> None:
        named = f"{module}.{attr}"[:200]
        if len(self.globals) < keep and named not in self.globals:
            self.globals.append(named)


def _scan_pickle(data: bytes, bounds: Bounds) -> _PickleScan:
    """Parse the opcodes of the pickles at the start of ``data``; never unpickle.

    ``pickletools.genops`` only parses. In CPython's ``Lib/pickletools.py`` (3.11,
    ``_genops``) each step reads one opcode byte, looks it up in ``code2op`` and decodes the
    argument with the opcode's ``ArgumentDescriptor.reader`` (``read_uint1``,
    ``read_stringnl``, ``read_unicodestring4``, ...), functions that only turn bytes into
    ints, floats, bytes and strs; it then yields ``(opcode, arg, pos)``. Nothing calls
    ``find_class``, imports a module, builds an object or calls ``__reduce__``: GLOBAL's
    argument is the text ``"module name"``, REDUCE is a name. Length prefixes cannot make it
    allocate: arguments are read from an in-memory buffer of at most ``pickle_scan_bytes``.
    After a STOP the parse goes on while another pickle follows (legacy ``torch.save`` writes
    several; joblib writes array bytes between opcodes, where the parse ends in an error).
    """
    stream, scan = io.BytesIO(data), _PickleScan()
    try:
        while scan.ops < bounds.pickle_scan_ops:
            scan.stopped = False
            for opcode, arg, _pos in pickletools.genops(stream):
                scan.ops += 1
                scan.min_proto = max(scan.min_proto, opcode.proto)
                if opcode.name == "PROTO" and scan.proto is None:
                    scan.proto = int(arg or 0)
                scan.see(opcode.name, arg, bounds.globals_kept)
                if scan.ops >= bounds.pickle_scan_ops:
                    break
            else:
                scan.stopped = True
            if not (scan.stopped and data[stream.tell() : stream.tell() + 1] == b"\x80"):
                break
    except Exception as error:  # any parse failure ends the parse, and nothing else happens
        scan.error = str(error)[:120]
        scan.exhausted = stream.tell() >= len(data)
    return scan


def _pickle_format(scan: _PickleScan) -> str:
    """The pickler, from the globals it names: cloudpickle's and joblib's helpers, torch's."""
    roots = {named.split(".", 1)[0] for named in scan.globals}
    for root, name in (("cloudpickle", "cloudpickle"), ("joblib", "joblib"), ("torch", "pytorch")):
        if root in roots:
            return name
    return "pickle"


def _pickle_detection(scan: _PickleScan, how: str, truncated: bool) -> Detection:
    shown = ", ".join(scan.globals[:3]) + (" …" if len(scan.globals) > 3 else "")
    parts = [how, f"{scan.ops} opcodes parsed" + (" to STOP" if scan.stopped else "")]
    if truncated:
        parts.append("the file ends before STOP (truncated: earlier opcodes still run on load)")
    elif scan.error and not scan.exhausted:
        parts.append(f"then {scan.error}")
    if shown:
        parts.append(f"globals {shown}")
    return Detection(
        _pickle_format(scan), True, "; ".join(parts), globals=tuple(scan.globals)
    )


def _sniff_proto(head: bytes, blob: _Blob, budget: _Budget, depth: int) -> Detection | None:
    """Protocols 2 to 5 open with PROTO: ``0x80`` and the version."""
    if len(head) < 2 or head[0] != 0x80 or head[1] > 5:
        return None
    data = blob.read(0, budget.bounds.pickle_scan_bytes)
    scan = _scan_pickle(data, budget.bounds)
    truncated = not scan.stopped and scan.exhausted and blob.at_end(len(data))
    how = f"PROTO opcode 0x80 0x{head[1]:02x}: pickle protocol {head[1]}"
    return _pickle_detection(scan, how, truncated)


def _sniff_old_pickle(head: bytes, blob: _Blob, budget: _Budget, depth: int) -> Detection | None:
    """Protocols 0 and 1 have no PROTO: the opcodes must parse to a STOP (or to the bound)."""
    if head[:1].decode("latin-1") not in _OPCODES:
        return None
    data = blob.read(0, budget.bounds.pickle_scan_bytes)
    scan = _scan_pickle(data, budget.bounds)
    file_ends = scan.exhausted and blob.at_end(len(data))
    # Text and binary data fail to parse within a few opcodes; a pickle parses to a STOP, or
    # past many opcodes to the end of the bytes read (a large pickle, or a truncated one).
    if not (scan.stopped or (scan.exhausted and scan.ops >= 8) or scan.ops >= 1000):
        return None
    how = f"opcode parse: pickle protocol {scan.min_proto} (no PROTO opcode)"
    return _pickle_detection(scan, how, file_ends and not scan.stopped)


# -- compressed streams: gzip, bz2, xz, and the zlib and lzma streams joblib writes -------------

#: Magic numbers of compressed streams, as joblib's loader tells them apart
#: (``joblib/compressor.py``): zlib and lzma-alone have weak magics, so their layer counts
#: only when what is inside is recognised.
_STREAMS: Final = (
    (b"\x1f\x8b", "gzip", True),
    (b"BZh", "bz2", True),
    (b"\xfd7zXZ\x00", "xz", True),
    (b"x", "zlib", False),
    (b"]\x00\x00", "lzma", False),
)
#: Streams with no standard-library decoder: their content cannot be seen.
_OPAQUE: Final = ((b"\x04\x22\x4d\x18", "lz4 frame"), (b"\x28\xb5\x2f\xfd", "zstd frame"))


def _sniff_stream(head: bytes, blob: _Blob, budget: _Budget, depth: int) -> Detection | None:
    for magic, method, strong in _STREAMS:
        if not head.startswith(magic):
            continue
        if method == "zlib" and (len(head) < 2 or (head[0] << 8 | head[1]) % 31 or head[1] & 32):
            continue
        if depth >= budget.bounds.depth:
            return _too_deep(method, budget)
        inner = _Blob(budget, reader=_Inflate(blob, 0, None, method))
        try:
            inner.read(0, 1)
        except _Undecided:
            if strong:
                raise
            continue  # not that stream after all
        found = _classify_blob(inner, budget, depth + 1)
        if not strong and found.format in ("binary", "unknown"):
            continue
        return _wrap(found, method)
    for magic, what in _OPAQUE:
        if head.startswith(magic):
            return Detection("unknown", False, f"{what}: no standard-library decoder to look in")
    return None


def _wrap(found: Detection, layer: str, members: tuple[str, ...] = ()) -> Detection:
    return replace(
        found,
        evidence=f"{layer}: {found.evidence}",
        layers=(layer, *found.layers),
        members=members or found.members,
    )


def _too_deep(layer: str, budget: _Budget) -> Detection:
    depth = budget.bounds.depth
    return Detection("unknown", False, f"{layer} nested more than {depth} containers deep")


# -- zip archives: torch.save, TorchScript, npz, skops, or any zip of files --------------------

_ZIP_METHODS: Final = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bz2",
    zipfile.ZIP_LZMA: "zip-lzma",
}


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    name_size: int  # bytes of the name in the local header
    method: int
    data_start: int | None  # None: read the local header at ``header_offset`` first
    header_offset: int
    compress_size: int | None  # None: unknown (a data descriptor follows the data)
    file_size: int | None
    encrypted: bool


def _sniff_zip(head: bytes, blob: _Blob, budget: _Budget, depth: int) -> Detection | None:
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return None
    if depth >= budget.bounds.depth:
        return _too_deep("zip", budget)
    whole = blob.file()
    members = _directory(whole, blob, budget) if whole is not None else None
    note = ""
    walked_all = True
    if members is None:  # a prefix, or no central directory: walk the local headers
        members, walked_all = _local_headers(blob, budget)
        note = "no central directory in reach: members from local headers; "
    found, skops = _inspect(members, blob, budget, depth)
    if not walked_all:
        found.append(("…", Detection("unknown", False, "members past the bytes read not seen")))
    found_zip = _zip_verdict(found, skops, len(members))
    return _wrap(replace(found_zip, evidence=note + found_zip.evidence), "zip")


def _directory(whole: BinaryIO, blob: _Blob, budget: _Budget) -> list[_Member] | None:
    """The central directory (what np.load and torch.load read), after bounding its size."""
    bounds = budget.bounds
    entries, directory_size = _end_record(blob)
    if entries is None:
        return None
    if entries > bounds.zip_members:
        raise _Undecided(f"zip lists {entries} members (bound {bounds.zip_members})")
    if directory_size > bounds.zip_directory_bytes:
        raise _Undecided(f"zip directory of {directory_size} bytes (bound "
                         f"{bounds.zip_directory_bytes})")
    budget.charge(directory_size)
    try:
        infos = zipfile.ZipFile(whole).infolist()
    except (zipfile.BadZipFile, NotImplementedError, OSError, ValueError, EOFError,
            struct.error) as error:
        raise _Undecided(f"zip directory unreadable: {str(error)[:80]}") from error
    if len(infos) > bounds.zip_members:
        raise _Undecided(f"zip lists {len(infos)} members (bound {bounds.zip_members})")
    members = [
        _Member(i.filename, _name_size(i), i.compress_type, None, i.header_offset,
                i.compress_size, i.file_size, bool(i.flag_bits & 1))
        for i in infos
    ]
    _refuse_overlaps(members)
    return members


def _name_size(info: zipfile.ZipInfo) -> int:
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    return len(info.orig_filename.encode(encoding, "replace"))


def _end_record(blob: _Blob) -> tuple[int | None, int]:
    """Member count and directory size from the end record (zip64's when it says so)."""
    size = blob.size if blob.size is not None else len(blob.data)
    tail_start = max(0, size - (22 + 65535 + 20 + 56))
    tail = blob.read(tail_start, size - tail_start)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return None, 0
    entries, directory_size = struct.unpack("<6xHI6x", tail[at + 4 : at + 22])
    if entries == 0xFFFF or directory_size == 0xFFFFFFFF:
        locator = tail[at - 20 : at] if at >= 20 else b""
        if not locator.startswith(b"PK\x06\x07"):
            return None, 0
        record = blob.read(struct.unpack("<4xQ4x", locator[4:])[0], 56)
        if not record.startswith(b"PK\x06\x06") or len(record) < 56:
            return None, 0
        entries, directory_size = struct.unpack("<QQ", record[32:48])
    return int(entries), int(directory_size)


def _refuse_overlaps(members: list[_Member]) -> None:
    """Members whose bytes overlap are a zip-bomb shape (one deflate stream read N times)."""
    ordered = sorted(members, key=lambda m: m.header_offset)
    for first, second in itertools.pairwise(ordered):
        least_end = first.header_offset + 30 + first.name_size + (first.compress_size or 0)
        if least_end > second.header_offset:
            raise _Undecided(
                f"zip members {_show(first.name)} and {_show(second.name)} overlap "
                "(a zip-bomb shape)"
            )


def _local_headers(blob: _Blob, budget: _Budget) -> tuple[list[_Member], bool]:
    """Members from the local headers of a zip whose end we cannot read (a prefix).

    Also whether the walk reached the central directory, i.e. saw every member.
    """
    members: list[_Member] = []
    offset = 0
    while len(members) < budget.bounds.zip_members:
        header = blob.read(offset, 30)
        if header.startswith(b"PK\x01\x02"):
            return members, True
        if len(header) < 30 or not header.startswith(b"PK\x03\x04"):
            break
        flags, method, csize, usize, name_len, extra_len = struct.unpack(
            "<2xHH8xIIHH", header[4:30]
        )
        name = blob.read(offset + 30, name_len).decode("utf-8", "replace")
        start = offset + 30 + name_len + extra_len
        described = bool(flags & 8)  # sizes follow the data: the data's length is unknown
        members.append(_Member(name, name_len, method, start, offset, None if described else csize,
                               None if described else usize, bool(flags & 1)))
        if described:
            break
        offset = start + csize
    return members, False


def _inspect(
    members: list[_Member], blob: _Blob, budget: _Budget, depth: int
) -> tuple[list[tuple[str, Detection]], bool]:
    """Each member classified from its own bytes; and whether it is a skops archive."""
    found: list[tuple[str, Detection]] = []
    skops = False
    files = [m for m in members if not m.name.endswith("/")]
    for member in files[: budget.bounds.inspected_members]:
        try:
            inner = _member_blob(member, blob, budget)
            found.append((member.name, _classify_blob(inner, budget, depth + 1)))
            skops = skops or (member.name == "schema.json" and _skops_schema(inner))
        except _Undecided as undecided:
            found.append((member.name, Detection("unknown", False, str(undecided))))
            if budget.left <= 0:
                break
    if len(found) < len(files):
        left = len(files) - len(found)
        found.append(("…", Detection("unknown", False, f"{left} members not inspected (bound)")))
    return found, skops


def _member_blob(member: _Member, blob: _Blob, budget: _Budget) -> _Blob:
    """A lazy view of one member's uncompressed bytes, located by its local header."""
    if member.encrypted:
        raise _Undecided("encrypted member: its content cannot be seen")
    method = _ZIP_METHODS.get(member.method)
    if method is None:
        raise _Undecided(f"compression method {member.method}: no standard-library decoder")
    start = member.data_start
    if start is None:
        header = blob.read(member.header_offset, 30)
        if len(header) < 30 or not header.startswith(b"PK\x03\x04"):
            raise _Undecided("no local header where the directory points")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = member.header_offset + 30 + name_len + extra_len
    end = None if member.compress_size is None else start + member.compress_size
    return _Blob(budget, reader=_Inflate(blob, start, end, method))


def _skops_schema(member: _Blob) -> bool:
    """skops' ``schema.json`` names, for every object, the skops loader that rebuilds it."""
    head = member.read(0, 4096)
    return head.lstrip().startswith(b"{") and b'"__loader__"' in head and b'"__module__"' in head


#: Which pickle format names a zip when members differ: the most specific first.
_PICKLE_RANK: Final = (
    "cloudpickle", "joblib", "pytorch", "torchscript", "pickle", "npz-object", "npy-object"
)


def _zip_verdict(found: list[tuple[str, Detection]], skops: bool, listed: int) -> Detection:
    pickled = [(name, d) for name, d in found if d.pickle_family]
    if pickled:
        return _zip_pickle(pickled, found)
    undecided = [(name, d) for name, d in found if d.format == "unknown"]
    if undecided:
        name, first = undecided[0]
        more = f" (and {len(undecided) - 1} more)" if len(undecided) > 1 else ""
        evidence = f"member {_show(name)}: {first.evidence}{more}"
        return replace(first, evidence=evidence, members=(_member_path(name, first),))
    if found and all(d.format == "npy" for _, d in found):
        return Detection("npz", False, f"{_count(len(found), 'member')}, all .npy arrays "
                         "without objects")
    if skops:
        return Detection("skops", False, "skops archive: schema.json names skops loaders; "
                         "no pickle member", members=("schema.json",))
    counts = Counter(d.format for _, d in found)
    summary = ", ".join(f"{fmt} ×{n}" for fmt, n in counts.most_common(4))
    return Detection("zip", False, f"{_count(listed, 'member')}, none pickle-family ({summary})")


def _zip_pickle(
    pickled: list[tuple[str, Detection]], found: list[tuple[str, Detection]]
) -> Detection:
    """torch.save (``data.pkl``), TorchScript (``constants.pkl``, ``code/``), npz, or any."""
    shown = tuple(_member_path(name, d) for name, d in pickled[:8])
    bases = {name.rsplit("/", 1)[-1] for name, _ in pickled}
    code = [name for name, _ in found if "/code/" in f"/{name}"]
    if "constants.pkl" in bases or (code and "data.pkl" in bases):
        return Detection("torchscript", True, f"TorchScript archive: pickle members "
                         f"{', '.join(map(_show, shown[:3]))} and {len(code)} code/ files",
                         members=shown)
    if "data.pkl" in bases:
        name, d = next((n, d) for n, d in pickled if n.rsplit("/", 1)[-1] == "data.pkl")
        return Detection("pytorch", True, f"torch.save archive: {_show(name)} is {d.evidence}",
                         members=shown, globals=d.globals)
    if all(d.format in ("npy", "npy-object") for _, d in found):
        return Detection("npz-object", True, f"npz with object arrays (pickled on save): "
                         f"{', '.join(map(_show, shown[:3]))}", members=shown)
    name, best = min(pickled, key=lambda item: _rank(item[1].format))
    return replace(best, evidence=f"member {_show(name)}: {best.evidence}", members=shown)


def _rank(fmt: str) -> int:
    return _PICKLE_RANK.index(fmt) if fmt in _PICKLE_RANK else len(_PICKLE_RANK)


def _member_path(name: str, found: Detection) -> str:
    return f"{name}!{found.members[0]}" if found.members else name


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _show(text: str, limit: int = 80) -> str:
    """A hostile name, quoted, control characters escaped, cut to ``limit`` characters."""
    shown = repr(text[:limit])
    return shown if len(text) <= limit else shown[:-1] + "…" + shown[-1]


# -- headers: npy, safetensors, ONNX ------------------------------------------------------------


def _sniff_npy(head: bytes, blob: _Blob, budget: _Budget, depth: int) -> Detection | None:
    """``\\x93NUMPY``, a version, a header length, then a dict literal naming the dtype."""
    if not head.startswith(b"\x93NUMPY"):
        return None
    major = head[6] if len(head) > 6 else 0
    if major not in (1, 2, 3) or len(head) < (10 if major == 1 else 12):
        raise _Undecided(f"npy version {major} or a truncated header")
    length, start = (
        (struct.unpack("<H", head[8:10])[0], 10)
        if major == 1
        else (struct.unpack("<I", head[8:12])[0], 12)
    )
    if length > budget.bounds.header_bytes:
        raise _Undecided(f"npy header of {length} bytes (bound {budget.bounds.header_bytes})")
    raw = blob.read(start, length)
    if len(raw) < length:
        raise _Undecided("npy header truncated")
    try:  # numpy reads this header with ast.literal_eval too (numpy.lib.format)
        header = ast.literal_eval(raw.decode("utf-8" if major == 3 else "latin-1"))
        descr = header["descr"]
    except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError) as error:
        raise _Undecided("npy header is not a dict literal with 'descr'") from error
    objects = _has_object(descr, 0)
    if objects is None:
        raise _Undecided(f"npy dtype {_show(str(descr), 60)} not understood")
    if objects:
        return Detection("npy-object", True, f"npy v{major}, dtype {_show(str(descr), 60)} "
                         "holds Python objects: the array data is a pickle")
    return Detection("npy", False, f"npy v{major}, dtype {_show(str(descr), 60)}")


def _has_object(descr: object, depth: int) -> bool | None:
    """Whether a numpy ``descr`` has an object field (``'|O'``); None when not understood."""
    if depth > 32:
        return None
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, list):
        answers = [
            _has_object(item[1], depth + 1) if isinstance(item, tuple) and len(item) >= 2 else None
            for item in descr
        ]
        return None if None in answers else any(answers)
    return None


#: safetensors' own bound on its JSON header (safetensors/src/tensor.rs, MAX_HEADER_SIZE).
_SAFETENSORS_MAX_HEADER: Final = 100_000_000


def _sniff_safetensors(head: bytes, blob: _Blob, budget: _Budget, depth: int) -> Detection | None:
    """An 8-byte little-endian header length, then that many bytes of JSON."""
    if len(head) < 10 or head[8:9] != b"{":
        return None
    length = struct.unpack("<Q", head[:8])[0]
    if not 2 <= length <= _SAFETENSORS_MAX_HEADER:
        return None
    if blob.size is not None and 8 + length > blob.size:
        raise _Undecided(f"safetensors header of {length} bytes runs past the file's end")
    if length > budget.bounds.header_bytes:
        if b'"dtype"' in head and b'"data_offsets"' in head:
            return Detection("safetensors", False, f"safetensors: JSON header of {length} "
                             "bytes, tensor entries in its first bytes")
        return None
    raw = blob.read(8, length)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if len(raw) < length or not isinstance(header, dict) or not all(
        _tensor_entry(key, value) for key, value in header.items()
    ):
        return None
    tensors = len(header) - ("__metadata__" in header)
    return Detection("safetensors", False, f"safetensors: {length}-byte JSON header, "
                     f"{_count(tensors, 'tensor')}")


def _tensor_entry(key: str, value: object) -> bool:
    if key == "__metadata__":
        return isinstance(value, dict)
    return (
        isinstance(value, dict)
        and isinstance(value.get("dtype"), str)
        and isinstance(value.get("shape"), list)
        and isinstance(value.get("data_offsets"), list)
        and len(value["data_offsets"]) == 2
    )


#: ModelProto's fields (onnx/onnx.proto) and their wire types (0 varint, 2 length-delimited).
_ONNX_FIELDS: Final = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_ONNX_TEXT: Final = {2: "producer", 3: "producer version", 4: "domain"}


def _sniff_onnx(head: bytes, blob: _Blob, budget: _Budget, depth: int) -> Detection | None:
    """A protobuf ModelProto: ``ir_version`` (field 1) first, then fields up to the graph.

    Writers serialize fields in number order, so ``ir_version`` comes first and the short
    producer strings before ``graph`` (7) or ``opset_import`` (8). Only ModelProto's own fields
    with their own wire types are accepted; nothing inside the graph is read.
    """
    if not head.startswith(b"\x08"):
        return None
    pos, notes = 0, []
    try:
        while pos < len(head):
            key, pos = _varint(head, pos)
            number, wire = key >> 3, key & 7
            if _ONNX_FIELDS.get(number) != wire or (number == 1) != (pos == 1):
                return None
            value, pos = _varint(head, pos)
            if number == 1 and not 1 <= value <= 100:
                return None
            if number == 1:
                notes.append(f"ir_version {value}")
            if number in (7, 8):
                notes.append("graph" if number == 7 else "opset_import")
                return Detection("onnx", False, "protobuf ModelProto: " + ", ".join(notes))
            if wire == 2:
                if number in _ONNX_TEXT:
                    text = head[pos : pos + value]
                    if len(text) < value or value > 4096:
                        return None
                    notes.append(f"{_ONNX_TEXT[number]} {_show(text.decode('utf-8'), 40)}")
                pos += value
    except (ValueError, UnicodeDecodeError):
        return None
    return None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise ValueError("varint runs past the bytes read")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise ValueError("varint longer than 10 bytes")


# -- plain data ---------------------------------------------------------------------------------

_DATA_MAGICS: Final = (
    (b"PAR1", "Parquet"),
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"%PDF-", "PDF document"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
)


def _sniff_magic(head: bytes, blob: _Blob, budget: _Budget, depth: int) -> Detection | None:
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return Detection("hdf5", False, "HDF5 signature (Keras .h5 and others)")
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return Detection("data", False, "WebP image")
    for magic, what in _DATA_MAGICS:
        if head.startswith(magic):
            return Detection("data", False, f"{what} ({_show(magic.decode('latin-1'))} magic)")
    return None


def _sniff_text(head: bytes, blob: _Blob, budget: _Budget, depth: int) -> Detection | None:
    """UTF-8 text without control characters: JSON, YAML (MLmodel), CSV, code, ..."""
    final = blob.at_end(len(head))
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final)
    except UnicodeDecodeError:
        return None
    controls = sum(1 for ch in text if ch < " " and ch not in "\t\n\r\f")
    if "\x00" in text or controls * 100 > len(text):
        return None
    kind = "text"
    if text.lstrip("\ufeff \t\r\n")[:1] in ("{", "["):
        kind = "JSON-like text"
        if final:
            try:
                json.loads(text)
                kind = "JSON"
            except (ValueError, RecursionError):
                pass
    return Detection("data", False, f"UTF-8 {kind}")


def _fallback(head: bytes, blob: _Blob, budget: _Budget) -> Detection:
    """No format matched: ``binary``, unless it starts like a pickle that stopped parsing."""
    scan = _scan_pickle(head, budget.bounds)
    if scan.ops >= 3:
        return Detection("unknown", False, f"starts like a pickle ({scan.ops} opcodes parse) "
                         f"but stops: {scan.error}")
    return Detection("binary", False, f"{len(head)} bytes read match no known format or pickle")


_Sniffer = Callable[[bytes, _Blob, _Budget, int], "Detection | None"]
#: In order: unambiguous magic numbers, then headers, then the opcode parse, then text.
_SNIFFERS: Final[tuple[_Sniffer, ...]] = (
    _sniff_proto,
    _sniff_zip,
    _sniff_npy,
    _sniff_magic,
    _sniff_stream,
    _sniff_safetensors,
    _sniff_onnx,
    _sniff_old_pickle,
    _sniff_text,
)


def _classify_blob(blob: _Blob, budget: _Budget, depth: int) -> Detection:
    head = blob.read(0, budget.bounds.head_bytes)
    if not head:
        return Detection("data", False, "empty file")
    for sniff in _SNIFFERS:
        found = sniff(head, blob, budget, depth)
        if found is not None:
            return found
    return _fallback(head, blob, budget)


#: Suffixes that promise a format that is not a pickle.
_NOT_PICKLE_NAMES: Final = (
    ".json", ".yaml", ".yml", ".txt", ".csv", ".md", ".parquet", ".safetensors", ".onnx",
    ".skops", ".png", ".jpg",
)


def _note_name(name: str, found: Detection) -> Detection:
    """Say so when the name promises something the bytes are not (a pickle named .json)."""
    if found.pickle_family and name.lower().endswith(_NOT_PICKLE_NAMES):
        suffix = "." + name.rsplit(".", 1)[-1]
        return replace(found, evidence=f"{found.evidence} (named {_show(suffix, 20)}: the name "
                       "does not tell)")
    return found
