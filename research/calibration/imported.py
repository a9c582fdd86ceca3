"""What can be measured of the calibration of ZTF's imported models (braai, ACAI) on the pool.

Neither model was trained here and the pool has no independent real/bogus ground truth: its
labels are a weak catalogue rule on the alert's own fields (``weak_label``: asteroid, star,
galaxy_host, hostless_or_faint, ambiguous) and sparse catalogue / spectroscopic labels. So:

* **braai** (``d6_m7``, ZTF's ``drb``): an ECE needs real *and* bogus truth, and there is no
  bogus truth, so braai's ECE is NOT measured. What is measured: on alerts whose detection is
  real by an outside fact (a known Solar-System object within 5", ``weak_label == asteroid``;
  or a spectroscopically classified transient, a TNS / BTS type other than "Unknown"), the
  mean score and the share scored >= 0.5 (recall of known-real). That is a check of how often
  braai doubts a real detection, not a calibration figure: a calibrated score may average below
  1 on real alerts wherever it is rightly unsure.
* **ACAI** (five independent sigmoid heads): three heads have a weak-label counterpart, so each
  head's score is checked as a probability of that weak class (binary ECE of the matched
  class): ``variable`` vs ``star``, ``hosted`` vs ``galaxy_host``, ``orphan`` vs ``asteroid``
  (a moving object has no host), on the alerts with ACAI scores and a non-ambiguous weak
  label. The weak classes are not ACAI's own definitions (a star-like PS1 source under a
  variable, a host within 5"), so the ECE is of agreement with the weak rule, not accuracy.
  A temperature per head is fitted on the pool's training sources (the realbogus study's
  split) and judged on its held-out sources, with the same adoption rule as the real/bogus
  models.

Scores are the reference outputs of the original Keras models in
``reference_models/teacher_scores_ztf_pool.csv`` (the ports reproduce them to 7.5e-7 / 3e-6,
see the cards). Alerts dated 2021 or later are after both models' weights (braai d6_m7 is in
ZTF's alerts from 2019-09, ACAI's weights are of 2020-11-30); figures are also given on them
alone, as the part surely unseen in training.
"""
from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from research.calibration.metrics import clustered_bootstrap, ece, ece_figures, fit_temperature

__all__ = ["ACAI_MATCHED", "PoolLabels", "acai_calibration", "braai_known_real", "load_pool_labels"]

#: ACAI head -> the weak label that stands for it
ACAI_MATCHED: dict[str, str] = {"variable": "star", "hosted": "galaxy_host", "orphan": "asteroid"}
_ACAI_COLUMN = {"hosted": "acai_h", "variable": "acai_v", "orphan": "acai_o", "nuclear": "acai_n", "bogus": "acai_b"}
#: the first date after both imported models' weights
UNSEEN_FROM = "2021-01-01"


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


@dataclass(frozen=True)
class PoolLabels:
    """The pool's labels and the imported models' reference scores, one row per alert."""

    object_id: np.ndarray
    source: np.ndarray
    date: np.ndarray
    weak_label: np.ndarray
    spectroscopic: np.ndarray      # a TNS / BTS classification other than "Unknown"
    scores: dict[str, np.ndarray]  # braai_d6_m7, braai_d6_m9, acai_* (NaN where absent)

    def __len__(self) -> int:
        return len(self.object_id)


def load_pool_labels(pool_dir: Path, teacher_csv: Path | None = None) -> PoolLabels:
    """``labels.csv`` joined with the teacher scores file on ``candid`` (no stamps needed)."""
    from research.training.ztf_pool import teacher_csv_for

    with open(Path(pool_dir) / "labels.csv", newline="") as fh:
        labels = list(csv.DictReader(fh))
    with open(teacher_csv or teacher_csv_for(Path(pool_dir)), newline="") as fh:
        teacher = {r["candid"]: r for r in csv.DictReader(fh)}
    columns = ["braai_d6_m7", "braai_d6_m9", *_ACAI_COLUMN.values()]

    def classified(row: Mapping[str, str]) -> bool:
        return any(row.get(k, "") not in ("", "Unknown") for k in ("lab_tnsclass", "lab_bts_type"))

    return PoolLabels(
        object_id=np.asarray([r["objectId"] for r in labels]),
        source=np.asarray([r["source"] for r in labels]),
        date=np.asarray([r["date_utc"] for r in labels]),
        weak_label=np.asarray([r["weak_label"] for r in labels]),
        spectroscopic=np.asarray([classified(r) for r in labels]),
        scores={c: np.asarray([_float(teacher.get(r["candid"], {}).get(c)) for r in labels]) for c in columns},
    )


def _ci(values: list[float]) -> list[float] | None:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else None


def _known_real_figures(score: np.ndarray, groups: np.ndarray, draws: int, seed: int) -> dict[str, Any]:
    def mean(i: np.ndarray) -> float:
        return float(score[i].mean())

    def passed(i: np.ndarray) -> float:
        return float((score[i] >= 0.5).mean())

    return {"alerts": int(len(score)), "objects": int(len(set(groups.tolist()))),
            "mean_score": float(score.mean()), "mean_score_95ci": _ci(clustered_bootstrap(groups, mean, draws, seed)),
            "share_at_least_0_5": float((score >= 0.5).mean()),
            "share_at_least_0_5_95ci": _ci(clustered_bootstrap(groups, passed, draws, seed))}


def braai_known_real(labels: PoolLabels, model: str = "braai_d6_m7", draws: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean score and share >= 0.5 of ``model`` on the known-real alerts (module docstring),
    all dates and from :data:`UNSEEN_FROM` on, with object-bootstrap intervals."""
    p = labels.scores[model]
    out: dict[str, Any] = {"model": model, "ece": None,
                           "ece_reason": "no bogus ground truth in the pool (weak labels name no bogus class)"}
    sets = {"asteroid": labels.weak_label == "asteroid", "spectroscopic_transient": labels.spectroscopic}
    sets["known_real"] = sets["asteroid"] | sets["spectroscopic_transient"]
    for name, mask in sets.items():
        for period, when in (("all", np.ones(len(labels), bool)), ("from_2021", labels.date >= UNSEEN_FROM)):
            idx = np.flatnonzero(mask & when & np.isfinite(p))
            if len(idx) == 0:
                out[f"{name}_{period}"] = {"alerts": 0}
                continue
            score, groups = p[idx], labels.object_id[idx]
            out[f"{name}_{period}"] = _known_real_figures(score, groups, draws, seed)
    return out


def acai_calibration(labels: PoolLabels, heldout_sources: tuple[str, ...], draws: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """Per matched ACAI head: temperature fitted on the training sources, ECE before / after on
    the held-out sources, on alerts with a non-ambiguous weak label."""
    from research.calibration.study import adopt

    usable = np.isin(labels.weak_label, ["star", "galaxy_host", "asteroid", "hostless_or_faint"])
    held = np.isin(labels.source, list(heldout_sources))
    held_objects = set(labels.object_id[held].tolist())
    training = ~held & ~np.isin(labels.object_id, list(held_objects))
    out: dict[str, Any] = {}
    for head, weak in ACAI_MATCHED.items():
        p = labels.scores[_ACAI_COLUMN[head]]
        scored = usable & np.isfinite(p)
        positives = labels.weak_label == weak
        fit_idx = np.flatnonzero(scored & training)
        temperature = fit_temperature(p[fit_idx], positives[fit_idx])
        idx = np.flatnonzero(scored & held)
        figures = {"heldout_sources": ece_figures(p[idx], positives[idx], labels.object_id[idx], temperature, draws, seed)}
        adopted, why = adopt(figures)
        out[head] = {"matched_weak_label": weak, "temperature": temperature, "fitted_on_alerts": int(len(fit_idx)),
                     "fitted_on_ece": ece(p[fit_idx], positives[fit_idx]), "test": figures,
                     "adopted": adopted, "adoption_reason": why}
    return out
