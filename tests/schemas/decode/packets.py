"""Helpers shared by the decode tests: where the real packets are, read independently."""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import fastavro

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "schemas" / "samples"

#: Files under ../shared/data (see its README): 209 .avro files.
SHARED_PACKET_COUNT = 209
#: ZTF pre-survey packets with JPEG cutouts: 6 distinct packets, each also kept in
#: ztf-avro-alert/history/ (byte-identical copies), so 12 files.
JPEG_PACKET_IDS = frozenset({-1726958725155000, -1726958725155001, -1726958725155002,
                             -87704463155000, -87704463155001, -87704463155002})
JPEG_FILE_COUNT = 12


def packet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.avro") if p.is_file())


def raw_records(path: Path) -> list[dict]:
    """Records read with plain fastavro (container) or lsst-alert-packet's schema (wire)."""
    value = path.read_bytes()
    if value[:4] == b"Obj\x01":
        return list(fastavro.reader(io.BytesIO(value)))
    from lsst.alert.packet import Schema, get_schema_path

    schema_id = int.from_bytes(value[1:5], "big")
    major, minor = divmod(schema_id, 100)
    schema = Schema.from_file(f"{get_schema_path(major, minor)}/lsst.v{major}_{minor}.alert.avsc")
    return [fastavro.schemaless_reader(io.BytesIO(value[5:]), schema.definition)]


def cutout_bytes(record: dict, field: str) -> bytes:
    cutout = record[field]
    raw = cutout["stampData"] if isinstance(cutout, dict) else cutout
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
