"""The science table of engines/README.md, generated from the model cards (never typed by hand).

    python -m research.reports.science_table            # rewrite the table in engines/README.md
    python -m research.reports.science_table --check    # exit 1 when its table is stale

One row per card in ``engines/cards/`` (every model the registry serves, whoever added it) and
survey its input kind comes from (ZTF and Rubin for difference alerts, ``exposure`` for raw
frames and cutouts): its version, what it was trained on (``[training] data``), whether it was
checked on that survey (the card's ``surveys``: the only surveys it scores) and its figures
there (``[survey_figures]``), or "not validated"; what is known of its score's calibration there
(``[calibration]``); and whether its card passes the default bar (``passes_bar``: it runs when
``engine.models`` is empty) or runs only when named. A checked survey without a figures line gets
the card's ``[evaluation] summary`` (else its first numeric figures). The table sits between
two markers in engines/README.md; its report links are relative to that folder.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["END", "START", "render_table", "rewrite_readme", "table_rows"]

START = "<!-- science-table:start (python -m research.reports.science_table) -->"
END = "<!-- science-table:end -->"
ROOT = Path(__file__).resolve().parents[2]


def _cell(text: object) -> str:
    return str(text).replace("|", "/").replace("\n", " ").strip()


def _figures(evaluation: dict) -> str:
    if evaluation.get("summary"):
        return str(evaluation["summary"])
    parts = []
    for key, value in evaluation.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        parts.append(f"{key.replace('_', ' ')} {value:.3g}" if isinstance(value, float) else f"{key.replace('_', ' ')} {value}")
        if len(parts) == 4:
            break
    text = "; ".join(parts) or "no figures in the card"
    for key in ("real_data_check", "drb_agreement_note"):
        if isinstance(evaluation.get(key), str):
            text += f"; {key.replace('_', ' ')}: {evaluation[key]}"
    return text


#: The surveys whose inputs each input kind comes from.
SURVEYS_OF_KIND = {"difference_alert": ("ztf", "rubin"), "raw_exposure": ("exposure",), "multiband_cutout": ("exposure",)}

Row = tuple[str, str, str, str, str, str, str, str]


def table_rows(cards_dir: Path) -> list[Row]:
    """(model, version, survey, trained on, checked, figures, calibration, report) per card and survey, in name order."""
    from engines.cards import load_card

    rows = []
    for path in sorted(Path(cards_dir).glob("*.toml")):
        card = load_card(path)
        training = dict(card.training)
        trained_on = training.get("data") or ("untrained (seeded weights)" if not card.trained else "not stated")
        if training.get("synthetic") is True and not str(trained_on).upper().startswith("SYNTHETIC"):
            trained_on = f"SYNTHETIC: {trained_on}"
        report = card.evaluation.get("report", "")
        surveys = list(dict.fromkeys(s for kind in card.input_kinds for s in SURVEYS_OF_KIND.get(kind.value, ())))
        surveys += [s for s in card.surveys if s not in surveys]
        for survey in surveys:
            checked = survey in card.surveys
            figures = card.survey_figures.get(survey) or (_figures(dict(card.evaluation)) if checked else "")
            runs = ("runs by default" if card.default else "passes the bar, not the default version") if card.passes_bar \
                else "by name only"
            verdict = f"yes, {runs}" if checked else "**not validated**"
            rows.append((card.name, card.version, survey, _cell(trained_on), verdict,
                         _cell(figures) or "never checked on this survey; it does not score it",
                         _cell(card.calibration.get(survey)
                               or ("not stated" if checked else "not measured: it does not score this survey")), _cell(report)))
    return rows


def render_table(rows: Sequence[Row], link_base: Path = ROOT) -> str:
    """The table; report links relative to ``link_base`` (the folder of the README it goes in)."""
    lines = ["| model | version | survey | trained on | checked on this survey (scores it); default bar (engines/cards/README.md) "
             "| figures on this survey | calibration on this survey | report |",
             "|---|---|---|---|---|---|---|---|"]
    for name, version, survey, trained_on, checked, figures, calibration, report in rows:
        link = f"[{Path(report).name}]({Path(os.path.relpath(ROOT / report, link_base)).as_posix()})" if report else "-"
        lines.append(f"| {name} | {version} | {survey} | {trained_on} | {checked} | {figures} | {calibration} | {link} |")
    return "\n".join(lines)


def rewrite_readme(readme: Path, cards_dir: Path) -> tuple[str, str]:
    """(old text, new text) of ``readme`` with the table between the markers replaced; the
    markers are added after the "Science, honestly" heading's first paragraph when absent."""
    text = readme.read_text(encoding="utf-8")
    table = render_table(table_rows(cards_dir), Path(readme).resolve().parent)
    block = f"{START}\n{table}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        return text, head + block + tail
    marker = "## Science, honestly"
    if marker not in text:
        raise SystemExit(f"{readme}: no '{marker}' section to put the table in")
    head, tail = text.split(marker, 1)
    return text, f"{head}{marker}\n\n{block}\n{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.reports.science_table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, default=ROOT / "engines" / "README.md")
    parser.add_argument("--cards", type=Path, default=ROOT / "engines" / "cards")
    parser.add_argument("--check", action="store_true", help="exit 1 if the README's table differs from the cards")
    args = parser.parse_args(argv)
    old, new = rewrite_readme(args.readme, args.cards)
    if args.check:
        if old != new:
            print(f"{args.readme}: the science table is stale; run python -m research.reports.science_table", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
