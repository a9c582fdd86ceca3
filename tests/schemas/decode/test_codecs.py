"""Every Avro block codec Java and Spark writers use decodes, each from real ZTF records."""
from __future__ import annotations

import bz2
import io
import lzma
import struct
import zlib

import fastavro
import pytest

from schemas.decode import DecodeError, Reason, decode_message
from tests.hostile.corpus import container
from tests.schemas.decode.packets import SAMPLES


def _records() -> tuple[dict, list[dict], bytes]:
    schema, records = None, []
    for path in sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[:2]:
        with path.open("rb") as fh:
            reader = fastavro.reader(fh)
            schema = schema or reader.writer_schema
            records.extend(reader)
    out = io.BytesIO()
    for record in records:
        fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return schema, records, out.getvalue()


def _snappy(data: bytes) -> bytes:
    import cramjam

    return bytes(cramjam.snappy.compress_raw(data)) + struct.pack(">I", zlib.crc32(data))


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def _deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


CODECS = {
    "null": lambda d: d,
    "deflate": _deflate,
    "snappy": _snappy,
    "zstandard": _zstd,
    "bzip2": bz2.compress,
    "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ),
}


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_two_record_container_decodes_with_every_codec(codec):
    schema, records, data = _records()
    value = container(schema, [(len(records), CODECS[codec](data))], codec=codec)
    alerts = decode_message(value)
    assert [a.alert_id for a in alerts] == [r["candid"] for r in records]


def test_fastavro_written_snappy_container_decodes():
    """Spark's default codec, written by an independent writer (fastavro with cramjam)."""
    schema, records, _ = _records()
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records, codec="snappy")
    assert [a.alert_id for a in decode_message(buf.getvalue())] == [r["candid"] for r in records]


def test_snappy_checksum_mismatch_is_refused():
    schema, records, data = _records()
    block = bytearray(_snappy(data))
    block[-1] ^= 0xFF
    with pytest.raises(DecodeError) as info:
        decode_message(container(schema, [(len(records), bytes(block))], codec="snappy"))
    assert info.value.reason is Reason.TRUNCATED_AVRO and "checksum" in info.value.detail
