"""The alert-class 2.x route on slices of the real-alert pool: targets (the packet's asteroid match,
ACAI's scores), the distillation loss, distillation actually learning ACAI, and a whole (tiny)
training run and report. Every test runs in seconds (the pool's arrays come from the cache)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[3]
from tests.research.training.pool_path import POOL  # noqa: E402  (the pool fixture: conftest.py)

pytestmark = pytest.mark.skipif(not (POOL / "alerts.parquet").is_file(), reason=f"the real-alert pool is absent ({POOL})")


@pytest.fixture(scope="module")
def targets(pool):
    """ACAI from the reference file (the original Keras models' outputs), no scoring."""
    from research.training.alertclass_targets import load_targets

    return load_targets(POOL, pool.candid, acai_from="csv")


def test_targets_join_the_packets_asteroid_match_and_acai(pool, targets) -> None:
    from research.training.pool_alertclass import alert_classes

    assert targets.candid.tolist() == pool.candid.tolist()
    # the weak asteroid rule is the packet's match: the same alerts
    assert np.array_equal(targets.known_solar_system, pool.weak_label == "asteroid")
    assert targets.known_solar_system.sum() == 140
    scored = np.isfinite(targets.acai).all(axis=1)
    assert scored.sum() == 767 and ((targets.acai[scored] >= 0) & (targets.acai[scored] <= 1)).all()
    labels = alert_classes(pool)
    assert (labels[pool.weak_label == "ambiguous"] == -1).all() and (labels[pool.weak_label != "ambiguous"] >= 0).all()


def test_distillation_losses_are_weighted_cross_entropy_plus_acai_bce(targets) -> None:
    from research.training.pool_alertclass import distillation_losses

    rows = np.flatnonzero(np.isfinite(targets.acai).all(axis=1))[:6]
    acai = np.concatenate([targets.acai[rows], np.full((2, 5), np.nan, np.float32)])   # two alerts ACAI cannot score
    labels = np.array([0, 1, -1, 3, 2, -1, 3, 1])
    torch.manual_seed(0)
    out = torch.randn(8, 9)
    weights = torch.tensor([1.0, 2.0, 0.5, 1.5])
    class_loss, acai_loss = distillation_losses(out, labels, acai, weights)
    hard = labels >= 0
    expected_class = F.cross_entropy(out[hard, :4], torch.from_numpy(labels[hard]), weight=weights)
    expected_acai = F.binary_cross_entropy_with_logits(out[:6, 4:], torch.from_numpy(acai[:6]))
    assert torch.allclose(class_loss, expected_class) and torch.allclose(acai_loss, expected_acai)
    none_class, none_acai = distillation_losses(out[:1], np.array([-1]), acai[6:7], weights)
    assert float(none_class) == 0.0 and float(none_acai) == 0.0


def test_distillation_learns_acais_scores_on_a_pool_slice(pool, targets) -> None:
    """A few steps on 8 real alerts bring the network's ACAI heads towards ACAI's scores."""
    from engines.networks.iicnet import IICNet
    from research.training.pool_alertclass import alert_classes, distillation_losses

    torch.manual_seed(0)
    torch.set_num_threads(2)
    rows = np.flatnonzero(np.isfinite(targets.acai).all(axis=1))[::90][:8]
    x = torch.from_numpy(np.ascontiguousarray(pool.arcsec_inputs[rows][:, :, 20:44, 20:44]))   # 24 x 24 centres: fast
    labels, acai = alert_classes(pool)[rows], targets.acai[rows]
    network = IICNet(num_classes=9)
    network.eval()
    with torch.no_grad():
        before = float(distillation_losses(network(x), labels, acai, None)[1])
    optimizer = torch.optim.Adam(network.parameters(), lr=2e-3)
    network.train()
    for _ in range(6):
        _, loss = distillation_losses(network(x), labels, acai, None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    network.eval()
    with torch.no_grad():
        after = float(distillation_losses(network(x), labels, acai, None)[1])
    assert after < before - 0.05, (before, after)


def test_training_route_ships_a_packet_network_and_reports_on_held_out_sources(pool, targets, tmp_path) -> None:
    from engines.networks.alertclass import PACKET_CLASS_LABELS, PacketAlertClassNet
    from research.training.alertclass_study import evaluate, passes_bar
    from research.training.pool_alertclass import DistillConfig, alert_classes, train_alertclass
    from research.training.pool_realbogus import HELDOUT_SOURCES, SourceSplit, split_by_source

    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    rng = np.random.default_rng(0)
    parts = [rng.choice(split.train, 32, replace=False), rng.choice(split.validation, 12, replace=False),
             rng.choice(split.test, 16, replace=False)]          # a slice of each part: the split's rules kept
    small = pool.subset(np.concatenate(parts))
    small_targets = targets.subset(np.concatenate(parts))
    bounds = np.cumsum([0] + [len(p) for p in parts])
    small_split = SourceSplit(train=np.arange(bounds[0], bounds[1]), validation=np.arange(bounds[1], bounds[2]),
                              test=np.arange(bounds[2], bounds[3]), heldout_sources=split.heldout_sources,
                              dropped_shared_objects=0)
    assert not set(small.source[small_split.train]) & set(HELDOUT_SOURCES)
    config = DistillConfig(epochs=1, batch_size=16, max_per_class=6, threads=2, max_minutes=5)
    record = train_alertclass(small, small_targets, small_split, config, tmp_path)
    assert record["best_epoch"] == 1 and record["train_with_acai"] > 0 and len(record["history"]) == 1
    assert sum(record["train_per_class"].values()) == record["train_with_class"]
    network = PacketAlertClassNet()
    network.load_state_dict(torch.load(tmp_path / "alertclass.pt", weights_only=True))   # the shipped layout: 4 outputs
    results = evaluate(network.eval(), small, small_targets, small_split, draws=20)
    figures = results["test"]["vs_weak_labels"]
    assert results["temperature"] > 0 and figures["classes"] == list(PACKET_CLASS_LABELS)
    test_labels = alert_classes(small)[small_split.test]
    assert figures["alerts"] == int((test_labels >= 0).sum())
    assert np.asarray(figures["confusion_matrix"]).sum() == figures["alerts"]
    if figures["per_class"]["asteroid"]["support"]:
        assert figures["per_class"]["asteroid"]["recall"] == 1.0      # the packet's flag: circular, by construction
    assert isinstance(passes_bar(results["test"]["vs_weak_labels_all_published"]), bool)
    assert 0 <= results["test"]["calibration"]["ece_after"] <= 1


def test_training_with_augmentation_cosine_and_nll_selection(pool, targets, tmp_path) -> None:
    from research.training.pool_alertclass import DistillConfig, train_alertclass
    from research.training.pool_realbogus import HELDOUT_SOURCES, SourceSplit, split_by_source

    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    rng = np.random.default_rng(1)
    parts = [rng.choice(split.train, 24, replace=False), rng.choice(split.validation, 12, replace=False)]
    small, small_targets = pool.subset(np.concatenate(parts)), targets.subset(np.concatenate(parts))
    small_split = SourceSplit(train=np.arange(24), validation=np.arange(24, 36), test=np.arange(0),
                              heldout_sources=split.heldout_sources, dropped_shared_objects=0)
    config = DistillConfig(epochs=3, batch_size=16, max_per_class=5, threads=2, max_minutes=5, balanced=True, shift_px=2,
                           noise_sigma=0.1, cosine=True, select_by="balanced_nll")
    record = train_alertclass(small, small_targets, small_split, config, tmp_path)
    history = record["history"]
    assert [round(h["lr"] / config.lr, 4) for h in history] == [1.0, 0.75, 0.25]          # cosine over 3 epochs
    nll = [h["val_balanced_nll_stamp_classes"] for h in history]
    assert record["best_epoch"] == int(np.argmin(nll)) + 1                               # the lowest validation NLL
    assert record["best_val_balanced_nll_stamp_classes"] == min(nll)
    with pytest.raises(ValueError):
        train_alertclass(small, small_targets, small_split, DistillConfig(epochs=1, select_by="accuracy"), tmp_path)


def test_balanced_epochs_draw_every_class_equally_and_nll_selection_is_per_class(pool) -> None:
    from research.training.pool_alertclass import _epoch_sample, alert_classes, balanced_nll

    labels = alert_classes(pool)
    train = np.arange(len(pool))
    chosen, y = _epoch_sample(train, labels, 150, np.random.default_rng(0), balanced=True)
    assert np.bincount(y, minlength=4).tolist() == [150, 150, 150, 150]     # galaxy hosts repeated up to 150
    assert (labels[chosen] < 0).sum() == (labels < 0).sum()                 # every unlabelled alert still drawn
    _, y_capped = _epoch_sample(train, labels, 150, np.random.default_rng(0))
    assert np.bincount(y_capped, minlength=4)[1] == min(150, int((labels == 1).sum()))
    p = np.array([[0, 0.5, 0.25, 0.25], [0, 0.1, 0.1, 0.8], [0, 0.2, 0.2, 0.6], [0, 0.3, 0.3, 0.4]])
    got = balanced_nll(p, np.array([1, 3, 3, 2]), ("galaxy_host", "hostless_or_faint", "star"))
    expected = np.mean([-np.log(0.5), -np.log(0.3), np.mean([-np.log(0.8), -np.log(0.6)])])
    assert abs(got - expected) < 1e-9
