"""Skipping an alert's history arrays without visiting each field in Python.

A real LSSTCam alert carries a year of history: ~400 ``prvDiaSources`` and ~570
``prvDiaForcedSources``, some 50,000 Avro fields that the alert model never reads. fastavro skips
a field left out of the reader schema by walking it field by field, which cost ~6 of the ~7 CPU ms
that decoding such a packet took (against ~0.5 ms for one without history).

Here a history item's schema (a record of numbers, booleans, short strings and unions of them)
is compiled once into a regular expression over its binary encoding, and an array is skipped by
matching that expression once per item, in C. Avro's encoding of such a record is a sequence of
fixed-width values, variable-length integers (a run of bytes with the high bit set, then one
without) and union branches chosen by their first byte, so the expression matches at most one
way at every position: it takes time linear in the bytes, whatever they are. Strings and bytes
match only up to :data:`MAX_SHORT_BYTES` (one or two length bytes); an item with a longer one, a nested
array or map, or anything else the expression does not describe makes :func:`Skipper.skip`
return None, and the caller reads the record the usual way, which also gives the usual error for
a broken one. So the fast path never accepts what fastavro would refuse, and never decides a
record's fate on its own.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["MAX_SHORT_BYTES", "Skipper", "compile_skipper", "item_pattern"]

#: Longest string or bytes value a history item may hold for the fast path: lengths to 63 take one
#: byte, to 191 two (ZTF's file names in ``prv_candidates`` run to ~100 characters).
MAX_SHORT_BYTES = 191
#: An Avro int or long: zig-zag varint of at most 10 bytes.
_VARINT = rb"[\x80-\xff]{0,9}[\x00-\x7f]"
_FIXED = {"null": b"", "boolean": rb"[\x00\x01]", "int": _VARINT, "long": _VARINT, "float": rb".{4}", "double": rb".{8}"}


def _length_prefix(n: int) -> bytes:
    """The zig-zag varint of a length ``n`` <= 8191 (what precedes a string or bytes value)."""
    return bytes([2 * n]) if n < 64 else bytes([0x80 | (2 * n & 0x7F), 2 * n >> 7])


_SHORT = rb"(?:" + rb"|".join(re.escape(_length_prefix(n)) + (rb".{%d}" % n if n else b"")
                              for n in range(MAX_SHORT_BYTES + 1)) + rb")"
_MAX_DEPTH = 16


def _full_name(schema: dict, namespace: str) -> str:
    name = str(schema.get("name", ""))
    ns = schema.get("namespace", namespace) or ""
    return name if "." in name or not ns else f"{ns}.{name}"


def item_pattern(schema: Any, named: dict[str, Any], namespace: str = "", depth: int = 0) -> bytes | None:
    """The regular expression (bytes) matching one binary-encoded value of ``schema``, or None
    where the value is not made of fixed-width values, varints, short strings and unions."""
    if depth > _MAX_DEPTH:
        return None
    if isinstance(schema, str):
        if schema in _FIXED:
            return _FIXED[schema]
        if schema in ("string", "bytes"):
            return _SHORT
        target = named.get(schema) or named.get(f"{namespace}.{schema}")
        return None if target is None else item_pattern(target, named, namespace, depth + 1)
    if isinstance(schema, list):
        if not schema or len(schema) > 64:   # a branch index of one byte
            return None
        branches = []
        for index, branch in enumerate(schema):
            inner = item_pattern(branch, named, namespace, depth + 1)
            if inner is None:
                return None
            branches.append(re.escape(bytes([2 * index])) + inner)
        return rb"(?:" + rb"|".join(branches) + rb")"
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind == "record" or kind == "error":
        namespace = _full_name(schema, namespace).rpartition(".")[0]
        parts = []
        for field in schema.get("fields") or []:
            inner = item_pattern(field.get("type") if isinstance(field, dict) else None, named, namespace, depth + 1)
            if inner is None:
                return None
            parts.append(inner)
        return b"".join(parts)
    if kind == "enum":
        return _VARINT
    if kind == "fixed" and isinstance(schema.get("size"), int) and schema["size"] >= 0:
        return rb".{%d}" % schema["size"]
    if isinstance(kind, (str, list)) and kind not in ("array", "map"):
        return item_pattern(kind, named, namespace, depth + 1)
    return None


def _read_long(buf: memoryview | bytes, pos: int) -> tuple[int, int] | None:
    """(value, position after it) of the zig-zag varint at ``pos``, or None past the end or past 10 bytes."""
    acc = shift = 0
    for i in range(pos, min(pos + 10, len(buf))):
        byte = buf[i]
        acc |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (acc >> 1) ^ -(acc & 1), i + 1
        shift += 7
    return None


class Skipper:
    """Skips one value of an array field (or a union of null and an array) of items that
    :func:`item_pattern` describes. ``skip(buf, pos)`` gives the position after the value, or None
    where the fast path cannot tell (then read the record the usual way)."""

    def __init__(self, item: bytes, nullable: int | None) -> None:
        self._item = re.compile(item, re.DOTALL)
        #: the union branch index of the array where the field is [null, array] or [array, null]; None: a bare array
        self._array_branch = nullable

    def skip(self, buf: memoryview | bytes, pos: int) -> int | None:
        if self._array_branch is not None:
            branch = _read_long(buf, pos)
            if branch is None or branch[0] not in (0, 1):
                return None
            pos = branch[1]
            if branch[0] != self._array_branch:
                return pos  # the null branch
        match = self._item.match
        end = len(buf)
        while True:
            head = _read_long(buf, pos)
            if head is None:
                return None
            count, pos = head
            if count == 0:
                return pos
            if count < 0:  # a block that also gives its size in bytes: still matched item by item, to stay exact
                size = _read_long(buf, pos)
                if size is None:
                    return None
                count, pos = -count, size[1]
            if count > end - pos:  # every item takes at least one byte (zero-size schemas are refused)
                return None
            for _ in range(count):
                found = match(buf, pos)
                if found is None:
                    return None
                pos = found.end()


def compile_skipper(field_type: Any, named: dict[str, Any], namespace: str = "") -> Skipper | None:
    """A :class:`Skipper` for a field of ``field_type``: an array of describable items, or a union
    of null and one. None for anything else (the field is then skipped by fastavro)."""
    nullable: int | None = None
    array = field_type
    if isinstance(field_type, list):
        arrays = [i for i, b in enumerate(field_type) if isinstance(b, dict) and b.get("type") == "array"]
        if len(field_type) != 2 or len(arrays) != 1 or "null" not in field_type:
            return None
        nullable = arrays[0]
        array = field_type[nullable]
    if not (isinstance(array, dict) and array.get("type") == "array"):
        return None
    pattern = item_pattern(array.get("items"), named, namespace)
    if not pattern:  # None, or an item that encodes in zero bytes
        return None
    return Skipper(pattern, nullable)


