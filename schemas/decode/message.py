"""One entry point for every input: Kafka message value (or file) -> alerts / exposures.

Formats, told apart by their first bytes:

* ``Obj\\x01``: an Avro object-container file (ZTF: one per message; Rubin container files,
  Fink's Spark-rewritten ``topLevelRecord``; several records allowed);
* ``0x00`` + int32 schema id: Confluent wire format (Rubin alerts; our exposures, ids >= 10000);
* anything else: ``UNKNOWN_FORMAT`` (a first byte 0x01..0x7f that is not a container: ``BAD_MAGIC``).

Records are recognised by content (``candidate`` -> ZTF, ``diaSource`` -> Rubin,
``exposure_id`` + ``fits`` -> exposure), so renamed records decode too.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any, cast

from schemas.alert import Alert, Exposure
from schemas.decode.avro import is_container, read_container, read_schemaless, split_wire
from schemas.decode.errors import DecodeError, Reason
from schemas.decode.exposure import exposure_from_record, is_exposure_record
from schemas.decode.limits import DecodeSettings
from schemas.decode.rubin import SchemaResolver, alert_from_rubin_record, is_rubin_record
from schemas.decode.sanity import check_item
from schemas.decode.ztf import alert_from_ztf_record, is_ztf_record

__all__ = ["decode_message", "decode_record", "decode_results", "iter_file", "default_resolver"]

_DEFAULT_SETTINGS = DecodeSettings()
_DEFAULT_RESOLVER = SchemaResolver()


def default_resolver() -> SchemaResolver:
    """The process-wide resolver using the schemas shipped in lsst-alert-packet (no registry)."""
    return _DEFAULT_RESOLVER


def _container_version(schema: Any, record: Mapping[str, Any]) -> str:
    name = str(schema.get("name", "")) if isinstance(schema, Mapping) else ""
    namespace = str(schema.get("namespace", "") or "") if isinstance(schema, Mapping) else ""
    full = name if "." in name or not namespace else f"{namespace}.{name}"
    if full.startswith("lsst."):
        return full.rsplit(".", 1)[0]           # lsst.v9_0.alert -> lsst.v9_0
    if isinstance(record.get("lsst_schema_version"), (str, int)) and record.get("lsst_schema_version"):
        return str(record["lsst_schema_version"])
    return f"fink:{name}" if name else "unknown"


def decode_record(record: Any, *, schema_version: str, settings: DecodeSettings) -> Alert | Exposure:
    """One decoded Avro record (any of our input kinds) -> Alert or Exposure."""
    if not isinstance(record, Mapping):
        raise DecodeError(Reason.UNKNOWN_FORMAT, f"record is a {type(record).__name__}")
    cap = settings.max_inflated_bytes
    if is_ztf_record(record):
        return check_item(alert_from_ztf_record(record, max_inflated_bytes=cap))
    if is_rubin_record(record):
        return check_item(alert_from_rubin_record(record, schema_version=schema_version, max_inflated_bytes=cap))
    if is_exposure_record(record):
        return check_item(exposure_from_record(record, max_inflated_bytes=settings.max_exposure_fits_bytes))
    raise DecodeError(Reason.MISSING_FIELD, "record has neither candidate, diaSource nor exposure fields")


def _decode_results(value: bytes, settings: DecodeSettings, resolver: SchemaResolver) -> list[Alert | Exposure | DecodeError]:
    try:
        return _decode_bounded(value, settings, resolver)
    except MemoryError as exc:
        # Caps make this unreachable for anything we know of; an address-space limit around the
        # decode worker (or a cap set too high for the host) still ends here, as the input's reason.
        raise DecodeError(Reason.DECODE_MEMORY_LIMIT, f"decoding a {len(value)}-byte message ran out of memory") from exc


def _decode_bounded(value: bytes, settings: DecodeSettings, resolver: SchemaResolver) -> list[Alert | Exposure | DecodeError]:
    if len(value) == 0:
        raise DecodeError(Reason.EMPTY, "zero-length message")
    if len(value) > settings.max_message_bytes:
        raise DecodeError(Reason.TOO_LARGE, f"{len(value)} bytes > {settings.max_message_bytes}")
    if is_container(value):
        schema, records = read_container(value, max_block_bytes=settings.max_block_bytes,
                                         max_records=settings.max_records_per_message,
                                         max_total_bytes=settings.max_inflated_message_bytes)
        out: list[Alert | Exposure | DecodeError] = []
        for index, record in enumerate(records):
            if isinstance(record, DecodeError):
                out.append(record)
                continue
            try:
                if not isinstance(record, Mapping):
                    raise DecodeError(Reason.BAD_SCHEMA, f"record is a {type(record).__name__}")
                out.append(decode_record(record, schema_version=_container_version(schema, record), settings=settings))
            except DecodeError as exc:
                exc.record_index = index
                out.append(exc)
        return out
    if value[0] == 0:
        schema_id, payload = split_wire(value)
        parsed, how, version = resolver.resolve(schema_id)
        record = read_schemaless(payload, parsed, how)
        return [decode_record(record, schema_version=version, settings=settings)]
    if value[0] < 0x80 and value[:3] != b"Obj":
        raise DecodeError(Reason.BAD_MAGIC, f"first byte {value[0]:#04x}: neither 0x00 (wire) nor an Avro container")
    raise DecodeError(Reason.UNKNOWN_FORMAT, f"starts with {bytes(value[:4])!r}")


def decode_message(value: bytes, settings: DecodeSettings | None = None,
                   resolver: SchemaResolver | None = None) -> list[Alert | Exposure]:
    """Decode one Kafka message value into its alerts/exposures (a container may hold several).

    A container with zero records (Spark writes empty part files) decodes to an empty list.

    Raises :class:`DecodeError` if the message, or any record in it, cannot be decoded; the
    error's ``record_index`` says which record. Raises ``SchemaRegistryError`` (not a
    DecodeError) when a configured registry is unreachable: that is not the message's fault.
    """
    results = _decode_results(bytes(value) if not isinstance(value, bytes) else value,
                              settings or _DEFAULT_SETTINGS, resolver or _DEFAULT_RESOLVER)
    for item in results:
        if isinstance(item, DecodeError):
            raise item
    return cast(list[Alert | Exposure], results)  # the loop above raised any DecodeError in it


def decode_results(value: bytes, settings: DecodeSettings | None = None,
                   resolver: SchemaResolver | None = None) -> list[tuple[int, Alert | Exposure | DecodeError]]:
    """(record index, result) for every record of one message; errors are returned, not raised.

    An empty container gives an empty list (zero alerts, not an error).
    """
    try:
        results = _decode_results(bytes(value), settings or _DEFAULT_SETTINGS, resolver or _DEFAULT_RESOLVER)
    except DecodeError as exc:
        return [(exc.record_index or 0, exc)]
    return list(enumerate(results))


def iter_file(path: str | os.PathLike[str], settings: DecodeSettings | None = None,
              resolver: SchemaResolver | None = None) -> Iterator[tuple[int, Alert | Exposure | DecodeError]]:
    """(record index, result) for every record of a file, read by :func:`schemas.walk.walk_decoded`.

    A container file, one wire message, a tarball or a Parquet dump; bad records and refused
    files are yielded as DecodeError (never raised), so a caller sees them all.
    """
    from schemas.walk import walk_decoded

    for _, index, result in walk_decoded([path], settings, resolver):
        yield index, result
