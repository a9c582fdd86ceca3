"""The reference-catalogue comparison of the star / galaxy study: out of fold, class-weighted."""
from __future__ import annotations

import numpy as np

from research.training.star_galaxy_catalogue import out_of_fold
from research.training.star_galaxy_report import CLASSES


def _toy(seed: int = 0):
    rng = np.random.default_rng(seed)
    is_galaxy = np.arange(200) % 8 == 0                       # 1 : 7, like the set
    sigma = np.where(is_galaxy, 0.06, 0.015) * rng.lognormal(0, 0.1, 200)   # sigmagnr-like: galaxies worse fitted
    x = np.stack([rng.normal(0, 1, 200), sigma], axis=1)
    folds = np.arange(200) % 5
    return x, is_galaxy, folds


def test_a_separating_field_gives_out_of_fold_probabilities_that_separate():
    x, is_galaxy, folds = _toy()
    p = out_of_fold(x, is_galaxy, folds)
    assert p.shape == (200, 2) and np.allclose(p.sum(axis=1), 1)
    called_galaxy = p[:, CLASSES.index("galaxy")] >= 0.5
    assert (called_galaxy == is_galaxy).mean() > 0.95
    noise = out_of_fold(x[:, :1], is_galaxy, folds)[:, CLASSES.index("galaxy")] >= 0.5
    assert (noise == is_galaxy).mean() < 0.8                 # a field that carries nothing does not


def test_a_folds_own_labels_never_reach_its_rows():
    x, is_galaxy, folds = _toy()
    before = out_of_fold(x, is_galaxy, folds)
    flipped = is_galaxy.copy()
    flipped[folds == 2] = ~flipped[folds == 2]
    after = out_of_fold(x, flipped, folds)
    assert np.allclose(before[folds == 2], after[folds == 2])
    assert not np.allclose(before[folds != 2], after[folds != 2])
