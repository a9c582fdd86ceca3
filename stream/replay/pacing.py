"""When to send each replayed message: as fast as possible, a fixed rate, or the recorded cadence.

Recorded cadence (``--speed K``) reproduces a night's bursts: the first message's observation
time is anchored at the moment replay starts, and a message observed ``dt`` seconds later is
sent ``dt / K`` seconds after that. Replay feeds messages in observation-time order (see
:mod:`stream.replay.ordering`); a message observed earlier than one already due is still sent
at once (time never runs backwards), and a message without an observation time is sent at once.

``max_gap_s`` (``--max-gap S``) caps the wait between two consecutive messages: a longer idle
gap (the daytime between two nights, months between archives) is shortened to ``S`` seconds and
everything after it moves earlier by the time cut, so bursts keep their shape.

Pure: the clock and the sleep are injected, so tests can drive it without waiting.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["PacingError", "Pacer", "SECONDS_PER_DAY"]

SECONDS_PER_DAY = 86400.0


class PacingError(ValueError):
    """Pacing options that make no sense (a non-positive rate or speed, or both given)."""


@dataclass
class Pacer:
    """Decides and waits for each message's send time. Build with :meth:`from_options`."""

    rate_per_s: float | None = None
    speed: float | None = None
    #: Longest wait between consecutive messages at recorded cadence; None: no cap.
    max_gap_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _start: float | None = field(default=None, repr=False)
    _first_mjd: float | None = field(default=None, repr=False)
    _last_target: float = field(default=0.0, repr=False)
    _sent: int = field(default=0, repr=False)
    #: Seconds of idle gaps cut by ``max_gap_s`` so far.
    gaps_cut_s: float = 0.0

    @classmethod
    def from_options(cls, rate_per_s: float | None = None, speed: float | None = None, max_gap_s: float | None = None,
                     **kwargs) -> Pacer:
        if rate_per_s is not None and speed is not None:
            raise PacingError("give either --rate or --speed, not both")
        if rate_per_s is not None and rate_per_s <= 0:
            raise PacingError(f"--rate must be positive, got {rate_per_s}")
        if speed is not None and speed <= 0:
            raise PacingError(f"--speed must be positive, got {speed}")
        if max_gap_s is not None:
            if speed is None:
                raise PacingError("--max-gap caps gaps of the recorded cadence: give it with --speed")
            if max_gap_s < 0:
                raise PacingError(f"--max-gap must not be negative, got {max_gap_s}")
        return cls(rate_per_s=rate_per_s, speed=speed, max_gap_s=max_gap_s, **kwargs)

    @property
    def mode(self) -> str:
        return "rate" if self.rate_per_s else "cadence" if self.speed else "asap"

    def due(self, observed_mjd: float | None) -> float:
        """Seconds after the start at which the next message is due (and count it)."""
        if self._start is None:
            self._start = self.clock()
        index, self._sent = self._sent, self._sent + 1
        if self.rate_per_s:
            return index / self.rate_per_s
        if self.speed and observed_mjd is not None:
            if self._first_mjd is None:
                self._first_mjd = observed_mjd
            target = (observed_mjd - self._first_mjd) * SECONDS_PER_DAY / self.speed - self.gaps_cut_s
            if self.max_gap_s is not None and target - self._last_target > self.max_gap_s:
                self.gaps_cut_s += target - self._last_target - self.max_gap_s
                target = self._last_target + self.max_gap_s
            # An earlier observation than one already sent is due in the past: sent at once.
            target = max(0.0, target)
            self._last_target = max(self._last_target, target)
            return target
        return self._last_target if self.speed else 0.0

    def estimate_s(self, observed_mjds: Iterable[float | None]) -> float:
        """Seconds from the first send to the last for messages observed at ``observed_mjds`` (in send
        order), at this pacing and with its ``max_gap_s``: what a replay will take. Pure; this pacer is untouched."""
        probe = Pacer(rate_per_s=self.rate_per_s, speed=self.speed, max_gap_s=self.max_gap_s, clock=lambda: 0.0)
        last = 0.0
        for mjd in observed_mjds:
            last = max(last, probe.due(mjd))
        return last

    def wait(self, observed_mjd: float | None, before_sleep: Callable[[float], None] | None = None) -> float:
        """Sleep until the message is due; returns the seconds slept.

        ``before_sleep(delay_s)`` is called first when there is a wait (the progress line says
        when the next message is due).
        """
        target = self.due(observed_mjd)
        assert self._start is not None  # due() set it
        delay = self._start + target - self.clock()
        if delay > 0:
            if before_sleep is not None:
                before_sleep(delay)
            self.sleep(delay)
            return delay
        return 0.0
