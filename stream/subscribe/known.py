"""The survey names and class labels a subscriber may filter on, so a typo is refused rather
than silently keeping nothing (``--survey lsst`` used to match no record)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["SURVEYS", "known_class_labels", "check_survey", "check_class_label"]

#: The ``survey`` values classified records carry (an exposure's survey is ``exposure``).
SURVEYS: tuple[str, ...] = ("ztf", "rubin", "exposure")
_SURVEY_ALIASES = {"lsst": "rubin"}


def known_class_labels(cards_dir: Path | None = None) -> tuple[str, ...]:
    """Every label of every model card shipped (read from the cards' TOML, no model is loaded)."""
    from engines.cards import load_card
    from engines.registry import CARDS_DIR

    labels: set[str] = set()
    for path in sorted((cards_dir or CARDS_DIR).glob("*.toml")):
        card = load_card(path)
        labels.update(card.labels)
        labels.update(f"{card.name}.{label}" for label in card.labels)  # a label two models share
    return tuple(sorted(labels))


def check_survey(survey: str) -> str:
    """The survey name, lower-cased; ``ValueError`` naming the known ones otherwise."""
    name = survey.strip().lower()
    if name in SURVEYS:
        return name
    hint = f" (Rubin's alerts are '{_SURVEY_ALIASES[name]}')" if name in _SURVEY_ALIASES else ""
    raise ValueError(f"--survey {survey!r} is not a survey in classified records{hint}; known: {', '.join(SURVEYS)}")


def check_class_label(label: str, known: tuple[str, ...] | None = None) -> str:
    """``label`` if some model outputs it; ``ValueError`` naming the known labels otherwise."""
    from stream.errors import did_you_mean

    known = known if known is not None else known_class_labels()
    if label in known:
        return label
    plain = sorted(k for k in known if "." not in k)
    raise ValueError(f"--class {label!r} is no model's label{did_you_mean(label, known)}; known: {', '.join(plain)}")
