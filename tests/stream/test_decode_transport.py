"""Shared memory between the service and a decode worker: what goes in comes out, and what does
not fit is refused whole (the pipe carries it)."""
from __future__ import annotations

import numpy as np
import pytest

from stream.decode_transport import SharedArea, shared_memory_available

pytestmark = pytest.mark.skipif(not shared_memory_available(), reason="no memfd_create on this platform")


def test_values_round_trip_with_none_kept_and_rewind_starts_over():
    area = SharedArea(1024)
    try:
        spans = area.put([b"abc", None, bytearray(b"defg")])
        assert spans == [(0, 3), None, (3, 4)]
        assert [area.value(s) for s in spans] == [b"abc", None, b"defg"]
        assert area.put([b"h"]) == [(7, 1)]                     # a job writes forward
        area.rewind()
        assert area.put([b"ij"]) == [(0, 2)] and area.value((0, 2)) == b"ij"
    finally:
        area.close()


def test_what_does_not_fit_is_refused_whole_and_nothing_is_written():
    area = SharedArea(8)
    try:
        area.put([b"12345"])
        assert area.put([b"678", b"9"]) is None                # 5 + 4 > 8: the pipe carries both
        assert area.put([b"678"]) == [(5, 3)]                   # the cursor did not move
        assert area.pack([np.zeros(4, np.float32)]) is None
    finally:
        area.close()


def test_decoded_arrays_come_back_equal_writable_and_independent_of_the_area():
    area = SharedArea(1 << 20)
    try:
        stamp = np.arange(63 * 63, dtype=np.float32).reshape(63, 63)
        block = [("outcome", {"science": stamp, "candidate": {"candid": 1}}), ("outcome", {"science": stamp.T})]
        packed = area.pack(block)
        assert packed is not None
        data, spans = packed
        assert len(data) < 2000 and spans[0] == (0, stamp.nbytes)   # the pixels went through the area, not the pickle
        out = area.unpack(data, spans)
        assert np.array_equal(out[0][1]["science"], stamp) and np.array_equal(out[1][1]["science"], stamp.T)
        assert out[0][1]["candidate"] == {"candid": 1}
        got = out[0][1]["science"]
        assert got.flags.writeable
        area.rewind()
        area.put([np.full(63 * 63, -1, np.float32)])             # the next job overwrites the area...
        assert np.array_equal(got, stamp)                        # ...not what was copied out of it
    finally:
        area.close()


def test_an_area_is_handed_to_a_process_only_while_it_is_spawned():
    import pickle

    area = SharedArea(64)
    try:
        with pytest.raises(TypeError, match="only while"):
            pickle.dumps(area)
        area.release_fd()
        with pytest.raises(TypeError, match="only while"):
            pickle.dumps(area)
    finally:
        area.close()
