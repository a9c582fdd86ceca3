"""A corpus of hostile Kafka message values, each with the reason code it must be refused with.

``build_corpus(directory)`` writes every case as ``<name>.avro`` (the message value, byte for
byte) plus ``expected.json`` (name -> reason) and returns the cases; :func:`hostile_cases`
returns them without writing. Three families:

* crafted containers and cutouts reproducing each way a message could hang a decoder, exhaust
  its memory or crash it (zero-size schemas with a block count of 2**62, deflate/zstd/snappy
  bombs, a tile-compressed cutout declaring 16000 x 16000 pixels, NAXIS1 = 2**62 + 1, hostile
  field types, a top-level ``"string"`` schema, ...);
* real bundled packets, mutated (truncated, block count overwritten, codec swapped, cutout
  gzip cut short);
* real writer schemas, mutated (history items made zero-size, fields removed, types swapped).

Each entry is ``(name, value, reason)`` with ``reason`` a :class:`schemas.decode.Reason` value;
``"empty"`` marks a container with zero records (it decodes to no alert, which the service
dead-letters as ``empty``). Values stay small (the largest is ~110 kB) however much they claim.
"""
from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import lzma
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import fastavro
import numpy as np
from astropy.io import fits

from schemas.decode.avro import encode_long, encode_varint

__all__ = ["HostileCase", "hostile_cases", "build_corpus", "SAMPLES"]

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples"
#: ``tile_compressed_16000x16000.fits.gz``: a valid RICE tile-compressed 16000 x 16000 uint8 image of
#: zeros (astropy ``CompImageHDU``), 52 kB gzipped, 3.2 MB inflated: under the gzip cap, 1 GB as float32.
DATA = Path(__file__).resolve().parent / "data"
_SYNC = hashlib.blake2b(b"hostile corpus", digest_size=16).digest()


class HostileCase(NamedTuple):
    """One message value and the reason code it must be refused with."""

    name: str
    value: bytes
    reason: str


# --- building blocks --------------------------------------------------------------------------

_long = encode_long


def _bytes(data: bytes) -> bytes:
    return _long(len(data)) + data


def container(schema: Any, blocks: list[tuple[int, bytes]], codec: str = "null", *, sync: bytes = _SYNC) -> bytes:
    """An Avro container written by hand: any schema, any declared counts, any block bytes."""
    schema_json = schema if isinstance(schema, bytes) else json.dumps(schema).encode()
    header = b"Obj\x01" + _long(2) + _bytes(b"avro.schema") + _bytes(schema_json) + _bytes(b"avro.codec") \
        + _bytes(codec.encode()) + _long(0) + sync
    return header + b"".join(_long(count) + _bytes(data) + sync for count, data in blocks)


def _deflate_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    out = [packer.compress(chunk) for _ in range(size >> 20)]
    return b"".join(out) + packer.compress(bytes(size & ((1 << 20) - 1))) + packer.flush()


def _real_ztf() -> tuple[dict, dict]:
    path = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[0]
    with path.open("rb") as fh:
        reader = fastavro.reader(fh)
        return copy.deepcopy(reader.writer_schema), next(reader)


def _write(schema: Any, records: list[dict], codec: str = "null") -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records, codec=codec, sync_marker=_SYNC)
    return buf.getvalue()


def _field(schema: dict, name: str) -> dict:
    return next(f for f in schema["fields"] if f["name"] == name)


def _card(key: str, value: int | str) -> bytes:
    text = f"'{value}'" if isinstance(value, str) else str(value)
    return f"{key:<8}= {text:>20}".ljust(80).encode()


def set_card(fits_bytes: bytes, key: str, value: int | str) -> bytes:
    """``fits_bytes`` with the first card named ``key`` given a new value (same length)."""
    raw = bytearray(fits_bytes)
    for pos in range(0, len(raw), 80):
        if raw[pos:pos + 10] == f"{key:<8}= ".encode():
            raw[pos:pos + 80] = _card(key, value)
            return bytes(raw)
    raise KeyError(key)


def _plain_fits(shape: tuple[int, int] = (63, 63)) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape)).writeto(buf)
    return buf.getvalue()


def _tile_compressed_fits() -> bytes:
    """A real tile-compressed (RICE) 64 x 64 image whose header then claims 16000 x 16000."""
    buf = io.BytesIO()
    hdu = fits.CompImageHDU(np.ones((64, 64), dtype=np.float32), compression_type="RICE_1")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    raw = set_card(buf.getvalue(), "ZNAXIS1", 16000)
    return set_card(raw, "ZNAXIS2", 16000)


def _ztf_with(mutate: Callable[[dict, dict], None]) -> bytes:
    schema, record = _real_ztf()
    mutate(schema, record)
    return _write(schema, [record])


def _science(stamp: bytes) -> Callable[[dict, dict], None]:
    def mutate(schema: dict, record: dict) -> None:
        record["cutoutScience"]["stampData"] = stamp
    return mutate


def _retype(field: str, avro_type: Any, value: Any, *, inside: str | None = None) -> Callable[[dict, dict], None]:
    def mutate(schema: dict, record: dict) -> None:
        holder_schema, holder = schema, record
        if inside is not None:
            holder_schema, holder = _field(schema, inside)["type"], record[inside]
        target = _field(holder_schema, field)
        target["type"] = avro_type
        target.pop("default", None)
        holder[field] = value
    return mutate


def _exposure_schema(fits_type: str) -> dict:
    return {"type": "record", "name": "exposure", "namespace": "hostile", "fields": [
        {"name": "exposure_id", "type": "string"}, {"name": "instrument", "type": "string"},
        {"name": "filter", "type": "string"}, {"name": "exposure_time_s", "type": "double"},
        {"name": "mjd", "type": "double"}, {"name": "kind", "type": "string"},
        {"name": "fits", "type": fits_type}]}


def _exposure_record(fits_value: Any) -> dict:
    return {"exposure_id": "e1", "instrument": "WISE", "filter": "W1", "exposure_time_s": 1.0, "mjd": 55000.0,
            "kind": "multiband_cutout", "fits": fits_value}


def _rewrite_header(value: bytes, *, schema: Any = None, codec: str | None = None) -> bytes:
    """A real container with its header's schema and/or codec replaced, its blocks unchanged."""
    from schemas.decode.avro import ContainerReader

    head = io.BytesIO(value)
    reader = ContainerReader(head, max_block_bytes=1 << 26, check_alert=False, project=False)
    body = value[head.tell():]
    schema_json = json.dumps(schema).encode() if schema is not None else reader.schema_json
    new_head = b"Obj\x01" + _long(2) + _bytes(b"avro.schema") + _bytes(schema_json) + _bytes(b"avro.codec") \
        + _bytes((codec or reader.codec).encode()) + _long(0) + reader.sync
    return new_head + body


def _block_count_overwritten(value: bytes, count: int) -> bytes:
    """A real one-block container whose block count is replaced by ``count``."""
    from schemas.decode.avro import ContainerReader

    head = io.BytesIO(value)
    ContainerReader(head, max_block_bytes=1 << 26, check_alert=False, project=False)
    pos = head.tell()
    body = io.BytesIO(value[pos:])
    first = body.read(1)
    while first[-1] & 0x80:
        first += body.read(1)
    return value[:pos] + _long(count) + value[pos + len(first):]


def _mutated_schema(mutate: Callable[[dict], None]) -> bytes:
    value = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[0].read_bytes()
    schema, _ = _real_ztf()
    mutate(schema)
    return _rewrite_header(value, schema=schema)


def _set_items_null(field: str) -> Callable[[dict], None]:
    def mutate(schema: dict) -> None:
        _field(schema, field)["type"] = ["null", {"type": "array", "items": "null"}]
    return mutate


# --- the corpus -------------------------------------------------------------------------------

def hostile_cases() -> list[HostileCase]:
    """Every case, built in memory (about a second)."""
    alert_marker = [{"name": "candidate", "type": "boolean"}, {"name": "cutoutScience", "type": "boolean"}]
    real_ztf = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[0].read_bytes()
    real_rubin_wire = (SAMPLES / "rubin" / "alerce-kafka" / "message_0.avro").read_bytes()
    naxis_huge = set_card(_plain_fits(), "NAXIS1", 2**62 + 1)
    cases = [
        # crafted: each way the issue found a message to hang, bloat or crash decoding
        HostileCase("zero_size_null_schema_count_2p62", container("null", [(2**62, b"")]), "bad_schema"),
        HostileCase("zero_size_empty_record_count_2p62",
                    container({"type": "record", "name": "r", "fields": []}, [(2**62, b"")]), "bad_schema"),
        HostileCase("array_of_nulls_count_2p62",
                    container({"type": "record", "name": "a", "fields": [
                        {"name": "candidate", "type": {"type": "array", "items": "null"}},
                        {"name": "cutoutScience", "type": "boolean"}]}, [(1, _long(2**62))]), "bad_schema"),
        HostileCase("top_level_string_schema", container("string", [(1, _bytes(b"hello"))]), "bad_schema"),
        HostileCase("schema_not_json", container(b"{not json", [(1, b"\x00")]), "bad_schema"),
        HostileCase("schema_nested_5000_deep",
                    container(('{"type":"array","items":' * 5000 + '"int"' + "}" * 5000).encode(), [(1, b"\x00")]),
                    "bad_schema"),
        HostileCase("deflate_39kb_of_boolean_records",
                    container({"type": "record", "name": "b", "fields": [{"name": "flag", "type": "boolean"}]},
                              [(40_000_000, _deflate_zeros(40_000_000))], codec="deflate"), "missing_field"),
        HostileCase("deflate_boolean_records_named_like_an_alert",
                    container({"type": "record", "name": "b", "fields": alert_marker},
                              [(15_000_000, _deflate_zeros(30_000_000))], codec="deflate"), "too_many_records"),
        HostileCase("deflate_block_bomb_100mb",
                    container({"type": "record", "name": "b", "fields": alert_marker},
                              [(1, _deflate_zeros(100_000_000))], codec="deflate"), "too_large"),
        HostileCase("zstandard_block_bomb_100mb",
                    container({"type": "record", "name": "b", "fields": alert_marker},
                              [(1, _zstd_zeros(100_000_000))], codec="zstandard"), "too_large"),
        HostileCase("snappy_block_declares_2gb",
                    container({"type": "record", "name": "b", "fields": alert_marker},
                              [(1, encode_varint(2**31) + b"\x00" * 16 + b"\x00\x00\x00\x00")], codec="snappy"), "too_large"),
        HostileCase("xz_block_truncated",
                    container({"type": "record", "name": "b", "fields": alert_marker},
                              [(1, lzma.compress(b"\x00" * 1000, format=lzma.FORMAT_XZ)[:-20])], codec="xz"), "truncated_avro"),
        HostileCase("unknown_codec_lz4", container({"type": "record", "name": "b", "fields": alert_marker},
                                                   [(1, b"\x00\x00")], codec="lz4"), "unsupported_codec"),
        HostileCase("block_count_2p62_on_real_schema", _block_count_overwritten(real_ztf, 2**62), "truncated_avro"),
        HostileCase("metadata_value_declares_2p40_bytes",
                    b"Obj\x01" + _long(1) + _bytes(b"avro.schema") + _long(2**40) + b"{}", "truncated_avro"),
        HostileCase("tile_compressed_cutout_declares_16000x16000",
                    _ztf_with(_science(gzip.compress(_tile_compressed_fits()))), "bad_fits_header"),
        HostileCase("tile_compressed_cutout_16000x16000_valid",
                    _ztf_with(_science((DATA / "tile_compressed_16000x16000.fits.gz").read_bytes())), "bad_fits_header"),
        HostileCase("cutout_naxis1_2p62_plus_1", _ztf_with(_science(gzip.compress(naxis_huge))), "bad_fits_header"),
        HostileCase("cutout_naxis_1000", _ztf_with(_science(gzip.compress(set_card(_plain_fits(), "NAXIS", 1000)))),
                    "bad_fits_header"),
        HostileCase("cutout_bitpix_12", _ztf_with(_science(gzip.compress(set_card(_plain_fits(), "BITPIX", 12)))),
                    "unsupported_bitpix"),
        HostileCase("cutout_gzip_bomb", _ztf_with(_science(_gzip_zeros(64 << 20))), "gzip_bomb"),
        HostileCase("string_candid", _ztf_with(_retype("candid", "string", "not-a-number")), "bad_field_type"),
        HostileCase("string_ra", _ztf_with(_retype("ra", "string", "12h", inside="candidate")), "bad_field_type"),
        HostileCase("string_fid", _ztf_with(_retype("fid", "string", "g", inside="candidate")), "bad_field_type"),
        HostileCase("cutout_given_as_long_2p40", _ztf_with(_retype("cutoutDifference", "long", 2**40)), "bad_field_type"),
        HostileCase("cutout_stampdata_string",
                    _ztf_with(_retype("cutoutDifference", {"type": "record", "name": "cut", "fields": [
                        {"name": "fileName", "type": "string"}, {"name": "stampData", "type": "string"}]},
                        {"fileName": "x", "stampData": "not bytes"})), "bad_field_type"),
        HostileCase("exposure_fits_given_as_long",
                    _write(_exposure_schema("long"), [_exposure_record(2**40)]), "bad_field_type"),
        HostileCase("exposure_plane_naxis_2p62_plus_1",
                    _write(_exposure_schema("bytes"), [_exposure_record(naxis_huge)]), "bad_fits_header"),
        HostileCase("empty_container", container({"type": "record", "name": "b", "fields": alert_marker}, []), "empty"),
        HostileCase("wire_unknown_schema_id", b"\x00\x7f\xff\xff\xff" + b"\x00" * 32, "unknown_schema_id"),
        # real packets, mutated
        HostileCase("real_ztf_truncated_half", real_ztf[:len(real_ztf) // 2], "truncated_avro"),
        HostileCase("real_ztf_codec_swapped_to_snappy", _rewrite_header(real_ztf, codec="snappy"), "truncated_avro"),
        HostileCase("real_ztf_science_gzip_cut_short",
                    _ztf_with(lambda s, r: r["cutoutScience"].__setitem__("stampData", r["cutoutScience"]["stampData"][:200])),
                    "corrupt_gzip"),
        HostileCase("real_rubin_wire_truncated", real_rubin_wire[:len(real_rubin_wire) // 3], "truncated_avro"),
        # real schemas, mutated (blocks unchanged)
        HostileCase("real_schema_history_items_null", _mutated_schema(_set_items_null("prv_candidates")), "bad_schema"),
        HostileCase("real_schema_fields_removed", _mutated_schema(lambda s: s.__setitem__("fields", [])), "bad_schema"),
        HostileCase("real_schema_top_level_null", _mutated_schema(lambda s: (s.clear(), s.update({"type": "null"}))),
                    "bad_schema"),
    ]
    return cases


def _zstd_zeros(size: int) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=19).compress(bytes(size))


def _gzip_zeros(size: int) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            gz.write(chunk)
    return buf.getvalue()


def build_corpus(directory: str | Path) -> list[HostileCase]:
    """Write every case as ``<name>.avro`` plus ``expected.json`` into ``directory``; return them."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cases = hostile_cases()
    for case in cases:
        (out / f"{case.name}.avro").write_bytes(case.value)
    (out / "expected.json").write_text(json.dumps({c.name: c.reason for c in cases}, indent=1) + "\n")
    return cases

