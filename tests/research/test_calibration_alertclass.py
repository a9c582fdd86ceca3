"""Calibration of the alert-class model: the softmax temperature, top-label ECE with object-bootstrap
intervals, the reliability diagram, operating points per class (research/calibration/alertclass.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from research.calibration.alertclass import fit_softmax_temperature, operating_points, softmax, top_label_figures


def _drawn(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / temperature): calibrated at that T, not at 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 3))
    p = softmax(logits, temperature)
    labels = np.asarray([rng.choice(3, p=row) for row in p])
    return logits, labels


def test_temperature_recovers_the_one_the_labels_were_drawn_at() -> None:
    logits, labels = _drawn(6000, 2.5)
    assert fit_softmax_temperature(logits, labels) == pytest.approx(2.5, rel=0.12)
    logits, labels = _drawn(6000, 0.6, seed=1)
    assert fit_softmax_temperature(logits, labels) == pytest.approx(0.6, rel=0.12)
    with pytest.raises(ValueError):
        fit_softmax_temperature(logits[:0], labels[:0])


def test_top_label_ece_falls_at_the_fitted_temperature_and_draws_a_diagram(tmp_path: Path) -> None:
    from research.calibration.study import reliability_png

    fit_logits, fit_labels = _drawn(3000, 2.0, seed=2)
    logits, labels = _drawn(1500, 2.0, seed=3)
    temperature = fit_softmax_temperature(fit_logits, fit_labels)      # fitted on other alerts, as validation
    groups = np.arange(len(labels)) // 2                                # two alerts per object
    figures = top_label_figures(logits, labels, groups, temperature, draws=200)
    assert figures["ece_after"] < 0.04 < figures["ece_before"]
    assert figures["ece_after_95ci"][0] <= figures["ece_after"] <= figures["ece_after_95ci"][1]
    assert figures["ece_change_95ci"][1] < 0 and figures["objects"] == 750
    assert sum(b["n"] for b in figures["bins_before"]) == sum(b["n"] for b in figures["bins_after"]) == len(labels)
    assert figures["accuracy"] == pytest.approx(float((logits.argmax(1) == labels).mean()))
    path = reliability_png(figures, "test", tmp_path / "reliability.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_operating_points_keep_the_validation_recall_and_report_the_test() -> None:
    rng = np.random.default_rng(4)
    val_labels, test_labels = rng.integers(0, 3, 400), rng.integers(0, 3, 300)
    val_p = softmax(rng.normal(0, 1, (400, 3)) + 2.5 * np.eye(3)[val_labels])
    test_p = softmax(rng.normal(0, 1, (300, 3)) + 2.5 * np.eye(3)[test_labels])
    points = operating_points(val_p, val_labels, test_p, test_labels, np.arange(300), {"a": 0, "b": 1, "c": 2}, draws=100)
    for column, (name, row) in enumerate(points.items()):
        kept = (val_p[val_labels == column, column] >= row["threshold"]).mean()
        assert kept >= 0.9 and row["validation_alerts_of_class"] == int((val_labels == column).sum())
        passed, truth = test_p[:, column] >= row["threshold"], test_labels == column
        assert row["test_recall"] == pytest.approx(passed[truth].mean())
        assert row["test_precision"] == pytest.approx(truth[passed].mean())
        assert row["test_recall_95ci"][0] <= row["test_recall"] <= row["test_recall_95ci"][1], name
