"""Each kind of bad input is refused with one DecodeError carrying its reason code."""
from __future__ import annotations

import copy
import gzip
import http.server
import io
import json
import struct
import threading

import fastavro
import numpy as np
import pytest
from astropy.io import fits

from schemas.decode import DecodeError, Reason, decode_message, load_rubin_schema
from schemas.decode.limits import DecodeSettings
from stream.schema_registry import resolver_for
from tests.schemas.decode.packets import SAMPLES

ZTF_PATH = SAMPLES / "ztf" / "kowalski"
RUBIN_WIRE = SAMPLES / "rubin" / "alerce-kafka" / "message_0.avro"


def _ztf() -> tuple[dict, dict]:
    path = sorted(ZTF_PATH.glob("*.avro"))[0]
    reader = fastavro.reader(path.open("rb"))
    return copy.deepcopy(reader.writer_schema), next(reader)


def _container(schema: dict, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [record])
    return buf.getvalue()


def _fits(data: np.ndarray) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(data).writeto(buf)
    return buf.getvalue()


def _ztf_with_science(stamp: bytes) -> bytes:
    schema, record = _ztf()
    record["cutoutScience"]["stampData"] = stamp
    return _container(schema, record)


def _reason(value: bytes, **kwargs) -> Reason:
    with pytest.raises(DecodeError) as info:
        decode_message(value, **kwargs)
    return info.value.reason


def test_good_rewritten_packet_decodes():
    schema, record = _ztf()
    (alert,) = decode_message(_container(schema, record))
    assert alert.alert_id == record["candid"]


def test_empty_and_too_large():
    assert _reason(b"") is Reason.EMPTY
    value = RUBIN_WIRE.read_bytes()
    assert _reason(value, settings=DecodeSettings(max_message_bytes=len(value) - 1)) is Reason.TOO_LARGE


def test_truncated_avro():
    value = sorted(ZTF_PATH.glob("*.avro"))[0].read_bytes()
    for cut in (10, len(value) // 3, len(value) - 17, len(value) - 1):
        assert _reason(value[:cut]) is Reason.TRUNCATED_AVRO, cut
    wire = RUBIN_WIRE.read_bytes()
    for cut in (3, 40, len(wire) // 2, len(wire) - 1):
        assert _reason(wire[:cut]) is Reason.TRUNCATED_AVRO, cut
    assert _reason(wire + b"\x00\x01") is Reason.TRUNCATED_AVRO  # trailing bytes


def test_wrong_magic_and_unknown_format():
    wire = RUBIN_WIRE.read_bytes()
    assert _reason(b"\x01" + wire[1:]) is Reason.BAD_MAGIC
    assert _reason(b"\xfe\xff garbage") is Reason.UNKNOWN_FORMAT


def test_unknown_schema_id_shipped():
    wire = RUBIN_WIRE.read_bytes()
    for schema_id in (9999, 1234, 5, -1):
        assert _reason(b"\x00" + struct.pack(">i", schema_id) + wire[5:]) is Reason.UNKNOWN_SCHEMA_ID
    with pytest.raises(DecodeError) as info:
        load_rubin_schema(9999)
    assert info.value.reason is Reason.UNKNOWN_SCHEMA_ID


class _Registry(http.server.BaseHTTPRequestHandler):
    """A Confluent-compatible registry serving one id: Rubin 7.4 under id 42."""

    schema_text = ""

    def do_GET(self):
        if self.path == "/schemas/ids/42":
            body = json.dumps({"schema": self.schema_text}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error_code":40403,"message":"Schema not found"}')

    def log_message(self, *args):
        pass


def test_registry_resolves_ids_and_refuses_unknown_ones():
    from schemas.decode.rubin import rubin_schema_definition

    _Registry.schema_text = json.dumps(rubin_schema_definition(704))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        resolver = resolver_for(f"http://127.0.0.1:{server.server_port}")
        wire = RUBIN_WIRE.read_bytes()
        (alert,) = decode_message(b"\x00" + struct.pack(">i", 42) + wire[5:], resolver=resolver)
        (expected,) = decode_message(wire)
        assert alert.alert_id == expected.alert_id and alert.schema_version == "lsst.v7_4"
        with pytest.raises(DecodeError) as info:
            decode_message(wire, resolver=resolver)  # 704 is not in this registry
        assert info.value.reason is Reason.UNKNOWN_SCHEMA_ID
    finally:
        server.shutdown()
        server.server_close()


def test_registry_unreachable_is_our_fault_not_the_message():
    from schemas.decode import SchemaRegistryError

    with pytest.raises(SchemaRegistryError):
        decode_message(RUBIN_WIRE.read_bytes(), resolver=resolver_for("http://127.0.0.1:9", timeout_s=1))


def test_missing_required_fields():
    schema, record = _ztf()
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "objectId"]
    del record["objectId"]
    assert _reason(_container(schema, record)) is Reason.MISSING_FIELD

    schema, record = _ztf()
    cand = next(f for f in schema["fields"] if f["name"] == "candidate")["type"]
    cand["fields"] = [dict(f, type=["null", f["type"]], default=None) if f["name"] == "jd" else f for f in cand["fields"]]
    record["candidate"]["jd"] = None
    assert _reason(_container(schema, record)) is Reason.MISSING_FIELD

    rubin = fastavro.reader((SAMPLES / "rubin" / "alerce" / "sample_v9.avro").open("rb"))
    schema, record = copy.deepcopy(rubin.writer_schema), next(rubin)
    record["diaSource"]["diaObjectId"] = None
    record["diaSource"]["ssObjectId"] = None
    record["diaObject"] = None
    assert _reason(_container(schema, record)) is Reason.MISSING_FIELD


def test_invalid_fields():
    schema, record = _ztf()
    record["candidate"]["fid"] = 7
    assert _reason(_container(schema, record)) is Reason.INVALID_FIELD
    schema, record = _ztf()
    record["candidate"]["dec"] = 123.0
    assert _reason(_container(schema, record)) is Reason.INVALID_FIELD


def test_corrupt_gzip():
    good = gzip.compress(_fits(np.ones((63, 63), np.float32)))
    assert _reason(_ztf_with_science(good[:12] + bytes(200))) is Reason.CORRUPT_GZIP
    assert _reason(_ztf_with_science(good[: len(good) // 2])) is Reason.CORRUPT_GZIP


def test_jpeg_cutout(shared_data):
    path = shared_data / "ztf" / "ztf-avro-alert" / "87704463155000.avro"
    assert _reason(path.read_bytes()) is Reason.JPEG_CUTOUT


def test_jpeg_cutout_bundled():
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100)
    assert _reason(_ztf_with_science(jpeg)) is Reason.JPEG_CUTOUT


def test_not_fits():
    assert _reason(_ztf_with_science(gzip.compress(b"hello, this is text" * 10))) is Reason.NOT_FITS


def test_wrong_bitpix_and_naxis():
    raw = _fits(np.ones((63, 63), np.float32))
    bad_bitpix = raw.replace(b"BITPIX  =                  -32", b"BITPIX  =                   24")
    assert _reason(_ztf_with_science(gzip.compress(bad_bitpix))) is Reason.UNSUPPORTED_BITPIX
    assert _reason(_ztf_with_science(gzip.compress(_fits(np.ones((2, 63, 63), np.float32))))) is Reason.BAD_NAXIS
    assert _reason(_ztf_with_science(gzip.compress(_fits(np.ones(63, np.float32))))) is Reason.BAD_NAXIS
    empty = io.BytesIO()
    fits.PrimaryHDU().writeto(empty)
    assert _reason(_ztf_with_science(gzip.compress(empty.getvalue()))) is Reason.BAD_NAXIS


def test_all_nan_stamp():
    assert _reason(_ztf_with_science(gzip.compress(_fits(np.full((63, 63), np.nan, np.float32))))) is Reason.ALL_NAN
    inf = np.full((63, 63), np.inf, np.float32)
    assert _reason(_ztf_with_science(gzip.compress(_fits(inf)))) is Reason.ALL_NAN


def test_gzip_bomb():
    bomb = gzip.compress(b"\x00" * (17 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    assert _reason(_ztf_with_science(bomb)) is Reason.GZIP_BOMB
    small_cap = DecodeSettings(max_inflated_bytes=10_000)
    assert _reason(sorted(ZTF_PATH.glob("*.avro"))[0].read_bytes(), settings=small_cap) is Reason.GZIP_BOMB


def test_record_of_no_known_kind():
    schema = {"type": "record", "name": "other", "fields": [{"name": "x", "type": "int"}]}
    assert _reason(_container(schema, {"x": 1})) is Reason.MISSING_FIELD


def test_error_says_which_record():
    schema, good = _ztf()
    bad = copy.deepcopy(good)
    bad["cutoutScience"]["stampData"] = b"\xff\xd8\xff\xe0" + bytes(40)
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [good, bad])
    with pytest.raises(DecodeError) as info:
        decode_message(buf.getvalue())
    assert info.value.reason is Reason.JPEG_CUTOUT and info.value.record_index == 1


def test_memory_error_inside_decode_is_a_typed_reason(monkeypatch):
    """An allocation failing mid-decode (under the decode worker's address-space limit) is the input's reason."""
    import schemas.decode.stamps as stamps

    def exhausted(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(stamps, "read_fits", exhausted)
    schema, record = _ztf()
    assert _reason(_container(schema, record)) is Reason.DECODE_MEMORY_LIMIT


def test_records_per_message_are_capped():
    schema, record = _ztf()
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [record] * 3)
    assert len(decode_message(buf.getvalue())) == 3
    assert _reason(buf.getvalue(), settings=DecodeSettings(max_records_per_message=2)) is Reason.TOO_MANY_RECORDS


def test_projection_keeps_the_whole_candidate_and_skips_histories():
    from schemas.decode.avro import ALERT_FIELDS, projection_schema

    schema, record = _ztf()
    reader = projection_schema(schema)
    assert {f["name"] for f in reader["fields"]} == {f["name"] for f in schema["fields"]} & ALERT_FIELDS
    assert "prv_candidates" not in {f["name"] for f in reader["fields"]}
    (alert,) = decode_message(_container(schema, record))
    assert dict(alert.candidate) == record["candidate"]


def test_exposure_planes_are_capped_before_conversion_to_float32():
    from schemas.decode import pack_exposure

    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((900, 1000), np.uint8), name="W1")]).writeto(buf)
    # one band of an instrument with no required bands (a WISE cutout must carry W1, W2 and W3)
    value = pack_exposure(buf.getvalue(), exposure_id="e", instrument="SYNTH", filter="W1", exposure_time_s=1.0,
                          mjd=55000.0, kind="multiband_cutout")
    assert decode_message(value, settings=DecodeSettings(max_exposure_fits_bytes=2 << 20))
    assert _reason(value, settings=DecodeSettings(max_exposure_fits_bytes=1 << 20)) is Reason.TOO_LARGE
