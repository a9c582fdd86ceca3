"""Rubin alerts: schema ids (registry or shipped ``lsst-alert-packet``) and record -> Alert.

Schema ids follow Rubin's rule ``id = major * 100 + minor`` (``lsst.alert.packet.Schema
.get_schema_id``); no id is assumed. With a fetcher (``stream.schema_registry`` builds one for a
Confluent-compatible registry) the id is looked up there, cached per resolver; without one it is
looked up among the schemas shipped in ``lsst-alert-packet``.
"""
from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import fastavro

from schemas.alert import Alert, ReadOnlyFields
from schemas.decode.avro import check_schema_is_safe, projection
from schemas.decode.errors import DecodeError, Reason
from schemas.decode.stamps import STAMP_MAX_SIDE, stamp_from_cutout

__all__ = [
    "load_rubin_schema",
    "rubin_schema_definition",
    "SchemaResolver",
    "SchemaFetcher",
    "SchemaRegistryError",
    "alert_from_rubin_record",
    "is_rubin_record",
]


class SchemaRegistryError(RuntimeError):
    """The configured schema registry could not be reached (our fault, not the message's)."""


def load_rubin_schema(schema_id: int) -> dict:
    """The parsed fastavro schema of Rubin alert schema ``schema_id`` shipped in lsst-alert-packet.

    Raises ``DecodeError(UNKNOWN_SCHEMA_ID)`` when the package ships no such version.
    """
    return cast(dict, fastavro.parse_schema(rubin_schema_definition(schema_id)))  # a record schema parses to a dict


@functools.lru_cache(maxsize=64)
def rubin_schema_definition(schema_id: int) -> dict:
    """The JSON definition (all references resolved) of shipped Rubin schema ``schema_id``."""
    from lsst.alert.packet import Schema, get_schema_path

    if not isinstance(schema_id, int) or schema_id < 100:
        raise DecodeError(Reason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id!r}")
    major, minor = divmod(schema_id, 100)
    path = Path(get_schema_path(major, minor)) / f"lsst.v{major}_{minor}.alert.avsc"
    if not path.is_file():
        raise DecodeError(Reason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id} (lsst.v{major}_{minor}) is not shipped in lsst-alert-packet")
    return Schema.from_file(str(path)).definition


#: Fetches a schema definition (parsed JSON) by id from a schema registry. Raises
#: ``DecodeError(UNKNOWN_SCHEMA_ID)`` when the registry does not know the id (the message's
#: fault) and :class:`SchemaRegistryError` when it cannot answer (ours). The HTTP client that
#: implements it lives in ``stream.schema_registry``: this package does no I/O.
SchemaFetcher = Callable[[int], Any]


class SchemaResolver:
    """Schema id -> (parsed writer schema, its :class:`~schemas.decode.avro.Projection` or None, version label).

    ``fetch`` None: Rubin schemas shipped in lsst-alert-packet. Otherwise ``fetch(id)`` returns
    the definition (a registry lookup). Ids at or above
    :data:`schemas.decode.exposure.EXPOSURE_ID_OFFSET` are our exposure schemas (always local).
    Thread-safe; results are cached for the life of the resolver.
    """

    def __init__(self, fetch: SchemaFetcher | None = None, *, source: str = "") -> None:
        self.fetch = fetch
        #: Where fetched schemas come from, for labels and messages (credentials already removed).
        self.source = source
        self._cache: dict[int, tuple[Any, Any, str]] = {}
        self._lock = threading.Lock()

    def resolve(self, schema_id: int) -> tuple[Any, Any, str]:
        hit = self._cache.get(schema_id)
        if hit is not None:
            return hit
        with self._lock:
            hit = self._cache.get(schema_id) or self._load(schema_id)
            self._cache[schema_id] = hit
            return hit

    def _load(self, schema_id: int) -> tuple[Any, Any, str]:
        from schemas.decode.exposure import EXPOSURE_ID_OFFSET, load_exposure_schema

        if schema_id >= EXPOSURE_ID_OFFSET:
            return load_exposure_schema(schema_id), None, "exposure"
        if self.fetch is None:
            major, minor = divmod(schema_id, 100)
            definition = rubin_schema_definition(schema_id)
            return fastavro.parse_schema(definition), projection(definition), f"lsst.v{major}_{minor}"
        definition = self.fetch(schema_id)
        try:
            check_schema_is_safe(definition)
            parsed = fastavro.parse_schema(definition)
        except DecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - the registry answered: a schema that is not Avro is the message's
            raise DecodeError(Reason.BAD_SCHEMA, f"schema id {schema_id} from {self.source or 'registry'} is not a usable "
                                                 f"Avro schema: {type(exc).__name__}: {exc}"[:500]) from None
        name = definition.get("name", "") if isinstance(definition, dict) else ""
        label = name.rsplit(".", 1)[0] if name.startswith("lsst.") else f"registry:{schema_id}"
        return parsed, projection(definition), label


def is_rubin_record(record: Mapping[str, Any]) -> bool:
    return "diaSource" in record


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def alert_from_rubin_record(record: Mapping[str, Any], *, schema_version: str, max_inflated_bytes: int) -> Alert:
    """Build an Alert from a Rubin alert record (Rubin's schema or Fink's ``topLevelRecord``).

    Older field names are accepted (``decl``, ``midPointTai``, ``filterName``). ``object_id``
    is ``str(diaObjectId)``; a solar-system source without one gets ``"ss:<ssObjectId>"``.
    """
    source = record.get("diaSource")
    if not isinstance(source, Mapping):
        raise DecodeError(Reason.MISSING_FIELD, "diaSource is missing")
    alert_id = _first(source, "diaSourceId")
    if alert_id is None:
        alert_id = _first(record, "diaSourceId", "alertId")
    if alert_id is None:
        raise DecodeError(Reason.MISSING_FIELD, "diaSource.diaSourceId is missing")
    if isinstance(alert_id, bool) or not isinstance(alert_id, int):
        raise DecodeError(Reason.BAD_FIELD_TYPE, f"diaSourceId is a {type(alert_id).__name__}, not an integer")
    obj = record.get("diaObject")
    if not isinstance(obj, Mapping):
        obj = {}
    object_id = _first(source, "diaObjectId")
    if object_id is None:
        object_id = obj.get("diaObjectId")
    if object_id is not None:
        object_id = str(object_id)
    elif source.get("ssObjectId") is not None:
        object_id = f"ss:{source['ssObjectId']}"
    else:
        raise DecodeError(Reason.MISSING_FIELD, "diaSource.diaObjectId and ssObjectId are both missing")
    ra, dec, mjd = _first(source, "ra"), _first(source, "dec", "decl"), _first(source, "midpointMjdTai", "midPointTai")
    for key, value in (("ra", ra), ("dec", dec), ("midpointMjdTai", mjd)):
        if value is None:
            raise DecodeError(Reason.MISSING_FIELD, f"diaSource.{key} is missing or null")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeError(Reason.BAD_FIELD_TYPE, f"diaSource.{key} is a {type(value).__name__}, not a number")
        if not _finite(value):
            raise DecodeError(Reason.INVALID_FIELD, f"diaSource.{key} = {value!r}")
    if not (0.0 <= ra <= 360.0 and -90.0 <= dec <= 90.0):
        raise DecodeError(Reason.INVALID_FIELD, f"position ra={ra} dec={dec}")
    stamps = {
        name: stamp_from_cutout(record.get(field), name=field, max_inflated_bytes=max_inflated_bytes, keep_extra_planes=True,
                                max_side=STAMP_MAX_SIDE["rubin"])
        for name, field in (("science", "cutoutScience"), ("template", "cutoutTemplate"), ("difference", "cutoutDifference"))
    }
    scores: dict[str, float] = {}
    versions: dict[str, str] = {}
    if _finite(source.get("reliability")):
        scores["reliability"] = float(source["reliability"])
        version = _first(source, "reliabilityVersion") or record.get("reliabilityVersion")
        if version:
            versions["reliability"] = str(version)
    return Alert(
        survey="rubin",
        alert_id=int(alert_id),
        object_id=object_id,
        ra=float(ra),
        dec=float(dec),
        mjd=float(mjd),
        band=str(_first(source, "band", "filterName") or ""),
        science=stamps["science"],
        template=stamps["template"],
        difference=stamps["difference"],
        schema_version=schema_version,
        survey_scores=scores,
        survey_score_versions=versions,
        position_px=(float(source["x"]), float(source["y"])) if _finite(source.get("x")) and _finite(source.get("y")) else None,
        candidate=ReadOnlyFields(source),
    )
