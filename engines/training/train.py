"""The training loop: seeded, resumable, bounded, and it writes what it did beside the weights.

``train_network`` takes raw examples plus a ``to_input`` function (raw batch -> model input
tensor, the same preprocessing the service runs), so training never sees a differently
normalised input than inference. Per epoch: a shuffled pass (tqdm bar), validation loss and
accuracy, a checkpoint (model, optimiser, epoch, RNG states, history) for ``--resume``. The
best-validation weights are kept; training stops after ``patience`` epochs without a better
validation loss or when ``max_minutes`` is spent.

Batch-norm statistics: before each validation the running mean / variance of every BatchNorm
layer are recomputed as a plain average over the first ``bn_recalibration_examples`` training
examples with the epoch's final weights (no gradient, dropout off, no RNG draw). The running
averages that training leaves (momentum 0.1) lag weights that Adam keeps moving and were far
from the batch statistics: IICnet at epoch 6 of a 1.1.0 trial scored 57 % in eval mode on
training examples it fitted at 91 % with batch statistics (50 % -> 71 % on validation after
recomputing). Validation, early stopping and the saved weights all use the recomputed values;
networks without BatchNorm are unaffected.

Outputs in ``out_dir``: ``<model>.pt`` (state dict of the inference network, float32),
``<model>.train.json`` (config, data hashes, versions, history), ``checkpoint.pt``.
"""
from __future__ import annotations

import hashlib
import json
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from torch import nn

from engines.training.ztf_files import TrainingDataError

__all__ = ["TrainConfig", "TrainingData", "TrainResult", "EpochProgress", "resume_progress", "run_epochs", "train_network",
           "recalibrate_batch_norm", "LR_SCHEDULES",
           "serving_state_dict", "set_seed", "init_network", "dihedral_augment", "dihedral_turn", "balanced_class_weights",
           "class_weight_tensor", "array_sha256", "batches", "evaluate_loss", "make_optimizer", "prepare_run", "stop_reason", "budget_seconds",
           "write_training_record"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run; written beside the weights."""

    model: str
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"
    dropout: float = 0.0
    patience: int = 3
    max_minutes: float | None = None
    lr_halve_epoch: int | None = None      # IICnet's schedule: halve the lr after this epoch
    optimizer: str = "adam"                # "adam" or "sgd"
    threads: int = 2
    network_kwargs: dict[str, Any] = field(default_factory=dict)
    bn_recalibration_examples: int = 2048  # 0: keep the running averages training leaves
    class_weights: tuple[float, ...] | None = None   # loss weight per class (imbalanced sets)
    init_from: str | None = None           # state-dict file to start from (fine-tuning); see init_network
    max_cpu_minutes: float | None = None   # budget in process CPU time (all threads); see engines/training/schedule.py
    lr_schedule: str = "constant"          # "constant" or "cosine" (over the epochs the budget affords)
    budget_patience: bool = False          # patience = max(patience, a fraction of the epochs the budget affords)
    augment: bool = False                  # training batches through augment.StampAugment (train_network)


@dataclass(frozen=True)
class TrainingData:
    """Raw examples (whatever ``to_input`` takes) with labels, split in two.

    Labels are class indices (N,), or float class probabilities (N, K) for soft targets
    (distillation from a teacher model's scores); the loss is cross-entropy either way."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    class_names: tuple[str, ...]
    description: dict[str, Any] = field(default_factory=dict)   # data hashes, generators, split


@dataclass(frozen=True)
class TrainResult:
    weights_path: Path
    record_path: Path
    checkpoint_path: Path
    best_epoch: int
    best_val_loss: float
    history: tuple[dict[str, float], ...]
    stopped_because: str


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def array_sha256(*arrays: np.ndarray) -> str:
    """A content hash of arrays (bytes, shape and dtype), for the training record."""
    digest = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array)
        digest.update(str((a.shape, a.dtype.str)).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def serving_state_dict(trained: nn.Module, serving: nn.Module) -> dict[str, torch.Tensor]:
    """The trained tensors under the serving network's names.

    Training variants add dropout layers, which can shift ``nn.Sequential`` indices; the
    parameters and buffers are the same in the same order, so they are matched by position
    and shape (a mismatch raises)."""
    trained_items = list(trained.state_dict().items())
    serving_items = list(serving.state_dict().items())
    if len(trained_items) != len(serving_items):
        raise TrainingDataError(f"trained network has {len(trained_items)} tensors, serving {len(serving_items)}")
    out = {}
    for (t_name, t_value), (s_name, s_value) in zip(trained_items, serving_items, strict=True):
        if t_value.shape != s_value.shape:
            raise TrainingDataError(f"tensor {t_name} {tuple(t_value.shape)} does not match {s_name} {tuple(s_value.shape)}")
        out[s_name] = t_value.detach().to("cpu", torch.float32 if t_value.is_floating_point() else t_value.dtype).clone()
    return out


def make_optimizer(parameters, config: TrainConfig) -> torch.optim.Optimizer:
    """``config.optimizer``: "sgd" (momentum 0.9) or "adam", with ``config.lr`` and weight decay."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    raise TrainingDataError(f"unknown optimizer {config.optimizer!r} (sgd or adam)")


def prepare_run(data: TrainingData, config: TrainConfig, out_dir: Path) -> torch.device:
    """Checks and settings every training run starts with: data on both sides, the output
    folder, CPU threads, the device (CUDA asked for must exist), the seeds. Returns the device."""
    if len(data.train_y) == 0 or len(data.val_y) == 0:
        raise TrainingDataError(f"need training and validation examples, got {len(data.train_y)} and {len(data.val_y)}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, config.threads))
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingDataError("--device cuda asked for, but torch sees no CUDA device")
    if config.lr_schedule not in LR_SCHEDULES:
        raise TrainingDataError(f"unknown lr schedule {config.lr_schedule!r} ({' or '.join(LR_SCHEDULES)})")
    set_seed(config.seed)
    return device


#: learning-rate schedules (TrainConfig.lr_schedule); "cosine" is engines/training/schedule.py's
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")


def stop_reason(config: TrainConfig, epoch: int, best_epoch: int, started: float, cpu_started: float | None = None,
                planned: int | None = None) -> str | None:
    """Why training stops after (0-based) ``epoch``, or None to go on: patience (in epochs of
    the budget's plan with ``config.budget_patience``), the cosine schedule's ``planned`` epochs
    done, or a time budget (wall since ``started``, process CPU since ``cpu_started``)."""
    from engines.training.schedule import budget_patience

    patience = budget_patience(planned, config.patience) if config.budget_patience and planned else config.patience
    if epoch + 1 - best_epoch >= patience:
        return f"no better validation loss for {patience} epochs"
    if config.lr_schedule == "cosine" and planned is not None and epoch + 1 >= planned:
        return f"cosine schedule of {planned} epochs done"
    if config.max_minutes is not None and (time.monotonic() - started) / 60 >= config.max_minutes:
        return f"time budget of {config.max_minutes} min spent"
    if (config.max_cpu_minutes is not None and cpu_started is not None
            and (time.process_time() - cpu_started) / 60 >= config.max_cpu_minutes):
        return f"CPU budget of {config.max_cpu_minutes} CPU min spent"
    return None


def budget_seconds(config: TrainConfig) -> float | None:
    """The run's budget in seconds of its clock (CPU when ``max_cpu_minutes`` is set, else wall)."""
    if config.max_cpu_minutes is not None:
        return 60 * config.max_cpu_minutes
    return 60 * config.max_minutes if config.max_minutes is not None else None


def write_training_record(config: TrainConfig, data: TrainingData, history: list[dict[str, float]], best_epoch: int,
                          best_val_loss: float, stopped_because: str, weights_path: Path,
                          extra: dict[str, Any] | None = None) -> Path:
    """``<model>.train.json`` beside the weights: config, data hashes, history, versions, weights sha256."""
    record = {
        "model": config.model,
        "config": asdict(config),
        "class_names": list(data.class_names),
        "data": {**data.description, "train_examples": int(len(data.train_y)), "val_examples": int(len(data.val_y)),
                 "train_sha256": array_sha256(data.train_x, data.train_y), "val_sha256": array_sha256(data.val_x, data.val_y)},
        "history": history,
        "best_epoch": best_epoch,
        "best_val_loss": best_val_loss,
        "stopped_because": stopped_because,
        "weights_file": weights_path.name,
        "weights_sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        **(extra or {}),
    }
    record_path = weights_path.parent / f"{config.model}.train.json"
    record_path.write_text(json.dumps(record, indent=2, default=str))
    return record_path


def batches(n: int, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def class_weight_tensor(config: TrainConfig, device: torch.device) -> torch.Tensor | None:
    """``config.class_weights`` as the loss's weight tensor (None: every class weighs 1)."""
    if not config.class_weights:
        return None
    return torch.tensor(config.class_weights, dtype=torch.float32, device=device)


def balanced_class_weights(labels: np.ndarray, classes: int) -> tuple[float, ...]:
    """Weights n / (classes x n_c) per class (scikit-learn's "balanced"); an absent class gets 0.
    Soft (N, K) labels count their probability mass."""
    counts = labels.sum(axis=0) if labels.ndim == 2 else np.bincount(labels, minlength=classes)[:classes]
    total = float(np.sum(counts))
    return tuple(float(total / (classes * c)) if c > 0 else 0.0 for c in counts)


def evaluate_loss(network: nn.Module, x: np.ndarray, y: np.ndarray, to_input: Callable[[np.ndarray], torch.Tensor],
                   batch_size: int, device: torch.device, weight: torch.Tensor | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (argmax against the hard or the most probable soft label)."""
    network.eval()
    loss_fn = nn.CrossEntropyLoss(weight=weight, reduction="sum")
    total_loss, correct = 0.0, 0
    with torch.inference_mode():
        for idx in batches(len(y), batch_size, None):
            logits = network(to_input(x[idx]).to(device))
            target = torch.from_numpy(y[idx]).to(device)
            total_loss += float(loss_fn(logits, target))
            hard = target.argmax(1) if target.ndim == 2 else target
            correct += int((logits.argmax(1) == hard).sum())
    return total_loss / max(len(y), 1), correct / max(len(y), 1)


def dihedral_augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each (N, C, H, W) example turned by one of the 8 rotations / reflections of the square,
    drawn from ``rng`` (stamps have no preferred orientation on the sky)."""
    choice = rng.integers(0, 8, len(x))
    out = x.clone()
    for k in range(8):
        idx = torch.from_numpy(np.flatnonzero(choice == k))
        if len(idx) == 0:
            continue
        out[idx] = dihedral_turn(x[idx], k)
    return out


def dihedral_turn(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, H, W) turned by the k-th of the square's 8 turns: k % 4 quarter turns, then a
    left-right flip for k >= 4 (:func:`dihedral_augment` draws k per example)."""
    out = torch.rot90(x, k % 4, dims=(2, 3))
    return torch.flip(out, dims=(3,)) if k >= 4 else out


def init_network(network: nn.Module, path: str | Path) -> list[str]:
    """Load the tensors of the state dict at ``path`` whose names and shapes match (fine-tuning
    from shipped weights); the others (an output layer of another class count) keep their fresh
    initialisation. Returns the names left fresh; raises when nothing matches."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = network.state_dict()
    taken = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not taken:
        raise TrainingDataError(f"--init-from {path}: no tensor matches this network (another architecture?)")
    own.update(taken)
    network.load_state_dict(own)
    return sorted(set(own) - set(taken))


def recalibrate_batch_norm(network: nn.Module, x: np.ndarray, to_input: Callable[[np.ndarray], torch.Tensor],
                           batch_size: int, device: torch.device) -> int:
    """Recompute every BatchNorm layer's running statistics as the average over ``x``.

    Only the BatchNorm layers run in training mode (dropout stays off, so no RNG is drawn);
    returns how many layers were reset (0: nothing to do). The network is left in eval mode.
    """
    layers = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers or len(x) == 0:
        return 0
    momenta = [layer.momentum for layer in layers]
    network.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None            # cumulative (equal-weight) average over the batches
        layer.train()
    try:
        with torch.no_grad():
            for idx in batches(len(x), batch_size, None):
                network(to_input(x[idx]).to(device))
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        network.eval()
    return len(layers)


@dataclass
class EpochProgress:
    """Where a run stands between epochs (what a checkpoint holds beside the weights and optimiser)."""

    history: list[dict[str, float]] = field(default_factory=list)
    start_epoch: int = 0
    best_val_loss: float = float("inf")
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int = -1
    #: epochs the budget affords (set after the first epoch; the cosine's length, patience's unit)
    planned_epochs: int | None = None


def resume_progress(checkpoint: dict[str, Any], optimizer: torch.optim.Optimizer, rng: np.random.Generator) -> EpochProgress:
    """Restore the optimiser and both RNGs from ``checkpoint``; the run's progress to go on from."""
    optimizer.load_state_dict(checkpoint["optimizer"])
    rng.bit_generator.state = checkpoint["numpy_rng"]
    torch.set_rng_state(checkpoint["torch_rng"])
    return EpochProgress(history=list(checkpoint["history"]), start_epoch=int(checkpoint["epoch"]) + 1,
                         best_val_loss=float(checkpoint["best_val_loss"]), best_state=checkpoint["best_state"],
                         best_epoch=int(checkpoint["best_epoch"]), planned_epochs=checkpoint.get("planned_epochs"))


def run_epochs(
    config: TrainConfig,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    state: EpochProgress,
    *,
    examples: int,
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    validate: Callable[[], tuple[float, float]],
    snapshot: Callable[[], dict[str, torch.Tensor]],
    checkpoint: Callable[[], dict[str, Any]],
    checkpoint_path: Path,
    label: str,
    nan_hint: str,
    progress: bool = True,
    log_fields: dict[str, Any] | None = None,
    halve_lr_at: int | None = None,
) -> str:
    """The epoch loop of :func:`train_network` and the head route (:mod:`engines.training.head`).

    Per epoch (from ``state.start_epoch``): the lr halved at ``halve_lr_at``; a shuffled pass
    over ``examples`` training rows (``batch_loss(indices)``: the loss of one batch; tqdm bar);
    ``validate()`` -> (loss, accuracy); ``snapshot()`` kept when the validation loss is the best
    yet; a checkpoint (``checkpoint()``'s entries, the optimiser, both RNG states, ``state``).
    With ``config.lr_schedule == "cosine"`` the lr of every batch step follows
    :func:`engines.training.schedule.cosine_lr` over ``state.planned_epochs``, which the first
    epoch's cost and the budget decide (:func:`engines.training.schedule.planned_epochs`).
    Stops after ``config.epochs`` or at :func:`stop_reason`; returns why. ``state`` is updated."""
    from tqdm import tqdm

    from engines.training.schedule import cosine_lr, planned_epochs

    started, cpu_started = time.monotonic(), time.process_time()
    steps_per_epoch = -(-examples // config.batch_size)
    needs_plan = config.lr_schedule == "cosine" or config.budget_patience
    if needs_plan and budget_seconds(config) is None:
        state.planned_epochs = config.epochs     # no budget: --epochs is the plan (also when a resume changes it)
    for epoch in range(state.start_epoch, config.epochs):
        if halve_lr_at is not None and epoch == halve_lr_at:
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] / 2
        module.train()
        running, seen = 0.0, 0
        bar = tqdm(batches(examples, config.batch_size, rng), desc=f"{label} epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False)
        for step, idx in enumerate(bar):
            if config.lr_schedule == "cosine" and state.planned_epochs is not None:
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(epoch * steps_per_epoch + step, state.planned_epochs * steps_per_epoch,
                                            config.lr)
            loss = batch_loss(idx)
            if not torch.isfinite(loss):
                raise TrainingDataError(f"loss became {float(loss)} at epoch {epoch + 1}: {nan_hint}")
            loss.backward()
            optimizer.step()
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{running / seen:.4f}")
        val_loss, val_acc = validate()
        row = {"epoch": epoch + 1, "train_loss": running / max(seen, 1), "val_loss": val_loss, "val_accuracy": val_acc,
               "seconds": time.monotonic() - started, "cpu_seconds": time.process_time() - cpu_started,
               "lr": float(optimizer.param_groups[0]["lr"])}
        state.history.append(row)
        if needs_plan and state.planned_epochs is None:
            spent = row["cpu_seconds"] if config.max_cpu_minutes is not None else row["seconds"]
            state.planned_epochs = planned_epochs(budget_seconds(config), spent / (epoch + 1 - state.start_epoch),
                                                  config.epochs, done=epoch + 1)
            log.info("training_planned", model=config.model, epochs=state.planned_epochs,
                     seconds_per_epoch=spent / (epoch + 1 - state.start_epoch))
        log.info("epoch_done", model=config.model, **(log_fields or {}), **row)
        if val_loss < state.best_val_loss:
            state.best_val_loss, state.best_epoch = val_loss, epoch + 1
            state.best_state = snapshot()
        torch.save({"config": asdict(config), **checkpoint(), "optimizer": optimizer.state_dict(),
                    "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "history": state.history,
                    "epoch": epoch, "best_val_loss": state.best_val_loss, "best_state": state.best_state,
                    "best_epoch": state.best_epoch, "planned_epochs": state.planned_epochs}, checkpoint_path)
        reason = stop_reason(config, epoch, state.best_epoch, started, cpu_started, state.planned_epochs)
        if reason:
            return reason
    return "epochs"


def train_network(
    data: TrainingData,
    to_input: Callable[[np.ndarray], torch.Tensor],
    config: TrainConfig,
    out_dir: Path,
    resume: Path | None = None,
    progress: bool = True,
    augment: Callable[[torch.Tensor, np.random.Generator], torch.Tensor] | None = None,
    training_batch: Callable[[np.ndarray, np.random.Generator], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``data``; see the module docstring for what is written.

    ``augment`` (optional) transforms each training batch's input (never validation's), e.g.
    :func:`dihedral_augment`; without it, ``config.augment`` picks
    :class:`engines.training.augment.StampAugment`. ``training_batch`` (optional) gives a
    training batch's (inputs, targets) from its row indices and the run's RNG instead of
    ``to_input``, ``augment`` and ``data.train_y``: targets that depend on the augmented input,
    e.g. a teacher that labels the very view the network sees (distillation). Validation
    always reads ``data.val_x`` / ``data.val_y`` through ``to_input``."""
    from engines.networks import build_network

    if augment is None and config.augment:
        from engines.training.augment import StampAugment

        augment = StampAugment()

    device = prepare_run(data, config, out_dir)
    out_dir = Path(out_dir)
    train_kwargs = dict(config.network_kwargs)
    if config.dropout > 0:
        train_kwargs["dropout"] = config.dropout
    network = build_network(config.model, **train_kwargs)
    if config.init_from and resume is None:
        fresh = init_network(network, config.init_from)
        log.info("training_init_from", weights=config.init_from, fresh_tensors=fresh)
    network = network.to(device)
    optimizer = make_optimizer(network.parameters(), config)
    weight = class_weight_tensor(config, device)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    rng = np.random.default_rng(config.seed)
    state = EpochProgress()
    checkpoint_path = out_dir / "checkpoint.pt"
    if resume is not None:
        checkpoint = torch.load(resume, map_location=device, weights_only=True)  # tensors and plain data only: never unpickle code
        if checkpoint.get("config", {}).get("model") != config.model:
            raise TrainingDataError(f"checkpoint {resume} is for {checkpoint.get('config', {}).get('model')!r}, not {config.model!r}")
        network.load_state_dict(checkpoint["network"])
        state = resume_progress(checkpoint, optimizer, rng)
        log.info("training_resumed", checkpoint=str(resume), epoch=state.start_epoch)

    def batch_loss(idx: np.ndarray) -> torch.Tensor:
        if training_batch is not None:
            inputs, targets = training_batch(idx, rng)
        else:
            inputs = to_input(data.train_x[idx])
            if augment is not None:
                inputs = augment(inputs, rng)
            targets = torch.from_numpy(data.train_y[idx])
        optimizer.zero_grad(set_to_none=True)
        return loss_fn(network(inputs.to(device)), targets.to(device))

    def validate() -> tuple[float, float]:
        if config.bn_recalibration_examples > 0:
            recalibrate_batch_norm(network, data.train_x[:config.bn_recalibration_examples], to_input,
                                   config.batch_size, device)
        return evaluate_loss(network, data.val_x, data.val_y, to_input, config.batch_size, device, weight)

    stopped_because = run_epochs(
        config, network, optimizer, rng, state, examples=len(data.train_y), batch_loss=batch_loss, validate=validate,
        snapshot=lambda: {k: v.detach().cpu().clone() for k, v in network.state_dict().items()},
        checkpoint=lambda: {"network": network.state_dict()}, checkpoint_path=checkpoint_path, label=config.model,
        nan_hint="lower --lr or check the inputs", progress=progress, halve_lr_at=config.lr_halve_epoch)
    history, best_state, best_epoch, best_val_loss = state.history, state.best_state, state.best_epoch, state.best_val_loss
    if best_state is None:
        raise TrainingDataError("no epoch ran (is --epochs below the resumed epoch?)")
    network.load_state_dict(best_state)
    serving = build_network(config.model, **config.network_kwargs)
    weights_path = out_dir / f"{config.model}.pt"
    torch.save(serving_state_dict(network, serving), weights_path)
    record_path = write_training_record(config, data, history, best_epoch, best_val_loss, stopped_because, weights_path)
    log.info("training_done", model=config.model, best_epoch=best_epoch, best_val_loss=best_val_loss,
             stopped_because=stopped_because, weights=str(weights_path))
    return TrainResult(weights_path=weights_path, record_path=record_path, checkpoint_path=checkpoint_path,
                       best_epoch=best_epoch, best_val_loss=best_val_loss, history=tuple(history),
                       stopped_because=stopped_because)
