"""What every decoded item must satisfy before it goes on to scoring and the classified record.

The survey decoders check the fields they read; this module checks what every later stage
relies on, whichever decoder built the item, so no valid-looking input can fail after decode:

* ids fit the record's Avro ``long`` (a ``candidate.candid`` declared ``double`` holding
  ``inf`` or ``1e30`` is refused, not projected);
* every text field the record carries is short (an ``objectId`` of megabytes would make the
  record and its key exceed the producer's ``message.max.bytes``);
* a multi-band cutout has the bands its instrument's models read, all of one 2-D shape.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from schemas.alert import Alert, Exposure, InputKind
from schemas.decode.errors import DecodeError, Reason

__all__ = ["MAX_ID_CHARS", "MAX_TEXT_CHARS", "INT64_MIN", "INT64_MAX", "MULTIBAND_BANDS", "check_item"]

#: Longest id text (ZTF objectId: 12 characters; Rubin ids are numbers; exposure ids are file names).
MAX_ID_CHARS = 256
#: Longest other text copied into the record (band, instrument, filter, score versions, isdiffpos).
MAX_TEXT_CHARS = 256
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Bands a multi-band cutout must carry, per instrument (what its models read: WISE W1/W2/W3).
MULTIBAND_BANDS: dict[str, tuple[str, ...]] = {"WISE": ("W1", "W2", "W3")}
#: Survey ids in the detection record that the classified record carries as ``long``.
_ID_FIELDS = ("candid", "diaSourceId", "diaObjectId")
#: Text fields of the detection record the classified record carries.
_TEXT_FIELDS = ("isdiffpos",)


def _int64(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and not math.isfinite(value):
            raise DecodeError(Reason.INVALID_FIELD, f"{where} = {value!r}")
        raise DecodeError(Reason.BAD_FIELD_TYPE, f"{where} is a {type(value).__name__}, not an integer")
    if not INT64_MIN <= value <= INT64_MAX:
        raise DecodeError(Reason.INVALID_FIELD, f"{where} = {value} is outside a 64-bit integer")


def _text(value: Any, where: str, cap: int) -> None:
    if value is None:
        return
    text = value if isinstance(value, str) else str(value)
    if len(text) > cap:
        raise DecodeError(Reason.INVALID_FIELD, f"{where} is {len(text)} characters long (at most {cap})")


def _check_alert(item: Alert) -> None:
    _int64(item.alert_id, "alert id")
    _text(item.object_id, "object id", MAX_ID_CHARS)
    _text(item.band, "band", MAX_TEXT_CHARS)
    for key, version in item.survey_score_versions.items():
        _text(version, f"{key} version", MAX_TEXT_CHARS)
    candidate: Mapping[str, Any] = item.candidate or {}
    for key in _ID_FIELDS:
        value = candidate.get(key)
        if value is not None:
            _int64(value, f"{key}")
    for key in _TEXT_FIELDS:
        value = candidate.get(key)
        if value is not None:
            _text(value, key, MAX_TEXT_CHARS)


def _check_exposure(item: Exposure) -> None:
    _text(item.exposure_id, "exposure_id", MAX_ID_CHARS)
    _text(item.object_id, "object_id", MAX_ID_CHARS)
    for key in ("instrument", "filter", "schema_version"):
        _text(getattr(item, key), key, MAX_TEXT_CHARS)
    if item.kind == InputKind.MULTIBAND_CUTOUT:
        needed = MULTIBAND_BANDS.get(item.instrument, ())
        missing = [b for b in needed if b not in item.images]
        if missing:
            raise DecodeError(Reason.MISSING_FIELD, f"{item.instrument} multi-band cutout lacks bands {missing} "
                                                    f"(has {sorted(item.images)[:10]})")
        shapes = {tuple(a.shape) for a in item.images.values()}
        if len(shapes) != 1:
            raise DecodeError(Reason.BAD_STAMP_SHAPE, f"band images differ in shape: {sorted(shapes)[:10]}")


def check_item(item: Alert | Exposure) -> Alert | Exposure:
    """``item`` unchanged, or :class:`DecodeError` naming the first field a later stage could not use."""
    if isinstance(item, Alert):
        _check_alert(item)
    else:
        _check_exposure(item)
    return item
