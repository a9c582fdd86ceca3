"""ZTF alert record (any schema version, v1 pre-survey to v4.02) -> :class:`~schemas.alert.Alert`."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from schemas.alert import Alert, ReadOnlyFields
from schemas.decode.errors import DecodeError, Reason
from schemas.decode.stamps import STAMP_MAX_SIDE, ZTF_QUADRANT_SHAPE, stamp_from_cutout

__all__ = ["alert_from_ztf_record", "ZTF_BANDS", "is_ztf_record"]

#: ZTF filter id -> band.
ZTF_BANDS: dict[int, str] = {1: "g", 2: "r", 3: "i"}
_CUTOUTS = (("science", "cutoutScience"), ("template", "cutoutTemplate"), ("difference", "cutoutDifference"))


def is_ztf_record(record: Mapping[str, Any]) -> bool:
    return "candidate" in record and "cutoutScience" in record


def _required(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    value = mapping.get(key)
    if value is None:
        raise DecodeError(Reason.MISSING_FIELD, f"{where}{key} is missing or null")
    return value


def _number(mapping: Mapping[str, Any], key: str, where: str) -> float:
    value = _required(mapping, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecodeError(Reason.BAD_FIELD_TYPE, f"{where}{key} is a {type(value).__name__}, not a number")
    if not math.isfinite(value):
        raise DecodeError(Reason.INVALID_FIELD, f"{where}{key} = {value!r}")
    return float(value)


def _typed(mapping: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = _required(mapping, key, where)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise DecodeError(Reason.BAD_FIELD_TYPE, f"{where}{key} is a {type(value).__name__}, not {what}")
    return value


def _stamp_bytes(record: Mapping[str, Any], field: str) -> bytes | None:
    cutout = record.get(field)
    if isinstance(cutout, Mapping):
        return cutout.get("stampData")
    return cutout  # older schemas: the bytes themselves; anything else is refused as BAD_FIELD_TYPE


def alert_from_ztf_record(record: Mapping[str, Any], *, max_inflated_bytes: int) -> Alert:
    """Build an Alert; stamps are decoded first so JPEG pre-survey packets say JPEG_CUTOUT."""
    stamps = {
        name: stamp_from_cutout(_stamp_bytes(record, field), name=field, max_inflated_bytes=max_inflated_bytes,
                                max_side=STAMP_MAX_SIDE["ztf"])
        for name, field in _CUTOUTS
    }
    candidate = record.get("candidate")
    if not isinstance(candidate, Mapping):
        raise DecodeError(Reason.MISSING_FIELD, "candidate is missing")
    candid = _typed(record, "candid", "", int, "an integer")
    object_id = _typed(record, "objectId", "", str, "a string")
    ra = _number(candidate, "ra", "candidate.")
    dec = _number(candidate, "dec", "candidate.")
    jd = _number(candidate, "jd", "candidate.")
    if not (0.0 <= ra <= 360.0 and -90.0 <= dec <= 90.0):
        raise DecodeError(Reason.INVALID_FIELD, f"position ra={ra} dec={dec}")
    fid = _typed(candidate, "fid", "candidate.", int, "an integer")
    band = ZTF_BANDS.get(fid)
    if band is None:
        raise DecodeError(Reason.INVALID_FIELD, f"candidate.fid = {fid!r}")
    scores: dict[str, float] = {}
    versions: dict[str, str] = {}
    for key in ("rb", "drb"):
        value = candidate.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            scores[key] = float(value)
            version = candidate.get(f"{key}version")
            if version:
                versions[key] = str(version)
    return Alert(
        survey="ztf",
        alert_id=int(candid),
        object_id=str(object_id),
        ra=ra,
        dec=dec,
        mjd=jd - 2400000.5,
        band=band,
        science=stamps["science"],
        template=stamps["template"],
        difference=stamps["difference"],
        schema_version=str(record.get("schemavsn") or "unversioned")[:64],
        survey_scores=scores,
        survey_score_versions=versions,
        position_px=_position(candidate),
        detector_shape=ZTF_QUADRANT_SHAPE,
        candidate=ReadOnlyFields(candidate),
    )


def _position(candidate: Mapping[str, Any]) -> tuple[float, float] | None:
    x, y = candidate.get("xpos"), candidate.get("ypos")
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isfinite(x) and math.isfinite(y):
        return (float(x), float(y))
    return None
