"""Training routes on small slices of the real-alert pool (``../shared/ztf_pool``): realbogus
distilled from the teacher (braai) with held-out sources, and a user's own class set through
``train ... --name``; each result loads through the registry. The alert-class route (ACAI
distilled) is in ``test_pool_alertclass.py``."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engines.training.train import TrainConfig

REPO = Path(__file__).resolve().parents[3]
#: the pool is data, not code: ``$SURVEY_POOL_DIR``, else ``../shared/ztf_pool`` beside the checkout (skipped when absent)
from tests.research.training.pool_path import POOL  # noqa: E402  (the pool fixture: conftest.py)

SAMPLES = REPO / "schemas" / "samples"

pytestmark = pytest.mark.skipif(not (POOL / "alerts.parquet").is_file(), reason=f"the real-alert pool is absent ({POOL})")


@pytest.fixture(scope="module")
def small(pool):
    """Every held-out-source alert and a random 160 of the others: a split keeps its rules."""
    from research.training.pool_realbogus import HELDOUT_SOURCES

    rng = np.random.default_rng(0)
    held = np.flatnonzero(np.isin(pool.source, HELDOUT_SOURCES))
    rest = rng.choice(np.flatnonzero(~np.isin(pool.source, HELDOUT_SOURCES)), 160, replace=False)
    return pool.subset(np.sort(np.concatenate([held[::4], rest])))


def _fresh_registry_dirs(tmp_path: Path) -> tuple[Path, Path]:
    cards, weights = tmp_path / "cards", tmp_path / "weights"
    shutil.copytree(REPO / "engines" / "cards", cards, ignore=shutil.ignore_patterns("README.md"))
    weights.mkdir()
    for card in cards.rglob("*.toml"):
        name = [ln.split('"')[1] for ln in card.read_text().splitlines() if ln.startswith("file = ")][0]
        if name and not (weights / name).exists():
            (weights / name).symlink_to(REPO / "engines" / "weights" / name)
    return cards, weights


def test_pool_joins_labels_and_teacher(pool) -> None:
    assert len(pool) == 2075 and pool.realbogus_inputs.shape == (2075, 3, 69, 69)
    assert pool.arcsec_inputs.shape == (2075, 3, 63, 63)
    assert np.isfinite(pool.teacher).all()
    carries = np.isfinite(pool.drb)
    assert carries.sum() == 767 and np.allclose(pool.drb[carries], pool.teacher[carries], atol=1e-5)  # d6_m7 is drb
    assert set(pool.weak_label) >= {"star", "galaxy_host", "hostless_or_faint", "asteroid"}


def test_source_split_keeps_held_out_objects_out_of_training(pool) -> None:
    from research.training.pool_realbogus import HELDOUT_SOURCES, split_by_source

    split = split_by_source(pool, HELDOUT_SOURCES)
    test_objects = set(pool.object_id[split.test])
    trained = set(pool.object_id[split.train]) | set(pool.object_id[split.validation])
    assert not (test_objects & trained)
    assert not (set(pool.object_id[split.train]) & set(pool.object_id[split.validation]))
    assert set(pool.source[split.test]) == set(HELDOUT_SOURCES)
    assert not (set(pool.source[split.train]) & set(HELDOUT_SOURCES))


def test_a_validation_source_is_validated_on_whole_and_never_trained_on(pool) -> None:
    from engines.training.ztf_files import TrainingDataError
    from research.training.pool_realbogus import HELDOUT_SOURCES, split_by_source

    source = "github:astrolabsoftware/fink-alert-simulator"
    split = split_by_source(pool, HELDOUT_SOURCES, validation_sources=[source])
    assert set(pool.source[split.validation]) == {source}
    assert source not in set(pool.source[split.train]) and len(split.train) > 0
    assert not (set(pool.object_id[split.train]) & (set(pool.object_id[split.validation]) | set(pool.object_id[split.test])))
    test_objects = set(pool.object_id[split.test])
    whole = [i for i in range(len(pool)) if pool.source[i] == source and pool.object_id[i] not in test_objects]
    assert sorted(split.validation.tolist()) == whole
    with pytest.raises(TrainingDataError, match="both held out and validation"):
        split_by_source(pool, HELDOUT_SOURCES, validation_sources=[HELDOUT_SOURCES[0]])
    with pytest.raises(TrainingDataError, match="not in the pool"):
        split_by_source(pool, HELDOUT_SOURCES, validation_sources=["nowhere"])


def test_realbogus_teacher_route_trains_scores_and_registers(small, tmp_path) -> None:
    from engines.registry import load_registry
    from engines.training.recipes import load_trained
    from engines.training.register import register_model
    from research.training.pool_realbogus import (
        HELDOUT_SOURCES,
        heldout_report,
        split_by_source,
        train_on_pool,
    )

    split = split_by_source(small, HELDOUT_SOURCES)
    config = TrainConfig(model="realbogus", epochs=1, batch_size=32, lr=1e-3, dropout=0.2, threads=1)
    run = train_on_pool(small, split, "teacher", config, tmp_path / "run")
    report = heldout_report(load_trained("realbogus", run.weights), small, split, draws=20)
    row = report["vs_braai_d6_m7"]["all"]
    assert row["alerts"] == len(split.test) and 0.0 <= row["roc_auc"] <= 1.0
    assert 0.0 <= report["threshold"] <= 1.0 and len(row["roc_auc_95ci"]) == 2
    cards, weights = _fresh_registry_dirs(tmp_path)
    register_model("realbogus", "realbogus", ("bogus", "real"), run.weights, "9.9.9-test", {"data": "test"},
                   {"summary": "test"}, cards_dir=cards, weights_dir=weights)
    registry = load_registry(cards, weights)
    assert registry.card("realbogus").version == "9.9.9-test"
    old = registry.card("realbogus@1.0.0-synthetic")        # the superseded version stays loadable
    assert old.weights_file == "realbogus.pt"
    from schemas.alert import InputKind

    assert [c.version for c in registry.selected(InputKind.DIFFERENCE_ALERT, ["realbogus@1.0.0-synthetic"])] == ["1.0.0-synthetic"]
    runner = registry.load_runner("realbogus", "torch")
    probabilities = runner.infer(__import__("torch").from_numpy(small.realbogus_inputs[:4]))
    assert probabilities.shape == (4, 2) and np.allclose(probabilities.sum(1), 1, atol=1e-5)


def test_distillation_from_braai_on_a_pool_slice_learns_the_teacher(pool, tmp_path) -> None:
    """The 2.2 recipe end to end in seconds: braai's unresampled triplet (63 centred in 69), braai
    d6_m7's scores as soft targets, cosine lr, dihedral turns + shifts, label smoothing; 48
    training alerts (half braai-real), every held-out source's objects kept out."""
    from engines.training.recipes import load_trained
    from research.training.heldout import fast_auc
    from research.training.pool_realbogus import HELDOUT_SOURCES, score_inputs, split_by_source, train_on_pool
    from research.training.ztf_pool import load_pool

    padded = load_pool(POOL, cache_dir=Path("var/cache") if Path("var/cache").is_dir() else tmp_path,
                       realbogus_preprocessing="difference_stamps_rownorm_pad69")
    assert np.array_equal(padded.candid, pool.candid) and not padded.realbogus_inputs[:, :, :3].any()
    rng = np.random.default_rng(0)
    held = np.flatnonzero(np.isin(padded.source, HELDOUT_SOURCES))
    other = np.flatnonzero(~np.isin(padded.source, HELDOUT_SOURCES))
    picks = [rng.choice(other[side], 32, replace=False) for side in (padded.teacher[other] >= 0.5, padded.teacher[other] < 0.5)]
    small = padded.subset(np.sort(np.concatenate([held[::6], *picks])))
    split = split_by_source(small, HELDOUT_SOURCES, validation_fraction=0.25)
    config = TrainConfig(model="realbogus", epochs=12, batch_size=8, lr=1e-3, threads=1, patience=100,
                         lr_schedule="cosine", bn_recalibration_examples=0)
    run = train_on_pool(small, split, "teacher", config, tmp_path / "run", max_shift=1, smoothing=0.05)
    record = json.loads(run.record.read_text())
    assert record["data"]["max_shift_px"] == 1 and record["data"]["target_smoothing"] == 0.05
    history = record["history"]
    lrs = [h["lr"] for h in history]     # engines/training/schedule.py: per step, from lr down to 1 % over the 12 epochs
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and 5e-4 < lrs[0] <= 1e-3 and 1e-5 <= lrs[-1] < 5e-5
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    student = load_trained("realbogus", run.weights)
    trained = score_inputs(student, small.realbogus_inputs[split.train])
    assert fast_auc(trained, small.teacher[split.train] >= 0.5) >= 0.75       # it imitates braai on what it saw


def test_soft_targets_smooth_towards_one_half_and_shifts_move_stamps_with_zero_fill() -> None:
    import torch

    from engines.training.ztf_files import TrainingDataError
    from research.training.pool_realbogus import shift_augment, soft_targets

    np.testing.assert_allclose(soft_targets(np.array([0.0, 1.0, 0.3]), 0.1), [[0.95, 0.05], [0.05, 0.95], [0.68, 0.32]], atol=1e-6)
    with pytest.raises(TrainingDataError):
        soft_targets(np.array([0.5]), 1.0)
    x = torch.zeros((64, 1, 9, 9))
    x[:, 0, 4, 4] = 1.0                                       # one bright pixel in the centre
    out = shift_augment(2)(x, np.random.default_rng(0))
    where = [tuple(int(v) - 4 for v in torch.nonzero(o[0])[0]) for o in out]
    assert all(o.sum() == 1 for o in out) and max(max(abs(dy), abs(dx)) for dy, dx in where) == 2
    assert len(set(where)) > 10                               # shifts vary across the batch
    assert torch.equal(shift_augment(0)(x, np.random.default_rng(0)), x)   # a centred dot: turns change nothing


def _alerts_of(path: Path):
    from schemas.alert import Alert
    from schemas.decode import iter_file

    return [item for _, item in iter_file(path) if isinstance(item, Alert)]


def _star_galaxy_folder(pool, root: Path, per_class: int = 24) -> Path:
    """Pool stamps whose catalogue rule says star or galaxy host, as .npy files per class."""
    rows = []
    for label, folder in (("star", "star"), ("galaxy_host", "galaxy")):
        (root / folder).mkdir(parents=True)
        for i in np.flatnonzero((pool.weak_label == label) & (pool.teacher >= 0.5))[:per_class]:
            np.save(root / folder / f"{pool.candid[i]}.npy", pool.arcsec_inputs[i])
            rows.append([f"{folder}/{pool.candid[i]}.npy", pool.object_id[i]])
    with open(root / "metadata.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "objectId"])
        writer.writerows(rows)
    return root


def test_train_iicnet_on_a_two_class_folder_registers_a_two_class_model(pool, tmp_path, capsys) -> None:
    from engines.registry import load_registry
    from stream.cli import main

    data = _star_galaxy_folder(pool, tmp_path / "sg")
    base = ["train", "iicnet", "--data", str(data), "--group-column", "objectId", "--epochs", "1", "--batch-size", "16",
            "--threads", "1", "--no-progress", "--out", str(tmp_path / "out")]
    assert main(base) == 1
    assert "--name" in capsys.readouterr().err            # the refusal says how to proceed
    cards, weights = _fresh_registry_dirs(tmp_path)
    assert main([*base, "--name", "star_galaxy", "--cards-dir", str(cards), "--weights-dir", str(weights)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["balanced_accuracy"] is not None and out["card"].endswith("star_galaxy.toml")
    card = load_registry(cards, weights).card("star_galaxy")
    assert card.labels == ("galaxy", "star") and card.network_args["num_classes"] == 2
    assert card.training["class_weights"] != "none"
    runner = load_registry(cards, weights).load_runner("star_galaxy", "torch")
    assert runner.infer(__import__("torch").rand(3, 3, 80, 80)).shape == (3, 2)


def test_train_realbogus_on_real_bogus_folders_fine_tunes_from_shipped_weights(pool, tmp_path, capsys) -> None:
    from engines.registry import load_registry
    from stream.cli import main

    root = tmp_path / "rb"
    rows = []
    for label, mask in (("real", pool.teacher >= 0.9), ("bogus", pool.teacher < 0.1)):
        (root / label).mkdir(parents=True)
        for i in np.flatnonzero(mask)[:20]:
            np.save(root / label / f"{pool.candid[i]}.npy", pool.realbogus_inputs[i][:, 3:66, 3:66])
            rows.append([f"{label}/{pool.candid[i]}.npy", pool.object_id[i]])
    with open(root / "metadata.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["path", "objectId"], *rows])
    cards, weights = _fresh_registry_dirs(tmp_path)
    args = ["train", "realbogus", "--data", str(root), "--group-column", "objectId", "--epochs", "1", "--threads", "1",
            "--no-progress", "--out", str(tmp_path / "out"), "--name", "my_realbogus", "--cards-dir", str(cards),
            "--weights-dir", str(weights), "--init-from", "realbogus@1.0.0-synthetic" if (cards / "versions").is_dir() else "realbogus"]
    assert main(args) == 0
    capsys.readouterr()
    card = load_registry(cards, weights).card("my_realbogus")
    assert card.labels == ("bogus", "real") and "num_classes" not in card.network_args
    assert card.training["init_from"].endswith("realbogus.pt")
    with pytest.raises(Exception, match="network"):
        from engines.training.register import resolve_init_weights

        resolve_init_weights("iicnet", "realbogus", cards, weights)

