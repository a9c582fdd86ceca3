"""Shipped weights stay reproducible: every card's ``[training] command`` names a driver that
exists and accepts those arguments (parsed only, the run itself stubbed), and every report a
card links to is in the checkout."""
from __future__ import annotations

import importlib
import shlex
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CARDS = sorted((REPO / "engines" / "cards").glob("*.toml")) + sorted((REPO / "engines" / "cards" / "versions").glob("*.toml"))


def _training(card: Path) -> dict:
    return tomllib.loads(card.read_text()).get("training", {})


@pytest.mark.parametrize("card", [c for c in CARDS if _training(c).get("command", "").startswith("python -m ")],
                         ids=lambda c: c.stem)
def test_card_command_runs_from_research(card, monkeypatch):
    # several runs, one after the other, are joined by "; " (each must parse)
    for command in _training(card)["command"].split("; "):
        words = shlex.split(command)
        assert words[:2] == ["python", "-m"] and words[2].startswith("research."), words
        module = importlib.import_module(words[2])
        if not hasattr(module, "main"):   # a package run with -m: its __main__ module
            module = importlib.import_module(f"{words[2]}.__main__")
        seen = []
        for step in ("_train", "_report", "_reference"):
            if hasattr(module, step):
                monkeypatch.setattr(module, step, lambda *args, _step=step, _seen=seen: _seen.append(_step) or 0)
        assert module.main(words[3:]) == 0 and seen, command


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.stem)
def test_card_reports_are_in_the_checkout(card):
    evaluation = tomllib.loads(card.read_text()).get("evaluation", {})
    for key, value in evaluation.items():
        if isinstance(value, str) and (key == "report" or key.endswith("_report")):
            assert (REPO / value).is_file(), f"{card.name}: {key} = {value}"
