"""``python -m research.calibration --pool DIR --rubin-pool DIR --rubin-data DIR --out DIR``

Scores realbogus (ZTF) and rubin_realbogus (Rubin) through the serving path on their studies'
validation and held-out splits, fits a temperature on validation, reports ECE before / after on
the held-out sets, chooses thresholds at recall 0.95 / 0.99 on validation and reports their
held-out figures: ``OUT/results.json``, one reliability diagram per model and held-out set
(``OUT/*.png``) and the report ``OUT/README.md``; ``--write-cards`` puts the thresholds and
figures into the two cards. Inference only, one CPU
thread. Data paths are required: nothing defaults outside the checkout.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from research.calibration.study import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.calibration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, required=True, help="the ZTF real-alert pool, e.g. ../shared/ztf_pool")
    parser.add_argument("--rubin-pool", type=Path, required=True, help="the Rubin pool, e.g. ../shared/rubin_pool")
    parser.add_argument("--rubin-data", type=Path, required=True, help="real Rubin packets, e.g. ../shared/data/rubin")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json, the PNGs and README.md")
    parser.add_argument("--draws", type=int, default=1000, help="bootstrap draws (default 1000)")
    parser.add_argument("--max-alerts", type=int, default=None, help="per split (quick runs and tests)")
    parser.add_argument("--models", nargs="+", default=["realbogus", "rubin_realbogus"],
                        choices=["realbogus", "rubin_realbogus"])
    parser.add_argument("--no-report", action="store_true", help="write results.json and PNGs only")
    parser.add_argument("--write-cards", action="store_true",
                        help="put the thresholds, ECE and temperature decision into the models' cards "
                             "([evaluation] keys and the [survey_figures] line); then run python -m research.reports.science_table")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = run(args.pool, args.rubin_pool, args.rubin_data, args.out, args.max_alerts, args.draws, args.models)
    if not args.no_report:
        from research.calibration.report import write_report

        write_report(results, args.out)
    if args.write_cards:
        if args.max_alerts is not None:
            parser.error("--write-cards needs the whole held-out sets (no --max-alerts)")
        from engines.registry import CARDS_DIR
        from research.calibration.cards import (
            calibration_line,
            card_keys,
            survey_figure_suffix,
            update_card,
            update_survey_figure,
        )
        from research.calibration.other import set_calibration

        for name, row in results["models"].items():
            path = CARDS_DIR / f"{name}.toml"
            update_card(path, card_keys(name, row, results["n_bins"], results["draws"]))
            update_survey_figure(path, row["survey"], survey_figure_suffix(name, row))
            set_calibration(path, {row["survey"]: calibration_line(name, row)})
    print(json.dumps({name: {"temperature": row["temperature_fit"]["temperature"], "adopted": row["adopted"],
                             "ece": {k: [round(f["ece_before"], 4), round(f["ece_after"], 4)] for k, f in row["test"].items()}}
                      for name, row in results["models"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
