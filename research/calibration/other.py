"""``python -m research.calibration.other --pool ../shared/ztf_pool --out research/reports/calibration``

The calibration of the shipped models that are not real/bogus models trained here: ZTF's
imported braai (d6_m7, d6_m9) and ACAI, measured against what the pool can tell
(:mod:`research.calibration.imported`), and the exposure models trained on simulated data,
measured on fresh simulated sets (:mod:`research.calibration.synthetic`). Writes
``OUT/other_models.json``, reliability diagrams ``OUT/other_*.png`` and ``OUT/other_models.md``;
``--write-cards`` puts a ``[calibration]`` line per survey into each card. Inference only.
``--models`` runs some of them and keeps the other rows of an existing ``other_models.json``
(same ``--draws``); the report and the cards are written from all rows.
"""
from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["MODELS", "calibration_lines", "main", "set_calibration", "write_report"]

MODELS = ("braai", "braai_d6_m9", "acai", "iicnet", "hrcelestialnet")
COMMAND = ("python -m research.calibration.other --pool ../shared/ztf_pool --out research/reports/calibration "
           "--models braai braai_d6_m9 acai iicnet, then ... --models hrcelestialnet --hst-bodies 6 15")
REPORT = "research/reports/calibration/other_models.md"


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(value: Any, ci: Any, digits: int = 3) -> str:
    return f"{_f(value, digits)} [{_f(ci[0], digits)}, {_f(ci[1], digits)}]" if ci else _f(value, digits)


def run(pool: Path, out: Path, models: tuple[str, ...], draws: int, sizes: Mapping[str, tuple[int, int]] | None = None
        ) -> dict[str, Any]:
    from research.calibration.imported import acai_calibration, braai_known_real, load_pool_labels
    from research.calibration.study import reliability_png
    from research.calibration.synthetic import synthetic_calibration
    from research.training.pool_realbogus import HELDOUT_SOURCES

    out.mkdir(parents=True, exist_ok=True)
    previous = out / "other_models.json"   # a run of some models keeps the others' rows
    results: dict[str, Any] = json.loads(previous.read_text()) if previous.is_file() else {"draws": draws, "models": {}}
    if results.get("draws") != draws:
        results = {"draws": draws, "models": {}}
    labels = load_pool_labels(pool) if {"braai", "braai_d6_m9", "acai"} & set(models) else None
    for name in models:
        if name in ("braai", "braai_d6_m9"):
            assert labels is not None
            results["models"][name] = {"survey": "ztf",
                                       **braai_known_real(labels, "braai_d6_m7" if name == "braai" else name, draws)}
        elif name == "acai":
            assert labels is not None
            heads = acai_calibration(labels, HELDOUT_SOURCES, draws)
            for head, row in heads.items():
                row["png"] = {}
                for test, fig in row["test"].items():
                    png = reliability_png(fig, f"ACAI {head} head vs weak label '{row['matched_weak_label']}' "
                                               f"(ZTF), {test}", out / f"other_acai_{head}_{test}.png",
                                          score=f"P({head})", outcome=f"share weak-labelled {row['matched_weak_label']}")
                    row["png"][test] = png.name
            results["models"][name] = {"survey": "ztf", "heads": heads}
        else:
            row = synthetic_calibration(name, draws, (sizes or {}).get(name))
            png = reliability_png(row["test"]["synthetic_fresh"], f"{name}: SIMULATED fresh set (seed "
                                  f"{row['test_set']['seed']}), top-label", out / f"other_{name}_synthetic_fresh.png",
                                  score="confidence of the predicted class", outcome="share predicted right")
            row["png"] = {"synthetic_fresh": png.name}
            results["models"][name] = row
    (out / "other_models.json").write_text(json.dumps(results, indent=2, default=float))
    return results


def calibration_lines(name: str, row: Mapping[str, Any]) -> dict[str, str]:
    """The card's ``[calibration]`` line per survey, from its row of ``other_models.json``."""
    if name in ("braai", "braai_d6_m9"):
        k, k21 = row["known_real_all"], row["known_real_from_2021"]
        return {"ztf": (
            f"ECE NOT measurable here: no bogus ground truth (the pool's labels name no bogus class); on "
            f"{k['alerts']} known-real ztf_pool alerts (known asteroids, spectroscopically classified transients) "
            f"the mean score is {k['mean_score']:.3f} ({k['mean_score_95ci'][0]:.3f}-{k['mean_score_95ci'][1]:.3f}) "
            f"and {k['share_at_least_0_5']:.3f} score >= 0.5 ({k21['alerts']} of them from 2021 on: "
            f"{k21['mean_score']:.3f}); it is served as ZTF computes it (no temperature); {REPORT}"),
            "rubin": "not measured: not validated on Rubin"}
    if name == "acai":
        parts = []
        for head, h in row["heads"].items():
            f = h["test"]["heldout_sources"]
            parts.append(f"{head} vs weak '{h['matched_weak_label']}' ECE {f['ece_before']:.3f} "
                         f"({f['ece_before_95ci'][0]:.2f}-{f['ece_before_95ci'][1]:.2f}), T {h['temperature']:.2f} "
                         f"{'would help' if h['adopted'] else 'does not help'}")
        return {"ztf": ("against WEAK catalogue labels, not ACAI's classes (no independent labels): on the "
                        f"{row['heads']['variable']['test']['heldout_sources']['alerts']} scored alerts of the held-out "
                        "sources, " + "; ".join(parts) + "; nuclear and bogus heads have no counterpart (not "
                        "measured); scores are served as ACAI computes them (no temperature: parity with ZTF's "
                        f"model kept); {REPORT}"),
                "rubin": "not measured: never run on Rubin"}
    f = row["test"]["synthetic_fresh"]
    return {"exposure": (
        f"on SIMULATED data only: top-label ECE {f['ece_before']:.3f} ({f['ece_before_95ci'][0]:.2f}-"
        f"{f['ece_before_95ci'][1]:.2f}) on {f['examples']} fresh simulated examples (seed {row['test_set']['seed']}; "
        f"accuracy {f['accuracy']:.3f}); T = {row['temperature']:.2f} fitted on another simulated set, "
        f"{'adopted by the rule but NOT applied' if row['adopted'] else 'not adopted'} (served: the softmax); "
        f"calibration on real images unknown; {REPORT}")}


def set_calibration(path: Path, lines: Mapping[str, str]) -> Path:
    """Replace (or add) the card's ``[calibration]`` table, as its last table (text edit)."""
    from research.calibration.cards import _value

    text = Path(path).read_text(encoding="utf-8")
    text = re.sub(r"\n\[calibration\]\n(?:[^\[].*\n?)*", "\n", text).rstrip("\n")
    body = "\n".join(f"{k} = {_value(v)}" for k, v in lines.items())
    Path(path).write_text(f"{text}\n\n[calibration]\n{body}\n", encoding="utf-8")
    return Path(path)


def write_report(results: Mapping[str, Any], out: Path) -> Path:
    m = results["models"]
    lines = ["# Calibration of the other shipped models: what can and cannot be measured", "",
             "Issue #25 part 3, beside `README.md` (the real/bogus models trained here). These models were not "
             "trained on labelled real data here, so each section says what its held-out calibration can be "
             f"measured against. Intervals: 95 % bootstrap ({results['draws']} draws) over objects (pool alerts) or "
             "examples (simulated). ECE: 10 equal-width bins.", ""]
    for name in ("braai", "braai_d6_m9"):
        if name in m:
            r = m[name]
            lines += [f"## {name} (ZTF, imported)", "",
                      "**ECE cannot be measured**: the pool has no independent real/bogus truth; its weak labels "
                      "name no bogus class. What can be measured is the score on alerts known to be real by an "
                      "outside fact (a known Solar-System object within 5\", or a spectroscopic TNS / BTS "
                      "classification). That says how often braai doubts a real detection (a recall), not how "
                      "calibrated it is: a calibrated score may average below 1 on real alerts where it is rightly "
                      "unsure.", "",
                      "| known-real set | period | alerts (objects) | mean score [95 % CI] | share >= 0.5 [95 % CI] |",
                      "|---|---|---|---|---|"]
            for key in ("asteroid", "spectroscopic_transient", "known_real"):
                for period in ("all", "from_2021"):
                    f = r[f"{key}_{period}"]
                    if f["alerts"]:
                        lines.append(f"| {key} | {period} | {f['alerts']} ({f['objects']}) | "
                                     f"{_ci(f['mean_score'], f['mean_score_95ci'])} | "
                                     f"{_ci(f['share_at_least_0_5'], f['share_at_least_0_5_95ci'])} |")
            lines += ["", "From 2021 on = after the model's weights (surely unseen in its training); earlier alerts "
                      "may have been in ZTF's training sets.", ""]
    if "acai" in m:
        lines += ["## acai (ZTF, imported)", "",
                  "No independent labels of ACAI's classes. Three heads have a weak-label counterpart; each head's "
                  "score is checked as a probability of that weak class (binary ECE of the matched class) on the "
                  "alerts with ACAI scores and a non-ambiguous weak label. A temperature per head is fitted on the "
                  "training sources of the realbogus split and judged on its held-out sources (the adoption rule of "
                  "`README.md`). The weak classes are not ACAI's definitions, so this is agreement with a catalogue "
                  "rule. Served scores stay ACAI's own (parity with ZTF's model), whatever the rule says.", "",
                  "| head | weak label | set | alerts (weak-positive) | ECE [95 % CI] | ECE at T [95 % CI] | T (fitted on "
                  "training sources) | NLL -> at T | rule |", "|---|---|---|---|---|---|---|---|---|"]
        for head, h in m["acai"]["heads"].items():
            for test, f in h["test"].items():
                lines.append(f"| {head} | {h['matched_weak_label']} | {test} | {f['alerts']} ({f['reference_real']}) | "
                             f"{_ci(f['ece_before'], f['ece_before_95ci'])} | {_ci(f['ece_after'], f['ece_after_95ci'])} | "
                             f"{h['temperature']:.2f} ({h['fitted_on_alerts']}) | {_f(f['nll_before'])} -> "
                             f"{_f(f['nll_after'])} | {'adopt' if h['adopted'] else 'no'}: {h['adoption_reason']} |")
        lines += ["", "The nuclear and bogus heads have no weak-label counterpart: not measured.", ""]
        for head, h in m["acai"]["heads"].items():
            for test, png in h["png"].items():
                lines += [f"![acai {head} {test}]({png})", ""]
    for name in ("iicnet", "hrcelestialnet"):
        if name in m:
            r = m[name]
            f = r["test"]["synthetic_fresh"]
            lines += [f"## {name} (exposures, SIMULATED data only)", "",
                      f"{r['model']}. Top-label ECE on a fresh simulated set the weights never saw (seed "
                      f"{r['test_set']['seed']}, {f['examples']} examples; accuracy {f['accuracy']:.3f}); temperature "
                      f"fitted on another fresh simulated set (seed {r['fit_set']['seed']}, {r['fit_set']['examples']} "
                      f"examples). **Synthetic figures; calibration on real images is unknown.**", "",
                      "| ECE served [95 % CI] | T | ECE at T [95 % CI] | change [paired 95 % CI] | ECE 5 / 15 bins | NLL "
                      "-> at T | rule |", "|---|---|---|---|---|---|---|",
                      f"| {_ci(f['ece_before'], f['ece_before_95ci'])} | {r['temperature']:.3f} | "
                      f"{_ci(f['ece_after'], f['ece_after_95ci'])} | {_ci(f['ece_change'], f['ece_change_95ci'])} | "
                      + " ; ".join(f"{_f(a)} -> {_f(b)}" for a, b in f["ece_other_binnings"].values())
                      + f" | {_f(f['nll_before'])} -> {_f(f['nll_after'])} | "
                      f"{'adopt' if r['adopted'] else 'no'}: {r['adoption_reason']} |", ""]
            if "binary" in r:
                b = r["binary"]
                lines += [f"Binary view, P({b['class']}) against the truth: ECE {_ci(b['ece_before'], b['ece_before_95ci'])}"
                          f", at T {_ci(b['ece_after'], b['ece_after_95ci'])}.", ""]
            if f["examples"] < 200:
                lines += [f"Only {f['examples']} simulated examples (time: each raw frame is simulated, binned and scored "
                          "by a 97 M-parameter network on one shared CPU thread): the intervals are wide, and a "
                          "bootstrap interval of ECE may even exclude the point value (a resample's ECE is biased "
                          "upward on so few examples). Uninformative beyond 'not grossly miscalibrated on the "
                          "simulator'.", ""]
            lines += ["Not applied even where the rule would adopt T: a temperature fitted on simulated data would "
                      "change real-image scores on no real evidence.", "",
                      f"![{name}]({r['png']['synthetic_fresh']})", ""]
    lines += ["## Reproduce", "", f"`{COMMAND}` (`--write-cards` writes each card's `[calibration]` lines).", ""]
    path = Path(out) / "other_models.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(prog="python -m research.calibration.other", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, required=True, help="the ZTF real-alert pool, e.g. ../shared/ztf_pool")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--write-cards", action="store_true", help="put each model's [calibration] lines into its card")
    parser.add_argument("--hst-bodies", type=int, nargs=2, default=None, metavar=("FIT", "TEST"),
                        help="simulated bodies per class of hrcelestialnet's fitting and test sets (default 24 60)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sizes = {"hrcelestialnet": (args.hst_bodies[0], args.hst_bodies[1])} if args.hst_bodies else None
    results = run(args.pool, args.out, tuple(args.models), args.draws, sizes)
    previous = args.out / "other_models.json"
    write_report(results, args.out)
    if args.write_cards:
        from engines.registry import CARDS_DIR

        for name, row in results["models"].items():
            set_calibration(CARDS_DIR / f"{name}.toml", calibration_lines(name, row))
    print(json.dumps({"report": str(args.out / "other_models.md"), "results": str(previous)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
