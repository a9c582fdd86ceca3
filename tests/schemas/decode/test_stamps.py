"""place_in_frame: edge stamps go where the detector edge says, real pixels are masked True."""
from __future__ import annotations

import numpy as np
import pytest

from schemas.decode import DecodeError, Reason, decode_message, place_in_frame
from tests.schemas.decode.packets import raw_records


def test_full_stamp_unchanged():
    data = np.arange(63 * 63, dtype=np.float32).reshape(63, 63)
    out, mask = place_in_frame(data)
    assert np.array_equal(out, data) and mask.all()


def test_low_y_edge_puts_data_at_the_top_rows():
    data = np.ones((41, 63), np.float32)
    out, mask = place_in_frame(data, xpos=2647.1, ypos=10.39)
    assert mask[22:].all() and not mask[:22].any()
    assert np.isnan(out[:22]).all() and (out[22:] == 1).all()


def test_high_x_edge_puts_data_at_the_first_columns():
    data = np.ones((63, 53), np.float32)
    out, mask = place_in_frame(data, xpos=3051.06, ypos=1214.2)
    assert mask[:, :53].all() and not mask[:, 53:].any()


def test_unknown_position_centres():
    out, mask = place_in_frame(np.ones((45, 63), np.float32))
    assert mask[9:54].all() and not mask[:9].any() and not mask[54:].any()


def test_too_large_or_not_2d():
    with pytest.raises(DecodeError) as info:
        place_in_frame(np.ones((64, 63), np.float32))
    assert info.value.reason is Reason.BAD_STAMP_SHAPE
    with pytest.raises(DecodeError) as info:
        place_in_frame(np.ones((3, 3, 3), np.float32))
    assert info.value.reason is Reason.BAD_NAXIS


def test_real_edge_packets(shared_data):
    """The real 41x63 / 45x63 / 63x53 stamps land against the side away from the detector edge."""
    expected = {
        "396522680015040001.avro": (slice(22, 63), slice(0, 63)),   # ypos 10.4: bottom rows missing
        "396522680015040002.avro": (slice(18, 63), slice(0, 63)),   # ypos 13.9
        "472263571115115014.avro": (slice(0, 63), slice(0, 53)),    # xpos 3051: right columns missing
    }
    for name, (rows, cols) in expected.items():
        path = shared_data / "ztf" / "ztf-avro-alert" / name
        (alert,) = decode_message(path.read_bytes())
        cand = raw_records(path)[0]["candidate"]
        out, mask = place_in_frame(alert.difference.data, xpos=cand["xpos"], ypos=cand["ypos"])
        want = np.zeros((63, 63), bool)
        want[rows, cols] = True
        assert np.array_equal(mask, want), name
        assert np.array_equal(out[mask], alert.difference.data.ravel(), equal_nan=True)
