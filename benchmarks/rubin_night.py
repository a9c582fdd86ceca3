"""A Rubin-shaped night: visit sizes drawn from a stated distribution, visits at the survey's cadence.

Rubin's figures (issue #27): about 10,000 alerts per visit with peaks of 40,000, about 10 million
alerts over about 1,000 visits, one visit every 30 to 40 s, and 98% of a visit's alerts public
within 60 s. The default distribution (:data:`DEFAULT_SIZES`)::

    lognormal:median=9000,sigma=0.35,peak=40000,peak_share=0.02,min=1000,max=40000

draws a visit's size from a lognormal of median 9,000 alerts (sigma 0.35 in log space: half the
visits between 7,100 and 11,400), clipped to [1,000, 40,000], except a ``peak_share`` (2%) of
visits that are 40,000-alert peaks (a crowded field, the Galactic plane). Its mean is 0.98 x
9,000 x exp(0.35^2 / 2) + 0.02 x 40,000 = 10,180 alerts per visit, so 1,000 visits make 10.2
million alerts: Rubin's night. A benchmark night of K visits draws K sizes (seeded); when none is a
peak, visit K // 2 is made one (``forced_peak`` in the results), so every night has a peak.

``scale`` divides every size (peaks included) for a machine with fewer cores than Rubin needs; the
cadence and the 60 s objective are not scaled. A member that drains C alerts/s meets the objective
on a visit of V alerts when roughly 0.98 V / C plus its fixed delay is under 60 s, so a visit of V / F
on this machine is the full visit V on a deployment with F times its capacity (F times the members
and cores), the fixed delay (batching, produce, commit) aside. The results state ``scale``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["VisitSizes", "Visit", "parse_visit_sizes", "draw_night", "DEFAULT_SIZES", "rubin_full_night_on_paper",
           "RUBIN_NIGHT_ALERTS", "RUBIN_VISITS", "RUBIN_PEAK_VISIT", "RUBIN_CADENCE_S", "MEMBER_UTILISATION"]

DEFAULT_SIZES = "lognormal:median=9000,sigma=0.35,peak=40000,peak_share=0.02,min=1000,max=40000"
RUBIN_NIGHT_ALERTS = 10_000_000
RUBIN_VISITS = 1_000
RUBIN_PEAK_VISIT = 40_000
RUBIN_CADENCE_S = (30.0, 40.0)
#: Cores a member keeps busy of those it has: 1.66 of 2, measured on the quiet AMD EPYC machine
#: (benchmarks/README.md, every-model night, 2026-12-01).
MEMBER_UTILISATION = 0.83


@dataclass(frozen=True)
class VisitSizes:
    """A lognormal body of visit sizes with a share of fixed-size peaks (alerts per visit, unscaled)."""

    median: float = 9000.0
    sigma: float = 0.35
    peak: int = 40_000
    peak_share: float = 0.02
    min: int = 1000
    max: int = 40_000

    def mean(self) -> float:
        """Mean alerts per visit (the body's clipping at min / max ignored: it moves the mean by < 0.1%)."""
        return (1 - self.peak_share) * self.median * math.exp(self.sigma**2 / 2) + self.peak_share * self.peak

    def spec(self) -> str:
        return "lognormal:" + ",".join(f"{k}={v:g}" for k, v in asdict(self).items())


def parse_visit_sizes(spec: str) -> VisitSizes:
    """``lognormal:median=9000,sigma=0.35,peak=40000,peak_share=0.02,min=1000,max=40000`` (any subset of keys)."""
    kind, _, rest = spec.partition(":")
    if kind != "lognormal":
        raise ValueError(f"visit sizes: only 'lognormal:key=value,...' is known, got {spec!r}")
    fields: dict[str, Any] = {}
    known = VisitSizes.__dataclass_fields__
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, _, value = part.partition("=")
        if key not in known:
            raise ValueError(f"visit sizes: unknown key {key!r} (known: {', '.join(known)})")
        fields[key] = int(float(value)) if key in ("peak", "min", "max") else float(value)
    sizes = VisitSizes(**fields)
    if not (sizes.median > 0 and sizes.sigma >= 0 and 0 <= sizes.peak_share <= 1 and 1 <= sizes.min <= sizes.max):
        raise ValueError(f"visit sizes out of range: {spec!r}")
    return sizes


@dataclass(frozen=True)
class Visit:
    """One visit of the benchmark night: its scaled size and when it starts (s after the first)."""

    size: int
    start_s: float
    unscaled_size: int
    peak: bool


def draw_night(visits: int, sizes: VisitSizes, *, scale: float = 1.0, cadence_s: tuple[float, float] = RUBIN_CADENCE_S,
               seed: int = 27) -> tuple[list[Visit], dict[str, Any]]:
    """``visits`` visits: sizes drawn (seeded) from ``sizes`` and divided by ``scale``, gaps uniform in ``cadence_s``."""
    if visits < 1 or scale <= 0:
        raise ValueError("visits must be >= 1 and scale > 0")
    rng = np.random.default_rng(seed)
    peaks = rng.random(visits) < sizes.peak_share
    body = np.clip(np.round(sizes.median * np.exp(sizes.sigma * rng.standard_normal(visits))), sizes.min, sizes.max)
    forced = None
    if not peaks.any():
        forced = visits // 2
        peaks[forced] = True
    unscaled = np.where(peaks, sizes.peak, body).astype(int)
    gaps = rng.uniform(cadence_s[0], cadence_s[1], visits)
    starts = np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    night = [Visit(max(1, round(int(u) / scale)), round(float(t), 2), int(u), bool(p)) for u, t, p in zip(unscaled, starts, peaks)]
    about = {"visit_sizes": sizes.spec(), "mean_alerts_per_visit_unscaled": round(sizes.mean()), "scale": scale,
             "cadence_s": list(cadence_s), "seed": seed, "forced_peak": forced,
             "sizes": [v.size for v in night], "unscaled_sizes": [v.unscaled_size for v in night],
             "starts_s": [v.start_s for v in night], "alerts": sum(v.size for v in night)}
    return night, about


def rubin_full_night_on_paper(cpu_ms_per_alert: float, drain_per_s_per_member: float | None, cores_per_member: float,
                              *, night_alerts: int = RUBIN_NIGHT_ALERTS, visits: int = RUBIN_VISITS,
                              peak_visit: int = RUBIN_PEAK_VISIT, cadence_s: float = sum(RUBIN_CADENCE_S) / 2,
                              objective_s: float = 60.0, share: float = 0.98, fixed_delay_s: float = 0.0,
                              member_utilisation: float = MEMBER_UTILISATION) -> dict[str, Any]:
    """Members and cores a full Rubin night needs on the CPU, derived from measured per-alert costs.

    * sustained: the night's mean rate (``night_alerts`` over ``visits`` x ``cadence_s``) at
      ``cpu_ms_per_alert`` needs that many cores busy all night;
    * peak: the ``share`` of a ``peak_visit`` must be published within ``objective_s`` (less the
      ``fixed_delay_s`` measured on small visits), i.e. drained at ``share x peak / (objective - delay)``
      alerts/s; at ``cpu_ms_per_alert`` that is the cores; the members, each on
      ``cores_per_member`` cores kept ``member_utilisation`` busy (CPU-normalised); and, as
      measured, the members at ``drain_per_s_per_member`` (one member's drain rate here, which
      on a shared machine is bounded by its share of the cores, not by its own cores).
    Scaling is taken as linear in members (each on its own cores), which this machine cannot check.
    """
    mean_rate = night_alerts / (visits * cadence_s)
    window = objective_s - fixed_delay_s
    peak_rate = share * peak_visit / window
    out: dict[str, Any] = {
        "inputs": {"night_alerts": night_alerts, "visits": visits, "cadence_s": cadence_s, "peak_visit": peak_visit,
                   "objective_s": objective_s, "share": share, "fixed_delay_s": round(fixed_delay_s, 2),
                   "cpu_ms_per_alert": cpu_ms_per_alert, "drain_per_s_per_member": drain_per_s_per_member,
                   "cores_per_member": cores_per_member},
        "mean_rate_per_s": round(mean_rate, 1),
        "peak_drain_rate_per_s": round(peak_rate, 1),
        "core_hours_per_night": round(night_alerts * cpu_ms_per_alert / 1000 / 3600, 1),
        "cores_sustained": round(mean_rate * cpu_ms_per_alert / 1000, 1),
        "cores_for_peak": round(peak_rate * cpu_ms_per_alert / 1000, 1),
    }
    out["inputs"]["member_utilisation"] = member_utilisation
    out["members_for_peak_cpu"] = math.ceil(peak_rate * cpu_ms_per_alert / 1000 / (cores_per_member * member_utilisation))
    out["cores_for_peak_cpu"] = out["members_for_peak_cpu"] * cores_per_member
    if drain_per_s_per_member:
        members = math.ceil(peak_rate / drain_per_s_per_member)
        out["members_for_peak"] = members
        out["cores_for_peak_at_measured_drain"] = round(members * cores_per_member, 1)
    return out


def visit_summary(visits: Sequence[Visit], by_visit: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per visit: its sizes, start, and latency figures (from :func:`benchmarks.members.latency_figures`)."""
    return [{"visit": i + 1, "size": v.size, "unscaled_size": v.unscaled_size, "peak": v.peak, "start_s": v.start_s, **dict(lat)}
            for i, (v, lat) in enumerate(zip(visits, by_visit))]
