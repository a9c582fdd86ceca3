"""The real/bogus CNN trained on real alerts: a teacher's scores as soft targets, held-out sources.

Labels: ZTF's braai ``d6_m7`` score of each pool alert (the ``drb`` ZTF ships) as the target
distribution (bogus 1 - s, real s): distillation, so the network learns the teacher's
confidence, not only its side of 0.5. The injection set (synthetic, one-hot targets) can be
mixed in; :func:`run_ablation` trains teacher only, injection only and both on the same split.

Split: whole sources (the repository or package an alert came from, which is also its survey
period and selection) are held out for the test; every object of a held-out source is removed
from training too. The rest is split by object into train and validation; the operating
threshold is the highest that keeps 95 % of teacher-real *validation* alerts, so the held-out
figures never choose anything.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from engines.training.splits import grouped_split
from engines.training.train import (
    TrainConfig,
    TrainingData,
    dihedral_augment,
    train_network,
)
from engines.training.ztf_files import TrainingDataError
from research.training.heldout import figures_by_source, threshold_at_recall
from research.training.ztf_pool import PoolAlerts

__all__ = [
    "HELDOUT_SOURCES",
    "SourceSplit",
    "TeacherRun",
    "heldout_report",
    "score_inputs",
    "shift_augment",
    "soft_targets",
    "split_by_source",
    "train_on_pool",
]

log = structlog.get_logger(__name__)

#: the sources held out of training for the headline figures: four repositories, 2018-2026,
#: 383 alerts; training keeps ztfss18 (2018-07), the Fink simulator (2018-11) and the
#: fink-science 7.4.0 package (2021-2024)
HELDOUT_SOURCES: tuple[str, ...] = (
    "github:astrolabsoftware/fink-science",
    "github:astrolabsoftware/fink-filters",
    "github:astrolabsoftware/fink-client",
    "github:alercebroker/pipeline",
)


@dataclass(frozen=True)
class SourceSplit:
    """Indices into the pool: train / validation (by object, training sources), test (held-out sources)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    heldout_sources: tuple[str, ...]
    dropped_shared_objects: int


def split_by_source(pool: PoolAlerts, heldout_sources: Sequence[str], validation_fraction: float = 0.15,
                    seed: int = 0, validation_sources: Sequence[str] = ()) -> SourceSplit:
    """Held-out sources -> test; their objects leave training; the rest split by object.

    With ``validation_sources``, validation is those whole sources instead (their alerts whose
    objects are not in the test), and their objects leave training too: a selection set from
    sources the network never trained on, as the test is."""
    held, chosen = set(heldout_sources), set(validation_sources)
    unknown = (held | chosen) - set(pool.source.tolist())
    if unknown:
        raise TrainingDataError(f"held-out or validation sources not in the pool: {sorted(unknown)}")
    if held & chosen:
        raise TrainingDataError(f"a source cannot be both held out and validation: {sorted(held & chosen)}")
    is_test = np.isin(pool.source, list(held))
    test_objects = set(pool.object_id[is_test].tolist())
    rest = np.flatnonzero(~is_test & ~np.isin(pool.object_id, list(test_objects)))
    dropped = int((~is_test).sum() - len(rest))
    if chosen:
        is_val = np.isin(pool.source[rest], list(chosen))
        val_objects = list(set(pool.object_id[rest][is_val].tolist()))
        train = rest[~is_val & ~np.isin(pool.object_id[rest], val_objects)]
        return SourceSplit(train=train, validation=rest[is_val], test=np.flatnonzero(is_test),
                           heldout_sources=tuple(sorted(held)), dropped_shared_objects=dropped + int((~is_val).sum() - len(train)))
    inner = grouped_split(pool.object_id[rest].tolist(), (1.0 - validation_fraction, validation_fraction, 0.0), seed=seed)
    return SourceSplit(train=rest[inner.train], validation=rest[inner.validation], test=np.flatnonzero(is_test),
                       heldout_sources=tuple(sorted(held)), dropped_shared_objects=dropped)


def soft_targets(scores: np.ndarray, smoothing: float = 0.0) -> np.ndarray:
    """(N, 2) float32 (bogus, real) = (1 - s, s) from a teacher's real score ``s``;
    ``smoothing`` e pulls both towards 1/2: s -> s (1 - e) + e / 2 (label smoothing)."""
    if not 0.0 <= smoothing < 1.0:
        raise TrainingDataError(f"smoothing must lie in [0, 1), got {smoothing}")
    s = np.clip(np.asarray(scores, dtype=np.float32), 0.0, 1.0) * (1.0 - smoothing) + smoothing / 2
    return np.stack([1.0 - s, s], axis=1).astype(np.float32)


def shift_augment(max_shift: int) -> Callable[[torch.Tensor, np.random.Generator], torch.Tensor]:
    """Dihedral turn (:func:`dihedral_augment`), then a shift of each example by up to
    ``max_shift`` px in x and y, the uncovered edge zero-filled (braai's pad value); 0: dihedral only."""
    if max_shift < 0:
        raise TrainingDataError(f"max_shift must be >= 0, got {max_shift}")

    def augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        x = dihedral_augment(x, rng)
        if max_shift == 0:
            return x
        out = torch.zeros_like(x)
        h, w = x.shape[-2:]
        for i, (dy, dx) in enumerate(rng.integers(-max_shift, max_shift + 1, size=(len(x), 2))):
            dy, dx = int(dy), int(dx)
            out[i, :, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                x[i, :, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        return out

    return augment


@dataclass(frozen=True)
class TeacherRun:
    """One trained variant: its weights and what it was trained on."""

    variant: str
    weights: Path
    record: Path
    description: dict[str, Any]
    seconds: float


def train_on_pool(pool: PoolAlerts, split: SourceSplit, variant: str, config: TrainConfig, out_dir: Path,
                  injection: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = False,
                  resume: Path | None = None, max_shift: int = 0, smoothing: float = 0.0,
                  training_batch_for: Callable[[np.ndarray], Callable[..., Any]] | None = None) -> TeacherRun:
    """Train ``variant`` ("teacher", "injection" or "both") on the split's training alerts.

    Validation is always the teacher-labelled validation alerts of the training sources, so
    the kept epoch is chosen by agreement on real alerts for every variant. ``resume``: a
    checkpoint of the same variant to continue (more epochs, another time budget). Training
    batches are turned (8 dihedral transforms) and shifted by up to ``max_shift`` px; the
    teacher's training targets are label-smoothed by ``smoothing`` (validation's never are).
    ``training_batch_for``: given the pool rows trained on, the ``training_batch`` of
    :func:`engines.training.train.train_network` that makes each batch's views and targets
    (:class:`research.training.consistent_teacher.ConsistentTeacher`: braai labels every view,
    the injections' too, in training-row order: pool rows, then injections); it replaces the
    turns, shifts and fixed targets above."""
    if variant not in ("teacher", "injection", "both"):
        raise TrainingDataError(f"unknown variant {variant!r}")
    if variant != "teacher" and injection is None:
        raise TrainingDataError(f"variant {variant!r} needs the injection set")
    scored = np.isfinite(pool.teacher)       # alerts without a teacher score teach nothing
    split = replace(split, train=split.train[scored[split.train]], validation=split.validation[scored[split.validation]])
    if len(split.validation) == 0:
        raise TrainingDataError("no validation alert has a teacher score")
    xs, ys = [], []
    description: dict[str, Any] = {"variant": variant, "heldout_sources": list(split.heldout_sources),
                                   "max_shift_px": max_shift, "target_smoothing": smoothing,
                                   "pool_train_alerts": 0, "injection_examples": 0,
                                   "validation_alerts": len(split.validation)}
    if variant in ("teacher", "both"):
        xs.append(pool.realbogus_inputs[split.train])
        ys.append(soft_targets(pool.teacher[split.train], smoothing))
        description["pool_train_alerts"] = len(split.train)
        train_pool = pool.subset(split.train)
        description["pool_train"] = train_pool.counts()
    if variant in ("injection", "both"):
        inj_x, inj_y = injection  # type: ignore[misc]
        xs.append(inj_x)
        ys.append(np.eye(2, dtype=np.float32)[inj_y])
        description["injection_examples"] = len(inj_y)
    training_batch = training_batch_for(split.train) if training_batch_for is not None else None
    if training_batch is not None:
        rows = getattr(training_batch, "examples", None)
        if rows is not None and rows != sum(len(y) for y in ys):
            raise TrainingDataError(f"the training batches hold {rows} examples, the training rows are {sum(len(y) for y in ys)}")
        description["training_views"] = getattr(training_batch, "description", type(training_batch).__name__)
    data = TrainingData(train_x=np.concatenate(xs), train_y=np.concatenate(ys),
                        val_x=pool.realbogus_inputs[split.validation], val_y=soft_targets(pool.teacher[split.validation]),
                        class_names=("bogus", "real"), description=description)
    started = time.monotonic()
    to_input = lambda x: torch.from_numpy(np.ascontiguousarray(x))
    result = train_network(data, to_input, config, Path(out_dir), progress=progress, augment=shift_augment(max_shift),
                           resume=resume, training_batch=training_batch)
    return TeacherRun(variant, result.weights_path, result.record_path, description, time.monotonic() - started)


def score_inputs(network: torch.nn.Module, inputs: np.ndarray, label_index: int = 1, batch_size: int = 256) -> np.ndarray:
    """The network's probability of ``label_index`` for each input row."""
    network = network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            logits = network(torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size])))
            out.append(torch.softmax(logits.float(), dim=1)[:, label_index].numpy())
    return np.concatenate(out) if out else np.empty(0, np.float32)


def heldout_report(network: torch.nn.Module, pool: PoolAlerts, split: SourceSplit, draws: int = 1000,
                   recall: float = 0.95) -> dict[str, Any]:
    """Threshold from validation (recall of teacher-real), then figures on the held-out sources
    against braai d6_m7 (= drb) and d6_m9, overall and per source."""
    validation = split.validation[np.isfinite(pool.teacher[split.validation])]
    val_scores = score_inputs(network, pool.realbogus_inputs[validation])
    val_real = pool.teacher[validation] >= 0.5
    threshold = threshold_at_recall(val_scores, val_real, recall)
    test = pool.subset(split.test)
    scores = score_inputs(network, test.realbogus_inputs)
    return {
        "threshold": threshold,
        "threshold_rule": f"highest threshold keeping {recall:.2f} of teacher-real validation alerts "
                          f"({int(val_real.sum())} of {len(val_real)} validation alerts teacher-real)",
        "vs_braai_d6_m7": dict(figures_by_source(scores, test.teacher, test.object_id, test.source, threshold, draws)),
        "vs_braai_d6_m9": figures_by_source(scores, test.teacher_m9, test.object_id, test.source, threshold, draws)["all"],
        "at_0_5": figures_by_source(scores, test.teacher, test.object_id, test.source, 0.5, draws)["all"],
    }


def save_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    return replace(config, epochs=epochs)
