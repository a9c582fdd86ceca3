"""Train only the head of a seeded network, on features of its frozen prefix: the CPU route for
HR-CelestialNet.

Why: one forward + backward pass of HR-CelestialNet at binning 4 costs ~16 s per frame on the
two CPU cores here, and its 97 M parameters (388 MB) cannot ship in the repository. Most of that
cost is in the first conv layers on the large maps; most of the size is in the dense layers. So:

1. the network starts as ``torch.manual_seed(init_seed)`` + default initialisation (the shipped
   file then needs to hold only what training changed: :mod:`engines.networks.delta_weights`);
2. every BatchNorm layer's running statistics are recomputed over ``calibration_examples``
   training inputs (:func:`engines.training.train.recalibrate_batch_norm`), so the frozen
   random layers see normalised inputs;
3. the *prefix* (every layer before the last ``blocks`` pooled conv blocks) stays frozen: it
   runs once per example, forward only, and its output maps are kept in memory;
4. the *head* (those ``blocks`` conv blocks and the dense layers) trains on the kept maps:
   BatchNorm scales and shifts, every bias and the output layer in full; each other conv and
   dense weight through a rank-``rank`` update (LoRA) on its seeded value. Head BatchNorm
   statistics are recomputed after every epoch; the best-validation epoch is kept;
5. the shipped file is the delta: trained tensors, low-rank factors, every BatchNorm statistic.

The prefix maps and the calibrated statistics are kept in ``OUT/prefix-maps-<key>.pt`` (keyed by
the data, seed, plan and torch version): a rerun with other head settings skips the forward passes.

What this means for a card: the network is HR-CelestialNet's architecture, parameter for
parameter, but its early layers are random filters, not learnt ones, and the learnt part is a
low-rank change of random dense layers. It is what two CPU cores can train; a GPU host trains
the whole network with ``train`` (no ``--head-blocks``).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import structlog
import torch
from torch import nn
from torch.nn.utils import parametrize

from engines.networks import load_weights, seeded_network
from engines.networks.delta_weights import LowRankDelta, delta_state_dict
from engines.training.train import (
    EpochProgress,
    TrainConfig,
    TrainingData,
    TrainResult,
    array_sha256,
    batches,
    evaluate_loss,
    make_optimizer,
    prepare_run,
    recalibrate_batch_norm,
    resume_progress,
    run_epochs,
    write_training_record,
)
from engines.training.ztf_files import TrainingDataError

__all__ = ["HeadPlan", "split_network", "train_head"]

log = structlog.get_logger(__name__)

_BATCH_NORM = nn.modules.batchnorm._BatchNorm


@dataclass(frozen=True)
class HeadPlan:
    """What is trained: the last ``blocks`` pooled conv blocks + the dense layers."""

    init_seed: int
    blocks: int = 2
    rank: int = 8
    calibration_examples: int = 48
    prefix_batch: int = 2


def split_network(network: nn.Module, blocks: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(prefix, head) sharing the network's modules: the head is the last ``blocks`` pooled conv
    blocks of ``network.features`` plus ``network.classifier``."""
    features = getattr(network, "features", None)
    classifier = getattr(network, "classifier", None)
    if not isinstance(features, nn.Sequential) or classifier is None:
        raise TrainingDataError(f"{type(network).__name__} has no features/classifier to split")
    pools = [i for i, m in enumerate(features) if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    if not 1 <= blocks < len(pools):
        raise TrainingDataError(f"--head-blocks must be 1..{len(pools) - 1} for {type(network).__name__}, not {blocks}")
    cut = pools[-(blocks + 1)] + 1
    return features[:cut], nn.Sequential(features[cut:], classifier)


def _prefix_maps(prefix: nn.Module, x: np.ndarray, to_input: Callable[[np.ndarray], torch.Tensor], batch: int,
                 device: torch.device, desc: str, progress: bool) -> torch.Tensor:
    from tqdm import tqdm

    out = []
    with torch.inference_mode():
        for idx in tqdm(batches(len(x), batch, None), desc=desc, disable=not progress, leave=False):
            out.append(prefix(to_input(x[idx]).to(device)).cpu())
    return torch.cat(out) if out else torch.empty(0)


def _maps_key(data: TrainingData, config: TrainConfig, plan: HeadPlan, base_sha256: str) -> str:
    """What the frozen prefix's output maps depend on, hashed."""
    parts = [array_sha256(data.train_x, data.val_x), base_sha256, repr(sorted(config.network_kwargs.items())),
             repr((plan.blocks, plan.calibration_examples, plan.prefix_batch)), torch.__version__]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _make_trainable(network: nn.Module, head: nn.Module, rank: int, seed: int) -> tuple[list[nn.Parameter], list[str]]:
    """Freeze everything, then open the head: low-rank updates on its conv/dense weights (the
    output layer whole), scales, shifts and biases whole. Returns (parameters, names shipped whole)."""
    for p in network.parameters():
        p.requires_grad_(False)
    head_modules = {id(m) for m in head.modules()}
    weighted = [m for m in head.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    output_layer = weighted[-1]
    generator = torch.Generator().manual_seed(seed)
    trainable: list[nn.Parameter] = []
    full: list[str] = []
    for name, module in network.named_modules():
        in_head = id(module) in head_modules
        if isinstance(module, _BATCH_NORM):
            full += [f"{name}.running_mean", f"{name}.running_var", f"{name}.num_batches_tracked"]
        if not in_head:
            continue
        if isinstance(module, _BATCH_NORM) or module is output_layer:
            module.weight.requires_grad_(True)
            module.bias.requires_grad_(True)
            trainable += [module.weight, module.bias]
            full += [f"{name}.weight", f"{name}.bias"]
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            module.bias.requires_grad_(True)
            trainable.append(module.bias)
            full.append(f"{name}.bias")
            parametrize.register_parametrization(module, "weight", LowRankDelta(module.weight, rank, generator=generator))
            lora = module.parametrizations.weight[0]
            trainable += [lora.lora_a, lora.lora_b]
    return trainable, sorted(set(full))


def train_head(
    data: TrainingData,
    to_input: Callable[[np.ndarray], torch.Tensor],
    config: TrainConfig,
    plan: HeadPlan,
    out_dir: Path,
    resume: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train the head of ``config.model`` seeded with ``plan.init_seed``; see the module docstring."""
    from engines.registry import state_sha256

    device = prepare_run(data, config, out_dir)
    out_dir = Path(out_dir)
    network = seeded_network(config.model, plan.init_seed, **config.network_kwargs).to(device)
    base_sha256 = state_sha256(network.state_dict())
    prefix, head = split_network(network, plan.blocks)
    calibration = data.train_x[:plan.calibration_examples]
    cache_path = out_dir / f"prefix-maps-{_maps_key(data, config, plan, base_sha256)[:16]}.pt"
    if cache_path.is_file():
        # The frozen part's output depends only on the data, the seed and the plan: a rerun with
        # other head settings (lr, rank, epochs) reuses it instead of hours of forward passes.
        cached = torch.load(cache_path, map_location="cpu", weights_only=True)
        with torch.no_grad():
            for name, tensor in cached["batch_norm"].items():
                network.get_buffer(name).copy_(tensor)
        train_maps, val_maps = cached["train_maps"], cached["val_maps"]
        log.info("head_prefix_maps_reused", path=str(cache_path), train=len(train_maps), validation=len(val_maps))
    else:
        log.info("head_calibrating_batch_norm", model=config.model, examples=len(calibration))
        recalibrate_batch_norm(network, calibration, to_input, plan.prefix_batch, device)
        train_maps = _prefix_maps(prefix, data.train_x, to_input, plan.prefix_batch, device, "prefix (train)", progress)
        val_maps = _prefix_maps(prefix, data.val_x, to_input, plan.prefix_batch, device, "prefix (validation)", progress)
        batch_norm = {name: b.detach().cpu().clone() for name, b in network.named_buffers()
                      if ".running_" in name or name.endswith("num_batches_tracked")}
        torch.save({"batch_norm": batch_norm, "train_maps": train_maps, "val_maps": val_maps}, cache_path)
    network_parameters = sum(p.numel() for p in network.parameters())
    trainable, full = _make_trainable(network, head, plan.rank, config.seed)
    trained_count = sum(p.numel() for p in trainable)
    optimizer = make_optimizer(trainable, config)
    identity = lambda maps: maps
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(config.seed)
    state = EpochProgress()
    checkpoint_path = out_dir / "checkpoint.pt"
    if resume is not None:
        checkpoint = torch.load(resume, map_location=device, weights_only=True)  # tensors and plain data only: never unpickle code
        if checkpoint.get("config", {}).get("model") != config.model or checkpoint.get("plan") != asdict(plan):
            raise TrainingDataError(f"checkpoint {resume} is not a head run of {config.model} with this plan")
        head.load_state_dict(checkpoint["head"], strict=False)
        state = resume_progress(checkpoint, optimizer, rng)
    train_y = torch.from_numpy(data.train_y)

    def batch_loss(idx: np.ndarray) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        return loss_fn(head(train_maps[idx].to(device)), train_y[idx].to(device))

    def validate() -> tuple[float, float]:
        recalibrate_batch_norm(head, train_maps, identity, config.batch_size, device)
        return evaluate_loss(head, val_maps, data.val_y, identity, config.batch_size, device)

    stopped_because = run_epochs(
        config, head, optimizer, rng, state, examples=len(train_y), batch_loss=batch_loss, validate=validate,
        snapshot=lambda: _trained_state(head), checkpoint=lambda: {"plan": asdict(plan), "head": _trained_state(head)},
        checkpoint_path=checkpoint_path, label=f"{config.model} head", nan_hint="lower --lr", progress=progress,
        log_fields={"head_blocks": plan.blocks})
    history, best_state, best_epoch, best_val_loss = state.history, state.best_state, state.best_epoch, state.best_val_loss
    if best_state is None:
        raise TrainingDataError("no epoch ran (is --epochs below the resumed epoch?)")
    head.load_state_dict(best_state, strict=False)
    head.eval()
    weights_path = out_dir / f"{config.model}.pt"
    torch.save(delta_state_dict(network, plan.init_seed, full), weights_path)
    _check_delta_reproduces_head(config, weights_path, head, val_maps[:4], plan.blocks)
    record_path = write_training_record(
        config, data, history, best_epoch, best_val_loss, stopped_because, weights_path,
        extra={"head": {**asdict(plan), "trained_parameters": trained_count,
                        "network_parameters": network_parameters,
                        "base_sha256": base_sha256, "calibration_examples": len(calibration),
                        "weights_format": "delta over seeded base (engines.networks.delta_weights)"}})
    log.info("training_done", model=config.model, head_blocks=plan.blocks, trained_parameters=trained_count,
             best_epoch=best_epoch, best_val_loss=best_val_loss, stopped_because=stopped_because, weights=str(weights_path))
    return TrainResult(weights_path=weights_path, record_path=record_path, checkpoint_path=checkpoint_path,
                       best_epoch=best_epoch, best_val_loss=best_val_loss, history=tuple(history),
                       stopped_because=stopped_because)


def _trained_state(head: nn.Module) -> dict[str, torch.Tensor]:
    """What training changes in the head (trainable parameters and BatchNorm buffers), not the
    frozen seeded weights, which the seed rebuilds."""
    trainable = {name for name, p in head.named_parameters() if p.requires_grad}
    buffers = {name for name, _ in head.named_buffers()}
    return {k: v.detach().cpu().clone() for k, v in head.state_dict().items() if k in trainable | buffers}


def _check_delta_reproduces_head(config: TrainConfig, weights_path: Path, head: nn.Module, maps: torch.Tensor,
                                 blocks: int) -> None:
    """The saved delta, merged into a fresh seeded network, must give the trained head's logits."""
    merged = load_weights(config.model, weights_path, **config.network_kwargs)
    _, merged_head = split_network(merged, blocks)
    with torch.inference_mode():
        expected = head(maps.to(next(head.parameters()).device)).cpu()
        got = merged_head(maps).cpu()
    if not torch.allclose(got, expected, atol=1e-3, rtol=1e-3):
        raise TrainingDataError(f"the delta file {weights_path} does not reproduce the trained head "
                                f"(max difference {float((got - expected).abs().max()):.3g})")
