"""research.calibration for the models not trained here on labelled real data: the multi-class
temperature on constructed data, braai / ACAI against what the pool can tell (no bogus truth:
braai's ECE is refused, not invented), and every owned card's ``[calibration]`` lines, which
must be the report's and name each survey the model scores."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from engines.cards import card_to_toml, load_card
from research.calibration.synthetic import fit_temperature_multiclass, multiclass_figures, scaled

REPO = Path(__file__).resolve().parents[2]
POOL = REPO.parent / "shared" / "ztf_pool"
CARDS = REPO / "engines" / "cards"
OTHER = REPO / "research" / "reports" / "calibration" / "other_models.json"
#: the cards this calibration owns (alertclass's is another study's)
OWNED = ("realbogus", "rubin_realbogus", "braai", "braai_d6_m9", "acai", "iicnet", "hrcelestialnet")
needs_pool = pytest.mark.skipif(not (POOL / "labels.csv").is_file(), reason="the shared ZTF pool is absent")


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_multiclass_temperature_fit_recovers_the_temperature_that_made_the_labels(true_t: float) -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (6000, 3))
    truth = np.exp(logits / true_t)
    truth /= truth.sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in truth])
    served = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)      # what a network at T = 1 serves
    t = fit_temperature_multiclass(served, labels)
    assert t == pytest.approx(true_t, rel=0.1)
    figures = multiclass_figures(served, labels, np.arange(len(labels)), t, draws=30)
    assert figures["ece_after"] < figures["ece_before"] and figures["nll_after"] < figures["nll_before"]
    np.testing.assert_allclose(scaled(served, 1.0), served, atol=1e-6)
    assert (scaled(served, t).argmax(1) == served.argmax(1)).all()       # a temperature never changes the top class


@needs_pool
def test_braai_has_no_ece_without_bogus_truth_but_is_checked_on_known_real_alerts() -> None:
    from research.calibration.imported import braai_known_real, load_pool_labels

    labels = load_pool_labels(POOL)
    row = braai_known_real(labels, draws=20)
    assert row["ece"] is None and "no bogus ground truth" in row["ece_reason"]
    known = row["known_real_all"]
    assert known["alerts"] == int(((labels.weak_label == "asteroid") | labels.spectroscopic).sum()) > 200
    assert 0.5 < known["mean_score"] <= 1.0 and known["mean_score_95ci"][0] <= known["mean_score"]
    assert row["known_real_from_2021"]["alerts"] < known["alerts"]


@needs_pool
def test_acai_heads_are_fitted_on_training_sources_and_judged_on_held_out_ones() -> None:
    from research.calibration.imported import ACAI_MATCHED, acai_calibration, load_pool_labels
    from research.training.pool_realbogus import HELDOUT_SOURCES

    labels = load_pool_labels(POOL)
    heads = acai_calibration(labels, HELDOUT_SOURCES, draws=20)
    assert set(heads) == set(ACAI_MATCHED)
    held = np.isin(labels.source, HELDOUT_SOURCES)
    scored = np.isfinite(labels.scores["acai_v"]) & np.isin(labels.weak_label, ["star", "galaxy_host", "asteroid",
                                                                                 "hostless_or_faint"])
    for head, row in heads.items():
        f = row["test"]["heldout_sources"]
        assert f["alerts"] == int((scored & held).sum()) and row["temperature"] > 0
        assert f["reference_real"] == int((scored & held & (labels.weak_label == ACAI_MATCHED[head])).sum())
        assert row["fitted_on_alerts"] + f["alerts"] <= int(scored.sum())      # disjoint sets


@pytest.mark.parametrize("name", OWNED)
def test_every_owned_card_ends_with_a_calibration_line_per_survey_it_scores(name: str) -> None:
    path = CARDS / f"{name}.toml"
    card = load_card(path)
    assert set(card.surveys) <= set(card.calibration), (name, card.surveys, dict(card.calibration))
    assert list(tomllib.loads(path.read_text()))[-1] == "calibration"      # the card's last table
    assert all(len(card.calibration[survey]) > 40 for survey in card.surveys)     # a statement, not a stub
    again = tomllib.loads(card_to_toml(card))                                 # write_card keeps it
    assert again["calibration"] == dict(card.calibration)


@pytest.mark.parametrize("name", ("braai", "braai_d6_m9", "acai", "iicnet", "hrcelestialnet"))
def test_other_cards_calibration_lines_are_the_reports(name: str) -> None:
    from research.calibration.other import calibration_lines

    results = json.loads(OTHER.read_text())
    assert dict(load_card(CARDS / f"{name}.toml").calibration) == calibration_lines(name, results["models"][name])
    if name in ("iicnet", "hrcelestialnet"):
        assert "SIMULATED" in load_card(CARDS / f"{name}.toml").calibration["exposure"]
