"""Property: mutated real packets, and real packets under mutated writer schemas, only ever
decode to alerts/exposures or raise DecodeError (never another exception, never a hang)."""
from __future__ import annotations

import copy
import gzip
import io
import json
from typing import Any

import numpy as np
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.alert import Alert, Exposure
from schemas.decode import DecodeError, decode_message, pack_exposure
from schemas.decode.limits import DecodeSettings
from tests.hostile.corpus import container
from tests.schemas.decode.packets import SAMPLES


def _exposure_packet() -> bytes:
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(np.ones((16, 16), np.float32), name=b) for b in ("W1", "W2", "W3")]).writeto(buf)
    return pack_exposure(gzip.compress(buf.getvalue()), exposure_id="e", instrument="WISE", filter="W1,W2,W3",
                         exposure_time_s=1.0, mjd=55000.0, kind="multiband_cutout")


PACKETS = [
    (SAMPLES / "ztf" / "kowalski").glob("*.avro").__next__().read_bytes(),
    sorted((SAMPLES / "ztf" / "fink").glob("*.avro"))[0].read_bytes(),
    (SAMPLES / "ztf" / "alerce" / "3044341005815015012.avro").read_bytes(),
    (SAMPLES / "rubin" / "alerce-kafka" / "message_0.avro").read_bytes(),
    (SAMPLES / "rubin" / "alerce" / "sample_v9.avro").read_bytes(),
    sorted((SAMPLES / "rubin" / "fink" / "v7_4").glob("*.avro"))[0].read_bytes(),
    _exposure_packet(),
]
# A small cap keeps each example fast and exercises the bomb guard on mutated gzip streams.
DECODE = DecodeSettings(max_inflated_bytes=1 << 20, max_message_bytes=1 << 20)

mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("splice"), st.floats(0, 1, exclude_max=True), st.integers(0, len(PACKETS) - 1)),
    st.tuples(st.just("overwrite"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
)


def _mutate(value: bytes, ops) -> bytes:
    data = bytearray(value)
    for kind, where, arg in ops:
        if not data:
            break
        pos = int(where * len(data))
        if kind == "flip":
            data[pos] ^= 1 << arg
        elif kind == "truncate":
            del data[pos:]
        elif kind == "splice":
            other = PACKETS[arg]
            start = int(where * len(other))
            data[pos:pos + 64] = other[start:start + 64]
        else:
            data[pos:pos + 8] = bytes([arg]) * 8
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(PACKETS) - 1), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_packets_decode_or_raise_decode_error(index, ops):
    value = _mutate(PACKETS[index], ops)
    try:
        items = decode_message(value, settings=DECODE)
    except DecodeError:
        return
    assert items and all(isinstance(item, (Alert, Exposure)) for item in items)


def test_unmutated_packets_decode():
    for value in PACKETS:
        assert decode_message(value, settings=DECODE)


# --- mutated writer schemas: the header's schema changed, the real blocks kept --------------

def _schema_and_body(value: bytes) -> tuple[dict, str, bytes, bytes]:
    """(writer schema, codec, sync marker, the blocks) of a real container."""
    from schemas.decode.avro import ContainerReader

    head = io.BytesIO(value)
    reader = ContainerReader(head, max_block_bytes=1 << 26, check_alert=False, project=False)
    return json.loads(reader.schema_json), reader.codec, reader.sync, value[head.tell():]


CONTAINERS = [p for p in PACKETS if p[:4] == b"Obj\x01"]
SCHEMA_PARTS = [_schema_and_body(p) for p in CONTAINERS]
#: What a field's type may be replaced with: every primitive, zero-size and empty shapes, unions.
REPLACEMENTS = ["null", "boolean", "int", "long", "float", "double", "bytes", "string",
                {"type": "array", "items": "null"}, {"type": "array", "items": "long"},
                {"type": "map", "values": "boolean"}, {"type": "record", "name": "fuzz_empty", "fields": []},
                {"type": "fixed", "name": "fuzz_fixed", "size": 0}, ["null", "string"], ["long", "bytes"],
                {"type": "enum", "name": "fuzz_enum", "symbols": ["A"]}]


def _fields(schema: Any) -> list[dict]:
    """Every field dict of every record in ``schema`` (depth first)."""
    out: list[dict] = []

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for branch in node:
                visit(branch)
        elif isinstance(node, dict):
            for field in node.get("fields") or []:
                out.append(field)
                visit(field.get("type"))
            for key in ("items", "values"):
                visit(node.get(key))
    visit(schema)
    return out


schema_mutation = st.one_of(
    st.tuples(st.just("retype"), st.floats(0, 1, exclude_max=True), st.integers(0, len(REPLACEMENTS) - 1)),
    st.tuples(st.just("drop"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("rename"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("top"), st.just(0.0), st.integers(0, len(REPLACEMENTS) - 1)),
)


def _mutate_schema(schema: Any, ops) -> Any:
    schema = copy.deepcopy(schema)
    for kind, where, arg in ops:
        if kind == "top":
            schema = copy.deepcopy(REPLACEMENTS[arg])
            continue
        fields = _fields(schema)
        if not fields:
            break
        field = fields[int(where * len(fields))]
        if kind == "retype":
            field["type"] = copy.deepcopy(REPLACEMENTS[arg])
            field.pop("default", None)
        elif kind == "drop":
            field["name"] = "fuzz_dropped"
            field["type"] = "null"
            field.pop("default", None)
        else:
            field["name"] = field["name"] + "_renamed"
    return schema


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(SCHEMA_PARTS) - 1), ops=st.lists(schema_mutation, min_size=1, max_size=3))
def test_mutated_schemas_decode_or_raise_decode_error(index, ops):
    schema, codec, sync, body = SCHEMA_PARTS[index]
    value = container(_mutate_schema(schema, ops), [], codec=codec, sync=sync) + body
    try:
        items = decode_message(value, settings=DECODE)
    except DecodeError:
        return
    assert all(isinstance(item, (Alert, Exposure)) for item in items)
