"""The shipped alertclass card agrees with its own figures: the default bar recomputed from the
card's held-out recalls gives the card's passes_bar, and the report carries the same figures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.registry import load_registry
from research.training.alertclass_study import BAR, REFERENCE_VERSION, passes_bar

REPO = Path(__file__).resolve().parents[3]


def _figures(recalls: dict[str, float]) -> dict:
    return {"per_class": {c: {"recall": r} for c, r in recalls.items()}}


def test_the_bar_needs_macro_recall_and_every_class() -> None:
    assert passes_bar(_figures({"a": 0.9, "b": 0.9, "c": 0.8}))
    assert not passes_bar(_figures({"a": 1.0, "b": 1.0, "c": 0.6}))       # macro 0.87, one class under 0.70
    assert not passes_bar(_figures({"a": 0.84, "b": 0.84, "c": 0.84}))    # every class fine, macro under 0.85
    assert not passes_bar(_figures({"a": 0.9, "b": None}))


def test_shipped_card_states_the_bar_its_own_figures_give() -> None:
    card = load_registry().card("alertclass")
    assert card.version == REFERENCE_VERSION and card.bar.startswith(BAR)
    recalls = {c: card.evaluation[f"heldout_{c}_recall"] for c in card.labels}
    assert card.passes_bar == passes_bar(_figures(recalls))
    assert card.evaluation["heldout_macro_recall_published"] == pytest.approx(sum(recalls.values()) / len(recalls), abs=1e-3)
    issue = [recalls[c] for c in ("asteroid", "galaxy_host", "star")]
    assert card.evaluation["heldout_macro_recall_asteroid_galaxy_host_star"] == pytest.approx(sum(issue) / 3, abs=1e-3)
    report = json.loads((REPO / card.evaluation["report"]).with_name("heldout.json").read_text())
    per_class = report["test"]["vs_weak_labels"]["per_class"]
    assert {c: round(per_class[c]["recall"], 4) for c in card.labels} == recalls
    assert report["passes_bar"] == card.passes_bar and card.network_args["temperature"] == report["temperature"]
    assert card.network_args["stamp_weight"] == report["training"]["stamp_weight"]
