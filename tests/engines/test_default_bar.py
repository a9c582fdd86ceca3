"""The default bar: an empty engine.models runs only the cards that pass it; the others load by name."""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from engines.cards import load_card, write_card
from engines.contract import EngineError
from engines.registry import CARDS_DIR, WEIGHTS_DIR, load_registry
from schemas.alert import InputKind

REPO = Path(__file__).resolve().parents[2]


def _copy_cards(tmp_path: Path) -> Path:
    cards = tmp_path / "cards"
    (cards / "versions").mkdir(parents=True)
    for path in CARDS_DIR.glob("*.toml"):
        (cards / path.name).write_text(path.read_text())
    for path in (CARDS_DIR / "versions").glob("*.toml"):
        (cards / "versions" / path.name).write_text(path.read_text())
    return cards


def test_empty_models_selects_exactly_the_default_cards_that_pass_the_bar() -> None:
    registry = load_registry()
    for kind in InputKind:
        expected = sorted(c.name for c in registry.cards.values() if kind in c.input_kinds and c.passes_bar and c.trained)
        assert [c.name for c in registry.selected(kind)] == expected
    assert {"realbogus", "braai", "acai"} <= {c.name for c in registry.selected(InputKind.DIFFERENCE_ALERT)}
    # trained on simulated data only: never by default, still by name
    assert registry.selected(InputKind.MULTIBAND_CUTOUT) == [] and registry.selected(InputKind.RAW_EXPOSURE) == []
    assert [c.name for c in registry.selected(InputKind.MULTIBAND_CUTOUT, ["iicnet"])] == ["iicnet"]
    # the weak 1.0.0 class model: loadable by name@version, never a default
    old = registry.card("alertclass@1.0.0-pool")
    assert not old.passes_bar and old not in registry.selected(InputKind.DIFFERENCE_ALERT)
    assert registry.selected(InputKind.DIFFERENCE_ALERT, ["alertclass@1.0.0-pool"]) == [old]


def test_a_card_that_fails_the_bar_leaves_the_default_selection_but_loads_by_name(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    card = load_card(cards / "realbogus.toml")
    assert card.passes_bar
    write_card(dataclasses.replace(card, passes_bar=False, bar="ROC AUC 0.61: NOT met"), cards / "realbogus.toml")
    registry = load_registry(cards, WEIGHTS_DIR)
    assert "realbogus" not in [c.name for c in registry.selected(InputKind.DIFFERENCE_ALERT)]
    assert [c.name for c in registry.selected(InputKind.DIFFERENCE_ALERT, ["realbogus"])] == ["realbogus"]
    runner = registry.load_runner("realbogus", "torch", cache_dir=str(tmp_path))
    assert runner.card.version == card.version
    runner.close()


def test_a_card_that_says_nothing_does_not_pass(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    text = (cards / "braai.toml").read_text()
    (cards / "braai.toml").write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith(("passes_bar", "bar ="))))
    registry = load_registry(cards, WEIGHTS_DIR)
    assert registry.card("braai").passes_bar is False
    assert "braai" not in [c.name for c in registry.selected(InputKind.DIFFERENCE_ALERT)]


def test_passing_needs_a_bar_line_and_trained_weights(tmp_path: Path) -> None:
    card = load_card(CARDS_DIR / "braai.toml")
    write_card(dataclasses.replace(card, bar=""), tmp_path / "braai.toml")
    with pytest.raises(EngineError, match="needs a bar line"):
        load_card(tmp_path / "braai.toml")
    cards = _copy_cards(tmp_path)
    write_card(dataclasses.replace(card, trained=False), cards / "braai.toml")   # placeholder weights never run by default
    registry = load_registry(cards, WEIGHTS_DIR)
    assert "braai" not in [c.name for c in registry.selected(InputKind.DIFFERENCE_ALERT)]


def test_every_shipped_card_states_its_bar() -> None:
    registry = load_registry()
    for (name, version), card in registry.versions.items():
        if card.path is not None and card.path.parent == CARDS_DIR:
            assert card.bar.strip(), f"{name}@{version} states no default bar"
        if card.passes_bar:
            assert ("met" in card.bar) or ("parity" in card.bar), f"{name}@{version}: the bar line gives no figure"


@pytest.mark.parametrize("path", sorted((REPO / "deploy" / "config").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_list_only_models_whose_cards_pass_the_bar(path: Path) -> None:
    registry = load_registry()
    models = tomllib.loads(path.read_text()).get("engine", {}).get("models", [])
    for ref in models:
        card = registry.card(ref)
        assert card.passes_bar, f"{path.name} runs {ref}, whose card does not pass the default bar"
