"""Readers that turn an archived night into a stream of Kafka message values (pure: no Kafka).

A replay source is one path. What it holds is detected by content (magic bytes), not only by
its name:

* a directory (walked in sorted order, recursively) or a ``.tar.gz`` / ``.tgz`` / ``.tar``
  archive of per-alert files: ZTF's public nightly archive form;
* Avro object-container files (magic ``Obj\\x01``). A file with one record is sent unchanged;
  a file with many records (e.g. a Spark part file) becomes one message per record, each
  re-written as a one-record container with the same writer schema and codec;
* Rubin Confluent-wire payloads (byte ``0x00`` then a big-endian int32 schema id, then
  schemaless Avro), one per file;
* a dump of a classified topic written by ``survey-classifier subscribe``: JSON lines
  (``.jsonl``) or an Avro container of classified records. Each record is encoded again with
  :func:`schemas.classified_record.encode_classified`, so it can be replayed back onto a topic.

Files and archive members are read one at a time (an archive is never loaded whole); a
multi-record container larger than :data:`SMALL_FILE_BYTES` is streamed record by record.
Anything that cannot be read is yielded as :class:`Unreadable` with the reason, never dropped.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import fastavro
import structlog

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
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
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


Item = SourceMessage | Unreadable


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
        return "rubin", (str(obj) if obj is not None else None), (int(alert_id) if alert_id is not None else None), (float(mjd) if mjd is not None else None)
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
    from schemas.decode.rubin import load_rubin_schema  # noqa: PLC0415 - only wire payloads need it

    return load_rubin_schema(schema_id)


def _alert_message(value: bytes, record: Mapping[str, Any], origin: str, kind: str, **extra: Any) -> SourceMessage:
    survey, object_id, alert_id, mjd = alert_fields(record)
    return SourceMessage(value=value, origin=origin, kind=kind, survey=survey, object_id=object_id,
                         alert_id=alert_id, observed_mjd=mjd, record=record, **extra)


def _classified_message(record: Mapping[str, Any], origin: str, kind: str) -> SourceMessage:
    from schemas.classified_record import encode_classified  # noqa: PLC0415 - only dumps need it

    mjd = record.get("mjd")
    alert_id = record.get("alert_id")
    return SourceMessage(
        value=encode_classified(dict(record)), origin=origin, kind=kind, survey="classified",
        object_id=(str(record["object_id"]) if record.get("object_id") is not None else None),
        alert_id=(int(alert_id) if isinstance(alert_id, (int, str)) and str(alert_id).lstrip("-").isdigit() else None),
        observed_mjd=(float(mjd) if mjd is not None else None), record=record,
    )


def _single_container(value: bytes, origin: str, codec: str, schema: Any, record: Mapping[str, Any]) -> SourceMessage:
    return _alert_message(value, record, origin, SourceKind.CONTAINER, writer_schema=schema, codec=codec)


def _one_record_container(schema: Any, codec: str, record: Mapping[str, Any], origin: str) -> bytes:
    buf = io.BytesIO()
    # A sync marker derived from the origin (not random): replaying the file again gives the same bytes.
    marker = hashlib.blake2b(origin.encode(), digest_size=16).digest()
    fastavro.writer(buf, schema, [record], codec=codec, sync_marker=marker)
    return buf.getvalue()


def _iter_container(stream: BinaryIO, origin: str, whole: bytes | None) -> Iterator[Item]:
    """Records of one container file; ``whole`` is the file's bytes when it was small enough to read."""
    try:
        reader = fastavro.reader(stream)
        schema, codec = reader.writer_schema, reader.codec
    except Exception as exc:  # noqa: BLE001 - fastavro raises many types on bad input
        yield Unreadable(origin, f"not a readable Avro container: {exc}")
        return
    records = iter(reader)
    index = 0
    try:
        first = next(records, None)
        if first is None:
            yield Unreadable(origin, "Avro container holds no records")
            return
        if isinstance(first, Mapping) and _CLASSIFIED_MARKERS <= set(first):
            yield _classified_message(first, f"{origin}#0", SourceKind.CLASSIFIED_AVRO)
            for index, record in enumerate(records, start=1):
                yield _classified_message(record, f"{origin}#{index}", SourceKind.CLASSIFIED_AVRO)
            return
        second = next(records, None)
        if second is None and whole is not None:  # one alert per file: send the bytes unchanged
            yield _guard(lambda: _single_container(whole, origin, codec, schema, first), origin)
            return
        for index, record in enumerate(_chain(first, second, records)):
            where = f"{origin}#{index}"
            yield _guard(lambda r=record, w=where: _alert_message(_one_record_container(schema, codec, r, w), r, w,
                                                                  SourceKind.CONTAINER, writer_schema=schema, codec=codec), where)
    except Exception as exc:  # noqa: BLE001 - a truncated or corrupt block ends this file only
        yield Unreadable(f"{origin}#{index}", f"Avro container unreadable: {type(exc).__name__}: {exc}")


def _chain(first: Any, second: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    if second is not None:
        yield second
        yield from rest


def _guard(make: Callable[[], SourceMessage], origin: str) -> Item:
    try:
        return make()
    except (ValueError, TypeError, KeyError) as exc:
        return Unreadable(origin, f"not a ZTF or Rubin alert: {exc}")


def _iter_wire(value: bytes, origin: str) -> Iterator[Item]:
    schema_id = struct.unpack(">i", value[1:5])[0]
    try:
        schema = _rubin_schema(schema_id)
    except Exception as exc:  # noqa: BLE001 - unknown id or broken schema package
        yield Unreadable(origin, f"Confluent wire schema id {schema_id} unknown: {exc}")
        return
    try:
        record = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)
    except Exception as exc:  # noqa: BLE001
        yield Unreadable(origin, f"Confluent wire payload (schema id {schema_id}) unreadable: {type(exc).__name__}: {exc}")
        return
    yield _guard(lambda: _alert_message(value, record, origin, SourceKind.WIRE, writer_schema=schema, wire_schema_id=schema_id), origin)


def _iter_jsonl(stream: BinaryIO, origin: str) -> Iterator[Item]:
    for number, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8"), start=1):
        if not line.strip():
            continue
        where = f"{origin}:{number}"
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("line is not a JSON object")
            yield _classified_message(record, where, SourceKind.CLASSIFIED_JSONL)
        except Exception as exc:  # noqa: BLE001 - one bad line is one unreadable entry
            yield Unreadable(where, f"not a classified record: {type(exc).__name__}: {exc}")


def iter_bytes(value: bytes, origin: str) -> Iterator[Item]:
    """Messages in one in-memory file (an archive member, or a small file)."""
    kind = detect_kind(value[:16])
    if kind == SourceKind.CONTAINER:
        yield from _iter_container(io.BytesIO(value), origin, value)
    elif kind == SourceKind.WIRE:
        yield from _iter_wire(value, origin)
    elif kind == SourceKind.CLASSIFIED_JSONL:
        yield from _iter_jsonl(io.BytesIO(value), origin)
    elif not value:
        yield Unreadable(origin, "empty file")
    else:
        yield Unreadable(origin, f"unknown format (first bytes {value[:8]!r})")


def _iter_file(path: Path) -> Iterator[Item]:
    origin = str(path)
    try:
        size = path.stat().st_size
        if size <= SMALL_FILE_BYTES:
            yield from iter_bytes(path.read_bytes(), origin)
            return
        with path.open("rb") as fh:  # big file: stream it
            kind = detect_kind(fh.read(16))
            fh.seek(0)
            if kind == SourceKind.CONTAINER:
                yield from _iter_container(fh, origin, None)
            elif kind == SourceKind.CLASSIFIED_JSONL:
                yield from _iter_jsonl(fh, origin)
            else:
                yield Unreadable(origin, f"{kind} file of {size} bytes is larger than one alert can be")
    except OSError as exc:
        yield Unreadable(origin, f"cannot read file: {exc}")


def _is_tar(path: Path) -> bool:
    return path.is_file() and (path.name.endswith(_TAR_SUFFIXES) or tarfile.is_tarfile(path))


def _iter_tar(path: Path) -> Iterator[Item]:
    """Members of a tar archive, read one at a time in archive order (stream mode: no seeking)."""
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                origin = f"{path}!{member.name}"
                handle = archive.extractfile(member)
                if handle is None:
                    yield Unreadable(origin, "archive member cannot be extracted")
                    continue
                if member.size > SMALL_FILE_BYTES:
                    yield Unreadable(origin, f"archive member of {member.size} bytes is larger than one alert can be")
                    continue
                yield from iter_bytes(handle.read(), origin)
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield Unreadable(str(path), f"archive unreadable: {type(exc).__name__}: {exc}")


def _walk(directory: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if name.startswith(".") or name in ("LICENSE", "README.md"):
                continue  # licences and notes beside real packets are not alerts
            yield Path(root) / name


def iter_source(path: str | os.PathLike[str]) -> Iterator[Item]:
    """Every message (or unreadable entry) in a replay source, in a stable order."""
    source = Path(path)
    if source.is_dir():
        for file in _walk(source):
            yield from (_iter_tar(file) if file.name.endswith(_TAR_SUFFIXES) else _iter_file(file))
    elif _is_tar(source):
        yield from _iter_tar(source)
    elif source.is_file():
        yield from _iter_file(source)
    else:
        raise ReplaySourceError(f"replay source {source} is neither a file nor a directory")


def count_hint(path: str | os.PathLike[str]) -> int | None:
    """How many files a source holds when that is cheap to know (a directory), else None.

    Used for the progress bar's total; multi-record files make the real count larger.
    """
    source = Path(path)
    if source.is_dir():
        return sum(1 for f in _walk(source) if not f.name.endswith(_TAR_SUFFIXES))
    if source.is_file() and not _is_tar(source) and source.stat().st_size <= SMALL_FILE_BYTES:
        return 1 if detect_kind(source.read_bytes()[:16]) in (SourceKind.CONTAINER, SourceKind.WIRE) else None
    return None
