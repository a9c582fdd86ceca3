"""Avro framing: object-container files and the Confluent wire format, bounded by construction.

The container reader parses the header itself and caches the parsed writer schema by its JSON
text, so a stream of ZTF messages (one container each, all with the same schema) pays for schema
parsing once. Records are read with ``fastavro.schemaless_reader`` through a *reader schema* that
keeps only the top-level fields the alert model reads (:data:`ALERT_FIELDS`: the whole
``candidate`` / ``diaSource`` records, ids, cutouts); histories such as ``prv_candidates``,
``fp_hists`` and ``prvDiaSources`` are skipped without building Python objects.

What a hostile container cannot do here (each check runs before anything is allocated):

* a writer schema whose values can encode in zero bytes (``"null"``, a record without fields,
  an array of nulls) is refused: with one, a block count of 2**62 loops forever in any reader;
* a top-level schema that is not a record, or a record with none of the fields of an alert or
  an exposure, is refused (``BAD_SCHEMA``) before any record is read;
* a block's record count must fit its inflated size (each record takes at least the schema's
  minimum encoded size) and the message's record total is capped;
* every block is inflated with an output cap, whatever its codec: ``null``, ``deflate``,
  ``snappy`` (Spark's default; via cramjam), ``zstandard``, ``bzip2``, ``xz``.

Every failure becomes :class:`DecodeError`.
"""
from __future__ import annotations

import bz2
import io
import json
import lzma
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import fastavro

from schemas.decode.errors import DecodeError, Reason
from schemas.decode.skip import Skipper, compile_skipper

__all__ = [
    "encode_long",
    "encode_varint",
    "CONTAINER_MAGIC",
    "WIRE_MAGIC",
    "CODECS",
    "ALERT_FIELDS",
    "HISTORY_FIELDS",
    "ParsedSchema",
    "ContainerReader",
    "container_record_count",
    "is_container",
    "split_wire",
    "frame_wire",
    "read_container",
    "read_schemaless",
    "parse_schema_cached",
    "projection_schema",
    "Projection",
    "projection",
    "read_projected",
    "slow_history_reads",
    "check_schema_is_safe",
    "check_alert_schema",
    "min_encoded_size",
    "one_record_container",
]

CONTAINER_MAGIC = b"Obj\x01"
WIRE_MAGIC = 0
#: Block codecs of the Avro specification and the Java/Spark writers that we read.
CODECS = ("null", "deflate", "snappy", "zstandard", "bzip2", "xz")
#: Top-level fields the Alert model (and replay's keys) read; every other field is skipped.
ALERT_FIELDS = frozenset({
    # ZTF
    "objectId", "candid", "candidate", "cutoutScience", "cutoutTemplate", "cutoutDifference", "schemavsn", "publisher",
    # Rubin (and Fink's Spark-rewritten topLevelRecord)
    "alertId", "diaSourceId", "diaSource", "diaObject", "ssObject", "diaObjectId", "reliabilityVersion",
    "lsst_schema_version",
})
#: Detection records kept whole except for array and map fields inside them (see :func:`_scalars_only`).
DETECTION_RECORDS = frozenset({"candidate", "diaSource", "diaObject", "ssObject"})
#: History arrays never read (kept for reference: :data:`ALERT_FIELDS` already leaves them out).
HISTORY_FIELDS = frozenset({
    "prv_candidates", "fp_hists",                                        # ZTF
    "prvDiaSources", "prvDiaForcedSources", "prvDiaNondetectionLimits",  # Rubin
})
#: A record must have one of these field sets to be an input (ZTF, Rubin, our exposures, or a
#: classified record of a ``subscribe`` dump, which replay re-publishes).
_INPUT_MARKERS = (frozenset({"candidate"}), frozenset({"diaSource"}), frozenset({"exposure_id", "fits"}),
                  frozenset({"classifier_version"}))
_EXPOSURE_MARKER = frozenset({"exposure_id", "fits"})
_SCHEMA_CACHE: OrderedDict[bytes, ParsedSchema] = OrderedDict()
_SCHEMA_CACHE_SIZE = 64
_MAX_SCHEMA_BYTES = 4 * 1024 * 1024
#: zstd and xz decoders reserve their window / dictionary up front: cap what a header may ask.
_ZSTD_MAX_WINDOW = 1 << 27
_XZ_MEMLIMIT = 1 << 28


def is_container(value: bytes) -> bool:
    return value[:4] == CONTAINER_MAGIC


def split_wire(value: bytes) -> tuple[int, memoryview]:
    """(schema id, Avro payload) of a Confluent wire-format message."""
    if len(value) < 5:
        raise DecodeError(Reason.TRUNCATED_AVRO, f"wire message of {len(value)} bytes has no schema id")
    if value[0] != WIRE_MAGIC:
        raise DecodeError(Reason.BAD_MAGIC, f"magic byte {value[0]:#04x}, expected 0x00")
    (schema_id,) = struct.unpack_from(">i", value, 1)
    return schema_id, memoryview(value)[5:]


def frame_wire(schema_id: int, payload: bytes) -> bytes:
    """0x00 + big-endian int32 schema id + payload."""
    return struct.pack(">bi", WIRE_MAGIC, schema_id) + payload


# --- schema checks ----------------------------------------------------------------------------

def _collect_named(schema: Any, named: dict[str, Any], namespace: str = "") -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect_named(branch, named, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed") and isinstance(schema.get("name"), str):
            name = schema["name"]
            ns = schema.get("namespace", namespace) or ""
            full = name if "." in name or not ns else f"{ns}.{name}"
            named[full] = schema
            named.setdefault(name, schema)
            namespace = full.rsplit(".", 1)[0] if "." in full else ns
        for field in schema.get("fields") or []:
            if isinstance(field, dict):
                _collect_named(field.get("type"), named, namespace)
        for key in ("items", "values"):
            if key in schema:
                _collect_named(schema[key], named, namespace)
        if isinstance(kind, (dict, list)):
            _collect_named(kind, named, namespace)


_PRIMITIVE_MIN = {"null": 0, "boolean": 1, "int": 1, "long": 1, "float": 4, "double": 8, "bytes": 1, "string": 1}


def _min_size(schema: Any, named: dict[str, Any], seen: frozenset[str]) -> int:
    if isinstance(schema, str):
        if schema in _PRIMITIVE_MIN:
            return _PRIMITIVE_MIN[schema]
        target = named.get(schema)
        if target is None or schema in seen:
            return 1  # unknown (fastavro refuses it) or recursive: a recursive record takes >= 1 byte
        return _min_size(target, named, seen | {schema})
    if isinstance(schema, list):
        return 1  # a union index takes at least one byte
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error"):
            name = schema.get("name")
            inner = seen | {name} if isinstance(name, str) else seen
            return sum(_min_size(f.get("type"), named, inner) for f in schema.get("fields") or [] if isinstance(f, dict))
        if kind == "fixed":
            size = schema.get("size")
            return size if isinstance(size, int) and size >= 0 else 0
        if kind in ("array", "map", "enum"):
            return 1  # block count / index take at least one byte
        return _min_size(kind, named, seen)
    return 0


def min_encoded_size(definition: Any) -> int:
    """The fewest bytes one value of ``definition`` can encode to (0 means a zero-size schema)."""
    named: dict[str, Any] = {}
    _collect_named(definition, named)
    return _min_size(definition, named, frozenset())


def check_schema_is_safe(definition: Any) -> None:
    """Refuse schemas whose arrays or maps could hold zero-byte items (``BAD_SCHEMA``).

    With such a schema a garbage block count makes fastavro loop for billions of items without
    consuming input: a hang and an out-of-memory kill, never an error.
    """
    named: dict[str, Any] = {}
    _collect_named(definition, named)

    def walk(schema: Any, seen: set[int]) -> None:
        if isinstance(schema, list):
            for branch in schema:
                walk(branch, seen)
        elif isinstance(schema, dict):
            if id(schema) in seen:
                return
            seen.add(id(schema))
            kind = schema.get("type")
            if kind in ("array", "map"):
                items = schema.get("items" if kind == "array" else "values")
                if _min_size(items, named, frozenset()) == 0:
                    raise DecodeError(Reason.BAD_SCHEMA, f"writer schema has an {kind} of zero-size items")
                walk(items, seen)
            for field in schema.get("fields") or []:
                if isinstance(field, dict):
                    walk(field.get("type"), seen)
            if isinstance(kind, (dict, list)):
                walk(kind, seen)
        elif isinstance(schema, str) and schema in named:
            walk(named[schema], seen)

    try:
        walk(definition, set())
    except RecursionError as exc:
        raise DecodeError(Reason.BAD_SCHEMA, "writer schema nests too deeply") from exc


def check_alert_schema(definition: Any) -> None:
    """Refuse a top-level writer schema that cannot hold an input (``BAD_SCHEMA``, ``MISSING_FIELD``).

    An input is a record with the fields of a ZTF alert (``candidate``), a Rubin alert
    (``diaSource``), an exposure (``exposure_id`` + ``fits``) or a classified record; its
    encoding must take at least one byte (a zero-size record lets a block count loop forever).
    """
    if not isinstance(definition, dict) or definition.get("type") not in ("record", "error"):
        shown = definition if isinstance(definition, str) else type(definition).__name__
        raise DecodeError(Reason.BAD_SCHEMA, f"top-level writer schema is {shown!r}, not a record")
    if min_encoded_size(definition) == 0:
        raise DecodeError(Reason.BAD_SCHEMA, "writer schema encodes records in zero bytes")
    check_schema_is_safe(definition)
    names = {f.get("name") for f in definition.get("fields") or [] if isinstance(f, dict)}
    if not any(marker <= names for marker in _INPUT_MARKERS):
        # the reason decode_record gives a record of no known kind, found before any record is read
        raise DecodeError(Reason.MISSING_FIELD, "writer schema has neither candidate, diaSource nor exposure fields "
                                                f"({len(names)} fields)")


def projection_schema(definition: Any) -> Any | None:
    """A parsed reader schema keeping only :data:`ALERT_FIELDS` of ``definition``, or None.

    None when nothing would be dropped, for exposures and classified records (read whole),
    or when a dropped field defines a named type a kept one uses (then the full schema is read).
    """
    if not isinstance(definition, dict) or definition.get("type") != "record":
        return None
    fields = [f for f in definition.get("fields") or [] if isinstance(f, dict)]
    names = {f.get("name") for f in fields}
    if _EXPOSURE_MARKER <= names or "classifier_version" in names:
        return None
    kept = [f for f in fields if f.get("name") in ALERT_FIELDS]
    if not kept:
        return None
    kept, trimmed = zip(*(_scalars_only(f) if f.get("name") in DETECTION_RECORDS else (f, False) for f in kept))
    kept = list(kept)
    if len(kept) == len(fields) and not any(trimmed):
        return None
    reader = {k: v for k, v in definition.items() if k != "fields"}
    reader["fields"] = kept
    try:
        return fastavro.parse_schema(json.loads(json.dumps(reader)))
    except Exception:  # noqa: BLE001 - a dropped field defined a named type: read the full schema
        return None


@dataclass(frozen=True, slots=True)
class Projection:
    """How records of one writer schema are read: through ``reader`` (the parsed reader schema of
    :func:`projection_schema`; None: whole) and, where some of the fields it drops are history
    arrays that :mod:`schemas.decode.skip` can skip, in ``runs``: for each run of other fields
    the parsed (writer, reader) pair fastavro reads it with, and between runs the skippers."""

    reader: Any
    runs: tuple[Any, ...] | None = None
    #: whether the fields it drops include a history array (an array or map): a record read
    #: without ``runs`` then reads that history the usual, slow way (see :func:`slow_history_reads`)
    history: bool = False


def projection(definition: Any) -> Projection:
    """:func:`projection_schema` of ``definition``, with the runs that skip its history arrays fast."""
    reader = projection_schema(definition)
    history = reader is not None and any(
        isinstance(f, dict) and f.get("name") not in ALERT_FIELDS and _is_collection(f.get("type"))
        for f in definition.get("fields") or [])
    return Projection(reader, _history_runs(definition) if reader is not None else None, history)


_slow_reads = [0]
_slow_reads_lock = threading.Lock()


def slow_history_reads() -> int:
    """Records this process read well with their history arrays decoded in full, though their
    schema has history to drop: the schema's skippers could not be compiled, or one could not tell a
    record's bytes (a history string over 191 bytes, a nested array). Such a record is read
    correctly, at several times the CPU (a year of Rubin history: 16 ms against 2 ms). A
    count that climbs says the survey's schema changed under the skippers."""
    return _slow_reads[0]


def _count_slow_read() -> None:
    with _slow_reads_lock:
        _slow_reads[0] += 1


def _history_runs(definition: dict) -> tuple[Any, ...] | None:
    """The runs of :class:`Projection`, or None where no dropped field is a skippable history array."""
    fields = [f for f in definition.get("fields") or [] if isinstance(f, dict)]
    declared: dict[str, Any] = {}
    _collect_named(definition, declared)
    top = str(definition.get("name", "record"))
    namespace = (top if "." in top else f"{definition.get('namespace') or ''}.{top}").rpartition(".")[0]
    parts: list[Any] = []
    run: list[dict] = []
    for field in fields:
        skipper = None if field.get("name") in ALERT_FIELDS else compile_skipper(field.get("type"), declared, namespace)
        if skipper is None:
            run.append(field)
            continue
        if run:
            parts.append(run)
            run = []
        parts.append(skipper)
    if run:
        parts.append(run)
    if not any(isinstance(part, Skipper) for part in parts):
        return None
    try:
        named: dict[str, Any] = {}
        fastavro.parse_schema(json.loads(json.dumps(definition)), named_schemas=named)
        out: list[Any] = []
        for index, part in enumerate(parts):
            if isinstance(part, Skipper):
                out.append(part)
                continue
            name = f"{top}__run{index}"
            kept = [_scalars_only(f)[0] if f.get("name") in DETECTION_RECORDS else f for f in part if f.get("name") in ALERT_FIELDS]
            writer = fastavro.parse_schema(json.loads(json.dumps({"type": "record", "name": name, "fields": part})),
                                           named_schemas=dict(named))
            reader = fastavro.parse_schema(json.loads(json.dumps({"type": "record", "name": name, "fields": kept})),
                                           named_schemas=dict(named))
            out.append((writer, reader))
    except Exception:  # noqa: BLE001 - the runs are only a faster way: without them the record is read whole
        return None
    return tuple(out)


def _read_runs(runs: tuple[Any, ...], data: bytes | memoryview, stream: io.BytesIO) -> dict | None:
    """One record read run by run (see :class:`Projection`) from ``stream`` (over ``data``), or
    None (``stream`` back where it was) where a skipper cannot tell or a run does not read: the
    caller then reads the record the usual way, which gives the usual error for a broken one."""
    start = stream.tell()
    record: dict = {}
    try:
        for part in runs:
            if isinstance(part, tuple):
                values = fastavro.schemaless_reader(stream, part[0], part[1])
                if not isinstance(values, dict):
                    break
                record.update(values)
                continue
            end = part.skip(data, stream.tell())
            if end is None:
                break
            stream.seek(end)
        else:
            return record
    except Exception:  # noqa: BLE001 - any failure here is the usual path's to report
        pass
    stream.seek(start)
    return None


def _is_collection(schema: Any) -> bool:
    if isinstance(schema, list):
        return any(_is_collection(branch) for branch in schema)
    return isinstance(schema, dict) and schema.get("type") in ("array", "map")


def _scalars_only(field: dict) -> tuple[dict, bool]:
    """``field`` (a detection record, or a union of null and one) without the array and map
    fields inside it, and whether any was dropped. The detection record is kept whole for the
    models that read its catalogue values (all scalars): an array hidden in it (30 M items in
    a 97 kB alert) was materialised in full; left out of the reader, fastavro skips it."""
    kind = field.get("type")
    branches = kind if isinstance(kind, list) else [kind]
    out, dropped = [], False
    for branch in branches:
        if isinstance(branch, dict) and branch.get("type") == "record" and isinstance(branch.get("fields"), list):
            inner = [f for f in branch["fields"] if not (isinstance(f, dict) and _is_collection(f.get("type")))]
            dropped = dropped or len(inner) != len(branch["fields"])
            branch = {**branch, "fields": inner}
        out.append(branch)
    return {**field, "type": out if isinstance(kind, list) else out[0]}, dropped


@dataclass(frozen=True, slots=True)
class ParsedSchema:
    """A checked writer schema: parsed, its :class:`Projection`, its JSON, min record bytes."""

    parsed: Any
    projection: Projection
    definition: Any
    min_record_bytes: int


def parse_schema_cached(key: bytes, schema_json: bytes | None = None, schema: Any = None,
                        *, check: bool = True) -> ParsedSchema:
    """The checked, parsed writer schema cached by ``key`` (its JSON text).

    ``check`` False skips :func:`check_alert_schema` (zero-size schemas are refused regardless).
    """
    key = (b"checked:" if check else b"unchecked:") + key  # a schema read unchecked is checked again
    hit = _SCHEMA_CACHE.get(key)
    if hit is not None:
        _SCHEMA_CACHE.move_to_end(key)
        return hit
    try:
        definition = schema if schema is not None else json.loads(schema_json or b"")
    except (ValueError, RecursionError) as exc:
        raise DecodeError(Reason.BAD_SCHEMA, f"writer schema is not JSON: {type(exc).__name__}: {exc}"[:300]) from exc
    try:
        if check:
            check_alert_schema(definition)
        else:
            check_schema_is_safe(definition)
        size = min_encoded_size(definition)
        if size == 0:
            raise DecodeError(Reason.BAD_SCHEMA, "writer schema encodes values in zero bytes")
        parsed = fastavro.parse_schema(definition)
    except DecodeError:
        raise
    except RecursionError as exc:
        raise DecodeError(Reason.BAD_SCHEMA, "writer schema nests too deeply") from exc
    except Exception as exc:
        raise DecodeError(Reason.BAD_SCHEMA, f"unreadable writer schema: {type(exc).__name__}: {exc}"[:300]) from exc
    entry = ParsedSchema(parsed, projection(definition), definition, size)
    _SCHEMA_CACHE[key] = entry
    if len(_SCHEMA_CACHE) > _SCHEMA_CACHE_SIZE:
        _SCHEMA_CACHE.popitem(last=False)
    return entry


# --- container reading ------------------------------------------------------------------------

def _read_long(fh: BinaryIO, first: bytes = b"") -> int:
    shift = 0
    acc = 0
    while True:
        b = first or fh.read(1)
        first = b""
        if not b:
            raise DecodeError(Reason.TRUNCATED_AVRO, "varint runs past the end")
        acc |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            break
        shift += 7
        if shift > 63:
            raise DecodeError(Reason.TRUNCATED_AVRO, "varint too long")
    return (acc >> 1) ^ -(acc & 1)


def _read_exact(fh: BinaryIO, size: int, what: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise DecodeError(Reason.TRUNCATED_AVRO, f"{what} runs past the end")
    return data


def encode_varint(value: int) -> bytes:
    """An unsigned little-endian base-128 varint (snappy's uncompressed length; Avro longs after zig-zag)."""
    out = bytearray()
    while value & ~0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_long(value: int) -> bytes:
    """Avro's zig-zag varint encoding of a long (block counts and sizes, string lengths)."""
    return encode_varint((value << 1) ^ (value >> 63))


def _read_header(fh: BinaryIO) -> tuple[dict[str, bytes], bytes]:
    if fh.read(4) != CONTAINER_MAGIC:
        raise DecodeError(Reason.UNKNOWN_FORMAT, "not an Avro container")
    meta: dict[str, bytes] = {}
    while True:
        count = _read_long(fh)
        if count == 0:
            break
        if count < 0:
            count = -count
            _read_long(fh)
        for _ in range(count):
            key_size = _read_long(fh)
            if not 0 <= key_size <= 1024:
                raise DecodeError(Reason.TRUNCATED_AVRO, f"container metadata key of {key_size} bytes")
            key = _read_exact(fh, key_size, "container metadata")
            value_size = _read_long(fh)
            if not 0 <= value_size <= _MAX_SCHEMA_BYTES:
                raise DecodeError(Reason.TRUNCATED_AVRO, f"container metadata value of {value_size} bytes")
            meta[key.decode("utf-8", "replace")] = _read_exact(fh, value_size, "container metadata")
    return meta, _read_exact(fh, 16, "container header (sync marker)")


def _inflate(codec: str, block: bytes, cap: int) -> bytes:
    """One block's bytes after its codec, never producing more than ``cap`` bytes."""
    too_large = DecodeError(Reason.TOO_LARGE, f"{codec} block inflates past {cap} bytes")
    try:
        if codec == "null":
            out = block
        elif codec == "deflate":
            inflater = zlib.decompressobj(-15)
            out = inflater.decompress(block, cap + 1)
            if inflater.unconsumed_tail:
                raise too_large
        elif codec == "snappy":
            out = _snappy(block, cap)
        elif codec == "zstandard":
            out = _zstd(block, cap)
        elif codec in ("bzip2", "xz"):
            inflater2 = (bz2.BZ2Decompressor() if codec == "bzip2"
                         else lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT))
            out = inflater2.decompress(block, cap + 1)
            if len(out) <= cap and not inflater2.eof:
                raise DecodeError(Reason.TRUNCATED_AVRO, f"{codec} block ends early")
        else:
            raise DecodeError(Reason.UNSUPPORTED_CODEC, f"codec {codec!r}")
    except DecodeError:
        raise
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise DecodeError(Reason.TRUNCATED_AVRO, f"{codec} block: {type(exc).__name__}: {exc}"[:300]) from exc
    if len(out) > cap:
        raise too_large
    return out


def _snappy(block: bytes, cap: int) -> bytes:
    """Avro's snappy framing: raw snappy data, then the big-endian CRC-32 of the inflated bytes."""
    import cramjam

    if len(block) < 5:
        raise DecodeError(Reason.TRUNCATED_AVRO, "snappy block shorter than its checksum")
    data, (crc,) = block[:-4], struct.unpack(">I", block[-4:])
    declared = _snappy_length(data)
    if declared > cap:
        raise DecodeError(Reason.TOO_LARGE, f"snappy block declares {declared} bytes > {cap}")
    try:
        out = bytes(cramjam.snappy.decompress_raw(data))
    except Exception as exc:
        raise DecodeError(Reason.TRUNCATED_AVRO, f"snappy block: {exc}"[:300]) from exc
    if zlib.crc32(out) != crc:
        raise DecodeError(Reason.TRUNCATED_AVRO, "snappy block checksum mismatch")
    return out


def _snappy_length(data: bytes) -> int:
    shift = acc = 0
    for b in data[:10]:
        acc |= (b & 0x7F) << shift
        if not b & 0x80:
            return acc
        shift += 7
    raise DecodeError(Reason.TRUNCATED_AVRO, "snappy block has no length preamble")


def _zstd(block: bytes, cap: int) -> bytes:
    import zstandard

    try:
        reader = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW).stream_reader(io.BytesIO(block))
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = reader.read(min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise DecodeError(Reason.TOO_LARGE, f"zstandard block inflates past {cap} bytes")
    except zstandard.ZstdError as exc:
        raise DecodeError(Reason.TRUNCATED_AVRO, f"zstandard block: {exc}"[:300]) from exc
    return b"".join(chunks)


def _read_one(stream: io.BytesIO, parsed: Any, reader: Any) -> Any:
    try:
        return fastavro.schemaless_reader(stream, parsed, reader)
    except DecodeError:
        raise
    except MemoryError as exc:
        raise DecodeError(Reason.DECODE_MEMORY_LIMIT, "reading a record ran out of memory") from exc
    except RecursionError as exc:
        raise DecodeError(Reason.BAD_SCHEMA, "record nests too deeply") from exc
    except Exception as exc:
        raise DecodeError(Reason.TRUNCATED_AVRO, f"{type(exc).__name__}: {exc}"[:300]) from exc


class ContainerReader:
    """An Avro object-container read block by block from a binary stream, with caps.

    ``check_alert`` refuses writer schemas that are not alert/exposure records (see
    :func:`check_alert_schema`); ``project`` reads records through the :data:`ALERT_FIELDS`
    projection. The header is read (and refused if bad) by the constructor.
    """

    def __init__(self, fh: BinaryIO, *, max_block_bytes: int, check_alert: bool = True, project: bool = True,
                 max_total_bytes: int | None = None) -> None:
        self._fh = fh
        self.max_block_bytes = max_block_bytes
        #: Cap on the bytes all blocks inflate to together (one Kafka message: 1,000 tiny bzip2
        #: blocks each inflating to the block cap held a worker for its whole timeout); None: no cap.
        self.max_total_bytes = max_total_bytes
        meta, self.sync = _read_header(fh)
        self.codec = meta.get("avro.codec", b"null").decode("ascii", "replace") or "null"
        if self.codec not in CODECS:
            raise DecodeError(Reason.UNSUPPORTED_CODEC, f"codec {self.codec!r}")
        schema_json = meta.get("avro.schema")
        if schema_json is None:
            raise DecodeError(Reason.TRUNCATED_AVRO, "container header has no avro.schema")
        self.schema_json = schema_json
        self.schema = parse_schema_cached(schema_json, schema_json, check=check_alert)
        self._projection = self.schema.projection if project else None

    @property
    def definition(self) -> Any:
        return self.schema.definition

    def blocks(self) -> Iterator[tuple[int, bytes]]:
        """(record count, inflated bytes) of each block, checked and capped, in order."""
        cap = self.max_block_bytes
        left = self.max_total_bytes
        while True:
            head = self._fh.read(1)
            if not head:
                return
            count = _read_long(self._fh, head)
            size = _read_long(self._fh)
            if count < 0 or size < 0:
                raise DecodeError(Reason.TRUNCATED_AVRO, f"block declares {count} records in {size} bytes")
            if size > cap:
                raise DecodeError(Reason.TOO_LARGE, f"block of {size} bytes > {cap}")
            block = _read_exact(self._fh, size, "block")
            if _read_exact(self._fh, 16, "block sync marker") != self.sync:
                raise DecodeError(Reason.TRUNCATED_AVRO, "sync marker mismatch")
            if left is None:
                data = _inflate(self.codec, block, cap)
            else:
                try:
                    data = _inflate(self.codec, block, min(cap, left))
                except DecodeError as exc:
                    if exc.reason is Reason.TOO_LARGE and left < cap:
                        raise DecodeError(Reason.TOO_LARGE, f"the blocks inflate past {self.max_total_bytes} bytes "
                                                            f"in all (decode.max_inflated_message_bytes)") from None
                    raise
                left -= len(data)
            if count > len(data) // self.schema.min_record_bytes:
                raise DecodeError(Reason.TRUNCATED_AVRO, f"block declares {count} records in {len(data)} bytes "
                                                         f"(each takes at least {self.schema.min_record_bytes})")
            yield count, data

    def records(self, *, max_records: int | None = None, max_block_records: int | None = None,
                raw: bool = False) -> Iterator[Any]:
        """Each record (or, with ``raw``, its encoded bytes), in order; errors raise :class:`DecodeError`.

        ``max_records`` caps the total and ``max_block_records`` each block (``TOO_MANY_RECORDS``),
        checked from a block's declared count before any of its records is read.
        """
        total = 0
        for count, data in self.blocks():
            total += count
            if max_records is not None and total > max_records:
                raise DecodeError(Reason.TOO_MANY_RECORDS, f"more than {max_records} records")
            if max_block_records is not None and count > max_block_records:
                raise DecodeError(Reason.TOO_MANY_RECORDS, f"a block of {count} records (cap {max_block_records})")
            stream = io.BytesIO(data)
            for _ in range(count):
                start = stream.tell()
                record = read_projected(stream, data, self.schema.parsed, self._projection)
                yield data[start:stream.tell()] if raw else record
            if stream.tell() != len(data):
                raise DecodeError(Reason.TRUNCATED_AVRO, "block holds bytes past its records")


def container_record_count(fh: BinaryIO, *, max_blocks: int = 1_000_000) -> int:
    """Records an Avro object-container declares, from its block headers alone.

    Each block's bytes are skipped with ``seek`` (never read or inflated), so counting a
    multi-gigabyte part file reads a few bytes per block. Raises :class:`DecodeError` on a
    malformed header or block header, or past ``max_blocks`` blocks.
    """
    _read_header(fh)
    total = 0
    for _ in range(max_blocks):
        head = fh.read(1)
        if not head:
            return total
        count = _read_long(fh, head)
        size = _read_long(fh)
        if count < 0 or size < 0:
            raise DecodeError(Reason.TRUNCATED_AVRO, f"block declares {count} records in {size} bytes")
        total += count
        fh.seek(size + 16, io.SEEK_CUR)
    raise DecodeError(Reason.TOO_MANY_RECORDS, f"more than {max_blocks} blocks")


def read_container(value: bytes, *, max_block_bytes: int = 32 * 1024 * 1024,
                   max_records: int | None = None, max_total_bytes: int | None = None) -> tuple[Any, list[Any]]:
    """(writer schema definition, records) of an Avro object-container file held in memory.

    A broken header or an unusable schema raises. A record that cannot be read becomes a
    :class:`DecodeError` at the end of the list (Avro cannot resynchronise inside a block).
    """
    container = ContainerReader(io.BytesIO(value), max_block_bytes=max_block_bytes, max_total_bytes=max_total_bytes)
    out: list[Any] = []
    try:
        for record in container.records(max_records=max_records):
            out.append(record)
    except DecodeError as exc:
        exc.record_index = len(out)
        out.append(exc)
    return container.definition, out


def one_record_container(schema_json: bytes, datum: bytes, sync: bytes) -> bytes:
    """A ``null``-codec container holding one already-encoded record (exact original bytes)."""
    meta = encode_long(2)
    for key, value in ((b"avro.schema", schema_json), (b"avro.codec", b"null")):
        meta += encode_long(len(key)) + key + encode_long(len(value)) + value
    meta += encode_long(0)
    return CONTAINER_MAGIC + meta + sync + encode_long(1) + encode_long(len(datum)) + datum + sync


def read_projected(stream: io.BytesIO, data: bytes | memoryview, parsed: Any, how: Projection | None) -> Any:
    """One record from ``stream`` (over ``data``) as ``how`` says (None: whole), its history
    arrays skipped fast where it can."""
    if how is not None and how.runs is not None:
        record = _read_runs(how.runs, data, stream)
        if record is not None:
            return record
    record = _read_one(stream, parsed, how.reader if how is not None else None)
    if how is not None and how.history:
        _count_slow_read()   # read whole, and read well: a broken record raised above and is not counted
    return record


def read_schemaless(payload: bytes | memoryview, parsed_schema: Any, how: Projection | None = None) -> Any:
    """One record of schemaless Avro; the payload must be used exactly (no trailing bytes)."""
    stream = io.BytesIO(payload)
    record = read_projected(stream, payload, parsed_schema, how)
    if stream.tell() != len(payload):
        raise DecodeError(Reason.TRUNCATED_AVRO, f"{len(payload) - stream.tell()} bytes left after the record")
    return record
