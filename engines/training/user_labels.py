"""Training a seed architecture on a user's own label set, and registering the result.

A folder of star / galaxy stamps has two classes; IICnet ships three outputs (galaxy, quasar,
star). Rather than refuse, the body is built with as many outputs as the data has classes, in
the data's class order (``num_classes``), and the result is registered under a name the user
gives: the card carries the user's labels, so the service publishes them as class scores.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from engines.training.train import TrainConfig
from engines.training.ztf_files import TrainingDataError

__all__ = ["card_figures", "register_trained", "user_label_config"]


def user_label_config(config: TrainConfig, class_names: Sequence[str], name: str | None) -> TrainConfig:
    """``config`` for data with ``class_names``: unchanged when they are the network's outputs
    (in any order); else ``num_classes`` set, which needs a model name to register under."""
    from engines.networks import NETWORKS

    labels = NETWORKS[config.model].labels
    if sorted(class_names) == sorted(labels):
        return config
    if not name:
        raise TrainingDataError(
            f"{config.model} ships outputs {list(labels)}; the data's classes are {list(class_names)}. Give --name "
            f"NAME to train the same architecture with {len(class_names)} outputs and register it as model NAME")
    if len(class_names) < 2:
        raise TrainingDataError(f"need at least two classes, the data has {list(class_names)}")
    return replace(config, network_kwargs={**config.network_kwargs, "num_classes": len(class_names)})


def card_figures(metrics: dict[str, Any], prefix: str = "test") -> dict[str, Any]:
    """Flat card [evaluation] entries from a report's metrics (accuracy, balanced accuracy, per class)."""
    out: dict[str, Any] = {f"{prefix}_examples": metrics["examples"]}
    for key in ("accuracy", "balanced_accuracy"):
        if metrics.get(key) is not None:
            out[f"{prefix}_{key}"] = round(float(metrics[key]), 4)
    for cls, row in metrics["per_class"].items():
        for key in ("precision", "recall", "f1", "roc_auc"):
            if row.get(key) is not None:
                out[f"{prefix}_{cls}_{key}"] = round(float(row[key]), 4)
    return out


def register_trained(name: str, version: str | None, config: TrainConfig, trained, description: dict[str, Any],
                     cards_dir: Path | None = None, weights_dir: Path | None = None) -> Path:
    """Register a :class:`engines.training.recipes.TrainedModel` as model ``name``."""
    from engines.training.adapters import USER_PREPROCESSING
    from engines.training.register import register_model

    metrics = trained.test_metrics
    report = str(trained.report_json)
    used = json.loads(Path(trained.result.record_path).read_text())["config"]   # what the run really used
    training = {
        "synthetic": bool(description.get("synthetic", False)),
        "data": str(description.get("source", "")),
        "class_names": list(metrics["class_names"]),
        "group_column": str(description.get("group_column") or "each file its own group"),
        "split": "grouped 80/10/10 by the group column",
        "epochs_run": len(trained.result.history),
        "best_epoch": trained.result.best_epoch,
        "stopped_because": trained.result.stopped_because,
        "lr": config.lr, "batch_size": config.batch_size, "dropout": config.dropout, "seed": config.seed,
        "class_weights": [round(float(w), 4) for w in used["class_weights"]] if used.get("class_weights") else "none",
        "init_from": str(used.get("init_from") or "seeded initialisation"),
        "lr_schedule": str(used.get("lr_schedule") or "constant"),
        "augment": "dihedral flips, shifts <= 2 px, noise" if used.get("augment") else "none",
        "budget": (f"{used['max_cpu_minutes']} CPU min" if used.get("max_cpu_minutes") is not None
                   else f"{used['max_minutes']} min wall" if used.get("max_minutes") is not None else "none"),
        "record": str(trained.result.record_path),
    }
    evaluation = {**card_figures(metrics), "report": report,
                  "note": "held-out groups of the user's own data; labels are the user's"}
    balanced = metrics.get("balanced_accuracy")
    checked = (f"user-trained: {metrics.get('examples')} held-out examples of the user's own data "
               f"({description.get('source', '')}): accuracy {metrics['accuracy']:.3f}"
               + (f", balanced accuracy {balanced:.3f}" if balanced is not None else "") + "; not checked on survey alerts here")
    return register_model(name, config.model, metrics["class_names"], trained.result.weights_path,
                          version or "1.0.0-user", training, evaluation,
                          description=f"{config.model} architecture trained on the user's classes "
                                      f"{', '.join(metrics['class_names'])}", cards_dir=cards_dir, weights_dir=weights_dir,
                          preprocessing=USER_PREPROCESSING.get(config.model),
                          survey_figures={survey: checked for survey in _family_surveys(config.model, cards_dir)})


def _family_surveys(network: str, cards_dir: Path | None) -> tuple[str, ...]:
    """The surveys of the shipped card of ``network`` (what a registered user model inherits)."""
    from engines.training.register import _dirs, family_card

    cards, _ = _dirs(cards_dir, None)
    return family_card(network, cards).surveys
