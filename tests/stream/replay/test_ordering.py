"""Observation-time order within a bounded window, on the bundled ZTF packets: a folder that
is out of time order and spans several years of nights."""
from __future__ import annotations

from pathlib import Path

import pytest

from stream.replay.ordering import NIGHT_DAYS, TimeOrder
from stream.replay.pacing import Pacer
from stream.replay.sources import SourceMessage, iter_source

ZTF = Path(__file__).resolve().parents[3] / "schemas" / "samples" / "ztf"


def _times(items) -> list[float]:
    return [m.observed_mjd for m in items if isinstance(m, SourceMessage) and m.observed_mjd is not None]


def test_the_bundled_folder_is_unsorted_and_multi_night() -> None:
    times = _times(iter_source(ZTF))
    assert times != sorted(times) and max(times) - min(times) > NIGHT_DAYS


def test_a_window_as_large_as_the_folder_sorts_it_and_sees_the_span() -> None:
    raw = list(iter_source(ZTF))
    order = TimeOrder(raw, window=len(raw))
    out = list(order)
    assert len(out) == len(raw)
    assert _times(out) == sorted(_times(raw))
    assert order.late == 0 and order.span_days == pytest.approx(max(_times(raw)) - min(_times(raw)))


def test_a_small_window_counts_late_messages_and_drops_none() -> None:
    raw = list(iter_source(ZTF))[::-1]  # latest first: out of place by far more than the window
    order = TimeOrder(raw, window=2)
    out = list(order)
    assert sorted(m.origin for m in out) == sorted(m.origin for m in raw)
    assert order.late > 0  # the late ones are sent at once, never dropped


def test_max_gap_caps_the_idle_gaps_of_the_multi_night_folder() -> None:
    times = sorted(_times(iter_source(ZTF)))
    now = [0.0]
    pacer = Pacer.from_options(speed=60, max_gap_s=2.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    waits = [pacer.wait(t) for t in times]
    assert max(waits) <= 2.0 + 1e-9
    distinct_gaps = sum(1 for a, b in zip(times, times[1:]) if (b - a) * 86400 / 60 > 2.0)
    assert now[0] == pytest.approx(sum(min(2.0, (b - a) * 86400 / 60) for a, b in zip(times, times[1:])))
    assert distinct_gaps >= 3 and pacer.gaps_cut_s > 86400  # years of daytime cut away


def test_without_max_gap_the_wait_is_the_recorded_one() -> None:
    now = [0.0]
    slept: list[float] = []
    pacer = Pacer.from_options(speed=60, clock=lambda: now[0], sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    told: list[float] = []
    pacer.wait(60000.0)
    pacer.wait(60000.5, before_sleep=told.append)  # half a day later: 720 s at 60x
    assert slept == pytest.approx([720.0]) and told == pytest.approx([720.0])


def test_max_gap_needs_speed() -> None:
    from stream.replay.pacing import PacingError

    with pytest.raises(PacingError, match="--speed"):
        Pacer.from_options(rate_per_s=10, max_gap_s=1)
