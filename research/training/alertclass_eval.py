"""Held-out figures of the alert-class model 2.x: per-class recall / precision / F1, the
confusion matrix and macro recall, each with an object-clustered 95 % bootstrap interval, against
the weak labels and against ACAI.

* **Against the weak labels** (:data:`research.training.pool_alertclass.CLASS_RULE`): the top
  class of the shipped output. Its asteroid column is the packet's flag, the same rule that
  defines the asteroid label: asteroid recall there is 1 by construction (circular) and is
  reported as such; the **stamp-only** asteroid figure (the body's own asteroid logit, the flag
  ignored) is reported beside it.
* **Against ACAI** (ZTF's production classifier; a comparison, not ground truth): ACAI's top
  head mapped to our classes (variable -> star; hosted, nuclear -> galaxy_host; orphan ->
  hostless_or_faint, or asteroid where the packet flags a known object; bogus -> none), (a) its
  recall of the weak labels on the same alerts, and (b) how often our top class equals its
  mapped one.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from research.calibration.metrics import _ci, clustered_bootstrap
from research.training.alertclass_targets import ACAI_HEADS

__all__ = ["ACAI_TO_CLASS", "acai_mapped_classes", "class_figures"]

#: ACAI head -> our class (orphan becomes asteroid where the packet flags a known object)
ACAI_TO_CLASS: dict[str, str | None] = {"hosted": "galaxy_host", "variable": "star", "orphan": "hostless_or_faint",
                                        "nuclear": "galaxy_host", "bogus": None}


def _recall(top: np.ndarray, labels: np.ndarray, c: int, idx: np.ndarray) -> float | None:
    mask = labels[idx] == c
    return float((top[idx][mask] == c).mean()) if mask.any() else None


def _precision(top: np.ndarray, labels: np.ndarray, c: int, idx: np.ndarray) -> float | None:
    mask = top[idx] == c
    return float((labels[idx][mask] == c).mean()) if mask.any() else None


def _macro(top: np.ndarray, labels: np.ndarray, columns: Sequence[int], idx: np.ndarray) -> float | None:
    values = [_recall(top, labels, c, idx) for c in columns]
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if values and len(known) == len(values) else None


def class_figures(top: np.ndarray, labels: np.ndarray, groups: np.ndarray, classes: Sequence[str],
                  macro_over: Sequence[str], draws: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Figures of predicted class indices ``top`` (-1: no class) against ``labels`` (indices into
    ``classes``; alerts with label -1 must be left out by the caller)."""
    top, labels, groups = np.asarray(top), np.asarray(labels), np.asarray(groups)
    every = np.arange(len(labels))
    per_class: dict[str, Any] = {}
    for c, name in enumerate(classes):
        recall, precision = _recall(top, labels, c, every), _precision(top, labels, c, every)
        f1 = (2 * recall * precision / (recall + precision)) if recall and precision else (0.0 if recall is not None else None)

        def class_recall(i: np.ndarray, c: int = c) -> float | None:
            return _recall(top, labels, c, i)

        def class_precision(i: np.ndarray, c: int = c) -> float | None:
            return _precision(top, labels, c, i)

        per_class[name] = {
            "support": int((labels == c).sum()), "predicted": int((top == c).sum()),
            "recall": recall, "recall_95ci": _ci(clustered_bootstrap(groups, class_recall, draws, seed)),
            "precision": precision, "precision_95ci": _ci(clustered_bootstrap(groups, class_precision, draws, seed)),
            "f1": f1,
        }
    columns = [classes.index(n) for n in macro_over]
    confusion = np.zeros((len(classes), len(classes) + 1), dtype=np.int64)   # last column: no class
    for t, p in zip(labels, top):
        confusion[t, p if p >= 0 else len(classes)] += 1
    return {"alerts": int(len(labels)), "objects": int(len(set(groups.tolist()))), "classes": list(classes),
            "per_class": per_class, "macro_recall_over": list(macro_over),
            "macro_recall": _macro(top, labels, columns, every),
            "macro_recall_95ci": _ci(clustered_bootstrap(groups, lambda i: _macro(top, labels, columns, i), draws, seed)),
            "confusion_matrix": confusion.tolist(),
            "confusion_columns": [*classes, "none"]}


def acai_mapped_classes(acai: np.ndarray, known_solar_system: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """ACAI's top head as an index into ``classes`` (-1 for bogus or where ACAI gave no score)."""
    out = np.full(len(acai), -1, dtype=np.int64)
    scored = np.isfinite(acai).all(axis=1)
    heads = np.nanargmax(np.where(scored[:, None], acai, 0.0), axis=1)
    for i in np.flatnonzero(scored):
        name = ACAI_TO_CLASS[ACAI_HEADS[heads[i]]]
        if name == "hostless_or_faint" and known_solar_system[i] and "asteroid" in classes:
            name = "asteroid"
        if name is not None and name in classes:
            out[i] = classes.index(name)
    return out
