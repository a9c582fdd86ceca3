"""The one walker over inputs: files, directories, tarballs, Avro containers, wire messages, Parquet dumps.

Every command that reads alerts from disk (``inspect``, ``replay``, ``classify``, ``stamps``, the
training loaders) walks its paths here, so they agree on what is read, what is skipped and
what is refused:

* **Directories** are walked recursively in sorted order; symbolic links to directories are
  not followed (no loops). Documentation beside packets is skipped: hidden files and folders, names
  starting with LICENSE / README / NOTICE / COPYING, and :data:`SKIPPED_SUFFIXES`.
* **Files** must be regular files: a device (``/dev/zero``), a FIFO, a socket, or a symbolic
  link to one is refused with ``NOT_A_REGULAR_FILE`` and never opened for reading (the file is
  opened non-blocking and checked again on the open descriptor). A link is resolved first.
* **Sizes are capped before reading**: a file or tar member over
  :attr:`WalkLimits.max_file_bytes` is refused with ``TOO_LARGE`` (its header says its size;
  nothing is inflated) — except Avro container files (Spark part files) and Parquet dumps on
  disk, which are streamed block by block / row group by row group however large.
* **Tarballs** (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz`` or a ``ustar``
  header) are read in archive order, one member at a time, without seeking.
* **What a file holds** is told by its first bytes: an Avro container (``Obj\\x01``), Parquet
  (``PAR1``), JSON lines (``{``: ``subscribe`` dumps, which replay re-publishes), else one
  message value (Confluent wire, or anything else for the decoder to refuse with a reason).

Each message becomes an :class:`Entry` with the bytes to publish and where it came from:

* a container holding one record is one entry with the file's bytes unchanged;
* a container holding several records (a Spark part file) gives one entry per record, each a
  one-record ``null``-codec container with the file's writer schema around the record's
  original encoded bytes (:func:`schemas.decode.avro.one_record_container`: nothing re-encoded);
  a container holding zero records gives no entry (zero alerts, not an error);
* a Parquet row (Fink's alert dumps, read one row group at a time) of a Rubin dump becomes
  Rubin's own packet, Confluent-framed with the schema its ``lsst_schema_version`` names
  (:func:`schemas.decode.survey_packets.rubin_packet`: the broker's columns left out); any other
  row, or a Rubin row that does not fit Rubin's schema, is encoded as a one-record Avro
  container whose writer schema is derived from the file's Arrow schema
  (:func:`parquet_writer_schema`: record ``ztf.alert`` for ZTF dumps, fields as in the file,
  every field nullable, columns with no Avro form such as Fink's ``lc_features`` map left
  out), which :func:`schemas.decode.decode_message` and the service decode like any packet.
  :func:`walk_decoded` decodes rows directly instead (no round trip).

Refusals are entries too (``error`` set, ``value`` None): nothing is dropped silently.
"""
from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from schemas.alert import Alert, Exposure
from schemas.decode.avro import CONTAINER_MAGIC, ContainerReader, one_record_container
from schemas.decode.errors import DecodeError, Reason
from schemas.decode.limits import DecodeSettings
from schemas.decode.parquet import PARQUET_MAGIC, iter_group_rows, open_parquet

__all__ = [
    "EntryKind",
    "Entry",
    "WalkLimits",
    "SKIPPED_SUFFIXES",
    "TAR_SUFFIXES",
    "is_message_name",
    "list_files",
    "walk",
    "walk_decoded",
    "parquet_writer_schema",
]

#: Names in directories and tarballs that are documentation, not messages.
SKIPPED_PREFIXES = ("license", "readme", "notice", "copying")
SKIPPED_SUFFIXES = (".md", ".txt", ".rst", ".json", ".avsc", ".py", ".toml", ".yaml", ".yml", ".csv")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_HEAD = 512


class EntryKind:
    """What one entry's value is (string constants, for logs and summaries)."""

    CONTAINER = "avro_container"
    WIRE = "confluent_wire"
    PARQUET_ROW = "parquet_row"
    JSON_LINE = "json_line"
    OTHER = "other"            # anything else: the decoder refuses it with its reason
    REFUSED = "refused"        # the file, member or record could not be read: see ``error``


@dataclass(frozen=True, slots=True)
class WalkLimits:
    """Caps of the walk (the decoder's own caps apply to each message after it)."""

    #: A file or tar member read whole (one message, a raw exposure, a small container).
    max_file_bytes: int = 64 * 1024 * 1024
    #: One inflated Avro block of a container file streamed block by block.
    max_block_bytes: int = 32 * 1024 * 1024
    #: One line of a JSON-lines file.
    max_line_bytes: int = 16 * 1024 * 1024
    #: Records of one container block, and of one file. Java and Spark writers cut blocks near
    #: 64 kB (a few alerts each); these stop a file of millions of two-byte records.
    max_records_per_block: int = 10_000
    max_records_per_file: int = 1_000_000


@dataclass(frozen=True, slots=True)
class Entry:
    """One message found by the walk, or one refusal.

    ``source`` is the file (``archive!member`` inside a tarball), ``index`` the record's index in
    it (0 for a file holding one message; the row for Parquet; the line for JSON lines) and
    ``origin`` both together (``source#index`` where a file holds several). ``value`` is the
    message value to decode or publish; ``result`` a Parquet row already decoded
    (:func:`walk_decoded`); ``error`` why a file, member or record was refused.
    """

    origin: str
    source: str
    index: int
    kind: str
    value: bytes | None = None
    error: DecodeError | None = None
    result: Alert | Exposure | DecodeError | None = None


def is_message_name(name: str) -> bool:
    """Whether a file or member name inside a directory or tarball may hold messages."""
    low = name.rsplit("/", 1)[-1].lower()
    return bool(low) and not low.startswith(".") and not low.startswith(SKIPPED_PREFIXES) \
        and not low.endswith(SKIPPED_SUFFIXES)


def _is_tar_name(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


def _is_tar_head(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


def list_files(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Candidate files under ``directory``, recursively, sorted, documentation skipped."""
    for root, dirs, files in os.walk(directory):  # followlinks=False: no loops through links
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .git, .ipynb_checkpoints, ...
        for name in sorted(files):
            if is_message_name(name):
                yield Path(root) / name


def _refused(source: str, reason: Reason, detail: str, index: int = 0, origin: str | None = None) -> Entry:
    return Entry(origin or source, source, index, EntryKind.REFUSED, error=DecodeError(reason, detail, record_index=index))


def _open_regular(path: Path) -> tuple[BinaryIO | None, int, Entry | None]:
    """(open handle, size, None) for a regular file, else (None, 0, refusal). Never blocks."""
    source = str(path)
    try:
        real = path.resolve(strict=True)
        st = os.stat(real)
    except (OSError, RuntimeError) as exc:
        return None, 0, _refused(source, Reason.NOT_A_REGULAR_FILE, f"cannot resolve: {type(exc).__name__}: {exc}")
    if not stat.S_ISREG(st.st_mode):
        where = f" (a link to {real})" if real != path.absolute() else ""
        return None, 0, _refused(source, Reason.NOT_A_REGULAR_FILE,
                                 f"not a regular file{where}: mode {stat.filemode(st.st_mode)}")
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        return None, 0, _refused(source, Reason.NOT_A_REGULAR_FILE, f"cannot open: {exc}")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # replaced between the check and the open
        os.close(fd)
        return None, 0, _refused(source, Reason.NOT_A_REGULAR_FILE, f"not a regular file: mode {stat.filemode(st.st_mode)}")
    return os.fdopen(fd, "rb"), st.st_size, None


def walk(paths: Iterable[str | os.PathLike[str]], *, limits: WalkLimits | None = None,
         decode_parquet: DecodeSettings | None = None) -> Iterator[Entry]:
    """Every message (or refusal) under ``paths``, in a stable order.

    ``decode_parquet``: decode Parquet rows with these settings (``Entry.result``) instead of
    encoding them as Avro containers (``Entry.value``).
    """
    limits = limits or WalkLimits()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():  # a directory named by the caller is walked even through a link
            for file in list_files(path):
                yield from _walk_file(file, limits, decode_parquet)
        else:
            yield from _walk_file(path, limits, decode_parquet)


def _walk_file(path: Path, limits: WalkLimits, decode_parquet: DecodeSettings | None) -> Iterator[Entry]:
    fh, size, refusal = _open_regular(path)
    if refusal is not None:
        yield refusal
        return
    assert fh is not None
    source = str(path)
    with fh:
        head = fh.read(_HEAD)
        fh.seek(0)
        if _is_tar_name(path.name) or _is_tar_head(head):
            yield from _walk_tar(fh, source, limits, decode_parquet)
        elif head.startswith(CONTAINER_MAGIC) and size > limits.max_file_bytes:
            yield from _container_entries(fh, source, limits, whole=None)
        elif head.startswith(PARQUET_MAGIC):  # read one row group at a time, whatever its size
            yield from _parquet_entries(fh, source, decode_parquet)
        elif size > limits.max_file_bytes:
            yield _refused(source, Reason.TOO_LARGE, f"file of {size} bytes > {limits.max_file_bytes}")
        elif head.lstrip()[:1] == b"{":
            yield from _json_lines(fh, source, limits)
        else:
            yield from _entries_from_bytes(fh.read(limits.max_file_bytes + 1), source, limits, decode_parquet)


def _entries_from_bytes(value: bytes, source: str, limits: WalkLimits, decode_parquet: DecodeSettings | None) -> Iterator[Entry]:
    if len(value) > limits.max_file_bytes:
        yield _refused(source, Reason.TOO_LARGE, f"more than {limits.max_file_bytes} bytes")
    elif not value:
        yield _refused(source, Reason.EMPTY, "empty file")
    elif value.startswith(CONTAINER_MAGIC):
        yield from _container_entries(io.BytesIO(value), source, limits, whole=value)
    elif value.startswith(PARQUET_MAGIC):
        yield from _parquet_entries(io.BytesIO(value), source, decode_parquet)
    elif value.lstrip()[:1] == b"{":
        yield from _json_lines(io.BytesIO(value), source, limits)
    else:
        yield Entry(source, source, 0, EntryKind.WIRE if value[0] == 0 else EntryKind.OTHER, value=value)


def _walk_tar(fh: BinaryIO, source: str, limits: WalkLimits, decode_parquet: DecodeSettings | None) -> Iterator[Entry]:
    try:
        with tarfile.open(fileobj=fh, mode="r|*") as archive:
            for member in archive:
                name = f"{source}!{member.name}"
                if member.isdir() or not is_message_name(member.name):
                    continue
                if not member.isfile():
                    yield _refused(name, Reason.NOT_A_REGULAR_FILE, f"archive member of type {member.type!r} is not a file")
                    continue
                if member.size > limits.max_file_bytes:  # from the member's header: nothing inflated
                    yield _refused(name, Reason.TOO_LARGE, f"archive member of {member.size} bytes > {limits.max_file_bytes}")
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    yield _refused(name, Reason.TRUNCATED_AVRO, "archive member cannot be extracted")
                    continue
                yield from _entries_from_bytes(handle.read(member.size), name, limits, decode_parquet)
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield _refused(source, Reason.TRUNCATED_AVRO, f"archive unreadable: {type(exc).__name__}: {exc}"[:300])


def _container_entries(fh: BinaryIO, source: str, limits: WalkLimits, whole: bytes | None) -> Iterator[Entry]:
    """One entry per record (the file unchanged when it holds one record and was read whole)."""
    try:
        reader = ContainerReader(fh, max_block_bytes=limits.max_block_bytes)
    except DecodeError as exc:
        yield Entry(source, source, 0, EntryKind.REFUSED, error=exc)
        return
    if whole is not None:
        counted = _count_records(whole, limits)
        if isinstance(counted, DecodeError) or counted <= 1:
            if counted != 0:  # one record, or an error the decoder will report with its reason
                yield Entry(source, source, 0, EntryKind.CONTAINER, value=whole)
            return
    index = 0
    try:
        for datum in reader.records(raw=True, max_records=limits.max_records_per_file,
                                    max_block_records=limits.max_records_per_block):
            yield Entry(f"{source}#{index}", source, index, EntryKind.CONTAINER,
                        value=one_record_container(reader.schema_json, datum, reader.sync))
            index += 1
    except DecodeError as exc:
        exc.record_index = index
        yield Entry(f"{source}#{index}", source, index, EntryKind.REFUSED, error=exc)


def _count_records(whole: bytes, limits: WalkLimits) -> int | DecodeError:
    try:
        reader = ContainerReader(io.BytesIO(whole), max_block_bytes=limits.max_block_bytes)
        total = 0
        for count, _ in reader.blocks():
            total += count
            if total > 1:
                break
        return total
    except DecodeError as exc:
        return exc


def _json_lines(fh: BinaryIO, source: str, limits: WalkLimits) -> Iterator[Entry]:
    number = 0
    while True:
        line = fh.readline(limits.max_line_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > limits.max_line_bytes:
            yield _refused(source, Reason.TOO_LARGE, f"line over {limits.max_line_bytes} bytes", number - 1,
                           f"{source}:{number}")
            return
        if line.strip():
            yield Entry(f"{source}:{number}", source, number - 1, EntryKind.JSON_LINE, value=line)


# --- Parquet dumps ----------------------------------------------------------------------------

def _avro_type(arrow_type: Any, name: str, namespace: str) -> Any:
    import pyarrow.types as t

    if t.is_boolean(arrow_type):
        return "boolean"
    if t.is_int8(arrow_type) or t.is_int16(arrow_type) or t.is_int32(arrow_type) or t.is_uint8(arrow_type) \
            or t.is_uint16(arrow_type):
        return "int"
    if t.is_integer(arrow_type):
        return "long"
    if t.is_float32(arrow_type) or t.is_float16(arrow_type):
        return "float"
    if t.is_float64(arrow_type):
        return "double"
    if t.is_string(arrow_type) or t.is_large_string(arrow_type):
        return "string"
    if t.is_binary(arrow_type) or t.is_large_binary(arrow_type) or t.is_fixed_size_binary(arrow_type):
        return "bytes"
    if t.is_struct(arrow_type):
        return {"type": "record", "name": name, "namespace": namespace, "fields": [
            {"name": f.name, "type": ["null", _avro_type(f.type, f"{name}_{f.name}", namespace)], "default": None}
            for f in arrow_type]}
    if t.is_list(arrow_type) or t.is_large_list(arrow_type):
        return {"type": "array", "items": ["null", _avro_type(arrow_type.value_type, f"{name}_item", namespace)]}
    if t.is_null(arrow_type):
        return "null"
    raise DecodeError(Reason.BAD_FIELD_TYPE, f"Parquet column type {arrow_type} of {name} has no Avro form")


#: The top-level fields of ZTF's alert packet (every schema version): what a ZTF dump row sends.
ZTF_ALERT_FIELDS = frozenset({"schemavsn", "publisher", "objectId", "candid", "candidate", "prv_candidates", "fp_hists",
                              "cutoutScience", "cutoutTemplate", "cutoutDifference"})


def parquet_writer_schema(arrow_schema: Any) -> dict[str, Any]:
    """The Avro writer schema a Parquet dump's rows are encoded with (see the module docstring).

    Record ``ztf.alert`` when the rows carry ``candidate`` (ZTF: only ZTF's own fields,
    :data:`ZTF_ALERT_FIELDS`, the broker's columns left out), else ``fink.alert``; each column
    keeps its name and becomes nullable; structs become records named after their path; a column
    with no Avro form (a map of structs) is left out.
    """
    names = set(arrow_schema.names)
    namespace = "ztf" if "candidate" in names else "fink"
    fields = []
    for f in arrow_schema:
        if namespace == "ztf" and f.name not in ZTF_ALERT_FIELDS:
            continue    # a broker's column beside ZTF's (Fink's cross-matches, classifiers): not ZTF's packet
        try:
            fields.append({"name": f.name, "type": ["null", _avro_type(f.type, f.name, namespace)], "default": None})
        except DecodeError:
            continue    # a broker's own column with no Avro form (Fink's lc_features map): not the survey's packet
    if not fields:
        raise DecodeError(Reason.BAD_FIELD_TYPE, "no column of this Parquet file has an Avro form")
    return {"type": "record", "name": "alert", "namespace": namespace, "fields": fields}


def _parquet_entries(fh: BinaryIO, source: str, decode_parquet: DecodeSettings | None) -> Iterator[Entry]:
    from schemas.decode.parquet import iter_parquet

    if decode_parquet is not None:
        for index, result in iter_parquet(fh, decode_parquet):
            yield Entry(f"{source}#{index}", source, index, EntryKind.PARQUET_ROW, result=result)
        return
    yield from _encoded_rows(fh, source)


def _encoded_rows(fh: BinaryIO, source: str) -> Iterator[Entry]:
    import hashlib
    import json

    import fastavro
    import pyarrow as pa

    from schemas.decode.survey_packets import rubin_packet

    try:
        reader = open_parquet(fh)
        # the columns' own types (read_dictionary makes text columns dictionary arrays; rows are plain)
        arrow_schema = reader.schema.to_arrow_schema()
        schema = parquet_writer_schema(arrow_schema)
        parsed = fastavro.parse_schema(schema)
    except DecodeError as exc:
        yield Entry(source, source, 0, EntryKind.REFUSED, error=exc)
        return
    except (pa.ArrowException, OSError) as exc:
        yield _refused(source, Reason.UNKNOWN_FORMAT, f"not a readable Parquet file: {type(exc).__name__}: {exc}"[:300])
        return
    schema_json = json.dumps(schema).encode()
    sync = hashlib.blake2b(source.encode(), digest_size=16).digest()
    rubin = "diaSource" in arrow_schema.names and "lsst_schema_version" in arrow_schema.names
    index = 0
    for group in range(reader.metadata.num_row_groups):
        group_end = index + reader.metadata.row_group(group).num_rows
        try:
            for row in iter_group_rows(reader, group):  # a few rows at a time, never the whole group
                yield _row_entry(row, source, index, rubin, parsed, schema_json, sync, rubin_packet)
                index += 1
        except (pa.ArrowException, OSError) as exc:
            yield _refused(source, Reason.TRUNCATED_AVRO, f"row group {group}: {type(exc).__name__}: {exc}"[:300],
                           index, f"{source}#{index}")
            index = group_end


def _row_entry(row: dict[str, Any], source: str, index: int, rubin: bool, parsed: Any, schema_json: bytes, sync: bytes,
               rubin_packet: Any) -> Entry:
    """One dump row as a message: Rubin's own packet for a Rubin dump's row, else (or when the row
    does not fit Rubin's schema: a column Spark retyped) the row as the dump holds it."""
    import fastavro

    if rubin:
        try:
            return Entry(f"{source}#{index}", source, index, EntryKind.WIRE, value=rubin_packet(row))
        except DecodeError:
            pass
    out = io.BytesIO()
    try:
        fastavro.schemaless_writer(out, parsed, row)
    except (ValueError, TypeError, OverflowError) as exc:
        return _refused(source, Reason.BAD_FIELD_TYPE, f"row cannot be encoded: {exc}"[:300], index, f"{source}#{index}")
    return Entry(f"{source}#{index}", source, index, EntryKind.PARQUET_ROW,
                 value=one_record_container(schema_json, out.getvalue(), sync))


# --- decoded walk -----------------------------------------------------------------------------

def walk_decoded(paths: Iterable[str | os.PathLike[str]], settings: DecodeSettings | None = None,
                 resolver: Any = None, *, limits: WalkLimits | None = None
                 ) -> Iterator[tuple[Entry, int, Alert | Exposure | DecodeError]]:
    """(entry, record index in its source, Alert / Exposure / DecodeError) for everything under ``paths``.

    JSON lines (``subscribe`` dumps) are not alerts: they are skipped here (replay reads them).
    """
    from schemas.decode.message import decode_results

    settings = settings or DecodeSettings()
    for entry in walk(paths, limits=limits, decode_parquet=settings):
        if entry.error is not None:
            yield entry, entry.index, entry.error
        elif entry.result is not None:
            yield entry, entry.index, entry.result
        elif entry.kind != EntryKind.JSON_LINE and entry.value is not None:
            for offset, result in decode_results(entry.value, settings, resolver):
                yield entry, entry.index + offset, result
