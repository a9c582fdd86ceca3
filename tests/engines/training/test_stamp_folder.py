"""``survey-classifier stamps``: real alert packets -> folder-per-class set the train command reads."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from astropy.io import fits

from engines.training.datasets import load_labelled
from schemas.alert import Alert
from schemas.decode import iter_file
from stream.cli import main

BUNDLED_ZTF = Path(__file__).resolve().parents[3] / "schemas" / "samples" / "ztf"


def _alerts() -> list[Alert]:
    return [item for path in sorted(BUNDLED_ZTF.rglob("*.avro")) for _, item in iter_file(path) if isinstance(item, Alert)]


def test_labels_from_a_score_write_framed_cubes_and_metadata(tmp_path: Path, capsys) -> None:
    out = tmp_path / "set"
    assert main(["stamps", str(BUNDLED_ZTF), "--label-score", "drb", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    with_drb = {a.alert_id: a for a in _alerts() if "drb" in a.survey_scores}
    assert summary["written"] == len(with_drb) and summary["unlabelled"] == len(_alerts()) - len(with_drb)
    assert "not a human label" in summary["label_sources"][0]
    rows = list(csv.DictReader(open(out / "metadata.csv")))
    assert len(rows) == len(with_drb)
    for row in rows:
        alert = with_drb[int(row["alert_id"])]
        assert row["label"] == ("real" if alert.survey_scores["drb"] >= 0.5 else "bogus")
        assert row["objectId"] == alert.object_id
        with fits.open(out / row["path"]) as hdus:
            cube = hdus[0].data
            assert cube.shape == (3, 63, 63) and hdus[0].header["ALERTID"] == row["alert_id"]
        science = np.asarray(alert.science.data, np.float32)
        if science.shape == (63, 63):
            np.testing.assert_array_equal(cube[0], science)
    data = load_labelled(out, group_column="objectId")
    assert data.images.shape == (len(rows), 3, 63, 63)
    assert set(data.groups) == {r["objectId"] for r in rows}


def test_labels_from_a_csv_by_object_then_train_reads_the_folder(tmp_path: Path, capsys) -> None:
    alerts = _alerts()
    objects = sorted({a.object_id for a in alerts})[:8]
    labels = tmp_path / "verdicts.csv"
    with open(labels, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["objectId", "label"])
        writer.writerows([obj, "real" if i % 2 else "bogus"] for i, obj in enumerate(objects))
    out = tmp_path / "set"
    assert main(["stamps", str(BUNDLED_ZTF), "--labels", str(labels), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["objects"] == len(objects) and set(summary["per_label"]) == {"bogus", "real"}
    code = main(["train", "realbogus", "--data", str(out), "--group-column", "objectId", "--epochs", "1",
                 "--batch-size", "8", "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1"])
    assert code == 0
    record = json.loads((tmp_path / "run" / "realbogus.train.json").read_text())
    assert record["data"]["split"]["by"] == "group" and record["data"]["synthetic"] is False


def test_no_label_matched_is_a_clear_failure(tmp_path: Path, capsys) -> None:
    labels = tmp_path / "none.csv"
    labels.write_text("alert_id,label\n1,real\n")
    assert main(["stamps", str(BUNDLED_ZTF), "--labels", str(labels), "--out", str(tmp_path / "o")]) == 1
    assert "no alert was labelled" in capsys.readouterr().err
