"""``--multiply K``: copies of an alert with fresh, unique alert ids (pure: no Kafka).

The id rule (documented here and in ``replay --help``): copy ``k`` (``1 <= k <= MAX_COPIES``)
of an alert whose id is ``X`` gets the id

    ``2**62 | k << 50 | (X mod 2**50)``

* Bit 62 set: no real id uses it (ZTF candids are ~3e18 < 2**62 ~ 4.6e18 and grow ~1e17 a
  year; Rubin diaSourceIds are ~2e17), so a copy never collides with a real alert.
* Bits 50..61 hold the copy index, so two copies of one alert never collide.
* The low 50 bits keep ``X mod 2**50``: alerts of one night differ by far less than
  ``2**50`` (~1.1e15; a ZTF night spans ~1e11 candids), so copies of different alerts of the
  same night never collide either.
* The rule is deterministic: replaying the same night again gives the same ids, so the
  service's deduplication recognises a second run as repeats, not new alerts.

Copy 0 is the original message, byte for byte. Copies are encoded the way the original was
(same writer schema and codec; Confluent-wire copies keep the schema id), re-encoding only the
top-level fields that hold the ids: the rest of the bytes are encoded once per original, which
makes copies several times cheaper (tests check the result equals a full encoding byte for byte). Which ids are rewritten: ZTF ``candid`` and
``candidate.candid``; Rubin ``diaSourceId`` (top level, schema 9+), ``alertId`` (schema < 8)
and ``diaSource.diaSourceId``. Object ids stay, so copies land on the object's partition.
"""
from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import fastavro

from stream.replay.sources import SourceKind, SourceMessage

__all__ = ["MultiplyError", "MAX_COPIES", "COPY_ID_BIT", "copy_alert_id", "make_copy", "multiply"]

COPY_ID_BIT = 1 << 62
_INDEX_SHIFT = 50
_LOW_MASK = (1 << _INDEX_SHIFT) - 1
#: Copy indices fit in bits 50..61.
MAX_COPIES = (1 << (62 - _INDEX_SHIFT)) - 1


class MultiplyError(ValueError):
    """A message cannot be copied (no alert id, or an index out of range)."""


def copy_alert_id(alert_id: int, copy_index: int) -> int:
    """The id of copy ``copy_index`` of alert ``alert_id`` (copy 0 keeps the original id)."""
    if copy_index == 0:
        return alert_id
    if not 1 <= copy_index <= MAX_COPIES:
        raise MultiplyError(f"copy index {copy_index} outside 1..{MAX_COPIES}")
    return COPY_ID_BIT | (copy_index << _INDEX_SHIFT) | (alert_id & _LOW_MASK)


def _with_new_ids(record: Mapping[str, Any], survey: str, new_id: int) -> dict[str, Any]:
    """A copy of ``record`` with its alert ids replaced (only the dicts on the way are copied:
    cutouts and histories are shared with the original, never edited)."""
    out = dict(record)
    if survey == "ztf":
        out["candid"] = new_id
        out["candidate"] = dict(record["candidate"], candid=new_id)
        return out
    for name in ("diaSourceId", "alertId"):
        if out.get(name) is not None:
            out[name] = new_id
    out["diaSource"] = dict(record["diaSource"], diaSourceId=new_id)
    return out


def _fullname(definition: Mapping[str, Any], namespace: str | None) -> str:
    name = str(definition["name"])
    if "." in name:
        return name
    space = definition.get("namespace", namespace)
    return f"{space}.{name}" if space else name


class _SplicedEncoder:
    """Avro encoding of one record's copies, re-encoding only the fields that change.

    A record's binary encoding is its fields' encodings one after another, so the unchanged
    top-level fields (cutouts, histories: nearly all the bytes) are encoded once per original
    and reused for every copy. Each top-level field type is encoded on its own, with every named
    type it uses inlined at its first use (so no field depends on another's definitions).
    """

    def __init__(self, schema: Any, record: Mapping[str, Any], changed: frozenset[str]) -> None:
        self._definitions: dict[str, dict] = {}
        self._collect(schema, None)
        namespace = schema.get("namespace") if "." not in str(schema["name"]) else str(schema["name"]).rsplit(".", 1)[0]
        self._fields: list[tuple[str, Any, bytes | None]] = []
        for field in schema["fields"]:
            parsed = fastavro.parse_schema(self._inline(field["type"], namespace, set()), named_schemas={})
            cached = None if field["name"] in changed else self._encode(parsed, record.get(field["name"]))
            self._fields.append((field["name"], parsed, cached))

    def _collect(self, node: Any, namespace: str | None) -> None:
        if isinstance(node, list):
            for item in node:
                self._collect(item, namespace)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "error", "enum", "fixed") and "name" in node:
                fullname = _fullname(node, namespace)
                self._definitions[fullname] = node
                namespace = fullname.rsplit(".", 1)[0] if "." in fullname else namespace
                for field in node.get("fields", ()):
                    self._collect(field["type"], namespace)
            elif kind == "array":
                self._collect(node["items"], namespace)
            elif kind == "map":
                self._collect(node["values"], namespace)
            elif isinstance(kind, (dict, list)):
                self._collect(kind, namespace)

    def _inline(self, node: Any, namespace: str | None, defined: set[str]) -> Any:
        if isinstance(node, list):
            return [self._inline(item, namespace, defined) for item in node]
        if isinstance(node, str):
            fullname = node if node in self._definitions else f"{namespace}.{node}" if namespace else node
            if fullname in self._definitions and fullname not in defined:
                return self._inline(self._definitions[fullname], namespace, defined)
            return fullname if fullname in self._definitions else node
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        if kind in ("record", "error", "enum", "fixed") and "name" in node:
            fullname = _fullname(node, namespace)
            if fullname in defined:
                return fullname
            defined.add(fullname)
            out = {k: v for k, v in node.items() if not k.startswith("__") and k not in ("fields", "namespace")}
            out["name"] = fullname
            if "fields" in node:
                inner = fullname.rsplit(".", 1)[0] if "." in fullname else namespace
                out["fields"] = [dict({k: v for k, v in f.items() if not k.startswith("__")},
                                      type=self._inline(f["type"], inner, defined)) for f in node["fields"]]
            return out
        out = {k: v for k, v in node.items() if not k.startswith("__")}
        if kind == "array":
            out["items"] = self._inline(node["items"], namespace, defined)
        elif kind == "map":
            out["values"] = self._inline(node["values"], namespace, defined)
        elif isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _PRIMITIVES):
            out["type"] = self._inline(kind, namespace, defined)
        return out

    @staticmethod
    def _encode(parsed: Any, value: Any) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, value)
        return buf.getvalue()

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """The schemaless Avro bytes of ``record`` (a copy differing only in the changed fields)."""
        return b"".join(cached if cached is not None else self._encode(parsed, record.get(name))
                        for name, parsed, cached in self._fields)


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string", "record", "enum",
                         "array", "map", "fixed", "error"})


def _varint_long(value: int) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", value)
    return buf.getvalue()


def _container_header(schema: Any, codec: str) -> bytes:
    """An Avro container header without its trailing 16-byte sync marker (written once per original)."""
    head = io.BytesIO()
    fastavro.writer(head, schema, [], codec=codec, sync_marker=b"\x00" * 16)  # header only
    return head.getvalue()[:-16]


def _container(header: bytes, codec: str, datum: bytes, marker: bytes) -> bytes:
    """A one-record Avro container around already-encoded record bytes (codecs null and deflate)."""
    if codec == "deflate":
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        datum = compressor.compress(datum) + compressor.flush()
    return header + marker + _varint_long(1) + _varint_long(len(datum)) + datum + marker


_CHANGED_FIELDS = {"ztf": frozenset({"candid", "candidate"}), "rubin": frozenset({"diaSourceId", "alertId", "diaSource"})}


class _Copier:
    """Makes the copies of one original message (the unchanged bytes encoded once)."""

    def __init__(self, message: SourceMessage) -> None:
        if message.survey not in ("ztf", "rubin") or message.record is None or message.alert_id is None:
            raise MultiplyError(f"{message.origin}: only ZTF and Rubin alerts with an id can be multiplied (got {message.survey})")
        self.message = message
        self._encoder: _SplicedEncoder | None = None
        self._header = b""
        if message.kind == SourceKind.WIRE or message.codec in ("null", "deflate"):
            try:
                self._encoder = _SplicedEncoder(message.writer_schema, message.record, _CHANGED_FIELDS[message.survey])
                if message.kind != SourceKind.WIRE:
                    self._header = _container_header(message.writer_schema, message.codec)
            except Exception:  # noqa: BLE001 - an unusual schema shape: encode copies whole instead
                self._encoder = None

    def copy(self, copy_index: int) -> SourceMessage:
        message = self.message
        if copy_index == 0:
            return message
        assert message.alert_id is not None and message.record is not None  # __init__ refused others
        new_id = copy_alert_id(message.alert_id, copy_index)
        record = _with_new_ids(message.record, message.survey, new_id)
        # A sync marker derived from the new id (not random) keeps re-runs byte-identical.
        marker = hashlib.blake2b(str(new_id).encode(), digest_size=16).digest()
        if self._encoder is not None:
            datum = self._encoder.encode(record)
            if message.kind == SourceKind.WIRE:
                value = b"\x00" + struct.pack(">i", message.wire_schema_id) + datum
            else:
                value = _container(self._header, message.codec, datum, marker)
        else:
            buf = io.BytesIO()
            if message.kind == SourceKind.WIRE:
                buf.write(b"\x00" + struct.pack(">i", message.wire_schema_id))
                fastavro.schemaless_writer(buf, message.writer_schema, record)
            else:
                fastavro.writer(buf, message.writer_schema, [record], codec=message.codec, sync_marker=marker)
            value = buf.getvalue()
        return replace(message, value=value, alert_id=new_id, record=record)


def make_copy(message: SourceMessage, copy_index: int) -> SourceMessage:
    """Copy ``copy_index`` of an alert message, encoded the way the original was."""
    if copy_index == 0:
        return message
    return _Copier(message).copy(copy_index)


def multiply(message: SourceMessage, copies: int) -> Iterator[tuple[int, SourceMessage]]:
    """``(copy index, message)`` for the original and ``copies - 1`` re-identified copies."""
    if copies < 1 or copies - 1 > MAX_COPIES:
        raise MultiplyError(f"--multiply must be between 1 and {MAX_COPIES + 1}, got {copies}")
    if copies == 1:
        yield 0, message
        return
    copier = _Copier(message)
    for index in range(copies):
        yield index, copier.copy(index)
