"""Avro framing: object-container files and the Confluent wire format, as pure functions.

The container reader parses the file header itself and caches the parsed writer schema by
its JSON text, so a stream of ZTF messages (one container file each, all carrying the same
schema) pays for schema parsing once instead of per message (``fastavro.reader`` re-parses
it every time: ~1 ms of a ~1.5 ms decode). Records are then read with
``fastavro.schemaless_reader``. Codecs other than ``null``/``deflate`` go through
``fastavro.reader``. Every failure becomes :class:`DecodeError`.
"""
from __future__ import annotations

import io
import json
import struct
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import fastavro

from schemas.decode.errors import DecodeError, Reason

__all__ = [
    "CONTAINER_MAGIC",
    "WIRE_MAGIC",
    "is_container",
    "split_wire",
    "frame_wire",
    "read_container",
    "read_schemaless",
    "parse_schema_cached",
    "projection_schema",
    "check_schema_is_safe",
    "HISTORY_FIELDS",
]

CONTAINER_MAGIC = b"Obj\x01"
WIRE_MAGIC = 0
#: Top-level history arrays the Alert model does not carry. Reading through a reader schema
#: without them lets fastavro skip them (still parsed, so still validated, but no Python
#: objects built): halves decode time for ZTF v4 packets with prv_candidates + fp_hists.
HISTORY_FIELDS = frozenset({
    "prv_candidates", "fp_hists",                                        # ZTF
    "prvDiaSources", "prvDiaForcedSources", "prvDiaNondetectionLimits",  # Rubin
})
_SCHEMA_CACHE: OrderedDict[bytes, tuple[Any, Any, dict]] = OrderedDict()
_SCHEMA_CACHE_SIZE = 64


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


def projection_schema(definition: Any) -> Any | None:
    """A parsed reader schema = ``definition`` without :data:`HISTORY_FIELDS`, or None.

    None when there is nothing to drop or a dropped field defines a named type used later
    (then the full schema is read).
    """
    if not isinstance(definition, dict) or definition.get("type") != "record":
        return None
    fields = definition.get("fields") or []
    kept = [f for f in fields if f.get("name") not in HISTORY_FIELDS]
    if len(kept) == len(fields):
        return None
    reader = {k: v for k, v in definition.items() if k != "fields"}
    reader["fields"] = kept
    try:
        return fastavro.parse_schema(json.loads(json.dumps(reader)))
    except Exception:
        return None


_PRIMITIVE_ZERO_SIZE = {"null"}


def _zero_size(schema: Any, named: dict[str, Any], seen: set[str]) -> bool:
    """True if a value of ``schema`` can be encoded in zero bytes."""
    if isinstance(schema, str):
        if schema in _PRIMITIVE_ZERO_SIZE:
            return True
        target = named.get(schema)
        if target is None or schema in seen:
            return False
        return _zero_size(target, named, seen | {schema})
    if isinstance(schema, list):
        return False  # a union index takes at least one byte
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record" or kind == "error":
            return all(_zero_size(f.get("type"), named, seen) for f in schema.get("fields") or [])
        if kind == "fixed":
            return schema.get("size") == 0
        if kind in ("array", "map", "enum"):
            return False  # block count / index take at least one byte
        return _zero_size(kind, named, seen)
    return False


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


def check_schema_is_safe(definition: Any) -> None:
    """Refuse schemas whose arrays/maps could hold zero-byte items.

    With such a schema (only ever seen from a corrupted container header, e.g. a record that
    lost its ``fields``), a garbage block count makes fastavro loop for billions of items
    without consuming input: a hang and an out-of-memory kill, never an error.
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
                if _zero_size(items, named, set()):
                    raise DecodeError(Reason.TRUNCATED_AVRO, f"writer schema has an {kind} of zero-size items")
                walk(items, seen)
            for field in schema.get("fields") or []:
                if isinstance(field, dict):
                    walk(field.get("type"), seen)
            if isinstance(kind, (dict, list)):
                walk(kind, seen)
        elif isinstance(schema, str) and schema in named:
            walk(named[schema], seen)

    walk(definition, set())


def parse_schema_cached(key: bytes, schema_json: bytes | None = None, schema: dict | None = None) -> tuple[Any, Any, dict]:
    """(parsed writer schema, parsed projection reader or None, schema dict), cached by ``key``."""
    hit = _SCHEMA_CACHE.get(key)
    if hit is not None:
        _SCHEMA_CACHE.move_to_end(key)
        return hit
    try:
        definition = schema if schema is not None else json.loads(schema_json)
        check_schema_is_safe(definition)
        parsed = fastavro.parse_schema(definition)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(Reason.TRUNCATED_AVRO, f"unreadable writer schema: {type(exc).__name__}: {exc}") from exc
    _SCHEMA_CACHE[key] = (parsed, projection_schema(definition), definition)
    if len(_SCHEMA_CACHE) > _SCHEMA_CACHE_SIZE:
        _SCHEMA_CACHE.popitem(last=False)
    return _SCHEMA_CACHE[key]


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    acc = 0
    while True:
        if pos >= len(buf):
            raise DecodeError(Reason.TRUNCATED_AVRO, "varint runs past the end")
        b = buf[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 63:
            raise DecodeError(Reason.TRUNCATED_AVRO, "varint too long")
    return (acc >> 1) ^ -(acc & 1), pos


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _read_long(buf, pos)
    if size < 0 or pos + size > len(buf):
        raise DecodeError(Reason.TRUNCATED_AVRO, "length runs past the end")
    return buf[pos:pos + size], pos + size


def _read_header(buf: bytes) -> tuple[dict[str, bytes], bytes, int]:
    pos = 4
    meta: dict[str, bytes] = {}
    while True:
        count, pos = _read_long(buf, pos)
        if count == 0:
            break
        if count < 0:
            count = -count
            _, pos = _read_long(buf, pos)
        for _ in range(count):
            key, pos = _read_bytes(buf, pos)
            value, pos = _read_bytes(buf, pos)
            meta[key.decode("utf-8", "replace")] = value
    sync = buf[pos:pos + 16]
    if len(sync) != 16:
        raise DecodeError(Reason.TRUNCATED_AVRO, "container header ends before the sync marker")
    return meta, sync, pos + 16


def _records(stream: io.BytesIO, parsed: Any, count: int, reader: Any = None) -> Iterator[dict]:
    for _ in range(count):
        try:
            yield fastavro.schemaless_reader(stream, parsed, reader)
        except DecodeError:
            raise
        except Exception as exc:  # EOFError, ValueError, UnicodeDecodeError, struct.error, ...
            raise DecodeError(Reason.TRUNCATED_AVRO, f"{type(exc).__name__}: {exc}") from exc


def read_container(value: bytes, *, max_block_bytes: int = 64 * 1024 * 1024) -> tuple[dict, list[dict | DecodeError]]:
    """(writer schema dict, records) of an Avro object-container file held in memory.

    ``max_block_bytes`` caps the inflated size of one deflate block (``TOO_LARGE`` past it).
    A record that cannot be read becomes a :class:`DecodeError` in the list and ends the read
    (Avro cannot resynchronise inside a block). A broken header raises.
    """
    buf = bytes(value)
    if not is_container(buf):
        raise DecodeError(Reason.UNKNOWN_FORMAT, "not an Avro container")
    meta, sync, pos = _read_header(buf)
    codec = meta.get("avro.codec", b"null").decode("ascii", "replace")
    schema_json = meta.get("avro.schema")
    if schema_json is None:
        raise DecodeError(Reason.TRUNCATED_AVRO, "container header has no avro.schema")
    if codec not in ("null", "deflate"):
        return _read_container_fastavro(buf)
    parsed, reader, definition = parse_schema_cached(schema_json, schema_json)
    out: list[dict | DecodeError] = []
    n = len(buf)
    while pos < n:
        try:
            count, pos = _read_long(buf, pos)
            size, pos = _read_long(buf, pos)
            if count < 0 or size < 0 or pos + size + 16 > n:
                raise DecodeError(Reason.TRUNCATED_AVRO, "block runs past the end of the message")
            block = buf[pos:pos + size]
            pos += size
            if buf[pos:pos + 16] != sync:
                raise DecodeError(Reason.TRUNCATED_AVRO, "sync marker mismatch")
            pos += 16
            if codec == "deflate":
                try:
                    inflater = zlib.decompressobj(-15)
                    block = inflater.decompress(block, max_block_bytes + 1)
                    if len(block) > max_block_bytes or inflater.unconsumed_tail:
                        raise DecodeError(Reason.TOO_LARGE, f"deflate block inflates past {max_block_bytes} bytes")
                except zlib.error as exc:
                    raise DecodeError(Reason.TRUNCATED_AVRO, f"deflate block: {exc}") from exc
            stream = io.BytesIO(block)
            for record in _records(stream, parsed, count, reader):
                out.append(record)
            if stream.tell() != len(block):
                raise DecodeError(Reason.TRUNCATED_AVRO, "block holds bytes past its records")
        except DecodeError as exc:
            exc.record_index = len(out)
            out.append(exc)
            break
    return definition, out


def _read_container_fastavro(buf: bytes) -> tuple[dict, list[dict | DecodeError]]:
    out: list[dict | DecodeError] = []
    try:
        reader = fastavro.reader(io.BytesIO(buf))
        schema = reader.writer_schema
        for record in reader:
            out.append(record)
    except Exception as exc:
        if not out and "reader" not in locals():
            raise DecodeError(Reason.TRUNCATED_AVRO, f"{type(exc).__name__}: {exc}") from exc
        out.append(DecodeError(Reason.TRUNCATED_AVRO, f"{type(exc).__name__}: {exc}", record_index=len(out)))
        schema = locals().get("schema", {})
    return schema, out


def read_schemaless(payload: bytes | memoryview, parsed_schema: Any, reader_schema: Any = None) -> dict:
    """One record of schemaless Avro; the payload must be used exactly (no trailing bytes)."""
    stream = io.BytesIO(payload)
    (record,) = list(_records(stream, parsed_schema, 1, reader_schema))
    if stream.tell() != len(payload):
        raise DecodeError(Reason.TRUNCATED_AVRO, f"{len(payload) - stream.tell()} bytes left after the record")
    return record
