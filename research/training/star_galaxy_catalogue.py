"""What ZTF's own reference-image catalogue reaches on the star / galaxy set, under the k-fold's folds.

A comparison for the CNN figures of ``research/reports/star_galaxy`` (issue #25 item 5). Every
ZTF alert names the nearest source in the PSF-fit catalogue of the reference co-add that its
template stamp is cut from (:data:`REFERENCE_FIELDS`: ``distnr``, ``magnr``, ``sigmagnr``,
``chinr``, ``sharpnr``). A class-weighted logistic regression on those numbers, fitted on each
fold's non-test rows and scored on its test rows (the folds of
:func:`research.training.star_galaxy_kfold.field_folds`, the same seed), says how far ZTF's
reference image separates PS1's labels. It is neither an image model nor the user recipe: it is
two catalogues of one sky agreeing, the same agreement that makes alertclass's reference-source
head strong. Each field alone is fitted too. Writes ``OUT/catalogue.json`` and ``OUT/catalogue.md``.

    python -m research.training.star_galaxy_catalogue --set var/star_galaxy --pool ../shared/ztf_pool \\
        --out research/reports/star_galaxy/catalogue
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from research.training.star_galaxy_kfold import field_folds, pooled_figures
from research.training.star_galaxy_report import CLASSES

__all__ = ["REFERENCE_FIELDS", "reference_fields", "fit_logistic", "out_of_fold", "main"]

#: the packet's nearest source in the reference image's PSF-fit catalogue
REFERENCE_FIELDS = ("distnr", "magnr", "sigmagnr", "chinr", "sharpnr")


def reference_fields(pool: Path, candids: list[int]) -> np.ndarray:
    """(N, len(REFERENCE_FIELDS)) float64 for ``candids`` from the pool's Parquet dump (NaN where null)."""
    import pyarrow.parquet as pq

    table = pq.read_table(pool / "alerts.parquet", columns=["candid", "candidate"])
    candidate = table.column("candidate").combine_chunks()
    where = {c: i for i, c in enumerate(table.column("candid").to_pylist())}
    columns = [candidate.field(name).to_pylist() for name in REFERENCE_FIELDS]
    missing = [c for c in candids if c not in where]
    if missing:
        raise SystemExit(f"{len(missing)} candids of the set are not in {pool} (first {missing[0]})")
    return np.asarray([[np.nan if col[where[c]] is None else col[where[c]] for col in columns] for c in candids],
                      dtype=np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """A logistic regression for ``y`` (bool) on standardised ``x``, each class weighted by the
    inverse of its frequency (balanced); returns weights, bias, and the standardisation (mean, sd)."""
    import torch

    mean, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = torch.tensor((x - mean) / sd, dtype=torch.float64)
    target = torch.tensor(y, dtype=torch.float64)
    weight = torch.where(target > 0, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = (torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, target, weight=weight)
                 + l2 * (w ** 2).sum())
        value.backward()
        return value

    optimiser.step(loss)
    return w.detach().numpy(), float(b.item()), mean, sd


def _filled(x: np.ndarray) -> np.ndarray:
    """Nulls and ZTF's -999 sentinels as 0 plus a missing flag per field (none in the set today)."""
    bad = ~np.isfinite(x) | (x <= -999)
    return np.hstack([np.where(bad, 0.0, x), bad.astype(np.float64)])


def out_of_fold(x: np.ndarray, is_galaxy: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """(N, 2) probabilities in :data:`CLASSES` order, each row from the fit on the other folds' rows."""
    z = _filled(x)
    p_galaxy = np.empty(len(z))
    for fold in np.unique(folds):
        test = folds == fold
        w, b, mean, sd = fit_logistic(z[~test], is_galaxy[~test])
        p_galaxy[test] = 1 / (1 + np.exp(-(((z[test] - mean) / sd) @ w + b)))
    columns = {"galaxy": p_galaxy, "star": 1 - p_galaxy}
    return np.stack([columns[c] for c in CLASSES], axis=1)


def _row(name: str, f: dict[str, Any]) -> str:
    g, s = f["per_class"]["galaxy"], f["per_class"]["star"]
    lo, hi = f["balanced_accuracy_95ci"]
    return (f"| {name} | {f['balanced_accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | {g['roc_auc']:.3f} | {g['recall']:.3f} | "
            f"{g['precision']:.3f} | {s['recall']:.3f} | {f['confusion_matrix']} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", type=Path, required=True, help="star_galaxy_set output folder")
    p.add_argument("--pool", type=Path, required=True, help="the pool the set was built from (alerts.parquet)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="fold assignment ties (star_galaxy_kfold's)")
    p.add_argument("--draws", type=int, default=2000)
    args = p.parse_args(argv)
    with open(args.set / "star_galaxy.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = np.asarray([CLASSES.index(r["label"]) for r in rows])
    groups = np.asarray([r["field"] for r in rows])
    folds = field_folds(groups, labels, args.k, args.seed, minority=CLASSES.index("galaxy"))
    x = reference_fields(args.pool, [int(r["candid"]) for r in rows])
    is_galaxy = labels == CLASSES.index("galaxy")
    fits = {"all five": list(range(len(REFERENCE_FIELDS))), **{name: [i] for i, name in enumerate(REFERENCE_FIELDS)}}
    figures = {name: pooled_figures(out_of_fold(x[:, cols], is_galaxy, folds), labels, groups, args.draws)
               for name, cols in fits.items()}
    result = {"what": "class-weighted logistic regression on the reference-image catalogue fields, out of fold",
              "fields": list(REFERENCE_FIELDS), "k": args.k, "seed": args.seed, "examples": len(rows),
              "bootstrap_draws": args.draws, "figures": figures}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "catalogue.json").write_text(json.dumps(result, indent=2))
    table = ["| fields | balanced accuracy [95 % CI] | galaxy ROC AUC | galaxy recall | galaxy precision | star recall | "
             "confusion (rows truth galaxy, star) |", "|---|---|---|---|---|---|---|"]
    table += [_row(name, f) for name, f in figures.items()]
    (args.out / "catalogue.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
