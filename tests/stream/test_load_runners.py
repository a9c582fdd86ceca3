"""Which models the service loads (stream.service.load_runners): per input kind from the topics
it reads, and an untrained card refused unless ``engine.allow_untrained``. No broker needed."""
from __future__ import annotations

import dataclasses

import pytest

from engines.cards import load_card, write_card
from engines.contract import EngineError
from engines.registry import CARDS_DIR, WEIGHTS_DIR, load_registry
from schemas.alert import InputKind
from stream.config import load_settings
from stream.service import load_runners

ENV = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0", "SC__ENGINE__BACKEND": "torch",
       "SC__ENGINE__MODELS": "realbogus"}


def _close(runners) -> None:
    for rs in runners.values():
        for r in rs:
            r.close()


def test_an_untrained_card_is_refused_unless_allowed(tmp_path):
    """The shipped cards are all trained, so the refusal is checked on an untrained copy of one."""
    write_card(dataclasses.replace(load_card(CARDS_DIR / "realbogus.toml"), trained=False), tmp_path / "realbogus.toml")
    registry = load_registry(tmp_path, WEIGHTS_DIR)
    with pytest.raises(EngineError, match="not trained"):
        load_runners(load_settings(env={**ENV, "SC__ENGINE__ALLOW_UNTRAINED": "false"}), registry)
    runners = load_runners(load_settings(env={**ENV, "SC__ENGINE__ALLOW_UNTRAINED": "true"}), registry)
    assert [r.provenance.trained for r in runners[InputKind.DIFFERENCE_ALERT]] == [False]
    _close(runners)


def test_the_shipped_cards_load_without_the_flag_for_the_kinds_the_topics_carry():
    runners = load_runners(load_settings(env={**ENV, "SC__ENGINE__ALLOW_UNTRAINED": "false"}))
    assert set(runners) == {InputKind.DIFFERENCE_ALERT}
    assert [(r.provenance.name, r.provenance.trained) for r in runners[InputKind.DIFFERENCE_ALERT]] == [("realbogus", True)]
    _close(runners)


def test_start_up_says_which_surveys_each_model_scores_and_warns_for_unvalidated_ones(capsys):
    env = {**ENV, "SC__ENGINE__MODELS": "realbogus,braai", "SC__ENGINE__RUN_UNVALIDATED": "realbogus:rubin,acai:rubin"}
    runners = load_runners(load_settings(env=env))
    out = capsys.readouterr()
    logged = out.out + out.err
    scope = {r.provenance.name: r.unvalidated_surveys for r in runners[InputKind.DIFFERENCE_ALERT]}
    assert scope == {"braai": (), "realbogus": ("rubin",)}
    assert "model_survey_scope" in logged and "running_unvalidated_model" in logged
    assert "run_unvalidated_model_not_loaded" in logged and "acai" in logged   # named, but not in engine.models
    _close(runners)
