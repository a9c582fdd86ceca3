"""Runs of the alert-class model compared on VALIDATION alerts only (never the held-out sources):
how a new version is chosen over the shipped one.

    python -m research.training.alertclass_validation --pool ../shared/ztf_pool BASE_RUN RUN [RUN ...]

Per run (its shipped float16 output): macro recall and class-balanced NLL over the stamp classes,
per-class recall, the confusion matrix, and the galaxy_host / star recall with hostless_or_faint
left out (top class over those two); then each later run minus the first with a paired object
bootstrap (95 % intervals).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from research.training.pool_alertclass import STAMP_CLASSES, balanced_nll, macro_recall

__all__ = ["main", "paired_bootstrap", "validation_figures"]


def validation_figures(logits: np.ndarray, probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Figures of one run on the validation alerts (labels index PACKET_CLASS_LABELS; 1..3 the stamp classes)."""
    top = probabilities.argmax(1)
    confusion = [[int(((labels == i) & (top == j)).sum()) for j in range(4)] for i in range(4)]
    two = logits[:, [1, 3]].argmax(1)                     # hostless_or_faint left out
    return {"macro_recall": macro_recall(probabilities, labels, STAMP_CLASSES),
            "balanced_nll": balanced_nll(probabilities, labels, STAMP_CLASSES),
            "recall": {c: confusion[i][i] / max(1, sum(confusion[i])) for i, c in enumerate(STAMP_CLASSES, start=1)},
            "confusion": confusion,
            "without_hostless_recall": {"galaxy_host": float((two[labels == 1] == 0).mean()),
                                        "star": float((two[labels == 3] == 1).mean())}}


def paired_bootstrap(base: np.ndarray, other: np.ndarray, labels: np.ndarray, objects: np.ndarray,
                     draws: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """2.5 / 50 / 97.5 percentiles of (other - base) macro recall and balanced NLL, objects resampled."""
    uniq = np.unique(objects)
    rows = {o: np.flatnonzero(objects == o) for o in uniq}
    rng = np.random.default_rng(seed)
    recall, nll = [], []
    for _ in range(draws):
        idx = np.concatenate([rows[o] for o in rng.choice(uniq, len(uniq), replace=True)])
        recall.append(macro_recall(other[idx], labels[idx], STAMP_CLASSES) - macro_recall(base[idx], labels[idx], STAMP_CLASSES))
        nll.append(balanced_nll(other[idx], labels[idx], STAMP_CLASSES) - balanced_nll(base[idx], labels[idx], STAMP_CLASSES))
    return {"macro_recall_diff": np.percentile(recall, [2.5, 50, 97.5]).round(4).tolist(),
            "balanced_nll_diff": np.percentile(nll, [2.5, 50, 97.5]).round(4).tolist()}


def main(argv: list[str] | None = None) -> int:
    from research.training.alertclass_study import _load
    from research.training.alertclass_targets import load_targets
    from research.training.pool_alertclass import alert_classes, combine, stamp_logits
    from research.training.pool_realbogus import HELDOUT_SOURCES, split_by_source
    from research.training.ztf_pool import load_pool

    parser = argparse.ArgumentParser(prog="python -m research.training.alertclass_validation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders (alertclass.pt); the first is the base")
    parser.add_argument("--pool", type=Path, required=True)
    args = parser.parse_args(argv)
    pool = load_pool(args.pool)
    targets = load_targets(args.pool, pool.candid)
    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    labels = alert_classes(pool)
    val = split.validation[labels[split.validation] >= 0]
    y = labels[val]
    out: dict[str, Any] = {"validation_alerts": len(val), "per_class": np.bincount(y, minlength=4).tolist(), "runs": {}}
    probabilities = []
    for run in args.runs:
        logits = stamp_logits(_load(run), pool.arcsec_inputs[val])
        p = combine(logits, targets.known_solar_system[val])
        probabilities.append(p)
        out["runs"][str(run)] = validation_figures(logits, p, y)
    for run, p in zip(args.runs[1:], probabilities[1:]):
        out["runs"][str(run)]["minus_base"] = paired_bootstrap(probabilities[0], p, y, pool.object_id[val])
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
