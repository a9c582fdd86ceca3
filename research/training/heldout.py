"""Agreement of a real/bogus score with a teacher's on alerts from held-out sources.

The reference is a teacher model's verdict (ZTF's braai ``d6_m7``, the ``drb`` ZTF ships, at
0.5), not a human label: every figure here is agreement with ZTF's model. Figures:

* ROC AUC of our score against teacher-real (teacher >= 0.5), with a 95 % bootstrap interval
  that resamples *objects* (an object's alerts move together, so repeated alerts of one object
  do not narrow the interval);
* at a threshold chosen beforehand (on validation alerts only): the recall of teacher-real and
  the share of teacher-bogus passed (false-positive rate), each with its interval;
* the same per source (repository / survey period), and a second reference (braai ``d6_m9``)
  where given.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["agreement_figures", "fast_auc", "figures_by_source", "threshold_at_recall"]


def fast_auc(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """ROC AUC (ties count 1/2) by average ranks; None when a class is absent."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    average_rank = upper - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def threshold_at_recall(scores: np.ndarray, positives: np.ndarray, recall: float = 0.95) -> float:
    """The highest threshold keeping at least ``recall`` of ``positives`` (score >= threshold passes)."""
    pos = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(positives, dtype=bool)])
    if len(pos) == 0:
        raise ValueError("no positives to set a threshold on")
    k = int(np.floor((1.0 - recall) * len(pos) + 1e-9))
    return float(pos[min(k, len(pos) - 1)])


def _point(scores: np.ndarray, positives: np.ndarray, threshold: float) -> dict[str, float | None]:
    passed = scores >= threshold
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    return {
        "roc_auc": fast_auc(scores, positives),
        "recall_of_real": float(passed[positives].mean()) if n_pos else None,
        "bogus_passed": float(passed[~positives].mean()) if n_neg else None,
    }


def agreement_figures(scores: np.ndarray, reference: np.ndarray, groups: np.ndarray, threshold: float,
                      draws: int = 1000, seed: int = 0, cut: float = 0.5) -> dict[str, Any]:
    """Figures of ``scores`` against ``reference >= cut`` at ``threshold`` with 95 % intervals
    from an object-clustered bootstrap (``groups``: object ids)."""
    scores = np.asarray(scores, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    keep = np.isfinite(reference) & np.isfinite(scores)
    scores, positives, groups = scores[keep], reference[keep] >= cut, np.asarray(groups)[keep]
    out: dict[str, Any] = {"alerts": len(scores), "objects": len(set(groups.tolist())),
                           "reference_real": int(positives.sum()), "reference_bogus": int((~positives).sum()),
                           "threshold": float(threshold), **_point(scores, positives, threshold)}
    if len(scores) == 0:
        return out
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {k: [] for k in ("roc_auc", "recall_of_real", "bogus_passed")}
    for _ in range(draws):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(unique), len(unique))])
        for key, value in _point(scores[idx], positives[idx], threshold).items():
            if value is not None:
                samples[key].append(value)
    for key, values in samples.items():
        out[f"{key}_95ci"] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else None
    return out


def figures_by_source(scores: np.ndarray, reference: np.ndarray, groups: np.ndarray, sources: np.ndarray,
                      threshold: float, draws: int = 1000, seed: int = 0) -> Mapping[str, dict[str, Any]]:
    """:func:`agreement_figures` for all alerts (key ``"all"``) and for each source."""
    sources = np.asarray(sources)
    out = {"all": agreement_figures(scores, reference, groups, threshold, draws, seed)}
    for source in sorted(set(sources.tolist())):
        mask = sources == source
        out[str(source)] = agreement_figures(scores[mask], reference[mask], np.asarray(groups)[mask], threshold, draws, seed)
    return out
