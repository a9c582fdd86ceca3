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


def test_cosine_schedule_runs_from_lr_to_near_zero_and_unknown_schedules_are_refused(tmp_path) -> None:
    from engines.training.train import TrainConfig, TrainingData, prepare_run, scheduled_lr
    from engines.training.ztf_files import TrainingDataError

    cosine = TrainConfig(model="realbogus", epochs=20, lr=1e-3, lr_schedule="cosine")
    lrs = [scheduled_lr(cosine, epoch) for epoch in range(20)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[10] == pytest.approx(5e-4)
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and 0 < lrs[-1] < 1e-5
    assert scheduled_lr(TrainConfig(model="realbogus"), 3) is None      # constant: the optimiser's own lr
    data = TrainingData(np.zeros((2, 1)), np.zeros(2, np.int64), np.zeros((1, 1)), np.zeros(1, np.int64), ("a", "b"))
    with pytest.raises(TrainingDataError, match="lr schedule"):
        prepare_run(data, TrainConfig(model="realbogus", lr_schedule="linear"), tmp_path)
