"""Evaluation figures the papers report, per class, and the files that carry them.

Per class (one class against the rest): accuracy, precision, recall, specificity, F1 and ROC
AUC; overall accuracy; the confusion matrix (rows = true class, columns = predicted). For two
classes the prediction is ``score(positive) >= threshold``; otherwise the arg-max.

AUC is the Mann-Whitney statistic (ties count one half), so it needs no curve sampling.
Reports are written as JSON (every number), Markdown (tables plus the ``notes`` that say what
the figures mean) and two PNGs (ROC curves, confusion matrix).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["roc_auc", "roc_curve", "classification_metrics", "ReportPaths", "write_report", "threshold_for_recall"]


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """Probability that a random positive outscores a random negative (ties 1/2); None if a
    class is absent."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), thresholds descending."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    n_pos, n_neg = max(int(positives.sum()), 1), max(int((~positives).sum()), 1)
    tpr = np.array([(scores[positives] >= t).sum() / n_pos for t in thresholds])
    fpr = np.array([(scores[~positives] >= t).sum() / n_neg for t in thresholds])
    return fpr, tpr, thresholds


def threshold_for_recall(scores: np.ndarray, positives: np.ndarray, recall: float) -> float:
    """The highest threshold whose recall of ``positives`` is at least ``recall``."""
    pos_scores = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(positives, dtype=bool)])
    if len(pos_scores) == 0:
        raise ValueError("no positives")
    k = int(np.floor((1.0 - recall) * len(pos_scores) + 1e-9))
    return float(pos_scores[min(k, len(pos_scores) - 1)])


def _safe(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def classification_metrics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    threshold: float | None = None,
    positive_class: int = 1,
) -> dict[str, Any]:
    """Per-class and overall figures for ``probabilities`` (N, K) against integer ``labels``."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape[1] != k:
        raise ValueError(f"probabilities shape {probabilities.shape} does not match {k} classes")
    if k == 2 and threshold is not None:
        predictions = np.where(probabilities[:, positive_class] >= threshold, positive_class, 1 - positive_class)
    else:
        predictions = probabilities.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    n = len(labels)
    per_class = {}
    for c, name in enumerate(class_names):
        tp = int(confusion[c, c])
        fn = int(confusion[c].sum() - tp)
        fp = int(confusion[:, c].sum() - tp)
        tn = int(n - tp - fn - fp)
        precision = _safe(tp, tp + fp)
        recall = _safe(tp, tp + fn)
        f1 = (2 * precision * recall / (precision + recall)
              if precision is not None and recall is not None and precision + recall > 0 else None)
        per_class[name] = {
            "support": tp + fn,
            "accuracy": _safe(tp + tn, n),
            "precision": precision,
            "recall": recall,
            "specificity": _safe(tn, tn + fp),
            "f1": f1,
            "roc_auc": roc_auc(probabilities[:, c], labels == c),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        }
    return {
        "examples": n,
        "class_names": list(class_names),
        "accuracy": _safe(int(np.trace(confusion)), n),
        # mean recall over the classes present: what accuracy is when every class counts the same
        "balanced_accuracy": (float(np.mean([v["recall"] for v in per_class.values() if v["recall"] is not None]))
                              if any(v["recall"] is not None for v in per_class.values()) else None),
        "threshold": threshold,
        "decision": (f"score({class_names[positive_class]}) >= {threshold}" if k == 2 and threshold is not None
                     else "arg-max over classes"),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


@dataclass(frozen=True)
class ReportPaths:
    json: Path
    markdown: Path
    roc_png: Path
    confusion_png: Path


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _markdown(title: str, metrics: dict[str, Any], notes: Sequence[str], roc_png: str, confusion_png: str,
              extra: dict[str, Any]) -> str:
    names = metrics["class_names"]
    lines = [f"# {title}", ""]
    for note in notes:
        lines.append(f"> {note}")
        lines.append(">")
    if notes:
        lines.pop()
        lines.append("")
    lines += [f"Examples: {metrics['examples']}. Decision: {metrics['decision']}. "
              f"Overall accuracy: {_fmt(metrics['accuracy'])}; "
              f"balanced accuracy (mean per-class recall): {_fmt(metrics.get('balanced_accuracy'))}.", ""]
    lines.append("| class | support | accuracy | precision | recall | specificity | F1 | ROC AUC |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for name in names:
        row = metrics["per_class"][name]
        lines.append(f"| {name} | {row['support']} | {_fmt(row['accuracy'])} | {_fmt(row['precision'])} | "
                     f"{_fmt(row['recall'])} | {_fmt(row['specificity'])} | {_fmt(row['f1'])} | {_fmt(row['roc_auc'])} |")
    lines += ["", "Confusion matrix (rows: true, columns: predicted):", "",
              "| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, metrics["confusion_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", f"![ROC]({roc_png})  ![confusion matrix]({confusion_png})", ""]
    if extra:
        lines += ["## Run", "", "```json", json.dumps(extra, indent=2, default=str), "```", ""]
    return "\n".join(lines)


def _plot_roc(path: Path, probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    classes = range(len(class_names)) if len(class_names) > 2 else [1]
    for c in classes:
        positives = labels == c
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(probabilities[:, c], positives)
        ax.plot(fpr, tpr, label=f"{class_names[c]} (AUC {roc_auc(probabilities[:, c], positives):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_confusion(path: Path, confusion: np.ndarray, class_names: Sequence[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(confusion, cmap="Blues")
    for i in range(confusion.shape[0]):
        for j in range(confusion.shape[1]):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center",
                    color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    out_dir: Path,
    stem: str,
    title: str,
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    notes: Sequence[str] = (),
    threshold: float | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], ReportPaths]:
    """Compute the figures and write ``<stem>.json``, ``<stem>.md``, ``<stem>_roc.png`` and
    ``<stem>_confusion.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = classification_metrics(probabilities, labels, class_names, threshold=threshold)
    paths = ReportPaths(json=out_dir / f"{stem}.json", markdown=out_dir / f"{stem}.md",
                        roc_png=out_dir / f"{stem}_roc.png", confusion_png=out_dir / f"{stem}_confusion.png")
    payload = {"title": title, "notes": list(notes), **metrics, **({"run": extra} if extra else {})}
    paths.json.write_text(json.dumps(payload, indent=2, default=str))
    paths.markdown.write_text(_markdown(title, metrics, notes, paths.roc_png.name, paths.confusion_png.name, extra or {}))
    _plot_roc(paths.roc_png, np.asarray(probabilities), np.asarray(labels), class_names, title)
    _plot_confusion(paths.confusion_png, np.asarray(metrics["confusion_matrix"]), class_names, title)
    return metrics, paths
