"""The survey's own quality flags of a detection, and a stated good-quality rule (pure).

What the packet already says about the detection, gathered into the classified record's
``quality`` block (v1.3) so a subscriber can cut on it without knowing each survey's field names:

* **ZTF** (``candidate``): ``nbad``, ``fwhm``, ``elong``, ``magdiff``, ``ssdistnr`` /
  ``ssnamenr``, ``isdiffpos``, and the signal-to-noise from ``sigmapsf``. The rule
  ``ztf-fink-v1`` is Fink's quality cut for ZTF (fink-broker's ``qualitycuts``):
  ``nbad == 0``, ``rb >= 0.55``, ``|magdiff| <= 0.1``.
* **Rubin** (``diaSource``): ``reliability`` (Rubin's own CNN), the pixel flags Rubin sets
  (saturated, cosmic ray, suspect and interpolated at the centre; bad and edge in the
  footprint), ``isDipole``, ``shape_flag``, ``snr``, ``isNegative``, and a known solar-system
  association (``ssObjectId``). The rule ``rubin-v1`` is ours, built only from those flags:
  ``reliability >= 0.5`` (Rubin's own alert cut since 2026-02-25), none of the pixel flags
  above, not a dipole, shape measured, ``snr >= 5``.

Every value is the survey's, never our model's. A field the packet's schema lacks is null, and
``good`` is null when a field its rule needs is missing (never a guess). A negative difference
flux is reported (``is_negative``) but does not fail either rule: a fading variable is real.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from schemas.alert import Alert, Exposure

__all__ = ["QUALITY_FIELDS", "ZTF_RULE", "RUBIN_RULE", "ZTF_SS_RADIUS_ARCSEC", "RUBIN_MIN_SNR", "quality_fields"]

#: The block's fields, in schema order (``schemas/classified/v1_3.avsc``, record ``quality_flags``).
QUALITY_FIELDS: tuple[str, ...] = (
    "good", "rule", "known_solar_system", "solar_system_name", "solar_system_distance_arcsec", "snr", "is_negative",
    "reliability", "saturated", "bad", "cosmic_ray", "edge", "interpolated", "suspect", "dipole", "shape_flag",
    "nbad", "fwhm", "elong", "magdiff",
)
ZTF_RULE = "ztf-fink-v1"
RUBIN_RULE = "rubin-v1"
#: A ZTF alert is associated with a known solar-system object within this distance (``ssdistnr``).
ZTF_SS_RADIUS_ARCSEC = 5.0
#: ``rubin-v1`` asks at least this signal-to-noise.
RUBIN_MIN_SNR = 5.0
#: ZTF's ``sigmapsf`` is a magnitude error: S/N = 2.5 / ln(10) / sigma.
_MAG_ERR_TO_SNR = 2.5 / math.log(10.0)
#: Rubin's pixel flags in the block -> the diaSource field each is read from.
_RUBIN_PIXEL_FLAGS: dict[str, str] = {
    "saturated": "pixelFlags_saturatedCenter",
    "bad": "pixelFlags_bad",
    "cosmic_ray": "pixelFlags_crCenter",
    "edge": "pixelFlags_edge",
    "interpolated": "pixelFlags_interpolatedCenter",
    "suspect": "pixelFlags_suspectCenter",
}


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    if number is None or not -2**31 <= number < 2**31:
        return None
    return int(number)


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _text(value: Any, limit: int = 64) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:limit] if text and text.lower() not in ("null", "none") else None


def _all(*conditions: bool | None) -> bool | None:
    """False if any condition is false; else null if any is unknown; else true."""
    if any(c is False for c in conditions):
        return False
    return None if any(c is None for c in conditions) else True


def _ztf(candidate: Mapping[str, Any]) -> dict[str, Any]:
    nbad, magdiff, rb = _integer(candidate.get("nbad")), _number(candidate.get("magdiff")), _number(candidate.get("rb"))
    distance = _number(candidate.get("ssdistnr"))
    distance = distance if distance is not None and distance >= 0 else None   # ZTF writes -999 for none
    name = _text(candidate.get("ssnamenr"))
    sigma = _number(candidate.get("sigmapsf"))
    isdiffpos = candidate.get("isdiffpos")
    return {
        "good": _all(None if nbad is None else nbad == 0, None if rb is None else rb >= 0.55,
                     None if magdiff is None else abs(magdiff) <= 0.1),
        "rule": ZTF_RULE,
        "known_solar_system": bool(name is not None and distance is not None and distance <= ZTF_SS_RADIUS_ARCSEC),
        "solar_system_name": name,
        "solar_system_distance_arcsec": distance,
        "snr": _MAG_ERR_TO_SNR / sigma if sigma is not None and sigma > 0 else None,
        "is_negative": None if isdiffpos is None else str(isdiffpos).strip().lower() in ("f", "0"),
        "nbad": nbad,
        "fwhm": _number(candidate.get("fwhm")),
        "elong": _number(candidate.get("elong")),
        "magdiff": magdiff,
    }


def _rubin_snr(candidate: Mapping[str, Any]) -> float | None:
    snr = _number(candidate.get("snr"))
    if snr is not None:
        return snr
    flux, err = _number(candidate.get("psfFlux")), _number(candidate.get("psfFluxErr"))
    return abs(flux) / err if flux is not None and err is not None and err > 0 else None


def _rubin(candidate: Mapping[str, Any], survey_scores: Mapping[str, float]) -> dict[str, Any]:
    ss_object = _text(candidate.get("ssObjectId"))      # null or 0: no known solar-system object
    known = None if "ssObjectId" not in candidate else ss_object not in (None, "0")
    reliability = _number(survey_scores.get("reliability", candidate.get("reliability")))
    negative = candidate.get("isNegative", candidate.get("is_negative"))
    flags = {name: _flag(candidate.get(field)) for name, field in _RUBIN_PIXEL_FLAGS.items()}
    dipole, shape = _flag(candidate.get("isDipole")), _flag(candidate.get("shape_flag"))
    snr = _rubin_snr(candidate)
    clean = [None if v is None else not v for v in (*flags.values(), dipole, shape)]
    return {
        "good": _all(None if reliability is None else reliability >= 0.5, *clean,
                     None if snr is None else snr >= RUBIN_MIN_SNR),
        "rule": RUBIN_RULE,
        "known_solar_system": known,
        "solar_system_name": ss_object if known else None,
        "snr": snr,
        "is_negative": None if negative is None else bool(negative),
        "reliability": reliability,
        **flags,
        "dipole": dipole,
        "shape_flag": shape,
    }


_SURVEYS: dict[str, Callable[[Alert], dict[str, Any]]] = {
    "ztf": lambda alert: _ztf(alert.candidate),
    "rubin": lambda alert: _rubin(alert.candidate, alert.survey_scores),
}


def quality_fields(item: Alert | Exposure) -> dict[str, Any] | None:
    """The ``quality`` block of ``item`` (every field of :data:`QUALITY_FIELDS`, null where the
    packet does not say), or None for an input no survey rule covers (exposures)."""
    if not isinstance(item, Alert):
        return None
    build = _SURVEYS.get(item.survey)
    if build is None:
        return None
    block = dict.fromkeys(QUALITY_FIELDS)
    block.update(build(item))
    return block
