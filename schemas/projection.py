"""The one JSON projection of a decoded input (an :class:`~schemas.alert.Alert` or an
:class:`~schemas.alert.Exposure`).

:func:`item_fields` is what the classified record says about its input (``alert_id`` as a
string; non-finite positions as null, survey scores as they came: :func:`json_ready` nulls
those for JSON); the record codec, ``classify`` and ``inspect`` all print
these same fields, so a line from one can be joined with a line from another on ``alert_id``.
:func:`describe_item` adds what ``inspect`` shows about the decoded arrays (shapes, schema).
"""
from __future__ import annotations

import math
from typing import Any

from schemas.alert import Alert, Exposure

__all__ = ["finite_or_none", "json_ready", "item_fields", "describe_item"]


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None for a missing, NaN or infinite value (JSON and Avro have no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


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
    """The input's identity, position and the survey's own scores, as the classified record writes them."""
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
        "mjd": finite_or_none(item.mjd),
        "band": band,
        "survey_scores": survey_scores,
        "survey_score_versions": survey_versions,
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
