"""Every subcommand's help has examples, every option a help text, and defaults are shown."""
from __future__ import annotations

import argparse

import pytest

from stream.cli import COMMANDS, build_parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_examples_and_every_option_explained(name: str) -> None:
    sub = _subparsers()[name]
    text = sub.format_help()
    assert "examples:" in text and "survey-classifier " in text.split("examples:", 1)[1]
    unexplained = [a.dest for a in sub._actions if not a.help]
    assert unexplained == [], unexplained


def test_defaults_and_choices_are_shown() -> None:
    subs = _subparsers()
    assert "(default: 1)" in subs["replay"].format_help()          # --multiply
    assert "(default: 4)" in subs["run"].format_help()             # --partitions
    assert "real_bogus" in subs["subscribe"].format_help() and "--min-rb" in subs["subscribe"].format_help()


def test_the_embedded_config_topics_are_all_created_by_stack_up() -> None:
    from stream.commands.stack import config_topics
    from stream.stack import EMBEDDED_TOPICS
    from tests.conftest import REPO

    wanted = config_topics(str(REPO / "deploy" / "config" / "embedded.toml"))
    assert "exposures" in wanted and set(wanted) <= set(EMBEDDED_TOPICS)
