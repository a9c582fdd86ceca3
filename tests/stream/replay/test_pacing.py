"""Pacing decisions with an injected clock (no waiting)."""
from __future__ import annotations

import pytest

from stream.replay.pacing import Pacer, PacingError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_asap_never_sleeps():
    clock = FakeClock()
    pacer = Pacer.from_options(clock=clock, sleep=clock.sleep)
    for mjd in (60000.0, 60001.0, None):
        assert pacer.wait(mjd) == 0.0
    assert pacer.mode == "asap" and clock.slept == []


def test_fixed_rate_spaces_messages():
    clock = FakeClock()
    pacer = Pacer.from_options(rate_per_s=4, clock=clock, sleep=clock.sleep)
    sent_at = []
    for _ in range(5):
        pacer.wait(None)
        sent_at.append(clock.now - 100.0)
    assert sent_at == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_recorded_cadence_is_sped_up_and_never_runs_backwards():
    clock = FakeClock()
    pacer = Pacer.from_options(speed=60, clock=clock, sleep=clock.sleep)
    start = 60000.0
    sent_at = []
    for minutes in (0, 1, 1, 5, 3, None, 10):  # observation times, minutes after the first
        pacer.wait(None if minutes is None else start + minutes / 1440)
        sent_at.append(clock.now - 100.0)
    # 60x faster: one minute of the night is one second; late-listed earlier ones go at once
    assert sent_at == pytest.approx([0, 1, 1, 5, 5, 5, 10])


@pytest.mark.parametrize("kwargs", [{"rate_per_s": 0}, {"speed": -1}, {"rate_per_s": 1, "speed": 1}])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(PacingError):
        Pacer.from_options(**kwargs)
