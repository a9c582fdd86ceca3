"""The one JSON projection of a decoded input (an :class:`~schemas.alert.Alert` or an
:class:`~schemas.alert.Exposure`).

:func:`item_fields` is what the classified record says about its input (``alert_id`` as a
string; non-finite positions as null, survey scores as they came: :func:`json_ready` nulls
those for JSON); the record codec, ``classify`` and ``inspect`` all print
these same fields, so a line from one can be joined with a line from another on ``alert_id``.
:func:`describe_item` adds what ``inspect`` shows about the decoded arrays (shapes, schema).
"""
from __future__ import annotations

import functools
import math
from typing import Any

from schemas.alert import Alert, Exposure

__all__ = ["DETECTION_FIELDS", "MJD_TIME_SCALE", "finite_or_none", "json_ready", "utc_mjd_to_tai", "item_fields", "describe_item"]


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None for a missing, NaN or infinite value (JSON and Avro have no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


#: Survey ids as the surveys type them and the detection's photometry (classified v1.2 fields).
DETECTION_FIELDS: tuple[str, ...] = ("candid", "dia_source_id", "dia_object_id", "magpsf", "sigmapsf", "fid",
                                     "isdiffpos", "psf_flux", "psf_flux_err", "is_negative")

#: The one time scale of ``mjd`` in records from v1.2 on.
MJD_TIME_SCALE = "tai"


@functools.lru_cache(maxsize=4096)
def _tai_minus_utc_days(utc_day: int) -> float:
    """TAI - UTC on that UTC day, in days (astropy's leap-second table; constant within a day
    unless a leap second ends it, which none has since 2017)."""
    from astropy.time import Time  # astropy loads its leap-second tables on first use

    t = Time(float(utc_day) + 0.5, format="mjd", scale="utc")
    return float(t.tai.mjd - t.utc.mjd)


def utc_mjd_to_tai(mjd: float | None) -> float | None:
    """A UTC-based MJD (ZTF's jd - 2400000.5, FITS MJD-OBS) in TAI."""
    if mjd is None or not math.isfinite(mjd):
        return None
    return mjd + _tai_minus_utc_days(int(math.floor(mjd)))


def _tai_mjd(item: Any, mjd: float | None) -> float | None:
    """``mjd`` of ``item`` in TAI: Rubin sends TAI; ZTF and exposures are UTC-based."""
    if mjd is None:
        return None
    return float(mjd) if item.survey == "rubin" else utc_mjd_to_tai(float(mjd))


def _typed(value: Any, kind: type) -> Any:
    """``value`` as ``kind``, or None where it cannot be one the record can carry: not a number,
    not finite, or an integer outside Avro's 64-bit ``long`` (``int(inf)`` raises OverflowError)."""
    if value is None:
        return None
    try:
        out = kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if isinstance(out, float):
        return out if math.isfinite(out) else None
    if isinstance(out, int) and not -(2**63) <= out < 2**63:
        return None
    return out


def _detection_fields(item: Any) -> dict[str, Any]:
    """Survey ids as the survey types them and the detection's photometry (v1.2 fields)."""
    fields: dict[str, Any] = dict.fromkeys(DETECTION_FIELDS)
    candidate = getattr(item, "candidate", None) or {}
    if not isinstance(item, Alert):
        return fields
    if item.survey == "ztf":
        isdiffpos = candidate.get("isdiffpos")
        fields.update(candid=_typed(candidate.get("candid", item.alert_id), int), magpsf=_typed(candidate.get("magpsf"), float),
                      sigmapsf=_typed(candidate.get("sigmapsf"), float), fid=_typed(candidate.get("fid"), int),
                      isdiffpos=None if isdiffpos is None else str(isdiffpos))
    elif item.survey == "rubin":
        negative = candidate.get("is_negative", candidate.get("isNegative"))
        fields.update(dia_source_id=_typed(candidate.get("diaSourceId", item.alert_id), int),
                      dia_object_id=_typed(candidate.get("diaObjectId"), int),
                      psf_flux=_typed(candidate.get("psfFlux"), float), psf_flux_err=_typed(candidate.get("psfFluxErr"), float),
                      is_negative=None if negative is None else bool(negative))
    return fields


def json_ready(data: Any) -> Any:
    """``data`` with every non-finite float (a survey score may be NaN) replaced by None, for JSON."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_ready(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_ready(v) for v in data]
    return data


def item_fields(item: Alert | Exposure) -> dict[str, Any]:
    """The input's identity, position, time (TAI), photometry and the survey's own scores, as the
    classified record writes them."""
    if isinstance(item, Alert):
        alert_id, band = str(item.alert_id), item.band or None
        survey_scores = {str(k): float(v) for k, v in item.survey_scores.items()}
        survey_versions = {str(k): str(v) for k, v in item.survey_score_versions.items()}
    else:
        alert_id, band = item.exposure_id, item.filter or None
        survey_scores, survey_versions = {}, {}
    return {
        "survey": item.survey,
        "kind": item.kind.value,
        "alert_id": alert_id,
        "object_id": item.object_id or "",
        "ra": finite_or_none(item.ra),
        "dec": finite_or_none(item.dec),
        "mjd": _tai_mjd(item, finite_or_none(item.mjd)),
        "mjd_time_scale": MJD_TIME_SCALE if finite_or_none(item.mjd) is not None else None,
        "band": band,
        "survey_scores": survey_scores,
        "survey_score_versions": survey_versions,
        **_detection_fields(item),
    }


def describe_item(item: Alert | Exposure) -> dict[str, Any]:
    """:func:`item_fields` plus the packet's schema version and the shapes of its images."""
    out = {**item_fields(item), "schema_version": item.schema_version}
    if isinstance(item, Alert):
        out["stamps"] = {n: list(getattr(item, n).shape) for n in ("science", "template", "difference")}
        out["stamp_extra"] = sorted(item.science.extra)
    else:
        out["instrument"] = item.instrument
        out["filter"] = item.filter
        out["images"] = {n: list(a.shape) for n, a in item.images.items()}
    return out
