"""schemas.pickling: the decode pool's hand-off pickles outcomes without dataclasses.fields()."""
from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass

import numpy as np
import pytest

from schemas.alert import Alert, Exposure, InputKind, Stamp
from schemas.decode import decode_message
from schemas.pickling import fast_pickle
from stream.envelope import DecodeOutcome
from tests.conftest import SAMPLES


def _outcomes() -> list[DecodeOutcome]:
    packets = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[:2] + sorted((SAMPLES / "rubin").rglob("*.avro"))[:1]
    assert len(packets) == 3
    exposure = Exposure("e1", "ACS/WFC", "F606W", 30.0, 60000.0, InputKind.RAW_EXPOSURE,
                        {"SCI,1": np.arange(6, dtype=np.float32).reshape(2, 3)}, {"SCI,1": {"EXPTIME": 30.0}})
    return [DecodeOutcome(items=tuple(decode_message(p.read_bytes()))) for p in packets] + [
        DecodeOutcome(items=(exposure,)), DecodeOutcome(reason="bad_avro", detail="x", record_index=2)]


def _same(a: object, b: object) -> None:
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif hasattr(a, "items"):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


@pytest.mark.parametrize("protocol", [pickle.DEFAULT_PROTOCOL, 5])
def test_real_outcomes_round_trip_with_out_of_band_buffers(protocol):
    outcomes = _outcomes()
    buffers: list[pickle.PickleBuffer] = []
    kwargs = {"buffer_callback": buffers.append} if protocol == 5 else {}
    data = pickle.dumps(outcomes, protocol=protocol, **kwargs)
    back = pickle.loads(data, buffers=[bytearray(b.raw()) for b in buffers])
    _same(outcomes, back)
    assert isinstance(back[0].items[0], Alert) and isinstance(back[0].items[0].science, Stamp)
    with pytest.raises(dataclasses.FrozenInstanceError):
        back[0].items[0].alert_id = 1   # still frozen


def test_pickling_does_not_call_dataclasses_fields(monkeypatch):
    """Per object, ``dataclasses.fields()`` cost a third of the decode supervisors' CPU."""
    outcomes = _outcomes()

    def refuse(*_a, **_k):
        raise AssertionError("dataclasses.fields() called while pickling")

    monkeypatch.setattr(dataclasses, "fields", refuse)
    back = pickle.loads(pickle.dumps(outcomes, protocol=5))
    assert [o.ok for o in back] == [True, True, True, True, False]


@fast_pickle
@dataclass(frozen=True, slots=True)
class One:
    x: int


@fast_pickle
@dataclass(frozen=True, slots=True)
class Two:
    x: int
    y: str = "b"


def test_state_is_the_field_values_in_order():
    assert One(3).__getstate__() == (3,) and pickle.loads(pickle.dumps(One(3))) == One(3)
    assert Two(1).__getstate__() == (1, "b") and pickle.loads(pickle.dumps(Two(1, "c"))) == Two(1, "c")


def test_a_class_without_fields_is_refused():
    with pytest.raises(TypeError, match="no fields"):
        @fast_pickle
        @dataclass(frozen=True, slots=True)
        class Empty:
            pass
