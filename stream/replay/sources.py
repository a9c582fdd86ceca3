"""Replay sources: an archived night as a stream of Kafka message values (pure: no Kafka).

A replay source is one path, walked by :mod:`schemas.walk` (the walker ``inspect``,
``classify``, ``stamps`` and training use too: the same skip rules, size caps and refusals of
devices, FIFOs and links to them). What each file holds is detected by content:

* a directory or a tarball of per-alert files: ZTF's public nightly archive form;
* Avro object-container files (any codec). A file with one record is sent unchanged (a codec
  other than ``null``/``deflate`` is re-framed as ``null``, the record's bytes untouched, so
  ``--multiply`` can splice ids into it); a file with many records (a Spark part file) becomes
  one message per record, each a one-record container around the record's original bytes;
* Rubin Confluent-wire payloads, one per file;
* Fink-style Parquet alert dumps: each row becomes a one-record Avro container (the writer
  schema is :func:`schemas.walk.parquet_writer_schema`, derived from the file's columns), which
  the service decodes like any ZTF packet;
* a dump of a classified topic written by ``survey-classifier subscribe``: JSON lines
  (``.jsonl``) or an Avro container of classified records, each encoded again with
  :func:`schemas.classified_record.encode_classified` so it can be replayed back onto a topic.

Files, archive members, records and row groups are read one at a time. Anything that cannot be
read is yielded as :class:`Unreadable` with the reason, never dropped.
"""
from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import structlog

from schemas.decode.avro import ContainerReader, one_record_container
from schemas.decode.errors import DecodeError
from schemas.walk import TAR_SUFFIXES, EntryKind, WalkLimits, list_files, walk

__all__ = [
    "SourceKind",
    "SourceMessage",
    "Unreadable",
    "ReplaySourceError",
    "iter_source",
    "iter_bytes",
    "detect_kind",
    "count_hint",
    "alert_fields",
    "SMALL_FILE_BYTES",
    "AVRO_MAGIC",
]

log = structlog.get_logger(__name__)

AVRO_MAGIC = b"Obj\x01"
#: Files up to this size are read into memory (one alert is ~60 kB); bigger ones are streamed.
SMALL_FILE_BYTES = 16 * 1024 * 1024
#: Cap on one inflated block of a container being replayed.
_MAX_BLOCK_BYTES = 32 * 1024 * 1024
#: Fields only our classified output record has (tells a subscribe dump from an alert file).
_CLASSIFIED_MARKERS = frozenset({"classifier_version", "class_scores", "source_offset"})


class ReplaySourceError(ValueError):
    """The replay source itself (the path given) cannot be used at all."""


class SourceKind:
    """What one file holds (string constants, used in logs and the summary)."""

    CONTAINER = "avro_container"
    WIRE = "confluent_wire"
    CLASSIFIED_JSONL = "classified_jsonl"
    CLASSIFIED_AVRO = "classified_avro"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SourceMessage:
    """One message to publish, with what replay needs to key, pace and re-write it.

    ``record`` is the decoded Avro record (kept so ``--multiply`` can give copies new ids);
    ``writer_schema`` the container's writer schema, ``wire_schema_id`` the Confluent id.
    """

    value: bytes
    origin: str                          # file path, plus "!member" in an archive, "#index" in a multi-record file
    kind: str                            # a SourceKind constant
    survey: str                          # "ztf", "rubin" or "classified"
    object_id: str | None = None         # message key: one object stays on one partition
    alert_id: int | None = None          # ZTF candid, Rubin diaSourceId / alertId
    observed_mjd: float | None = None    # ZTF candidate.jd - 2400000.5, Rubin diaSource.midpointMjdTai
    record: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    writer_schema: Any = field(default=None, repr=False, compare=False)
    codec: str = "null"
    wire_schema_id: int | None = None


@dataclass(frozen=True)
class Unreadable:
    """A file or record that could not be read, and why (listed in the replay summary)."""

    origin: str
    reason: str


#: What reading a source yields: a message to publish, or what could not be read and why.
SourceItem = SourceMessage | Unreadable


def _get(mapping: Any, *names: str) -> Any:
    for name in names:
        if isinstance(mapping, Mapping) and mapping.get(name) is not None:
            return mapping[name]
    return None


def alert_fields(record: Mapping[str, Any]) -> tuple[str, str | None, int | None, float | None]:
    """(survey, object id, alert id, observation MJD) of a decoded ZTF or Rubin alert record.

    Raises ``ValueError`` when the record is neither.
    """
    if isinstance(record.get("candidate"), Mapping):
        # ZTF's pre-survey test packets have no objectId: sent unkeyed (the service decides on them).
        cand = record["candidate"]
        jd = cand.get("jd")
        alert_id = _get(record, "candid") or cand.get("candid")
        object_id = record.get("objectId")
        return ("ztf", (str(object_id) if object_id is not None else None), (int(alert_id) if alert_id is not None else None),
                (float(jd) - 2400000.5 if jd is not None else None))
    if isinstance(record.get("diaSource"), Mapping):
        src = record["diaSource"]
        obj = _get(record.get("diaObject") or {}, "diaObjectId") or _get(src, "diaObjectId") or _get(record, "diaObjectId")
        if obj is None:  # solar-system sources carry no diaObject
            obj = _get(record.get("ssObject") or {}, "ssObjectId") or _get(src, "ssObjectId")
        alert_id = _get(record, "diaSourceId", "alertId") or src.get("diaSourceId")
        mjd = _get(src, "midpointMjdTai", "midPointTai")
        return ("rubin", (str(obj) if obj is not None else None), (int(alert_id) if alert_id is not None else None),
                (float(mjd) if mjd is not None else None))
    raise ValueError("record is neither a ZTF alert (candidate) nor a Rubin alert (diaSource)")


def detect_kind(head: bytes) -> str:
    """The :class:`SourceKind` of a file from its first bytes."""
    if head.startswith(AVRO_MAGIC):
        return SourceKind.CONTAINER
    if len(head) >= 5 and head[0] == 0:
        return SourceKind.WIRE
    if head.lstrip()[:1] == b"{":
        return SourceKind.CLASSIFIED_JSONL
    return SourceKind.UNKNOWN


def _rubin_schema(schema_id: int) -> Any:
    """Parsed Rubin schema for a Confluent-wire id (id = major*100 + minor), shared with the decoder."""
    from schemas.decode.rubin import load_rubin_schema

    return load_rubin_schema(schema_id)


def _alert_message(value: bytes, record: Mapping[str, Any], origin: str, kind: str, **extra: Any) -> SourceMessage:
    survey, object_id, alert_id, mjd = alert_fields(record)
    return SourceMessage(value=value, origin=origin, kind=kind, survey=survey, object_id=object_id,
                         alert_id=alert_id, observed_mjd=mjd, record=record, **extra)


def _classified_message(record: Mapping[str, Any], origin: str, kind: str) -> SourceMessage:
    from schemas.classified_record import encode_classified

    mjd = record.get("mjd")
    alert_id = record.get("alert_id")
    return SourceMessage(
        value=encode_classified(dict(record)), origin=origin, kind=kind, survey="classified",
        object_id=(str(record["object_id"]) if record.get("object_id") is not None else None),
        alert_id=(int(alert_id) if isinstance(alert_id, (int, str)) and str(alert_id).lstrip("-").isdigit() else None),
        observed_mjd=(float(mjd) if mjd is not None else None), record=record,
    )


def _iter_container(value: bytes, origin: str) -> Iterator[SourceItem]:
    """The record of a one-record container (what the walker hands over) as a message."""
    record: Any  # whatever the writer's schema describes: _alert_message checks it is an alert
    try:
        reader = ContainerReader(io.BytesIO(value), max_block_bytes=_MAX_BLOCK_BYTES, check_alert=False, project=False)
        data = list(reader.records(raw=True, max_records=1))
        if not data:
            yield Unreadable(origin, "Avro container holds no records")
            return
        record = fastavro.schemaless_reader(io.BytesIO(data[0]), reader.schema.parsed)
    except DecodeError as exc:
        yield Unreadable(origin, f"not a readable Avro container: {exc.reason.value}: {exc.detail}")
        return
    except Exception as exc:  # noqa: BLE001 - fastavro raises many types on bad input
        yield Unreadable(origin, f"Avro container unreadable: {type(exc).__name__}: {exc}")
        return
    if isinstance(record, Mapping) and _CLASSIFIED_MARKERS <= set(record):
        yield _classified_message(record, origin, SourceKind.CLASSIFIED_AVRO)
        return
    codec = reader.codec
    if codec not in ("null", "deflate"):  # re-framed (record bytes untouched) so copies can be spliced
        value, codec = one_record_container(reader.schema_json, data[0], reader.sync), "null"
    yield _guard(lambda: _alert_message(value, record, origin, SourceKind.CONTAINER,
                                        writer_schema=reader.definition, codec=codec), origin)


def _guard(make: Callable[[], SourceMessage], origin: str) -> SourceItem:
    try:
        return make()
    except (ValueError, TypeError, KeyError) as exc:
        return Unreadable(origin, f"not a ZTF or Rubin alert: {exc}")


def _iter_wire(value: bytes, origin: str) -> Iterator[SourceItem]:
    schema_id = struct.unpack(">i", value[1:5])[0]
    try:
        schema = _rubin_schema(schema_id)
    except Exception as exc:  # noqa: BLE001 - unknown id or broken schema package
        yield Unreadable(origin, f"Confluent wire schema id {schema_id} unknown: {exc}")
        return
    record: Any  # whatever the writer's schema describes: _alert_message checks it is an alert
    try:
        record = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)
    except Exception as exc:  # noqa: BLE001 - any fastavro failure means an unreadable payload, reported as such
        yield Unreadable(origin, f"Confluent wire payload (schema id {schema_id}) unreadable: {type(exc).__name__}: {exc}")
        return
    yield _guard(lambda: _alert_message(value, record, origin, SourceKind.WIRE, writer_schema=schema, wire_schema_id=schema_id), origin)


def _json_line(line: bytes, origin: str) -> SourceItem:
    try:
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("line is not a JSON object")
        return _classified_message(record, origin, SourceKind.CLASSIFIED_JSONL)
    except Exception as exc:  # noqa: BLE001 - one bad line is one unreadable entry
        return Unreadable(origin, f"not a classified record: {type(exc).__name__}: {exc}")


def iter_bytes(value: bytes, origin: str) -> Iterator[SourceItem]:
    """Messages in one in-memory message value (a one-record container, a wire payload, a line)."""
    kind = detect_kind(value[:16])
    if kind == SourceKind.CONTAINER:
        yield from _iter_container(value, origin)
    elif kind == SourceKind.WIRE:
        yield from _iter_wire(value, origin)
    elif kind == SourceKind.CLASSIFIED_JSONL:
        for number, line in enumerate(value.splitlines(), start=1):
            if line.strip():
                yield _json_line(line, f"{origin}:{number}")
    elif not value:
        yield Unreadable(origin, "empty file")
    else:
        yield Unreadable(origin, f"unknown format (first bytes {value[:8]!r})")


def iter_source(path: str | os.PathLike[str], *, limits: WalkLimits | None = None) -> Iterator[SourceItem]:
    """Every message (or unreadable entry) in a replay source, in a stable order (``limits``: the walk's caps)."""
    source = Path(path)
    if not os.path.lexists(source):
        raise ReplaySourceError(f"replay source {source} is neither a file nor a directory")
    for entry in walk([source], limits=limits):
        if entry.error is not None:
            yield Unreadable(entry.origin, f"{entry.error.reason.value}: {entry.error.detail}")
        elif entry.kind == EntryKind.JSON_LINE:
            yield _json_line(entry.value or b"", entry.origin)
        elif entry.value is not None:
            yield from iter_bytes(entry.value, entry.origin)


def count_hint(path: str | os.PathLike[str]) -> int | None:
    """How many messages a source holds when that is cheap to know, else None.

    Counted from metadata, never by decoding: a Parquet dump's rows (its footer), an Avro
    container's records (its block headers, the blocks skipped unread), one per Confluent-wire
    file, one per line of a JSON-lines dump; a directory sums its files. A tarball (it would have
    to be inflated) gives None. Used for the progress bar's total.
    """
    source = Path(path)
    if source.is_dir():
        total = 0
        for f in list_files(source):
            count = _file_count(f)
            if count is None:
                return None
            total += count
        return total
    return _file_count(source)


def _file_count(path: Path) -> int | None:
    """Messages in one file from its metadata (see :func:`count_hint`); 0 for what replay cannot read."""
    from schemas.decode.avro import container_record_count

    if path.name.lower().endswith(TAR_SUFFIXES):
        return None
    try:
        if not path.is_file():  # a regular file (a link to a device is not): safe to open
            return 0
        with path.open("rb") as fh:
            head = fh.read(16)
            if head.startswith(b"PAR1"):
                from schemas.decode.parquet import parquet_row_count

                return parquet_row_count(path)
            kind = detect_kind(head)
            if kind == SourceKind.CONTAINER:
                fh.seek(0)
                return container_record_count(fh)
            if kind == SourceKind.WIRE:
                return 1
            if kind == SourceKind.CLASSIFIED_JSONL:
                fh.seek(0)
                return sum(1 for line in fh if line.strip())
            return 0
    except (OSError, DecodeError, ValueError):
        return 0  # replay reports it as unreadable
