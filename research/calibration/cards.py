"""The calibration study's figures as card keys (``[evaluation]`` of each model's card), and the
text edit that puts them there (``--write-cards``): the keys are replaced or appended in the
card's ``[evaluation]`` table, every other line is left as it is."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["REPORT", "calibration_line", "card_keys", "survey_figure_suffix", "update_card", "update_survey_figure"]

REPORT = "research/reports/calibration/README.md"
#: the held-out set whose figures take the plain ``heldout_`` keys, and the others' key prefixes
_PRIMARY = {"realbogus": "heldout_sources", "rubin_realbogus": "lsstcam_2025_alerts"}
_OTHER_PREFIX = {"heldout_injections": "injection_test"}
_SET_WORDS = {"heldout_sources": "alerts of the 4 held-out sources", "lsstcam_2025_alerts": "held-out LSSTCam 2025 alerts",
              "heldout_injections": "held-out injections"}


def _r(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (list, tuple)):
        return [_r(v) for v in value]
    return value


def card_keys(name: str, row: Mapping[str, Any], n_bins: int, draws: int) -> dict[str, Any]:
    """``[evaluation]`` keys of one model from its row of ``results.json``."""
    keys: dict[str, Any] = {}
    primary = _PRIMARY[name]
    for point, t in row["thresholds"].items():          # "recall_0.95"
        stem = "threshold_" + point.replace(".", "_")
        keys[stem] = _r(t["threshold"])
        for test in row["test"]:
            prefix = f"{stem}_heldout" if test == primary else f"{stem}_{_OTHER_PREFIX.get(test, test)}"
            f = t[test]
            keys[f"{prefix}_recall_of_real"] = _r(f["recall_of_real"])
            keys[f"{prefix}_recall_of_real_95ci"] = _r(f["recall_of_real_95ci"])
            keys[f"{prefix}_bogus_passed"] = _r(f["bogus_passed"])
            keys[f"{prefix}_bogus_passed_95ci"] = _r(f["bogus_passed_95ci"])
    first = next(iter(row["thresholds"].values()))
    keys["threshold_recall_rule"] = (
        f"highest threshold keeping 0.95 / 0.99 of the reference-real rows of {first['chosen_on']} "
        f"({first['validation_reference_real']}); figures on held-out data, {draws}-draw object bootstrap")
    for test, f in row["test"].items():
        prefix = "heldout" if test == primary else _OTHER_PREFIX.get(test, test)
        keys[f"{prefix}_ece"] = _r(f["ece_before"])
        keys[f"{prefix}_ece_95ci"] = _r(f["ece_before_95ci"])
    keys["ece_binning"] = (f"P(real) against the reference at 0/1, {n_bins} equal-width bins on [0, 1], "
                           "weighted by bin count")
    keys["temperature_fitted"] = _r(row["temperature_fit"]["temperature"])
    keys["temperature_fitted_on"] = f"{row['temperature_fit']['fitted_on']} ({row['temperature_fit']['examples']})"
    keys["temperature_adopted"] = bool(row["adopted"])
    keys["temperature_reason"] = row["adoption_reason"]
    keys["calibration_report"] = REPORT
    return keys


def survey_figure_suffix(name: str, row: Mapping[str, Any]) -> str:
    """What the card's ``[survey_figures]`` line adds: ECE and the two thresholds' held-out recall."""
    f = row["test"][_PRIMARY[name]]
    t95, t99 = row["thresholds"]["recall_0.95"], row["thresholds"]["recall_0.99"]
    lo, hi = f["ece_before_95ci"]
    return (f"; ECE {f['ece_before']:.3f} ({lo:.2f}-{hi:.2f}), "
            f"{'temperature-scaled' if row['adopted'] else 'not temperature-scaled'}; thresholds for recall "
            f"0.95 / 0.99 on validation: {t95['threshold']:.2f} / {t99['threshold']:.2f} "
            f"(held-out recall {t95[_PRIMARY[name]]['recall_of_real']:.2f} / "
            f"{t99[_PRIMARY[name]]['recall_of_real']:.2f})")


def calibration_line(name: str, row: Mapping[str, Any]) -> str:
    """The card's ``[calibration]`` line for the survey the model is validated on."""
    primary = _PRIMARY[name]
    parts = []
    for test, f in row["test"].items():
        lo, hi = f["ece_before_95ci"]
        parts.append(f"ECE {f['ece_before']:.3f} ({lo:.2f}-{hi:.2f}) on {f['alerts']} "
                     f"{_SET_WORDS.get(test, test)} against {row['references'][test]}")
    t95, t99 = row["thresholds"]["recall_0.95"], row["thresholds"]["recall_0.99"]
    fit = row["temperature_fit"]
    return ("; ".join(parts) + f"; temperature {fit['temperature']:.2f} fitted on {fit['fitted_on']}, "
            + ("adopted" if row["adopted"] else "NOT adopted (served: the softmax)")
            + f"; thresholds for recall 0.95 / 0.99 of reference-real (chosen on validation): "
              f"{t95['threshold']:.4f} / {t99['threshold']:.4f}, held-out recall {t95[primary]['recall_of_real']:.2f} / "
              f"{t99[primary]['recall_of_real']:.2f}; {REPORT}")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def update_card(path: Path, keys: Mapping[str, Any]) -> Path:
    """Replace or append ``keys`` in the card's ``[evaluation]`` table (text edit, other lines kept)."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    start = lines.index("[evaluation]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1

    def key_of(line: str) -> str | None:
        match = re.match(r"^([A-Za-z0-9_]+)\s*=", line)
        return match.group(1) if match else None

    body = [ln for ln in lines[start + 1:end] if key_of(ln) not in keys]
    body += [f"{k} = {_value(v)}" for k, v in keys.items()]
    lines[start + 1:end] = body
    Path(path).write_text("\n".join(lines), encoding="utf-8")
    return Path(path)


def update_survey_figure(path: Path, survey: str, suffix: str) -> Path:
    """Append ``suffix`` (:func:`survey_figure_suffix`) to the card's ``[survey_figures]`` line of
    ``survey``, replacing an earlier one (the text from ``"; ECE "`` on)."""
    import tomllib

    text = Path(path).read_text(encoding="utf-8")
    line = tomllib.loads(text)["survey_figures"][survey]
    old = f"{survey} = {_value(line)}"
    if old not in text:
        raise ValueError(f"{path}: cannot find the [survey_figures] line of {survey!r} as written")
    new = f"{survey} = {_value(line.split('; ECE ')[0] + suffix)}"
    Path(path).write_text(text.replace(old, new, 1), encoding="utf-8")
    return Path(path)
