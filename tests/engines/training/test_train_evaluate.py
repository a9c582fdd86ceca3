"""``survey-classifier train`` and ``evaluate`` end to end on a tiny folder-per-class set."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.training import synth_realbogus
from engines.training.evaluate import classification_metrics, roc_auc, threshold_for_recall
from engines.training.recipes import predict
from schemas.alert import Alert
from schemas.decode import iter_file
from stream.cli import main

BUNDLED_ZTF = Path(__file__).resolve().parents[3] / "schemas" / "samples" / "ztf"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """36 real/bogus triplets injected into bundled real ZTF stamps, as .npy files per class,
    with a metadata.csv giving each file's base object (the group)."""
    alerts = [item for path in sorted(BUNDLED_ZTF.rglob("*.avro")) for _, item in iter_file(path)
              if isinstance(item, Alert)]
    bases = synth_realbogus.bases_from_alerts(alerts, seed=0)
    data = synth_realbogus.generate(bases, 36, seed=1)
    root = tmp_path_factory.mktemp("rb")
    rows = []
    for i, (stamp, label, group) in enumerate(zip(data.stamps, data.labels, data.groups, strict=True)):
        name = "real" if label == 1 else "bogus"
        (root / name).mkdir(exist_ok=True)
        np.save(root / name / f"{i:03d}.npy", stamp)
        rows.append([f"{name}/{i:03d}.npy", group])
    with open(root / "metadata.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "objectId"])
        writer.writerows(rows)
    return root


def test_train_then_evaluate_then_resume(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "realbogus", "--data", str(tiny_folder), "--group-column", "objectId", "--epochs", "1",
                 "--batch-size", "8", "--seed", "7", "--out", str(out), "--no-progress", "--threads", "1"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    weights = Path(summary["weights"])
    assert weights.is_file() and (out / "checkpoint.pt").is_file()
    record = json.loads((out / "realbogus.train.json").read_text())
    assert record["config"]["seed"] == 7 and len(record["history"]) == 1
    assert len(record["data"]["data_sha256"]) == 64 and len(record["weights_sha256"]) == 64
    assert record["data"]["split"]["by"] == "group"
    report = json.loads((out / "report" / "test.json").read_text())
    assert set(report["per_class"]) == {"bogus", "real"}
    for name in ("test.md", "test_roc.png", "test_confusion.png"):
        assert (out / "report" / name).stat().st_size > 0

    # the shipped-format weights load into the serving network
    code = main(["evaluate", "realbogus", "--data", str(tiny_folder), "--weights", str(weights),
                 "--report", str(tmp_path / "eval"), "--threads", "1"])
    assert code == 0
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert evaluation["examples"] == 36
    assert sum(map(sum, evaluation["confusion_matrix"])) == 36
    assert "specificity" in evaluation["per_class"]["real"]

    code = main(["train", "realbogus", "--data", str(tiny_folder), "--group-column", "objectId", "--epochs", "2",
                 "--batch-size", "8", "--seed", "7", "--out", str(out), "--no-progress", "--threads", "1",
                 "--resume", str(out / "checkpoint.pt"), "--patience", "5"])
    assert code == 0
    record = json.loads((out / "realbogus.train.json").read_text())
    assert [row["epoch"] for row in record["history"]] == [1, 2]


def test_train_refuses_wrong_class_names(tmp_path, capsys):
    for name in ("cats", "dogs", "birds"):
        (tmp_path / name).mkdir()
        for i in range(2):
            np.save(tmp_path / name / f"{i}.npy", np.zeros((3, 8, 8), np.float32))
    code = main(["train", "realbogus", "--data", str(tmp_path), "--epochs", "1", "--out", str(tmp_path / "o"),
                 "--no-progress"])
    assert code == 1
    assert "classes" in capsys.readouterr().err


def test_metrics_match_hand_computed_values():
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3], [0.45, 0.55]])
    labels = np.array([0, 0, 1, 1, 1])
    m = classification_metrics(probabilities, labels, ("bogus", "real"), threshold=0.5)
    real = m["per_class"]["real"]
    assert (real["tp"], real["fp"], real["tn"], real["fn"]) == (2, 1, 1, 1)
    assert real["precision"] == pytest.approx(2 / 3) and real["recall"] == pytest.approx(2 / 3)
    assert real["specificity"] == pytest.approx(0.5)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    # AUC by pairs: positives (0.8, 0.3, 0.55) vs negatives (0.1, 0.6): wins 0.8>both, 0.3>0.1, 0.55>0.1 -> 4/6
    assert roc_auc(probabilities[:, 1], labels == 1) == pytest.approx(4 / 6)
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)
    t = threshold_for_recall(probabilities[:, 1], labels == 1, 1.0)
    assert t == pytest.approx(0.3)


def test_predict_batches_large_inputs_small_enough_to_fit_memory() -> None:
    """256 binned HST chips in one forward pass would need ~17 GB for the first conv maps."""
    seen: list[int] = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(int(x.shape[0]))
            return torch.zeros(x.shape[0], 2)

    predict(Probe(), np.zeros((20, 1, 512, 1024), np.float32))
    assert max(seen) == 8 and sum(seen) == 20
    seen.clear()
    predict(Probe(), np.zeros((300, 3, 69, 69), np.float32))
    assert seen == [256, 44]


def test_a_freshly_registered_model_of_the_users_own_classes_evaluates(tiny_folder, tmp_path, capsys):
    """``train --name`` then ``evaluate NAME``: scored with the card's own label set (two classes
    the network never had), and the card says where it was checked."""
    import shutil

    from engines.cards import load_card
    from engines.registry import CARDS_DIR, WEIGHTS_DIR

    data = tmp_path / "data"
    shutil.copytree(tiny_folder, data)
    (data / "real").rename(data / "transient")
    (data / "bogus").rename(data / "artefact")
    meta = (data / "metadata.csv").read_text().replace("real/", "transient/").replace("bogus/", "artefact/")
    (data / "metadata.csv").write_text(meta)
    cards = tmp_path / "cards"
    shutil.copytree(CARDS_DIR, cards)
    weights = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, weights, ignore=shutil.ignore_patterns("*.pt", "*.h5"))
    code = main(["train", "realbogus", "--data", str(data), "--group-column", "objectId", "--epochs", "1",
                 "--batch-size", "8", "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1",
                 "--name", "mine", "--cards-dir", str(cards), "--weights-dir", str(weights)])
    assert code == 0, capsys.readouterr().err
    card = load_card(cards / "mine.toml")
    assert card.labels == ("artefact", "transient") and not card.real_bogus
    assert card.surveys == ("ztf",) and "user-trained" in card.survey_figures["ztf"]
    capsys.readouterr()
    code = main(["evaluate", "mine", "--data", str(data), "--cards-dir", str(cards), "--weights-dir", str(weights),
                 "--report", str(tmp_path / "eval"), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert set(evaluation["per_class"]) == {"artefact", "transient"} and evaluation["examples"] == 36


def _ztf_star_galaxy_npz(root: Path) -> Path:
    """Grayscale template stamps of the bundled real ZTF alerts, labelled star / galaxy from their
    PS1 cross-match (``sgscore1``, ``distpsnr1``: the star_galaxy study's rule), as .npz + CSV."""
    alerts = [item for path in sorted(BUNDLED_ZTF.rglob("*.avro")) for _, item in iter_file(path)
              if isinstance(item, Alert)]
    images, rows = [], []
    for alert in alerts:
        dist, sg = alert.candidate.get("distpsnr1"), alert.candidate.get("sgscore1")
        if dist is None or sg is None or dist < 0 or sg < 0:
            continue
        label = "star" if dist <= 1.5 and sg >= 0.5 else "galaxy" if dist <= 5 and sg < 0.5 else None
        if label is None or alert.template.data.shape != (63, 63):
            continue
        images.append(np.asarray(alert.template.data, dtype=np.float32)[None])
        rows.append([label, alert.object_id])
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "sg.npz", images=np.stack(images))
    with open(root / "sg.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "objectId"])
        writer.writerows(rows)
    return root / "sg.npz"


def test_a_freshly_registered_two_class_iicnet_on_grayscale_stamps_evaluates_through_the_cli(tmp_path, capsys):
    """Issue #25 item 5: ``train iicnet --name`` on a two-class set of one-channel cutouts, then
    ``evaluate NAME --data``, with the user recipe's defaults (augmentation, cosine, CPU budget)."""
    import shutil

    from engines.cards import load_card
    from engines.registry import CARDS_DIR, WEIGHTS_DIR

    data = _ztf_star_galaxy_npz(tmp_path / "data")
    labels = [row.split(",")[0] for row in (tmp_path / "data" / "sg.csv").read_text().splitlines()[1:]]
    assert set(labels) == {"galaxy", "star"}
    cards = tmp_path / "cards"
    shutil.copytree(CARDS_DIR, cards)
    weights = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, weights, ignore=shutil.ignore_patterns("*.pt", "*.h5"))
    shutil.copy(WEIGHTS_DIR / "iicnet.pt", weights / "iicnet.pt")      # the recipe starts from it
    code = main(["train", "iicnet", "--data", str(data), "--group-column", "objectId", "--epochs", "2",
                 "--max-cpu-minutes", "5", "--batch-size", "8", "--out", str(tmp_path / "run"), "--no-progress",
                 "--threads", "1", "--name", "star_galaxy", "--cards-dir", str(cards), "--weights-dir", str(weights)])
    assert code == 0, capsys.readouterr().err
    card = load_card(cards / "star_galaxy.toml")
    assert card.network == "iicnet" and card.labels == ("galaxy", "star")
    record = json.loads((tmp_path / "run" / "iicnet.train.json").read_text())
    assert record["config"]["augment"] is True and record["config"]["lr_schedule"] == "cosine"
    assert record["config"]["budget_patience"] is True and record["config"]["max_cpu_minutes"] == 5
    assert all("cpu_seconds" in row and "lr" in row for row in record["history"])
    assert record["config"]["init_from"] == str(weights / "iicnet.pt")       # the shipped IICnet, head fresh
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["init_from"] == str(weights / "iicnet.pt")
    code = main(["evaluate", "star_galaxy", "--data", str(data), "--cards-dir", str(cards), "--weights-dir",
                 str(weights), "--report", str(tmp_path / "eval"), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert set(evaluation["per_class"]) == {"galaxy", "star"} and evaluation["examples"] == len(labels)
    assert evaluation["balanced_accuracy"] is not None


def test_a_data_run_starts_from_the_networks_own_shipped_weights_only_where_they_read_the_same_input(tmp_path):
    """The user recipe's start (issue #25 item 5): iicnet from its shipped state dict; realbogus
    (the shipped card reads braai's row-wise stamps, a user's are min-max) and hrcelestialnet (a
    delta over a seeded network) from seeded initialisation; ``--init-from none`` and the head
    route too; missing weights fall back with the reason."""
    import argparse
    import shutil

    from engines.cards import load_card
    from engines.registry import CARDS_DIR, WEIGHTS_DIR
    from engines.training.register import default_init_weights
    from engines.training.ztf_files import TrainingDataError
    from stream.commands.train import initial_weights

    path, why = default_init_weights("iicnet")
    assert path == WEIGHTS_DIR / "iicnet.pt" and "same input kind" in why
    assert default_init_weights("realbogus")[0] is None and "reads" in default_init_weights("realbogus")[1]
    assert default_init_weights("hrcelestialnet")[0] is None and "delta" in default_init_weights("hrcelestialnet")[1]
    empty = tmp_path / "weights"
    empty.mkdir()
    path, why = default_init_weights("iicnet", CARDS_DIR, empty)         # a scratch registry: the shipped file
    assert path == WEIGHTS_DIR / "iicnet.pt" and "sha256 checked" in why
    cards = tmp_path / "cards"
    shutil.copytree(CARDS_DIR, cards)
    pinned = (cards / "iicnet.toml").read_text()
    (cards / "iicnet.toml").write_text(pinned.replace(load_card(CARDS_DIR / "iicnet.toml").weights_sha256, "0" * 64))
    path, why = default_init_weights("iicnet", cards, empty)             # not the card's file: no start from it
    assert path is None and "not there" in why

    def args(**given):
        base = {"model": "iicnet", "init_from": None, "resume": None, "cards_dir": None, "weights_dir": None}
        return argparse.Namespace(**{**base, **given})

    assert initial_weights(args(), head_route=False) == str(WEIGHTS_DIR / "iicnet.pt")
    assert initial_weights(args(init_from="none"), head_route=False) is None
    assert initial_weights(args(), head_route=True) is None
    assert initial_weights(args(resume=tmp_path / "checkpoint.pt"), head_route=False) is None
    assert initial_weights(args(model="realbogus"), head_route=False) is None
    mine = tmp_path / "mine.pt"
    shutil.copy(WEIGHTS_DIR / "iicnet.pt", mine)
    assert initial_weights(args(init_from=str(mine)), head_route=False) == str(mine)
    # a delta file is no start: it loaded a few matching tensors into a network seeded otherwise
    with pytest.raises(TrainingDataError, match="delta"):
        initial_weights(args(model="hrcelestialnet", init_from="hrcelestialnet"), head_route=False)


def test_unknown_lr_schedules_are_refused(tmp_path) -> None:
    from engines.training.train import TrainConfig, TrainingData, prepare_run
    from engines.training.ztf_files import TrainingDataError

    data = TrainingData(np.zeros((2, 1)), np.zeros(2, np.int64), np.zeros((1, 1)), np.zeros(1, np.int64), ("a", "b"))
    with pytest.raises(TrainingDataError, match="lr schedule"):
        prepare_run(data, TrainConfig(model="realbogus", lr_schedule="linear"), tmp_path)


def test_a_training_batch_hook_gives_the_inputs_and_targets_that_training_fits(tmp_path) -> None:
    """``training_batch`` replaces to_input, augment and train_y for training (a teacher labelling
    each view): every stored label says bogus, the hook says real, and the network learns real."""
    from engines.training.recipes import load_trained
    from engines.training.train import TrainConfig, TrainingData, train_network

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3, 69, 69)).astype(np.float32)
    bogus = np.tile(np.asarray([[1.0, 0.0]], np.float32), (16, 1))
    data = TrainingData(x, bogus, x[:4], bogus[:4], ("bogus", "real"))
    calls: list[int] = []

    def real_views(idx: np.ndarray, run_rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(run_rng, np.random.Generator)
        calls.append(len(idx))
        return torch.from_numpy(x[idx]).flip(-1), torch.tensor([[0.0, 1.0]]).repeat(len(idx), 1)

    config = TrainConfig(model="realbogus", epochs=4, batch_size=8, lr=1e-3, threads=1, patience=100,
                         bn_recalibration_examples=0)
    run = train_network(data, torch.from_numpy, config, tmp_path, progress=False, training_batch=real_views)
    assert sum(calls) == 4 * 16
    assert [h["val_accuracy"] for h in run.history][-1] == 0.0     # validation still reads val_y (bogus)
    network = load_trained("realbogus", run.weights_path).eval()
    with torch.no_grad():
        probs = torch.softmax(network(torch.from_numpy(x).flip(-1)), dim=1).numpy()   # (bogus, real) logits
    assert (probs[:, 1] > 0.5).all()
