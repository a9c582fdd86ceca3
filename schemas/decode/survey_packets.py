"""The survey's own packet, rebuilt from a broker's dump row (pure).

Fink's Parquet dumps hold Rubin's alert fields (``diaSource``, ``diaObject``, cutouts, ...) beside
the broker's own columns (``lc_features``, ``xm``, ``clf``, ...). ``replay`` must send what Rubin
sent, not the Spark row: :func:`rubin_packet` keeps exactly the fields of the Rubin schema the row
names (``lsst_schema_version``, e.g. ``lsst.v10_0``), encodes them with that schema as shipped in
``lsst-alert-packet``, and frames them the way Rubin's Kafka does (Confluent wire, schema id
``major * 100 + minor``). Spark writes an absent optional record as a struct of nulls; those
become null again.
"""
from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import Any

import fastavro

from schemas.decode.avro import frame_wire
from schemas.decode.errors import DecodeError, Reason
from schemas.decode.rubin import load_rubin_schema

__all__ = ["rubin_packet", "rubin_schema_id", "spark_nulls"]

_VERSION = re.compile(r"lsst\.v(\d+)_(\d+)")
_PARSED: dict[int, Any] = {}


def rubin_schema_id(version: Any) -> int | None:
    """``lsst.v10_0`` -> 1000 (Rubin's rule); None for anything else."""
    match = _VERSION.fullmatch(str(version or "").strip())
    return None if match is None else int(match.group(1)) * 100 + int(match.group(2))


def spark_nulls(value: Any) -> Any:
    """``value`` with every struct whose fields are all null (Spark's absent record) as null."""
    if isinstance(value, dict):
        cleaned = {k: spark_nulls(v) for k, v in value.items()}
        return None if cleaned and all(v is None for v in cleaned.values()) else cleaned
    if isinstance(value, list):
        return [spark_nulls(v) for v in value]
    return value


def rubin_packet(row: Mapping[str, Any]) -> bytes:
    """Rubin's own packet (Confluent wire) for a dump row; ``DecodeError`` when the row names no
    Rubin schema shipped here or does not fit it (a column Spark retyped, say)."""
    schema_id = rubin_schema_id(row.get("lsst_schema_version"))
    if schema_id is None:
        raise DecodeError(Reason.UNKNOWN_SCHEMA_ID, f"lsst_schema_version {row.get('lsst_schema_version')!r} names no Rubin schema")
    schema = _PARSED.get(schema_id)
    if schema is None:
        schema = _PARSED[schema_id] = load_rubin_schema(schema_id)
    names = [f["name"] for f in schema["fields"]]
    out = io.BytesIO()
    try:
        fastavro.schemaless_writer(out, schema, {name: spark_nulls(row.get(name)) for name in names})
    except (ValueError, TypeError, OverflowError) as exc:
        raise DecodeError(Reason.BAD_FIELD_TYPE, f"row does not fit Rubin schema {schema_id}: {exc}"[:300]) from exc
    return frame_wire(schema_id, out.getvalue())
