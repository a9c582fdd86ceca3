"""The chaos suite's arithmetic: what was lost or duplicated, how long recovery took, whether health told the truth.

Pure functions on what the suite recorded, so each is tested on constructed inputs
(``tests/benchmarks/test_chaos.py``):

* :func:`account`: every input sent (``(partition, offset)`` -> send ms) against the classified
  records and dead letters read back: distinct inputs published, dead-lettered, **lost** (neither),
  **duplicates** (classified records beyond the first per input), outputs naming no input sent.
* :func:`latency_by_phase`: latency (first classified record's timestamp - input's send time) of
  the inputs sent before the fault, during it and after its release.
* :func:`recovery`: the backlog (inputs sent - inputs accounted for, on a 0.5 s grid) and the
  time from the fault's release until it is back at its pre-fault maximum (visits make the
  backlog saw-toothed, so "recovered" is "no worse than the worst moment before the fault").
* :func:`truth`: one member's ``/readyz`` and gauges polled through the run, judged against what
  the fault should have made it say.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.members import latency_figures

__all__ = ["Key", "Poll", "account", "latency_by_phase", "recovery", "truth", "first_times"]

#: an input, by where it landed: (partition, offset) in the input topic
Key = tuple[int, int]


def first_times(events: Sequence[tuple[int, Key | None]]) -> dict[Key, int]:
    """The earliest timestamp per input among ``(ts ms, input)`` events (inputs None left out)."""
    out: dict[Key, int] = {}
    for ts, key in events:
        if key is not None and (key not in out or ts < out[key]):
            out[key] = ts
    return out


def account(sent_ms: Mapping[Key, int], outputs: Sequence[tuple[int, Key | None]],
            dead_letters: Sequence[tuple[int, Key]]) -> dict[str, Any]:
    """Inputs against outputs: lost must be 0; duplicates are counted, never hidden."""
    per_input = Counter(key for _, key in outputs if key is not None)
    dead = Counter(key for _, key in dead_letters)
    published = {k for k in per_input if k in sent_ms}
    lost = sorted(k for k in sent_ms if k not in per_input and k not in dead)
    return {
        "inputs": len(sent_ms),
        "outputs": len(outputs),
        "published_distinct": len(published),
        "dead_lettered_distinct": sum(1 for k in dead if k in sent_ms),
        "lost": len(lost),
        "lost_examples": [f"{p}/{o}" for p, o in lost[:10]],
        "duplicates": sum(n - 1 for k, n in per_input.items() if k in sent_ms),
        "inputs_published_more_than_once": sum(1 for k, n in per_input.items() if k in sent_ms and n > 1),
        "dead_letter_duplicates": sum(n - 1 for n in dead.values()),
        "published_and_dead_lettered": len(published & set(dead)),
        "outputs_naming_no_input_sent": sum(1 for _, k in outputs if k is None or k not in sent_ms),
    }


def latency_by_phase(sent_ms: Mapping[Key, int], first_output_ms: Mapping[Key, int], start_ms: float,
                     release_ms: float) -> dict[str, dict[str, Any]]:
    """Latency figures (:func:`benchmarks.members.latency_figures`) of the inputs sent before
    ``start_ms``, in ``[start_ms, release_ms)`` and from ``release_ms`` on."""
    phases: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    for key, sent in sent_ms.items():
        out = first_output_ms.get(key)
        if out is None:
            continue
        phase = "before" if sent < start_ms else "during" if sent < release_ms else "after"
        phases[phase].append(float(out - sent))
    return {name: latency_figures(lat) for name, lat in phases.items()}


def recovery(sent_ms: Sequence[int], accounted_ms: Sequence[int], start_ms: float, release_ms: float,
             step_ms: float = 500.0) -> dict[str, Any]:
    """Backlog = inputs sent by t - inputs accounted for (classified or dead-lettered) by t.

    ``recover_s``: seconds from ``release_ms`` to the first grid point (``step_ms``) at or after it
    where the backlog is no higher than its maximum before ``start_ms``; None if it never is.
    ``backlog_peak`` is the highest backlog from ``start_ms`` on.
    """
    sent = np.sort(np.asarray(sent_ms, dtype=float))
    done = np.sort(np.asarray(accounted_ms, dtype=float))
    out: dict[str, Any] = {"backlog_before_max": None, "backlog_peak": None, "recover_s": None, "recovered_at_s_after_start": None}
    if sent.size == 0:
        return out
    end = max(sent[-1], done[-1] if done.size else sent[-1], release_ms)
    grid = np.arange(sent[0], end + step_ms, step_ms)
    backlog = np.searchsorted(sent, grid, side="right") - np.searchsorted(done, grid, side="right")
    before = backlog[grid < start_ms]
    threshold = int(before.max()) if before.size else 0
    out["backlog_before_max"] = threshold
    after_start = backlog[grid >= start_ms]
    out["backlog_peak"] = int(after_start.max()) if after_start.size else None
    candidates = np.nonzero((grid >= release_ms) & (backlog <= threshold))[0]
    if candidates.size:
        t = float(grid[candidates[0]])
        out["recover_s"] = round(max(0.0, t - release_ms) / 1000, 2)
        out["recovered_at_s_after_start"] = round((t - start_ms) / 1000, 2)
    return out


@dataclass(frozen=True)
class Poll:
    """One look at a member: ``state`` is ``ready`` (/readyz 200), ``not_ready`` (503) or
    ``unreachable`` (no answer within the poll's timeout: the process is dead or stopped);
    the gauges are None when /metrics did not answer."""

    t: float
    state: str
    redis_up: float | None = None
    kafka_up: float | None = None
    lag: float | None = None
    #: when not ready, what /readyz said was missing (``assigned``, ``redis_up``, ``kafka_up``, ...)
    why: str | None = None


def truth(polls: Sequence[Poll], start: float, release: float, *, expect_down: bool, gauge: str | None = None) -> dict[str, Any]:
    """Did one member's ``/readyz`` (and ``gauge``, ``redis_up`` or ``kafka_up``) tell the truth?

    ``expect_down``: the fault took this member's dependency (or the member itself) away, so it
    must have said so (not ready, or not answering) at least once between ``start`` and
    ``release`` and, when ``gauge`` is named, shown it at 0; every member must be ready at the
    end. Also reported: how long it took to say so, when it was first ready after the release and
    when for good (after its last not-ready answer; negative: before the release), and not-ready
    answers before the fault (false alarms).
    """
    polls = sorted(polls, key=lambda p: p.t)
    before = [p for p in polls if p.t < start]
    during = [p for p in polls if start <= p.t <= release]
    after_start = [p for p in polls if p.t >= start]
    bad_during = [p for p in during if p.state != "ready"]
    gauge_zero = [p for p in during if gauge is not None and getattr(p, gauge) == 0]
    last_bad = max((p.t for p in after_start if p.state != "ready"), default=None)
    ready_again = next((p.t for p in after_start if last_bad is not None and p.t > last_bad and p.state == "ready"), None)
    out: dict[str, Any] = {
        "polls": len(polls),
        "not_ready_before_fault": sum(1 for p in before if p.state != "ready"),
        "during": {s: sum(1 for p in during if p.state == s) for s in ("ready", "not_ready", "unreachable")},
        "said_down_after_s": round(bad_during[0].t - start, 2) if bad_during else None,
        "gauge": gauge,
        "gauge_zero_after_s": round(gauge_zero[0].t - start, 2) if gauge_zero else None,
        "ready_again_after_release_s": round(ready_again - release, 2) if ready_again is not None else None,
        # the first ready answer at or after the release (a member that flaps later is ready "for good" only
        # after its last not-ready answer: ready_again_after_release_s)
        "first_ready_after_release_s": next((round(p.t - release, 2) for p in polls if p.t >= release and p.state == "ready"
                                             and last_bad is not None), None),
        "ready_at_end": bool(polls) and polls[-1].state == "ready",
        # what the not-ready answers named, during the fault and after its release (a rebalance
        # says "assigned"; a dependency its gauge)
        "why_during": dict(Counter(p.why or p.state for p in during if p.state != "ready")),
        "why_after": dict(Counter(p.why or p.state for p in polls if p.t > release and p.state != "ready")),
        "expect_down": expect_down,
    }
    told = out["ready_at_end"]
    if expect_down:
        told = told and bool(bad_during) and (gauge is None or bool(gauge_zero) or not any(p.state == "not_ready" for p in during))
    out["told_truth"] = bool(told)
    return out
