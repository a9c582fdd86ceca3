"""Calibration of the two exposure models trained on SIMULATED data only, on simulated data.

``iicnet`` (WISE W1/W2/W3, 3 classes) and ``hrcelestialnet`` (raw HST chips, 2 classes) have
no real labelled data here (their cards say so), so their calibration is measured on freshly
simulated sets the weights never saw, labelled as synthetic everywhere:

* test: the seed of the cards' ``synthetic_fresh_*`` sets (20261123): the same 3,000 WISE
  cutouts; HST frames of new bodies (``SETS``: 60 bodies per class as the card's 120 frames; the
  shipped report ran 15 per class, 30 frames, for time: a raw frame is simulated, binned and
  scored by a 97 M-parameter network on one shared CPU thread);
* temperature fit: another fresh set (seed 20261124; 1,500 cutouts; HST 24 or 6 bodies per
  class), never the test.

Scores are the served probabilities (``engines.registry`` ``load_runner(name, "torch")``).
ECE here is the **top-label** ECE (confidence of the predicted class against whether it is
right, 10 equal-width bins), which for two classes differs from the real/bogus models'
P(real) ECE; for hrcelestialnet the P(galaxy) ECE is given too. A temperature T rescales
the log-probabilities (softmax(log p / T)) and is fitted by cross-entropy on the fitting set;
it is reported, and adopted only by the rule of :func:`research.calibration.study.adopt`
(its interval over examples; each simulated cutout or body is its own group).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from research.calibration.metrics import EPS, N_BINS, _ci, clustered_bootstrap, ece, ece_figures, golden_section_min, reliability_bins

__all__ = ["FIT_SEED", "SETS", "TEST_SEED", "fit_temperature_multiclass", "multiclass_figures", "scaled",
           "synthetic_calibration", "top_label"]

TEST_SEED = 20261123
FIT_SEED = 20261124
#: model -> (fitting set size, test set size): WISE cutouts, or HST bodies per class
SETS = {"iicnet": (1500, 3000), "hrcelestialnet": (24, 60)}


def scaled(p: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) row-wise (T = 1 gives p back, up to clipping at EPS)."""
    z = np.log(np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0)) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(p: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(p[np.arange(len(labels)), labels], EPS, 1.0)).mean())


def fit_temperature_multiclass(p: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """T minimising the cross-entropy of softmax(log p / T) (golden-section search over log T)."""
    loss = lambda t: _nll(scaled(p, float(np.exp(t))), labels)
    return float(np.exp(golden_section_min(loss, float(np.log(bounds[0])), float(np.log(bounds[1])), 1e-5)))


def top_label(p: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of the predicted class, whether it is right)."""
    return p.max(axis=1), p.argmax(axis=1) == labels


def multiclass_figures(p: np.ndarray, labels: np.ndarray, groups: np.ndarray, temperature: float,
                       draws: int = 1000, seed: int = 0, n_bins: int = N_BINS) -> dict[str, Any]:
    """Top-label ECE and NLL before / after ``temperature``, bootstrap intervals over groups,
    in the keys of :func:`research.calibration.metrics.ece_figures` (so ``adopt`` reads them)."""
    q = scaled(p, temperature)
    conf_p, right_p = top_label(p, labels)
    conf_q, right_q = top_label(q, labels)

    def one(i: np.ndarray, conf: np.ndarray, right: np.ndarray) -> float:
        return ece(conf[i], right[i], n_bins)

    return {
        "examples": int(len(labels)), "accuracy": float(right_p.mean()), "n_bins": n_bins,
        "temperature": float(temperature),
        "ece_before": ece(conf_p, right_p, n_bins),
        "ece_before_95ci": _ci(clustered_bootstrap(groups, lambda i: one(i, conf_p, right_p), draws, seed)),
        "ece_after": ece(conf_q, right_q, n_bins),
        "ece_after_95ci": _ci(clustered_bootstrap(groups, lambda i: one(i, conf_q, right_q), draws, seed)),
        "ece_change": ece(conf_q, right_q, n_bins) - ece(conf_p, right_p, n_bins),
        "ece_change_95ci": _ci(clustered_bootstrap(groups, lambda i: one(i, conf_q, right_q) - one(i, conf_p, right_p),
                                                   draws, seed)),
        "nll_before": _nll(p, labels), "nll_after": _nll(q, labels),
        "ece_other_binnings": {str(b): [ece(conf_p, right_p, b), ece(conf_q, right_q, b)] for b in (5, 15)},
        "bins_before": reliability_bins(conf_p, right_p, n_bins),
        "bins_after": reliability_bins(conf_q, right_q, n_bins),
    }


def _served(name: str, inputs: np.ndarray, batch: int) -> tuple[np.ndarray, tuple[str, ...], dict[str, str]]:
    import torch

    from engines.registry import load_registry

    runner = load_registry().load_runner(name, "torch")
    try:
        p = np.concatenate([runner.infer(torch.from_numpy(np.ascontiguousarray(inputs[i:i + batch])))
                            for i in range(0, len(inputs), batch)]).astype(np.float64)
        return p, tuple(runner.labels), {"model": f"{runner.card.name} {runner.card.version}",
                                         "weights_sha256": runner.card.weights_sha256,
                                         "preprocessing": runner.card.preprocessing}
    finally:
        runner.close()


def _simulated(name: str, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """(network inputs, labels, groups, class names) of a fresh simulated set, as the service preprocesses it."""
    from engines.training.adapters import wise_inputs
    from engines.training.recipes import synthetic_hst, synthetic_wise

    if name == "iicnet":
        data, _ = synthetic_wise(size, seed)
        return wise_inputs(data.images), data.labels, np.asarray(data.groups), tuple(data.class_names)
    data, _ = synthetic_hst(size, 1, seed, 4)
    return data.images, data.labels, np.asarray(data.groups), tuple(data.class_names)


def synthetic_calibration(name: str, draws: int = 1000, sizes: tuple[int, int] | None = None) -> dict[str, Any]:
    """Fit T on the fitting set, figures on the test set (module docstring)."""
    from research.calibration.study import adopt

    fit_size, test_size = sizes or SETS[name]
    batch = 256 if name == "iicnet" else 4
    out: dict[str, Any] = {"survey": "exposure", "synthetic": True}
    sets = {}
    for role, size, seed in (("fit", fit_size, FIT_SEED), ("test", test_size, TEST_SEED)):
        x, y, groups, classes = _simulated(name, size, seed)
        p, labels, model = _served(name, x, batch)
        order = [labels.index(c) for c in classes]        # column of each simulated class
        sets[role] = (p[:, order], y, groups)
        out.update(model)
        out[f"{role}_set"] = {"seed": seed, "examples": int(len(y)), "classes": list(classes)}
    p_fit, y_fit, _ = sets["fit"]
    temperature = fit_temperature_multiclass(p_fit, y_fit)
    p, y, groups = sets["test"]
    figures = {"synthetic_fresh": multiclass_figures(p, y, groups, temperature, draws)}
    out["classes"] = out["test_set"]["classes"]
    if p.shape[1] == 2:         # the binary view: P(first class) against the truth
        positives = y == 0
        out["binary"] = {"class": out["classes"][0], **ece_figures(p[:, 0], positives, groups, temperature, draws)}
    adopted, why = adopt(figures)
    out.update({"temperature": temperature, "test": figures, "adopted": adopted, "adoption_reason": why,
                "fit_nll_before": _nll(p_fit, y_fit), "fit_nll_after": _nll(scaled(p_fit, temperature), y_fit)})
    return out
