"""Calibration figures of a binary score: reliability bins, expected calibration error (ECE),
object-clustered bootstrap intervals, temperature scaling, thresholds at stated recalls.

Definitions (what the report states):

* **ECE** of P(real) against a 0/1 reference: ``N_BINS`` equal-width bins of the score on
  [0, 1] (the last bin closed), ``sum_b (n_b / N) * |mean reference_b - mean score_b|``; empty
  bins contribute nothing. This is the binary ("P(real)") reliability ECE, not the top-label
  ECE of the predicted class.
* **Temperature** T: ``p' = sigmoid(logit(p) / T)`` with ``logit(p) = log p - log(1 - p)``
  (for a two-class softmax this equals softmax(z / T) of the network's logits z); T is the
  minimiser of the mean binary cross-entropy on the fitting set (the validation data, never
  the test). The cross-entropy is convex in 1 / T, so a golden-section search over 1 / T
  finds it.
* **Bootstrap**: resample objects (an object's alerts move together), 95 % percentile
  intervals, as :mod:`research.training.heldout` does.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["N_BINS", "OTHER_BINNINGS", "EPS", "apply_temperature", "clustered_bootstrap", "ece", "ece_figures", "fit_temperature",
           "golden_section_min", "logit", "nll", "reliability_bins"]

N_BINS = 10
#: the binnings the adoption rule also checks (ECE before / after, points only)
OTHER_BINNINGS = (5, 15)
#: probabilities are clipped to [EPS, 1 - EPS] before taking logits (float32 softmax saturates)
EPS = 1e-7


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)`` (T = 1 gives p back, up to the clipping at EPS)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return 1.0 / (1.0 + np.exp(-logit(p) / float(temperature)))


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.clip((np.asarray(p, dtype=np.float64) * n_bins).astype(np.int64), 0, n_bins - 1)


def reliability_bins(p: np.ndarray, positives: np.ndarray, n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """Per equal-width bin: its edges, count, mean score and share of reference-real (None when empty)."""
    p = np.asarray(p, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    idx = _bin_index(p, n_bins)
    out = []
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        out.append({"low": b / n_bins, "high": (b + 1) / n_bins, "n": n,
                    "mean_score": float(p[mask].mean()) if n else None,
                    "real_fraction": float(positives[mask].mean()) if n else None})
    return out


def ece(p: np.ndarray, positives: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error of P(real) (equal-width bins; see the module docstring)."""
    p = np.asarray(p, dtype=np.float64)
    positives = np.asarray(positives, dtype=np.float64)
    if len(p) == 0:
        raise ValueError("no scores")
    idx = _bin_index(p, n_bins)
    score_sum = np.bincount(idx, weights=p, minlength=n_bins)
    real_sum = np.bincount(idx, weights=positives, minlength=n_bins)
    return float(np.abs(real_sum - score_sum).sum() / len(p))


def nll(p: np.ndarray, positives: np.ndarray) -> float:
    """Mean binary cross-entropy of P(real) (clipped at EPS)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    y = np.asarray(positives, dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())


def fit_temperature(p: np.ndarray, positives: np.ndarray, bounds: tuple[float, float] = (0.02, 50.0),
                    tol: float = 1e-6) -> float:
    """The temperature T minimising :func:`nll` of ``sigmoid(logit(p) / T)`` on (p, positives):
    golden-section search on a = 1 / T in [1 / bounds[1], 1 / bounds[0]] (the loss is convex in a)."""
    z = logit(p)
    y = np.asarray(positives, dtype=np.float64)
    if len(z) == 0 or y.min() == y.max():
        raise ValueError("temperature needs both classes in the fitting set")

    def loss(a: float) -> float:
        s = a * z          # mean softplus(s) - y * s, stable
        return float((np.logaddexp(0.0, s) - y * s).mean())

    return float(1.0 / golden_section_min(loss, 1.0 / bounds[1], 1.0 / bounds[0], tol))


def golden_section_min(loss: Callable[[float], float], lo: float, hi: float, tol: float) -> float:
    """The x in [lo, hi] minimising a unimodal ``loss``, to ``tol`` (golden-section search)."""
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fc, fd = loss(c), loss(d)
    while hi - lo > tol:
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - ratio * (hi - lo)
            fc = loss(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + ratio * (hi - lo)
            fd = loss(d)
    return (lo + hi) / 2.0


def clustered_bootstrap(groups: np.ndarray, statistic: Callable[[np.ndarray], float | None], draws: int = 1000,
                        seed: int = 0) -> list[float]:
    """``statistic(index)`` over ``draws`` resamples of whole groups (objects); None results skipped."""
    unique, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(unique), len(unique))])
        value = statistic(idx)
        if value is not None:
            values.append(float(value))
    return values


def _ci(values: list[float]) -> list[float] | None:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else None


def ece_figures(p: np.ndarray, positives: np.ndarray, groups: np.ndarray, temperature: float,
                draws: int = 1000, seed: int = 0, n_bins: int = N_BINS) -> dict[str, Any]:
    """ECE and NLL before and after temperature ``temperature`` on one test set, with
    object-bootstrap intervals, and the paired interval of the change (after - before)."""
    p = np.asarray(p, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    q = apply_temperature(p, temperature)
    pairs = clustered_bootstrap(groups, lambda i: ece(q[i], positives[i], n_bins) - ece(p[i], positives[i], n_bins),
                                draws, seed)
    return {
        "alerts": int(len(p)), "objects": int(len(set(np.asarray(groups).tolist()))),
        "reference_real": int(positives.sum()), "reference_bogus": int((~positives).sum()),
        "n_bins": n_bins, "temperature": float(temperature),
        "ece_before": ece(p, positives, n_bins),
        "ece_before_95ci": _ci(clustered_bootstrap(groups, lambda i: ece(p[i], positives[i], n_bins), draws, seed)),
        "ece_after": ece(q, positives, n_bins),
        "ece_after_95ci": _ci(clustered_bootstrap(groups, lambda i: ece(q[i], positives[i], n_bins), draws, seed)),
        "ece_change": ece(q, positives, n_bins) - ece(p, positives, n_bins),
        "ece_change_95ci": _ci(pairs),
        "nll_before": nll(p, positives), "nll_after": nll(q, positives),
        "ece_other_binnings": {str(b): [ece(p, positives, b), ece(q, positives, b)] for b in OTHER_BINNINGS},
        "bins_before": reliability_bins(p, positives, n_bins),
        "bins_after": reliability_bins(q, positives, n_bins),
    }
