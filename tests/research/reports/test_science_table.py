"""engines/README.md's science table is generated from the cards, and the committed one matches them."""
from __future__ import annotations

import shutil
from pathlib import Path

from engines.cards import load_card
from research.reports.science_table import END, START, main, rewrite_readme, table_rows

REPO = Path(__file__).resolve().parents[3]


def test_every_card_has_a_row_per_survey_and_synthetic_training_is_marked() -> None:
    rows = table_rows(REPO / "engines" / "cards")
    names = sorted({r[0] for r in rows})
    assert names == sorted({load_card(p).name for p in (REPO / "engines" / "cards").glob("*.toml")})
    for name, _version, _survey, trained_on, _checked, figures, calibration, _report in rows:
        assert trained_on and figures and calibration, name
    iicnet = next(r for r in rows if r[0] == "iicnet")
    assert iicnet[3].upper().startswith("SYNTHETIC") and iicnet[2] == "exposure"
    by_pair = {(r[0], r[2]): r for r in rows}
    held_out = f'{load_card(REPO / "engines" / "cards" / "realbogus.toml").evaluation["heldout_roc_auc"]:.3f}'
    assert by_pair[("realbogus", "ztf")][4] == "yes, runs by default" and held_out in by_pair[("realbogus", "ztf")][5]
    assert by_pair[("alertclass", "ztf")][4] == "yes, runs by default" and "held-out" in by_pair[("alertclass", "ztf")][5]
    assert by_pair[("realbogus", "rubin")][4] == "**not validated**" and "0.18" in by_pair[("realbogus", "rubin")][5]
    assert by_pair[("alertclass", "rubin")][4] == "**not validated**"
    assert "ECE" in by_pair[("realbogus", "ztf")][6] and "NOT measurable" in by_pair[("braai", "ztf")][6]
    assert "SIMULATED" in by_pair[("iicnet", "exposure")][6]


def test_a_new_card_appears_and_the_readme_check_sees_staleness(tmp_path) -> None:
    cards = tmp_path / "cards"
    shutil.copytree(REPO / "engines" / "cards", cards, ignore=shutil.ignore_patterns("README.md", "versions"))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Science, honestly\n\nText.\n")
    assert main(["--readme", str(readme), "--cards", str(cards)]) == 0
    assert START in readme.read_text() and END in readme.read_text()
    assert main(["--readme", str(readme), "--cards", str(cards), "--check"]) == 0
    text = (cards / "iicnet.toml").read_text().replace('name = "iicnet"', 'name = "braai"', 1)
    assert "\n[survey_figures]\n" in text   # one line per survey
    (cards / "braai.toml").write_text(text.replace("\n[survey_figures]\n",
                                                   '\n[survey_figures]\nexposure = "parity with the Keras original"\n', 1)
                                      .replace('\nexposure = "checked on SIMULATED', '\nold = "checked on SIMULATED', 1))
    assert main(["--readme", str(readme), "--cards", str(cards), "--check"]) == 1
    _, new = rewrite_readme(readme, cards)
    assert "| braai |" in new and "parity with the Keras original" in new


def test_committed_readme_table_is_current() -> None:
    assert main(["--check"]) == 0
