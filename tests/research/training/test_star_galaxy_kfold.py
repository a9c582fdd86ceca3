"""The star / galaxy k-fold's fold assignment and pooled figures (no training)."""
from __future__ import annotations

import numpy as np
import pytest

from research.training.star_galaxy_kfold import field_folds, fold_split, kfold_table, pooled_figures


def _toy_set(seed: int = 1):
    rng = np.random.default_rng(seed)
    groups = [f"f{g}" for g in range(23) for _ in range(int(rng.integers(1, 9)))]
    labels = (rng.random(len(groups)) > 0.2).astype(np.int64)       # 0 galaxy (the minority), 1 star
    return np.asarray(groups), labels


def test_folds_keep_groups_whole_and_test_each_group_once():
    groups, labels = _toy_set()
    folds = field_folds(groups, labels, k=5, seed=0)
    for g in set(groups.tolist()):
        assert len(set(folds[groups == g].tolist())) == 1            # a group sits in one fold
    per_fold = [len(set(groups[folds == k].tolist())) for k in range(5)]
    assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == 23
    tested = []
    for k in range(5):
        split = fold_split(groups, folds, k)
        sides = [set(groups[s].tolist()) for s in (split.train, split.validation, split.test)]
        assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
        assert len(split.train) + len(split.validation) + len(split.test) == len(groups)
        assert len(split.validation) > 0 and len(split.train) > len(split.validation)
        tested += sorted(sides[2])
    assert sorted(tested) == sorted(set(groups.tolist()))             # every group tested exactly once


def test_folds_spread_the_minority_and_are_seeded():
    groups = np.asarray([f"g{i}" for i in range(10) for _ in range(3)])
    labels = np.asarray([0 if i < 5 else 1 for i in range(10) for _ in range(3)])
    folds = field_folds(groups, labels, k=5, seed=3)
    assert [int(((folds == k) & (labels == 0)).sum()) for k in range(5)] == [3] * 5
    assert np.array_equal(folds, field_folds(groups, labels, k=5, seed=3))
    with pytest.raises(ValueError):
        field_folds(groups[:6], labels[:6], k=5)


def test_pooled_figures_on_a_hand_made_table():
    # truth galaxy x2, star x4 over 3 fields; one galaxy missed, one star called galaxy
    p_galaxy = np.asarray([0.9, 0.2, 0.7, 0.1, 0.1, 0.3])
    probabilities = np.stack([p_galaxy, 1 - p_galaxy], axis=1)
    labels = np.asarray([0, 0, 1, 1, 1, 1])
    groups = np.asarray(["a", "a", "b", "b", "c", "c"])
    r = pooled_figures(probabilities, labels, groups, draws=50)
    assert r["confusion_matrix"] == [[1, 1], [1, 3]]
    assert r["per_class"]["galaxy"]["recall"] == 0.5 and r["per_class"]["star"]["recall"] == 0.75
    assert r["per_class"]["galaxy"]["precision"] == 0.5 and r["per_class"]["star"]["precision"] == 0.75
    assert r["balanced_accuracy"] == 0.625
    lo, hi = r["balanced_accuracy_95ci"]
    assert 0 <= lo <= hi <= 1
    assert r["test_fields"] == 3 and r["support"] == {"galaxy": 2, "star": 4}
    result = {"k": 5, "folds_done": 1, "complete": False, "folds": [],
              "pooled": {**r, "training_cpu_minutes": 1.0, "command_cpu_minutes": 1.2}}
    assert "partial" in kfold_table(result)


def test_the_reports_figures_are_the_committed_runs():
    """research/reports/star_galaxy/README.md quotes the committed k-fold and catalogue outputs;
    the IICnet-start folds all started from the shipped weights, the seeded ones from none."""
    import json
    from pathlib import Path

    reports = Path(__file__).resolve().parents[3] / "research" / "reports" / "star_galaxy"
    text = (reports / "README.md").read_text()
    seeded = json.loads((reports / "kfold" / "kfold.json").read_text())
    started = json.loads((reports / "kfold_init" / "kfold.json").read_text())
    catalogue = json.loads((reports / "catalogue" / "catalogue.json").read_text())
    assert seeded["complete"] and started["complete"]
    assert {f["recipe"]["init_from"] for f in seeded["folds"]} == {None}
    assert {Path(f["recipe"]["init_from"]).name for f in started["folds"]} == {"iicnet.pt"}
    for result in (seeded, started):
        pooled = result["pooled"]
        lo, hi = pooled["balanced_accuracy_95ci"]
        assert f"{pooled['balanced_accuracy']:.3f} [{lo:.3f}, {hi:.3f}]" in text
        assert f"{pooled['per_class']['galaxy']['roc_auc']:.3f}" in text
    for fold in started["folds"]:
        assert f"{fold['balanced_accuracy']:.3f}" in text and f"{fold['per_class']['galaxy']['roc_auc']:.3f}" in text
    best = catalogue["figures"]["all five"]
    assert f"{best['balanced_accuracy']:.3f} [{best['balanced_accuracy_95ci'][0]:.3f}, {best['balanced_accuracy_95ci'][1]:.3f}]" in text
