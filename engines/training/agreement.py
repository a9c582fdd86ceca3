"""Agreement of our real/bogus score with a survey's own model (ZTF ``drb``) on real alerts.

ZTF's ``drb`` is the output of ZTF's deep real/bogus network (Duev et al. 2019), not a human
label. Treating ``drb >= 0.5`` as the reference class, we report how often our score agrees:
ROC AUC, the confusion at a threshold, and the recall of drb-real alerts. These are figures of
*agreement with ZTF's model*; where ZTF's model is wrong, agreeing with it is no virtue, and
the alerts are few, so the figures carry wide uncertainty (a bootstrap interval is given).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engines.training.evaluate import roc_auc, threshold_for_recall, write_report

__all__ = ["AGREEMENT_NOTE", "agreement_pairs", "injection_bases", "bootstrap_auc", "write_agreement_report"]

AGREEMENT_NOTE = (
    "AGREEMENT WITH ZTF'S OWN MODEL, NOT ACCURACY: the reference class is ZTF's drb score >= 0.5 (the output "
    "of ZTF's deep real/bogus network), not a human label. No human-labelled real alert is available here."
)


def injection_bases(registry: Any, model: str) -> tuple[set[str], str]:
    """Keys (``survey:alert_id``) of the alerts ``model``'s shipped weights used as injection
    bases, from the training record beside the weights, and a note saying where they came from."""
    card = registry.card(model)
    record_path = Path(registry.weights_dir) / (Path(card.weights_file).stem + ".train.json")
    if not card.weights_file or not record_path.is_file():
        return set(), f"no training record beside the weights ({record_path.name}); overlap unknown"
    record = json.loads(record_path.read_text())
    keys = set(record.get("data", {}).get("base_source_ids", []))
    return keys, f"{len(keys)} injection-base alerts listed in {record_path.name}; any of them in the input is left out"


def agreement_pairs(records: Iterable[Mapping[str, Any]], model: str, label: str = "real",
                    survey_score: str = "drb", exclude_keys: Iterable[str] = ()) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """(our scores, survey scores, keys, excluded count) for records carrying both scores.

    ``records`` are ``classify`` output lines (classified-record fields: ``models`` is a list of
    ``{name, ..., scores}``); ``exclude_keys`` (``survey:alert_id``) drops alerts that were used
    as injection bases."""
    excluded = set(exclude_keys)
    ours, theirs, keys = [], [], []
    dropped = 0
    for record in records:
        survey_value = (record.get("survey_scores") or {}).get(survey_score)
        entry = next((m for m in record.get("models") or [] if m.get("name") == model), None)
        our_value = (entry.get("scores") or {}).get(label) if entry is not None else None
        if survey_value is None or our_value is None:
            continue
        key = f"{record.get('survey')}:{record.get('alert_id')}"
        if key in excluded:
            dropped += 1
            continue
        ours.append(float(our_value))
        theirs.append(float(survey_value))
        keys.append(key)
    return np.asarray(ours), np.asarray(theirs), keys, dropped


def bootstrap_auc(scores: np.ndarray, positives: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """A 95 % percentile bootstrap interval of the AUC (resampling alerts)."""
    rng = np.random.default_rng(seed)
    values = []
    n = len(scores)
    for _ in range(draws):
        idx = rng.integers(0, n, n)
        auc = roc_auc(scores[idx], positives[idx])
        if auc is not None:
            values.append(auc)
    if not values:
        return None
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def write_agreement_report(
    out_dir: Path,
    ours: np.ndarray,
    theirs: np.ndarray,
    model: str,
    provenance: Mapping[str, Any],
    excluded: int,
    overlap_note: str,
    threshold: float = 0.5,
    target_recall: float = 0.95,
    extra_notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Write ``drb_agreement.{json,md}`` + PNGs; return the figures."""
    reference = theirs >= 0.5
    probabilities = np.stack([1 - ours, ours], axis=1)
    auc = roc_auc(ours, reference)
    interval = bootstrap_auc(ours, reference)
    recall_threshold = threshold_for_recall(ours, reference, target_recall) if reference.any() else None
    at_recall = None
    if recall_threshold is not None:
        predicted = ours >= recall_threshold
        at_recall = {
            "threshold": recall_threshold,
            "recall_of_drb_real": float((predicted & reference).sum() / max(reference.sum(), 1)),
            "false_positive_rate_on_drb_bogus": float((predicted & ~reference).sum() / max((~reference).sum(), 1)),
        }
    summary = {
        "model": model,
        "provenance": dict(provenance),
        "alerts": int(len(ours)),
        "drb_real": int(reference.sum()),
        "drb_bogus": int((~reference).sum()),
        "excluded_as_injection_bases": excluded,
        "overlap_with_injection_bases": overlap_note,
        "roc_auc_vs_drb": auc,
        "roc_auc_95ci_bootstrap": interval,
        "spearman_with_drb": _spearman(ours, theirs),
        f"at_recall_{target_recall}": at_recall,
    }
    notes = [AGREEMENT_NOTE, *extra_notes,
             f"ROC AUC against drb>=0.5: {auc if auc is None else round(auc, 4)} "
             f"(95% bootstrap interval {None if interval is None else tuple(round(v, 3) for v in interval)}) on "
             f"{len(ours)} alerts ({int(reference.sum())} drb-real, {int((~reference).sum())} drb-bogus).",
             f"Threshold giving recall >= {target_recall} of drb-real alerts: {at_recall}.",
             f"Injection bases: {overlap_note}"]
    write_report(out_dir, "drb_agreement", f"{model}: agreement with ZTF drb (threshold {threshold})", probabilities,
                 reference.astype(np.int64), ("drb_bogus", "drb_real"), notes=notes, threshold=threshold,
                 extra=summary)
    return summary


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3:
        return None
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])
