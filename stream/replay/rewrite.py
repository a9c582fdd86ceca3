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

Copy 0 is the original message, byte for byte. Which ids are rewritten: ZTF ``candid`` and
``candidate.candid``; Rubin ``diaSourceId`` (top level, schema 9+), ``alertId`` (schema < 8)
and ``diaSource.diaSourceId``. Object ids stay, so copies land on the object's partition.
"""
from __future__ import annotations

import copy
import hashlib
import io
import struct
from collections.abc import Iterator
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


def _rewrite_ids(record: dict[str, Any], survey: str, new_id: int) -> None:
    if survey == "ztf":
        record["candid"] = new_id
        record["candidate"]["candid"] = new_id
        return
    for name in ("diaSourceId", "alertId"):
        if record.get(name) is not None:
            record[name] = new_id
    record["diaSource"]["diaSourceId"] = new_id


def make_copy(message: SourceMessage, copy_index: int) -> SourceMessage:
    """Copy ``copy_index`` of an alert message, encoded the way the original was."""
    if copy_index == 0:
        return message
    if message.survey not in ("ztf", "rubin") or message.record is None or message.alert_id is None:
        raise MultiplyError(f"{message.origin}: only ZTF and Rubin alerts with an id can be multiplied (got {message.survey})")
    new_id = copy_alert_id(message.alert_id, copy_index)
    record = copy.deepcopy(dict(message.record))
    _rewrite_ids(record, message.survey, new_id)
    buf = io.BytesIO()
    if message.kind == SourceKind.WIRE:
        buf.write(b"\x00" + struct.pack(">i", message.wire_schema_id))
        fastavro.schemaless_writer(buf, message.writer_schema, record)
    else:
        # A sync marker derived from the new id (not random) keeps re-runs byte-identical.
        marker = hashlib.blake2b(str(new_id).encode(), digest_size=16).digest()
        fastavro.writer(buf, message.writer_schema, [record], codec=message.codec, sync_marker=marker)
    return replace(message, value=buf.getvalue(), alert_id=new_id, record=record)


def multiply(message: SourceMessage, copies: int) -> Iterator[tuple[int, SourceMessage]]:
    """``(copy index, message)`` for the original and ``copies - 1`` re-identified copies."""
    if copies < 1 or copies - 1 > MAX_COPIES:
        raise MultiplyError(f"--multiply must be between 1 and {MAX_COPIES + 1}, got {copies}")
    for index in range(copies):
        yield index, make_copy(message, index)
