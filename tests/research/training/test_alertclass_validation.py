"""Validation-only comparison figures of research.training.alertclass_validation on small arrays."""
from __future__ import annotations

import numpy as np

from research.training.alertclass_validation import paired_bootstrap, validation_figures


def _probabilities(top: list[int]) -> np.ndarray:
    p = np.full((len(top), 4), 0.1)
    p[np.arange(len(top)), top] = 0.7
    return p


def test_figures_count_the_confusion_and_the_two_class_recall() -> None:
    labels = np.array([1, 1, 2, 3, 3, 3])
    p = _probabilities([1, 2, 2, 3, 1, 2])
    logits = np.log(p)
    logits[1, 1] = logits[1, 3] + 1.0              # the galaxy host read as hostless prefers galaxy over star
    f = validation_figures(logits, p, labels)
    assert f["confusion"][1] == [0, 1, 1, 0] and f["confusion"][3] == [0, 1, 1, 1]
    assert f["recall"] == {"galaxy_host": 0.5, "hostless_or_faint": 1.0, "star": 1 / 3}
    assert abs(f["macro_recall"] - (0.5 + 1.0 + 1 / 3) / 3) < 1e-9
    assert f["without_hostless_recall"]["galaxy_host"] == 1.0


def test_paired_bootstrap_of_a_run_against_itself_is_zero_and_a_better_run_is_positive() -> None:
    labels = np.array([1, 1, 2, 2, 3, 3, 3, 3])
    objects = np.array(["a", "a", "b", "c", "d", "e", "f", "g"])
    base = _probabilities([1, 3, 2, 1, 3, 3, 2, 3])
    same = paired_bootstrap(base, base, labels, objects, draws=50)
    assert same["macro_recall_diff"] == [0.0, 0.0, 0.0] and same["balanced_nll_diff"] == [0.0, 0.0, 0.0]
    better = paired_bootstrap(base, _probabilities([1, 1, 2, 2, 3, 3, 3, 3]), labels, objects, draws=200)
    assert better["macro_recall_diff"][0] >= 0 and better["macro_recall_diff"][1] > 0
    assert better["balanced_nll_diff"][2] <= 0
