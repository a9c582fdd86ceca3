"""Units and meanings of the classified record's fields, for file headers and metadata.

The Avro schema's field docs are the one source of meaning (:func:`field_docs`); the units here
are what the CSV header and the Parquet field metadata carry, so a file read without the schema
still says that ``ra`` is in degrees and ``mjd`` is a TAI date.
"""
from __future__ import annotations

import functools

__all__ = ["FIELD_UNITS", "field_docs", "csv_header_name", "SURVEY_SCORE_NAMES"]

#: field -> unit (fields without a unit are left out).
FIELD_UNITS: dict[str, str] = {
    "ra": "deg", "dec": "deg", "mjd": "d (MJD, TAI)",
    "real_bogus": "probability", "top_prob": "probability",
    "magpsf": "mag (AB)", "sigmapsf": "mag", "psf_flux": "nJy", "psf_flux_err": "nJy",
    "source_timestamp_ms": "ms since 1970 (UTC)", "ingested_ms": "ms since 1970 (UTC)",
    "classified_ms": "ms since 1970 (UTC)", "timestamp_ms": "ms since 1970 (UTC)",
}

#: The surveys' own scores, as ``survey_scores`` keys: ZTF rb and drb, Rubin reliability.
SURVEY_SCORE_NAMES: tuple[str, ...] = ("drb", "rb", "reliability")


@functools.cache
def field_docs() -> dict[str, str]:
    """field name -> the doc of the latest classified schema (empty where it has none)."""
    from schemas.classified_record import classified_schema

    return {f["name"]: str(f.get("doc", "")) for f in classified_schema()["fields"]}


def csv_header_name(column: str) -> str:
    """``ra [deg]``: the column name with its unit, if it has one."""
    unit = FIELD_UNITS.get(column)
    if unit is None and column.startswith(("class_scores.", "survey_scores.", "scores.")) and column != "class_scores.other":
        unit = "probability"
    return f"{column} [{unit}]" if unit else column
