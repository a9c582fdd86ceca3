"""Raw exposures and multi-band cutouts in our ``exposure`` schema: writer and decoder.

Framing: Confluent wire format, ``0x00`` + int32 schema id + schemaless Avro, with our id rule
``id = EXPOSURE_ID_OFFSET + 100 * major + minor`` (v1.0 -> 10100), kept far above Rubin's
``major*100+minor`` ids so one topic could carry both. Images: every image HDU with data, as
float32 (astropy's values, e.g. HST uint16 raw counts), keyed ``"EXTNAME,EXTVER"`` for raw
frames (``"SCI,1"``, ``"SCI,2"``) and by EXTNAME (the band, ``"W1"``) for multi-band cutouts.
"""
from __future__ import annotations

import functools
import gzip
import io
import math
from collections.abc import Mapping
from typing import Any

import fastavro
import numpy as np

import schemas
from schemas.alert import Exposure, InputKind
from schemas.decode.avro import frame_wire
from schemas.decode.errors import DecodeError, Reason
from schemas.decode.fits import inflate, is_gzip, read_fits

__all__ = [
    "EXPOSURE_ID_OFFSET",
    "EXPOSURE_SCHEMA_ID",
    "exposure_schema_id",
    "load_exposure_schema",
    "pack_exposure",
    "exposure_from_record",
    "is_exposure_record",
]

EXPOSURE_ID_OFFSET = 10000
_KINDS = {InputKind.RAW_EXPOSURE.value, InputKind.MULTIBAND_CUTOUT.value}


def exposure_schema_id(major: int, minor: int) -> int:
    return EXPOSURE_ID_OFFSET + 100 * major + minor


EXPOSURE_SCHEMA_ID = exposure_schema_id(*schemas.latest_version("exposure"))


@functools.cache
def load_exposure_schema(schema_id: int) -> Any:
    """Parsed fastavro schema for an exposure schema id (UNKNOWN_SCHEMA_ID if not shipped)."""
    major, minor = divmod(schema_id - EXPOSURE_ID_OFFSET, 100)
    try:
        return fastavro.parse_schema(schemas.load_schema("exposure", major, minor))
    except FileNotFoundError as exc:
        raise DecodeError(Reason.UNKNOWN_SCHEMA_ID, f"exposure schema id {schema_id}") from exc


def is_exposure_record(record: Mapping[str, Any]) -> bool:
    return "exposure_id" in record and "fits" in record


def pack_exposure(fits_bytes: bytes, *, exposure_id: str, instrument: str, filter: str,
                  exposure_time_s: float, mjd: float, kind: InputKind | str,
                  object_id: str | None = None, ra: float | None = None, dec: float | None = None,
                  compress: bool = False) -> bytes:
    """A Kafka message value for one FITS file (wire framing, schema id :data:`EXPOSURE_SCHEMA_ID`).

    ``fits_bytes`` may already be gzip; ``compress=True`` gzips plain FITS.
    """
    kind_value = InputKind(kind).value
    if kind_value not in _KINDS:
        raise ValueError(f"kind must be raw_exposure or multiband_cutout, got {kind_value!r}")
    payload = bytes(fits_bytes)
    encoding = "gzip" if is_gzip(payload) else "none"
    if compress and encoding == "none":
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
        encoding = "gzip"
    major, minor = schemas.latest_version("exposure")
    record = {
        "schema_version": f"{major}.{minor}",
        "exposure_id": exposure_id,
        "instrument": instrument,
        "filter": filter,
        "exposure_time_s": float(exposure_time_s),
        "mjd": float(mjd),
        "kind": kind_value,
        "object_id": object_id,
        "ra": None if ra is None else float(ra),
        "dec": None if dec is None else float(dec),
        "fits_encoding": encoding,
        "fits": payload,
    }
    out = io.BytesIO()
    fastavro.schemaless_writer(out, load_exposure_schema(EXPOSURE_SCHEMA_ID), record)
    return frame_wire(EXPOSURE_SCHEMA_ID, out.getvalue())


def exposure_from_record(record: Mapping[str, Any], *, max_inflated_bytes: int) -> Exposure:
    """Decode an exposure record; its FITS images become float32 arrays."""
    for key in ("exposure_id", "instrument", "filter", "exposure_time_s", "mjd", "kind", "fits"):
        if record.get(key) is None:
            raise DecodeError(Reason.MISSING_FIELD, f"{key} is missing")
    for key in ("exposure_id", "instrument", "filter", "kind"):
        if not isinstance(record[key], str):
            raise DecodeError(Reason.BAD_FIELD_TYPE, f"{key} is a {type(record[key]).__name__}, not a string")
    kind = record["kind"]
    if kind not in _KINDS:
        raise DecodeError(Reason.INVALID_FIELD, f"kind = {kind!r}")
    for key in ("exposure_time_s", "mjd", "ra", "dec"):
        value = record.get(key)
        if value is None and key in ("ra", "dec"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeError(Reason.BAD_FIELD_TYPE, f"{key} is a {type(value).__name__}, not a number")
        if not math.isfinite(value):
            raise DecodeError(Reason.INVALID_FIELD, f"{key} = {value!r}")
    if not isinstance(record["fits"], (bytes, bytearray, memoryview)):
        raise DecodeError(Reason.BAD_FIELD_TYPE, f"fits is a {type(record['fits']).__name__}, not bytes")
    if not isinstance(record.get("object_id") or "", str):
        raise DecodeError(Reason.BAD_FIELD_TYPE, "object_id is not a string")
    raw = bytes(record["fits"])
    if is_gzip(raw):
        raw = inflate(raw, max_inflated_bytes)
    elif record.get("fits_encoding") == "gzip":
        raise DecodeError(Reason.CORRUPT_GZIP, "fits_encoding says gzip but the bytes are not")
    hdus = read_fits(raw, max_data_bytes=max_inflated_bytes)
    planes = sum(h.data.size for h in hdus if h.data is not None) * 4
    if planes > 2 * max_inflated_bytes:  # float32 planes, checked before converting (uint8 data grows 4x)
        raise DecodeError(Reason.TOO_LARGE, f"exposure planes need {planes} bytes as float32 > {2 * max_inflated_bytes}")
    images: dict[str, np.ndarray] = {}
    headers: dict[str, Mapping[str, Any]] = {"PRIMARY": hdus[0].header}
    for hdu in hdus:
        if hdu.data is None or hdu.data.size == 0:
            continue
        if hdu.data.ndim != 2:
            raise DecodeError(Reason.BAD_NAXIS, f"{hdu.name},{hdu.ver}: NAXIS={hdu.data.ndim}")
        if hdu.data.dtype.kind not in "fiu":
            raise DecodeError(Reason.UNSUPPORTED_BITPIX, f"{hdu.name},{hdu.ver}: dtype {hdu.data.dtype}")
        name = hdu.name if kind == InputKind.MULTIBAND_CUTOUT.value else f"{hdu.name},{hdu.ver}"
        if name in images:
            raise DecodeError(Reason.BAD_FITS, f"two image HDUs named {name}")
        images[name] = hdu.data.astype(np.float32)
        headers[name] = hdu.header
    if not images:
        raise DecodeError(Reason.BAD_NAXIS, "the FITS file has no image with data")
    if not any(np.isfinite(a).any() for a in images.values()):
        raise DecodeError(Reason.ALL_NAN, "no finite pixel in any image")
    return Exposure(
        exposure_id=str(record["exposure_id"]),
        instrument=str(record["instrument"]),
        filter=str(record["filter"]),
        exposure_time_s=float(record["exposure_time_s"]),
        mjd=float(record["mjd"]),
        kind=InputKind(kind),
        images=images,
        headers=headers,
        object_id=record.get("object_id") or "",
        ra=record.get("ra"),
        dec=record.get("dec"),
        schema_version=str(record.get("schema_version") or "1.0"),
    )
