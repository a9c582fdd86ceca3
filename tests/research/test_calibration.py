"""research.calibration: ECE and the temperature fit on constructed data with known answers,
the adoption rule, the thresholds in the two real/bogus cards (ordered, in [0, 1], the report's,
documented in subscribe's help and stream/README.md), and the pipeline on a tiny slice."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from engines.cards import load_card
from research.calibration.cards import card_keys
from research.calibration.metrics import (
    apply_temperature,
    ece,
    ece_figures,
    fit_temperature,
    logit,
    reliability_bins,
)
from research.calibration.study import adopt

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CARDS = {"realbogus": REPO / "engines" / "cards" / "realbogus.toml",
         "rubin_realbogus": REPO / "engines" / "cards" / "rubin_realbogus.toml"}
RESULTS = REPO / "research" / "reports" / "calibration" / "results.json"


# --- ECE ------------------------------------------------------------------------------------

def test_ece_of_constructed_bins_is_the_weighted_gap() -> None:
    # 4 alerts at 0.15 (1 real: gap 0.10), 6 at 0.85 (3 real: gap 0.35): 0.4 * 0.10 + 0.6 * 0.35 = 0.25
    p = np.array([0.15] * 4 + [0.85] * 6)
    y = np.array([1, 0, 0, 0] + [1, 1, 1, 0, 0, 0], bool)
    assert ece(p, y) == pytest.approx(0.25)
    bins = reliability_bins(p, y)
    assert sum(b["n"] for b in bins) == 10
    assert bins[1]["n"] == 4 and bins[1]["real_fraction"] == pytest.approx(0.25)
    assert bins[8]["n"] == 6 and bins[8]["mean_score"] == pytest.approx(0.85)


def test_ece_is_zero_when_calibrated_and_counts_score_one_in_the_last_bin() -> None:
    p = np.array([0.25] * 4 + [1.0] * 3 + [0.0] * 2)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0, 0], bool)
    assert ece(p, y) == pytest.approx(0.0)
    assert reliability_bins(p, y)[-1]["n"] == 3
    # all at 0.7, half real: 0.2 in one bin; more bins never change a single-valued score
    q, z = np.full(10, 0.7), np.arange(10) % 2 == 0
    assert ece(q, z, 10) == pytest.approx(0.2) and ece(q, z, 5) == pytest.approx(0.2)


def test_ece_of_scores_drawn_from_their_own_probability_is_small_and_an_overconfident_one_is_not() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 50_000)
    y = rng.uniform(0, 1, p.size) < p
    assert ece(p, y) < 0.01
    sharp = apply_temperature(p, 0.3)                  # same ranking, overconfident
    assert ece(sharp, y) > 0.1


# --- temperature -----------------------------------------------------------------------------

@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_temperature_fit_recovers_the_temperature_that_made_the_labels(true_t: float) -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, 40_000)
    y = rng.uniform(0, 1, z.size) < 1 / (1 + np.exp(-z / true_t))
    p = 1 / (1 + np.exp(-z))                            # the network's score, miscalibrated by 1 / true_t
    fitted = fit_temperature(p, y)
    assert fitted == pytest.approx(true_t, rel=0.05)
    assert ece(apply_temperature(p, fitted), y) < ece(p, y)


def test_temperature_one_is_the_identity_and_scaling_keeps_the_order() -> None:
    p = np.array([1e-3, 0.2, 0.5, 0.8, 0.999])
    assert apply_temperature(p, 1.0) == pytest.approx(p)
    assert np.all(np.diff(apply_temperature(p, 3.0)) > 0)
    assert apply_temperature(np.array([0.5]), 7.0)[0] == pytest.approx(0.5)
    assert np.isfinite(logit(np.array([0.0, 1.0]))).all()
    with pytest.raises(ValueError):
        fit_temperature(np.array([0.2, 0.9]), np.array([True, True]))
    with pytest.raises(ValueError):
        apply_temperature(p, 0.0)


def test_adoption_rule_needs_a_clear_gain_everywhere_without_a_worse_nll() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(0, 3, 4000)
    y = rng.uniform(0, 1, z.size) < 1 / (1 + np.exp(-z / 2.0))
    p, groups = 1 / (1 + np.exp(-z)), np.arange(z.size)
    good = ece_figures(p, y, groups, 2.0, draws=50)
    assert good["ece_after"] < good["ece_before"] and good["ece_change_95ci"][1] < 0
    assert adopt({"a": good})[0]
    bad = ece_figures(p, y, groups, 0.5, draws=50)       # sharpens an already overconfident score
    ok, why = adopt({"a": good, "b": bad})
    assert not ok and "b:" in why


# --- the cards -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_thresholds_are_ordered_in_unit_interval_and_are_the_reports(name: str) -> None:
    ev = load_card(CARDS[name]).evaluation
    t95, t99 = ev["threshold_recall_0_95"], ev["threshold_recall_0_99"]
    assert 0.0 <= t99 < t95 <= 1.0
    assert t95 == pytest.approx(ev["threshold"], abs=1e-4)   # the card's operating threshold is recall 0.95's
    for point in ("0_95", "0_99"):
        for key in ("recall_of_real", "bogus_passed"):
            value = ev[f"threshold_recall_{point}_heldout_{key}"]
            lo, hi = ev[f"threshold_recall_{point}_heldout_{key}_95ci"]
            assert 0.0 <= lo <= value <= hi <= 1.0
    # a looser threshold keeps at least as many of each class
    assert ev["threshold_recall_0_99_heldout_recall_of_real"] >= ev["threshold_recall_0_95_heldout_recall_of_real"]
    assert ev["threshold_recall_0_99_heldout_bogus_passed"] >= ev["threshold_recall_0_95_heldout_bogus_passed"]
    results = json.loads(RESULTS.read_text())
    expected = card_keys(name, results["models"][name], results["n_bins"], results["draws"])
    assert {k: ev[k] for k in expected} == expected
    # the calibration run scored the cards' own held-out split: its AUC is the card's
    primary = {"realbogus": "heldout_sources", "rubin_realbogus": "lsstcam_2025_alerts"}[name]
    assert results["models"][name]["test"][primary]["roc_auc"] == pytest.approx(ev["heldout_roc_auc"], abs=5e-4)
    # not adopted: no temperature in the serving path, so the thresholds are on the served softmax
    assert ev["temperature_adopted"] is False and results["models"][name]["served_temperature"] == 1.0
    assert "temperature" not in CARDS[name].read_text().split("[weights]")[0]


def test_thresholds_are_documented_for_subscribe_and_in_the_stream_readme() -> None:
    from stream.commands import subscribe

    readme = (REPO / "stream" / "README.md").read_text()
    for name in CARDS:
        ev = load_card(CARDS[name]).evaluation
        for key in ("threshold_recall_0_95", "threshold_recall_0_99"):
            text = f"{ev[key]:.2f}"
            assert text in subscribe._EPILOG, (name, key)
            assert f"| {text} |" in readme, (name, key)
    assert "real_bogus_model" in subscribe._EPILOG


# --- the pipeline on a tiny slice -------------------------------------------------------------

@pytest.mark.skipif(not ((SHARED / "ztf_pool" / "alerts.parquet").is_file() and (SHARED / "rubin_pool").is_dir()),
                    reason="the shared ZTF / Rubin pools are absent")
def test_pipeline_runs_on_a_tiny_slice_in_seconds(tmp_path) -> None:
    from research.calibration.__main__ import main

    started = time.monotonic()
    assert main(["--pool", str(SHARED / "ztf_pool"), "--rubin-pool", str(SHARED / "rubin_pool"),
                 "--rubin-data", str(SHARED / "data" / "rubin"), "--out", str(tmp_path), "--max-alerts", "40",
                 "--draws", "20"]) == 0
    assert time.monotonic() - started < 120
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["models"]) == {"realbogus", "rubin_realbogus"}
    for row in results["models"].values():
        assert row["temperature_fit"]["temperature"] > 0
        for figures in row["test"].values():
            assert 0.0 <= figures["ece_before"] <= 1.0 and sum(b["n"] for b in figures["bins_before"]) == figures["alerts"]
        t = row["thresholds"]
        assert t["recall_0.99"]["threshold"] <= t["recall_0.95"]["threshold"]
        for png in row["png"].values():
            assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["models"]["realbogus"]["test"]["heldout_sources"]["alerts"] == 40
    assert "## Thresholds at stated recalls" in (tmp_path / "README.md").read_text()
