"""Fink-style Parquet alert dumps (what Fink's data-transfer service hands its users) -> alerts.

One row per alert: ``objectId``, ``candid``, a ``candidate`` struct, the three ``cutout*`` structs
(``stampData`` = the original gzipped FITS) and optionally ``schemavsn``. Rows are read one row
group at a time (never the whole file), and each row goes through the same record decoder as an
Avro packet, so a bad row gets the same typed reason as a bad packet.

pyarrow is imported lazily: it is only needed when a Parquet file is read.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from schemas.alert import Alert, Exposure
from schemas.decode.errors import DecodeError, Reason
from schemas.decode.limits import DecodeSettings

__all__ = ["PARQUET_MAGIC", "PARQUET_BATCH_ROWS", "is_parquet", "iter_parquet", "iter_group_rows", "open_parquet",
           "parquet_row_count"]

PARQUET_MAGIC = b"PAR1"

#: Rows materialised at once. A row group was read whole: a 10.9 kB file whose dictionary holds
#: one large value, referenced by every row, became gigabytes (a dictionary bomb). Read a few
#: rows at a time, memory is bounded by what that many rows hold, whatever the group declares.
PARQUET_BATCH_ROWS = 16


def open_parquet(source: Any) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` whose text and bytes columns are read dictionary-encoded
    where the file encodes them so: a value shared by many rows is then held once, and each row
    materialises it only when converted (a dictionary bomb costs what the rows converted hold)."""
    import pyarrow.parquet as pq

    probe = pq.ParquetFile(source)
    columns = [probe.schema.column(i).path for i in range(len(probe.schema))
               if probe.schema.column(i).physical_type == "BYTE_ARRAY"]
    if not columns:
        return probe
    if hasattr(source, "seek"):
        source.seek(0)
    return pq.ParquetFile(source, read_dictionary=columns)


def iter_group_rows(reader: Any, group: int, batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[dict[str, Any]]:
    """The rows of one row group of a ``pyarrow.parquet.ParquetFile``, ``batch_rows`` at a time
    (pyarrow errors raise from the iteration)."""
    for batch in reader.iter_batches(batch_size=batch_rows, row_groups=[group], use_threads=False):
        yield from batch.to_pylist()


def is_parquet(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a Parquet file."""
    return head[:4] == PARQUET_MAGIC


def parquet_row_count(path: str | os.PathLike[str]) -> int:
    """Rows in a Parquet file, from its footer (nothing else is read)."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def iter_parquet(
    path: str | os.PathLike[str] | BinaryIO,
    settings: DecodeSettings | None = None,
    *,
    row_groups: Sequence[int] | None = None,
    limit: int | None = None,
) -> Iterator[tuple[int, Alert | Exposure | DecodeError]]:
    """(row index, Alert or DecodeError) for each row of a Fink-style alert dump.

    ``path`` may also be an open binary file (a tarball member read into memory).
    ``row_groups`` restricts the read to those groups; ``limit`` stops after that many rows.
    A file that is not a readable Parquet file yields one ``DecodeError(UNKNOWN_FORMAT)``.
    """
    import pyarrow as pa

    from schemas.decode.message import decode_record

    settings = settings or DecodeSettings()
    try:
        reader = open_parquet(path)
    except (pa.ArrowException, OSError) as exc:
        yield 0, DecodeError(Reason.UNKNOWN_FORMAT, f"not a readable Parquet file: {type(exc).__name__}: {exc}"[:300])
        return
    groups = range(reader.metadata.num_row_groups) if row_groups is None else row_groups
    starts = [0]
    for g in range(reader.metadata.num_row_groups):
        starts.append(starts[-1] + reader.metadata.row_group(g).num_rows)
    emitted = 0
    for group in groups:
        offset = 0
        try:
            for row in iter_group_rows(reader, group):
                if limit is not None and emitted >= limit:
                    return
                emitted += 1
                yield starts[group] + offset, _decode_row(row, settings, decode_record)
                offset += 1
        except (pa.ArrowException, OSError) as exc:
            yield starts[group] + offset, DecodeError(Reason.TRUNCATED_AVRO, f"row group {group}: {type(exc).__name__}: {exc}"[:300])


def _decode_row(row: dict[str, Any], settings: DecodeSettings, decode_record: Any) -> Alert | Exposure | DecodeError:
    version = row.get("schemavsn") or "fink-parquet"
    try:
        return decode_record(row, schema_version=str(version), settings=settings)
    except DecodeError as exc:
        return exc
