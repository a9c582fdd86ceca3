"""The survey names and class labels a subscriber may filter on, so a typo is refused rather
than silently keeping nothing (``--survey lsst`` used to match no record)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["SURVEYS", "known_class_labels", "known_real_bogus_models", "top_classes", "top_class", "check_survey", "check_class_label"]

#: The ``survey`` values classified records carry (an exposure's survey is ``exposure``).
SURVEYS: tuple[str, ...] = ("ztf", "rubin", "exposure")
_SURVEY_ALIASES = {"lsst": "rubin"}


def known_class_labels(cards_dir: Path | None = None) -> tuple[str, ...]:
    """Every ``class_scores`` key a shipped model writes, grouped per model (``acai.orphan``,
    ``alertclass.star``; read from the cards' TOML, no model is loaded)."""
    from engines.cards import load_card
    from engines.registry import CARDS_DIR

    labels: set[str] = set()
    for path in sorted((cards_dir or CARDS_DIR).glob("*.toml")):
        labels.update(load_card(path).class_score_keys.values())
    return tuple(sorted(labels))


def known_real_bogus_models(cards_dir: Path | None = None) -> tuple[str, ...]:
    """Shipped models that give a P(real): ours (``real_bogus = true``) and imported ones (braai)."""
    from engines.cards import load_card
    from engines.registry import CARDS_DIR

    return tuple(sorted({card.name for card in (load_card(p) for p in (cards_dir or CARDS_DIR).glob("*.toml"))
                         if "real" in card.labels}))


def _model_of(key: str) -> str:
    return key.split(".", 1)[0] if "." in key else ""


def top_classes(class_scores: Mapping[str, float]) -> dict[str, tuple[str, float]]:
    """Per model (the key's prefix), its most probable class key and score, in the record's
    order. Scores of different models are never compared: alertclass's softmax and ACAI's
    independent sigmoids mean different things."""
    tops: dict[str, tuple[str, float]] = {}
    for key, value in class_scores.items():
        model = _model_of(key)
        if model not in tops or value > tops[model][1]:
            tops[model] = (key, float(value))
    return tops


def top_class(class_scores: Mapping[str, float], model: str | None = None) -> tuple[str, float] | None:
    """The most probable class key of ``model`` (default: the record's first class model), named
    with its model (``acai.variable``), and its score; None without class scores."""
    tops = top_classes(class_scores)
    if model is not None:
        return tops.get(model)
    return next(iter(tops.values()), None)


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
    grouped = sorted(k for k in known if k.endswith(f".{label}"))
    hint = f" (class scores are grouped per model: {', '.join(grouped)})" if grouped else did_you_mean(label, known)
    raise ValueError(f"--class {label!r} is no model's class{hint}; known: {', '.join(known)}")
