"""Calibration of the alert-class model 2.x: top-label reliability, ECE, a softmax temperature,
operating points per class.

Definitions (what the card and report state):

* The calibrated quantity is the **top-class confidence** of the stamp classes (galaxy_host,
  hostless_or_faint, star) on alerts without a known Solar-System object: ``max_k p_k`` against
  "the top class is the weak label". The asteroid column is the packet's flag (0 or 1), a
  catalogue fact with nothing to calibrate, so flagged alerts are left out here.
* **ECE**: :func:`research.calibration.metrics.ece` on that confidence (10 equal-width bins).
* **Temperature** T: the stamp logits are divided by T before the softmax
  (``PacketAlertClassNet(temperature=T)``); T minimises the mean cross-entropy on the
  **validation** alerts (convex in 1 / T: golden-section search), never on the test.
* **Operating point** per class: the highest threshold on P(class) that keeps at least 90 % of
  the class's validation alerts (:func:`research.training.heldout.threshold_at_recall`); the
  test's recall and precision at it, with object-bootstrap intervals.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from research.calibration.metrics import N_BINS, _ci, clustered_bootstrap, ece, golden_section_min, reliability_bins
from research.training.heldout import threshold_at_recall

__all__ = ["OPERATING_RECALL", "fit_softmax_temperature", "operating_points", "softmax", "top_label_figures"]

OPERATING_RECALL = 0.90


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = np.asarray(logits, dtype=np.float64) / temperature
    log_norm = np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)) + z.max(axis=1)
    return float((log_norm - z[np.arange(len(z)), labels]).mean())


def fit_softmax_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0),
                            tol: float = 1e-6) -> float:
    """T minimising the mean cross-entropy of softmax(logits / T) against ``labels`` (column indices)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("temperature needs labelled alerts")
    def loss(a: float) -> float:
        return _nll(logits, labels, 1.0 / a)

    return float(1.0 / golden_section_min(loss, 1.0 / bounds[1], 1.0 / bounds[0], tol))


def top_label_figures(logits: np.ndarray, labels: np.ndarray, groups: np.ndarray, temperature: float,
                      draws: int = 1000, seed: int = 0, n_bins: int = N_BINS) -> dict[str, Any]:
    """Top-label ECE (and NLL) before (T = 1) and after ``temperature``, with object-bootstrap
    intervals; the bins for a reliability diagram (keys as
    :func:`research.calibration.study.reliability_png` reads them)."""
    labels = np.asarray(labels, dtype=np.int64)
    p, q = softmax(logits), softmax(logits, temperature)
    conf_p, conf_q = p.max(axis=1), q.max(axis=1)
    right = p.argmax(axis=1) == labels        # T does not change the top class
    out: dict[str, Any] = {
        "alerts": int(len(labels)), "objects": int(len(set(np.asarray(groups).tolist()))), "n_bins": n_bins,
        "temperature": float(temperature), "accuracy": float(right.mean()),
        "ece_before": ece(conf_p, right, n_bins), "ece_after": ece(conf_q, right, n_bins),
        "nll_before": _nll(logits, labels, 1.0), "nll_after": _nll(logits, labels, temperature),
        "bins_before": reliability_bins(conf_p, right, n_bins), "bins_after": reliability_bins(conf_q, right, n_bins),
    }
    out["ece_before_95ci"] = _ci(clustered_bootstrap(groups, lambda i: ece(conf_p[i], right[i], n_bins), draws, seed))
    out["ece_after_95ci"] = _ci(clustered_bootstrap(groups, lambda i: ece(conf_q[i], right[i], n_bins), draws, seed))
    out["ece_change_95ci"] = _ci(clustered_bootstrap(
        groups, lambda i: ece(conf_q[i], right[i], n_bins) - ece(conf_p[i], right[i], n_bins), draws, seed))
    return out


def operating_points(val_p: np.ndarray, val_labels: np.ndarray, test_p: np.ndarray, test_labels: np.ndarray,
                     test_groups: np.ndarray, classes: dict[str, int], recall: float = OPERATING_RECALL,
                     draws: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per class: the validation threshold at ``recall``, and the test recall / precision at it."""
    out: dict[str, dict[str, Any]] = {}
    for name, column in classes.items():
        positives = np.asarray(val_labels) == column
        if not positives.any():
            continue
        threshold = threshold_at_recall(val_p[:, column], positives, recall)
        passed = test_p[:, column] >= threshold
        truth = np.asarray(test_labels) == column

        def rec(i: np.ndarray, passed: np.ndarray = passed, truth: np.ndarray = truth) -> float | None:
            return float(passed[i][truth[i]].mean()) if truth[i].any() else None

        def prec(i: np.ndarray, passed: np.ndarray = passed, truth: np.ndarray = truth) -> float | None:
            return float(truth[i][passed[i]].mean()) if passed[i].any() else None

        all_idx = np.arange(len(truth))
        out[name] = {"threshold": float(threshold), "validation_recall_target": recall,
                     "validation_alerts_of_class": int(positives.sum()), "test_alerts_of_class": int(truth.sum()),
                     "test_recall": rec(all_idx), "test_recall_95ci": _ci(clustered_bootstrap(test_groups, rec, draws, seed)),
                     "test_precision": prec(all_idx),
                     "test_precision_95ci": _ci(clustered_bootstrap(test_groups, prec, draws, seed))}
    return out
