"""Property: mutated real packets only ever decode to alerts/exposures or raise DecodeError."""
from __future__ import annotations

import gzip
import io

import numpy as np
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.alert import Alert, Exposure
from schemas.decode.limits import DecodeSettings
from schemas.decode import DecodeError, decode_message, pack_exposure
from tests.schemas.decode.packets import SAMPLES


def _exposure_packet() -> bytes:
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((16, 16), np.float32), name="W1")]).writeto(buf)
    return pack_exposure(gzip.compress(buf.getvalue()), exposure_id="e", instrument="WISE", filter="W1",
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
