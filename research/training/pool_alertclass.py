"""The alert-class model trained on the real-alert pool: classes from the pool's labels.

Classes and the rule (one per alert, in this order):

* ``bogus``: ZTF's braai ``d6_m7`` score below 0.5 (a model's verdict, whatever lies under it);
* otherwise the pool's ``weak_label`` (catalogue rule on the alert's own candidate fields):
  ``asteroid`` (a known Solar-System object within 5"), ``star`` (a PS1 point source within 1.5"),
  ``galaxy_host`` (a PS1 extended source within 5"), ``hostless_or_faint`` (no PS1 source within 5");
* ``ambiguous`` weak labels that the teacher calls real are left out (no class to learn).

Why these: they are the only labels every alert has. The sparse catalogue labels (SIMBAD types,
TNS classes, variable-star catalogues) have at most tens of alerts per class, too few to train
or test a class on. The weak labels come from catalogue positions, not from the images: the
network learns to predict, from the stamps alone, what a catalogue cross-match would say.

Split as for the real/bogus model: whole sources held out for the test (their objects out of
training), the rest split by object into train and validation; the loss weighs classes by
inverse frequency (stars are 60 % of the pool).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.networks.alertclass import ALERTCLASS_LABELS
from engines.training.evaluate import write_report
from engines.training.train import (
    TrainConfig,
    TrainingData,
    balanced_class_weights,
    dihedral_augment,
    train_network,
)
from research.training.pool_realbogus import SourceSplit
from research.training.ztf_pool import PoolAlerts

__all__ = ["CLASS_RULE", "alert_classes", "alertclass_report", "train_alertclass"]

CLASS_RULE = ("bogus if braai d6_m7 < 0.5; else the pool's weak_label (asteroid: 0 <= ssdistnr < 5\"; star: "
              "distpsnr1 <= 1.5\" and sgscore1 >= 0.5; galaxy_host: distpsnr1 <= 5\" and sgscore1 < 0.5; "
              "hostless_or_faint: distpsnr1 > 5\"); teacher-real 'ambiguous' alerts left out")


def alert_classes(pool: PoolAlerts) -> np.ndarray:
    """(N,) class index into :data:`ALERTCLASS_LABELS`, -1 where no class applies."""
    out = np.full(len(pool), -1, dtype=np.int64)
    index = {name: i for i, name in enumerate(ALERTCLASS_LABELS)}
    for i, (teacher, weak) in enumerate(zip(pool.teacher, pool.weak_label, strict=True)):
        if np.isfinite(teacher) and teacher < 0.5:
            out[i] = index["bogus"]
        elif np.isfinite(teacher) and weak in index and weak != "bogus":
            out[i] = index[weak]
    return out


def train_alertclass(pool: PoolAlerts, split: SourceSplit, config: TrainConfig, out_dir: Path,
                     progress: bool = False) -> tuple[Any, dict[str, Any]]:
    """Train on the split's labelled training alerts; returns (TrainResult, description)."""
    labels = alert_classes(pool)
    train = split.train[labels[split.train] >= 0]
    validation = split.validation[labels[split.validation] >= 0]
    weights = balanced_class_weights(labels[train], len(ALERTCLASS_LABELS))
    config = TrainConfig(**{**config.__dict__, "class_weights": weights})
    counts = {name: int((labels[train] == i).sum()) for i, name in enumerate(ALERTCLASS_LABELS)}
    description = {"class_rule": CLASS_RULE, "train_per_class": counts, "train_alerts": len(train),
                   "validation_alerts": len(validation), "heldout_sources": list(split.heldout_sources),
                   "class_weights": [round(w, 4) for w in weights], "train_sources": pool.subset(train).counts()["per_source"]}
    data = TrainingData(train_x=pool.arcsec_inputs[train], train_y=labels[train], val_x=pool.arcsec_inputs[validation],
                        val_y=labels[validation], class_names=ALERTCLASS_LABELS, description=description)
    started = time.monotonic()
    result = train_network(data, lambda x: torch.from_numpy(np.ascontiguousarray(x)), config, Path(out_dir),
                           progress=progress, augment=dihedral_augment)
    description["train_seconds"] = round(time.monotonic() - started, 1)
    return result, description


def predict_classes(network: torch.nn.Module, inputs: np.ndarray, batch_size: int = 128) -> np.ndarray:
    network = network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            logits = network(torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size])))
            out.append(torch.softmax(logits.float(), dim=1).numpy())
    return np.concatenate(out) if out else np.empty((0, len(ALERTCLASS_LABELS)), np.float32)


def alertclass_report(network: torch.nn.Module, pool: PoolAlerts, split: SourceSplit, report_dir: Path,
                      stem: str = "heldout_sources", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per-class precision / recall / F1 / ROC AUC and the confusion matrix on the held-out
    sources' labelled alerts (report files ``<stem>.*`` in ``report_dir``)."""
    labels = alert_classes(pool)
    test = split.test[labels[split.test] >= 0]
    probabilities = predict_classes(network, pool.arcsec_inputs[test])
    notes = [
        "Reference labels: " + CLASS_RULE + ". Catalogue rules and a model's verdict, not human vetting.",
        "Test alerts: every labelled alert of the held-out sources " + ", ".join(split.heldout_sources)
        + "; no object of theirs was trained on.",
    ]
    metrics, _paths = write_report(report_dir, stem, "alertclass: held-out sources", probabilities, labels[test],
                                   ALERTCLASS_LABELS, notes=notes, extra=extra)
    metrics["left_out_unlabelled"] = int((labels[split.test] < 0).sum())
    return metrics
