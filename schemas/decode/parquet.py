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

__all__ = ["PARQUET_MAGIC", "is_parquet", "iter_parquet", "parquet_row_count"]

PARQUET_MAGIC = b"PAR1"


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
    import pyarrow.parquet as pq

    from schemas.decode.message import decode_record

    settings = settings or DecodeSettings()
    try:
        reader = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        yield 0, DecodeError(Reason.UNKNOWN_FORMAT, f"not a readable Parquet file: {type(exc).__name__}: {exc}"[:300])
        return
    groups = range(reader.metadata.num_row_groups) if row_groups is None else row_groups
    starts = [0]
    for g in range(reader.metadata.num_row_groups):
        starts.append(starts[-1] + reader.metadata.row_group(g).num_rows)
    emitted = 0
    for group in groups:
        try:
            rows = reader.read_row_group(group).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            yield starts[group], DecodeError(Reason.TRUNCATED_AVRO, f"row group {group}: {type(exc).__name__}: {exc}"[:300])
            continue
        for offset, row in enumerate(rows):
            if limit is not None and emitted >= limit:
                return
            index = starts[group] + offset
            emitted += 1
            yield index, _decode_row(row, settings, decode_record)


def _decode_row(row: dict[str, Any], settings: DecodeSettings, decode_record: Any) -> Alert | Exposure | DecodeError:
    version = row.get("schemavsn") or "fink-parquet"
    try:
        return decode_record(row, schema_version=str(version), settings=settings)
    except DecodeError as exc:
        return exc
