"""One function per job the commands run: build a synthetic set, train on any labelled set with
a grouped split, evaluate a trained network and write its report.

Everything the commands do lives here (pure of argparse), so the tests drive the same code.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from engines.training.adapters import model_inputs
from engines.training.datasets import LabelledImages
from engines.training.evaluate import write_report
from engines.training.head import HeadPlan, train_head
from engines.training.splits import Split, grouped_split
from engines.training.train import (
    TrainConfig,
    TrainingData,
    TrainResult,
    array_sha256,
    balanced_class_weights,
    train_network,
)
from engines.training.ztf_files import TrainingDataError

__all__ = [
    "SYNTHETIC_NOTE",
    "TrainedModel",
    "synthetic_realbogus",
    "synthetic_wise",
    "synthetic_hst",
    "prepare_inputs",
    "train_and_evaluate",
    "predict",
    "load_trained",
]

log = structlog.get_logger(__name__)

SYNTHETIC_NOTE = (
    "The training and test sets are SYNTHETIC (see engines/training/README.md). These figures say how well "
    "the network separates the simulator's classes on held-out simulated examples; they are not a measure "
    "of performance on real survey data."
)


@dataclass(frozen=True)
class TrainedModel:
    """What :func:`train_and_evaluate` produced."""

    result: TrainResult
    split: Split
    test_metrics: dict[str, Any]
    report_json: Path


def synthetic_realbogus(ztf_root: Path, count: int, seed: int) -> tuple[LabelledImages, dict[str, Any]]:
    """The injection set on real ZTF bases (drb-carrying alerts and their objects excluded)."""
    from engines.training.synth_realbogus import bases_from_alerts, generate
    from engines.training.ztf_files import split_ztf_alerts

    alerts = split_ztf_alerts(Path(ztf_root))
    bases = bases_from_alerts(alerts.bases, seed, alerts.fwhm_by_alert_id,
                              exclude_object_ids={a.object_id for a in alerts.checks})
    generated = generate(bases, count, seed)
    description = {
        "generator": "engines.training.synth_realbogus",
        "synthetic": True,
        "base_alerts": len(bases),
        "base_source_ids": sorted(b.source_id for b in bases),
        "check_alerts_excluded": len(alerts.checks),
        "kinds": {k: int(sum(1 for x in generated.kinds if x == k)) for k in sorted(set(generated.kinds))},
        "seed": seed,
        "count": count,
    }
    data = LabelledImages(images=generated.stamps, labels=generated.labels, class_names=("bogus", "real"),
                          groups=generated.groups, sources=generated.kinds,
                          data_sha256=array_sha256(generated.stamps, generated.labels))
    return data, description


def synthetic_wise(count: int, seed: int) -> tuple[LabelledImages, dict[str, Any]]:
    from engines.training.synth_wise import WISE_LABELS, generate

    generated = generate(count, seed)
    data = LabelledImages(images=generated.images, labels=generated.labels, class_names=WISE_LABELS,
                          groups=generated.groups, sources=generated.groups,
                          data_sha256=array_sha256(generated.images, generated.labels))
    return data, {"generator": "engines.training.synth_wise", "synthetic": True, "seed": seed, "count": count}


def synthetic_hst(bodies_per_class: int, views_per_body: int, seed: int, binning: int) -> tuple[LabelledImages, dict[str, Any]]:
    """Raw frames made and run through the service's raw-frame preprocessing at once (a raw
    chip is 34 MB; the binned input is 2 MB), so ``images`` are network inputs already."""
    from engines.preprocess import raw_exposure_batch
    from engines.training.adapters import hst_exposure
    from engines.training.synth_hst import ACS_WFC_CHIPS, HST_LABELS, iter_frames

    inputs, labels, groups = [], [], []
    for i, frame in enumerate(iter_frames(bodies_per_class, views_per_body, seed, binning, ACS_WFC_CHIPS)):
        exposure = hst_exposure(frame.raw, f"sim-{seed}-{i}", chip=frame.chip)
        inputs.append(raw_exposure_batch([exposure], binning)[0].numpy())
        labels.append(frame.label)
        groups.append(frame.body)
    images = np.stack(inputs)
    data = LabelledImages(images=images, labels=np.asarray(labels, dtype=np.int64), class_names=HST_LABELS,
                          groups=tuple(groups), sources=tuple(groups), data_sha256=array_sha256(images))
    return data, {"generator": "engines.training.synth_hst", "synthetic": True, "seed": seed, "binning": binning,
                  "bodies_per_class": bodies_per_class, "views_per_body": views_per_body, "frames": len(labels)}


def _network_spec(network: str):
    from engines.networks import NETWORKS

    try:
        return NETWORKS[network]
    except KeyError:
        raise TrainingDataError(f"unknown network {network!r}; known: {sorted(NETWORKS)}") from None


def prepare_inputs(network: str, data: LabelledImages, input_shape: Sequence[int], preprocessed: bool,
                   binning: int = 4) -> np.ndarray:
    """Network inputs for ``data`` (through the service's preprocessing unless ``preprocessed``)."""
    if preprocessed:
        return np.ascontiguousarray(data.images, dtype=np.float32)
    return model_inputs(network, data.images, input_shape, binning)


def _check_classes(network: str, data: LabelledImages) -> None:
    labels = _network_spec(network).labels
    if tuple(data.class_names) != tuple(labels):
        if sorted(data.class_names) == sorted(labels):
            return
        raise TrainingDataError(
            f"{network} outputs {list(labels)}; the data's classes are {list(data.class_names)}. Name the class "
            f"folders / labels exactly as the outputs")


def _reorder_to_network(network: str, data: LabelledImages, labels: Sequence[str] | None = None) -> LabelledImages:
    """Relabel so class index i is output column i: of ``labels`` (a registered model's own
    label set, e.g. a user's two classes) or else the network's. Every class of the data must
    be one of them (a class the data lacks is simply never the truth)."""
    labels = tuple(labels) if labels is not None else tuple(_network_spec(network).labels)
    if tuple(data.class_names) == labels:
        return data
    unknown = sorted(set(data.class_names) - set(labels))
    if unknown:
        raise TrainingDataError(f"the data's classes {unknown} are not among the model's labels {list(labels)}")
    mapping = np.asarray([labels.index(name) for name in data.class_names])
    return replace(data, labels=mapping[data.labels], class_names=tuple(labels))


#: input values per forward batch when no batch size is given: 256 stamps of 3 x 69 x 69, but 8
#: binned HST chips (1 x 512 x 1024), whose first conv maps alone are 66 MB per chip
PREDICT_BATCH_VALUES = 1 << 22


def predict(network: torch.nn.Module, inputs: np.ndarray, batch_size: int | None = None, device: str = "cpu") -> np.ndarray:
    """Softmax probabilities (N, K) of a logits network on prepared inputs, in batches of
    ``batch_size`` (default: as many as fit :data:`PREDICT_BATCH_VALUES` input values, at most 256)."""
    if batch_size is None:
        per_example = int(np.prod(inputs.shape[1:])) if inputs.ndim > 1 else 1
        batch_size = max(1, min(256, PREDICT_BATCH_VALUES // max(per_example, 1)))
    network = network.to(device).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size])).to(device)
            out.append(torch.softmax(network(batch).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 0), dtype=np.float32)


def load_trained(network: str, weights: Path, network_kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    from engines.networks import load_weights

    try:
        return load_weights(network, weights, **(network_kwargs or {}))
    except (OSError, RuntimeError, KeyError) as exc:
        raise TrainingDataError(f"cannot load weights {weights} into {network}: {exc}") from exc


def train_and_evaluate(
    data: LabelledImages,
    config: TrainConfig,
    out_dir: Path,
    report_dir: Path,
    description: dict[str, Any] | None = None,
    preprocessed: bool = False,
    binning: int = 4,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    resume: Path | None = None,
    progress: bool = True,
    notes: Sequence[str] = (),
    head: HeadPlan | None = None,
    balance_classes: bool = False,
) -> TrainedModel:
    """Grouped split -> train on train/validation -> evaluate on the held-out test groups.

    ``head``: train only the head of the seeded network on its frozen prefix's features
    (:mod:`engines.training.head`); the weights are then a delta file over the seed.
    ``config.network_kwargs["num_classes"]``: a user's own label set, the outputs in the data's
    class order. ``balance_classes``: weigh the loss by inverse class frequency (stated in the notes)."""
    spec = _network_spec(config.model)
    if "num_classes" in config.network_kwargs:   # the user's own label set: outputs = the data's classes
        if int(config.network_kwargs["num_classes"]) != len(data.class_names):
            raise TrainingDataError(f"num_classes {config.network_kwargs['num_classes']} != the data's "
                                    f"{len(data.class_names)} classes {list(data.class_names)}")
    else:
        _check_classes(config.model, data)
        data = _reorder_to_network(config.model, data)
    split = grouped_split(data.groups, fractions, seed=config.seed)
    if len(split.train) == 0 or len(split.validation) == 0 or len(split.test) == 0:
        raise TrainingDataError(f"grouped split left a side empty (train {len(split.train)}, validation "
                                f"{len(split.validation)}, test {len(split.test)}): need at least 3 groups")
    input_shape = spec.input_shape
    if config.network_kwargs.get("input_hw"):
        input_shape = (input_shape[0], *config.network_kwargs["input_hw"])
    inputs = prepare_inputs(config.model, data, input_shape, preprocessed, binning)
    train_groups = {data.groups[i] for i in split.train}
    test_groups = {data.groups[i] for i in split.test}
    if train_groups & test_groups:
        raise TrainingDataError("grouped split leaked a group into train and test")  # guarded by grouped_split
    training = TrainingData(
        train_x=inputs[split.train], train_y=data.labels[split.train],
        val_x=inputs[split.validation], val_y=data.labels[split.validation], class_names=tuple(data.class_names),
        description={**(description or {}), "data_sha256": data.data_sha256, "examples": len(data),
                     "split": {"fractions": list(fractions), "by": "group", "train_groups": len(train_groups),
                               "validation_groups": len({data.groups[i] for i in split.validation}),
                               "test_groups": len(test_groups), "test_examples": int(len(split.test))}},
    )
    if balance_classes:
        weights = balanced_class_weights(training.train_y, len(data.class_names))
        config = replace(config, class_weights=weights)
        notes = (*notes, "Class imbalance: the loss weighs each class by n / (classes x n_class) over the training "
                         "split (" + ", ".join(f"{c} {w:.3g}" for c, w in zip(data.class_names, weights)) + ").")
    to_input = lambda x: torch.from_numpy(np.ascontiguousarray(x))
    if head is not None:
        result = train_head(training, to_input, config, head, out_dir, resume=resume, progress=progress)
    else:
        result = train_network(training, to_input, config, out_dir, resume=resume, progress=progress)
    network = load_trained(config.model, result.weights_path, config.network_kwargs)
    probabilities = predict(network, inputs[split.test], device=config.device)
    record = json.loads(result.record_path.read_text())
    metrics, paths = write_report(
        report_dir, "test", f"{config.model}: held-out test groups", probabilities, data.labels[split.test],
        data.class_names, notes=notes,
        extra={"weights_sha256": record["weights_sha256"], "train_record": str(result.record_path),
               "data": training.description, "best_epoch": result.best_epoch, "stopped_because": result.stopped_because},
    )
    return TrainedModel(result=result, split=split, test_metrics=metrics, report_json=paths.json)
