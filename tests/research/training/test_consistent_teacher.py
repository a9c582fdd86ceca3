"""Consistent teaching on real pool alerts: braai scores the very view the real/bogus CNN trains on."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.training.train import TrainConfig
from engines.training.ztf_files import TrainingDataError
from tests.research.training.pool_path import POOL

pytestmark = pytest.mark.skipif(not (POOL / "alerts.parquet").is_file(), reason=f"the real-alert pool is absent ({POOL})")


@pytest.fixture(scope="module")
def triplets(tmp_path_factory):
    """braai's own input of every pool alert (cached in var/cache when it exists)."""
    from research.training.consistent_teacher import TEACHER_PREPROCESSING
    from research.training.ztf_pool import load_pool

    cache = Path("var/cache") if Path("var/cache").is_dir() else tmp_path_factory.mktemp("cache")
    return load_pool(POOL, cache_dir=cache, realbogus_preprocessing=TEACHER_PREPROCESSING)


@pytest.fixture(scope="module")
def braai():
    from research.training.consistent_teacher import load_braai

    return load_braai()


def _scored(pool, count: int) -> np.ndarray:
    return np.flatnonzero(np.isfinite(pool.teacher))[:count]


def test_one_view_serves_teacher_and_network(triplets, braai, tmp_path) -> None:
    """braai on its triplet is the pool's drb model score; the network's view of the triplet is
    the preprocessing the service runs for realbogus (resampled) and the pad69 study."""
    from research.training.consistent_teacher import student_view
    from research.training.ztf_pool import load_pool

    rows = _scored(triplets, 64)
    with torch.no_grad():
        scores = braai(torch.from_numpy(triplets.realbogus_inputs[rows])).reshape(-1).numpy()
    assert np.abs(scores - triplets.teacher[rows]).max() < 1e-5
    cache = Path("var/cache") if Path("var/cache").is_dir() else tmp_path
    for key in ("difference_stamps_rownorm_69", "difference_stamps_rownorm_pad69"):
        network_inputs = load_pool(POOL, cache_dir=cache, realbogus_preprocessing=key).realbogus_inputs[rows]
        view = student_view(key)(torch.from_numpy(triplets.realbogus_inputs[rows])).numpy()
        assert np.allclose(view, network_inputs, rtol=0, atol=1e-6), key     # the same map (thread count may round)
    with pytest.raises(TrainingDataError, match="braai's triplet"):
        student_view("difference_stamps_69")


def test_turn_sensitivity_measures_how_far_turns_move_braai(triplets, braai) -> None:
    from research.training.consistent_teacher import TURN_NAMES, turn, turn_sensitivity

    x = torch.from_numpy(triplets.realbogus_inputs[:4])
    assert torch.equal(turn(turn(x, 1), 3), x) and torch.equal(turn(turn(x, 4), 4), x)
    moved = turn_sensitivity(braai, triplets.realbogus_inputs[:128], batch=64)
    assert list(moved) == list(TURN_NAMES) and moved["none"] == {"mean_abs_change": 0.0, "crosses_0_5": 0.0}
    assert moved["rot90"]["mean_abs_change"] > 0.05 and 0 < moved["rot90"]["crosses_0_5"] < 1


def test_targets_are_braais_score_of_the_turned_and_mixed_view(triplets, braai) -> None:
    """The target is braai's score of the view the network gets, not of the unturned alert: a
    quarter turn moves braai's score (its row-wise L2 becomes column-wise), so the targets differ."""
    from research.training.consistent_teacher import ConsistentTeacher, student_view

    rows = _scored(triplets, 96)
    for alpha in (0.0, 1.0):
        teacher = ConsistentTeacher(braai, triplets.realbogus_inputs[rows], student_view("difference_stamps_rownorm_69"),
                                    mixup_alpha=alpha)
        idx = np.arange(48, 96)
        view = teacher.view(idx, np.random.default_rng(3))
        inputs, targets = teacher(idx, np.random.default_rng(3))
        with torch.no_grad():
            expected = braai(view).reshape(-1)
        assert torch.allclose(targets[:, 1], expected) and torch.allclose(targets.sum(1), torch.ones(len(idx)))
        assert torch.equal(inputs, student_view("difference_stamps_rownorm_69")(view))
        unturned = torch.from_numpy(triplets.teacher[rows][idx].astype(np.float32))
        assert (targets[:, 1] - unturned).abs().mean() > 0.02        # the turned / mixed views score otherwise
        if alpha:
            assert not any(torch.equal(view[i], torch.rot90(torch.from_numpy(triplets.realbogus_inputs[rows][j]), k, (1, 2)))
                           for i, j in enumerate(idx) for k in range(4))     # mixes, not just turns
    assert teacher.scored == len(idx)
    with pytest.raises(TrainingDataError):
        ConsistentTeacher(braai, triplets.realbogus_inputs[rows, :, :60], student_view("difference_stamps_rownorm_69"))


def test_a_consistent_run_on_a_pool_slice_records_its_views(triplets, braai, tmp_path) -> None:
    """train_on_pool with the live teacher: the record says how the targets were made, training
    fits, and the views must cover every training row (variant both: the injections too)."""
    from research.training.consistent_teacher import ConsistentTeacher, student_view
    from research.training.pool_realbogus import HELDOUT_SOURCES, split_by_source, train_on_pool
    from research.training.ztf_pool import load_pool

    cache = Path("var/cache") if Path("var/cache").is_dir() else tmp_path
    pool = load_pool(POOL, cache_dir=cache, realbogus_preprocessing="difference_stamps_rownorm_69")
    rng = np.random.default_rng(0)
    other = np.flatnonzero(~np.isin(pool.source, HELDOUT_SOURCES) & np.isfinite(pool.teacher))
    held = np.flatnonzero(np.isin(pool.source, HELDOUT_SOURCES))
    rows = np.sort(np.concatenate([rng.choice(other, 48, replace=False), held[::6]]))
    small, small_triplets = pool.subset(rows), triplets.realbogus_inputs[rows]
    split = split_by_source(small, HELDOUT_SOURCES, validation_fraction=0.25)
    made: list[ConsistentTeacher] = []

    def views_for(train_rows: np.ndarray) -> ConsistentTeacher:
        made.append(ConsistentTeacher(braai, small_triplets[train_rows], student_view(small.realbogus_preprocessing),
                                      mixup_alpha=0.5))
        return made[-1]

    config = TrainConfig(model="realbogus", epochs=3, batch_size=8, lr=1e-3, threads=1, patience=100,
                         bn_recalibration_examples=0)
    run = train_on_pool(small, split, "teacher", config, tmp_path / "run", training_batch_for=views_for)
    record = json.loads(run.record.read_text())
    assert record["data"]["training_views"]["mixup_alpha"] == 0.5
    assert made[0].scored == 3 * record["data"]["pool_train_alerts"] > 0
    with pytest.raises(TrainingDataError, match="training batches hold"):    # injections without braai's views
        train_on_pool(small, split, "both", config, tmp_path / "both", injection=(small.realbogus_inputs[:2], np.zeros(2, int)),
                      training_batch_for=views_for)
