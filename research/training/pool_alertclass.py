"""The alert-class model 2.x on the real-alert pool: ACAI distilled, weak labels, the packet's
Solar-System match.

What the network learns (one IICnet body, its architecture unchanged, one output layer of
4 + 5 logits while training):

* the first four logits, :data:`PACKET_CLASS_LABELS`, a softmax trained with cross-entropy on
  the pool's ``weak_label`` (asteroid: 0 <= ssdistnr < 5"; star: a PS1 source with sgscore1 >=
  0.5 within 1.5"; galaxy_host: a PS1 source with sgscore1 < 0.5 within 5"; hostless_or_faint:
  no PS1 source within 5"), weighted by inverse class frequency; ``ambiguous`` alerts have no
  hard label;
* the last five, ACAI's heads (hosted, variable, orphan, nuclear, bogus), each a sigmoid
  trained with binary cross-entropy on ACAI's scores as soft targets (distillation) where ACAI
  scores the alert (1,240 of 2,075; :mod:`research.training.alertclass_targets`).

The network never sees ``distpsnr1`` / ``sgscore1`` (they define the labels) nor the packet's
Solar-System fields: those reach the shipped model only as the asteroid flag, after the body
(:class:`engines.networks.alertclass.PacketAlertClassNet`). The shipped weights keep the
first four rows of the output layer; the ACAI heads are a training aid only.

Split: :func:`research.training.pool_realbogus.split_by_source` (whole sources held out for the
test, their objects out of training; the rest by object 85 / 15). The epoch kept is the one with
the best validation macro recall over the stamp classes (galaxy_host, hostless_or_faint, star)
of the shipped output; the test is never looked at while training.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engines.networks.alertclass import PACKET_CLASS_LABELS, REFERENCE_SOURCE_FIELDS, PacketAlertClassNet, ReferenceAlertClassNet
from engines.networks.iicnet import IICNet
from engines.training.train import balanced_class_weights, dihedral_augment, set_seed
from research.training.alertclass_targets import ACAI_HEADS, AlertClassTargets
from research.training.pool_realbogus import SourceSplit
from research.training.stamp_augment import noise_augment, shift_augment
from research.training.ztf_pool import PoolAlerts

__all__ = ["CLASS_RULE", "DistillConfig", "STAMP_CLASSES", "alert_classes", "balanced_nll", "combine", "distillation_losses",
           "macro_recall", "predict", "reference_fields", "shipped_network", "stamp_logits", "train_alertclass"]

CLASS_RULE = ("the pool's weak_label from the alert's own candidate fields: asteroid 0 <= ssdistnr < 5\"; star "
              "distpsnr1 <= 1.5\" and sgscore1 >= 0.5; galaxy_host distpsnr1 <= 5\" and sgscore1 < 0.5; "
              "hostless_or_faint distpsnr1 > 5\"; 'ambiguous' alerts have no class")
#: the classes the stamps decide (asteroid comes from the packet)
STAMP_CLASSES: tuple[str, ...] = PACKET_CLASS_LABELS[1:]


@dataclass(frozen=True)
class DistillConfig:
    epochs: int = 12
    batch_size: int = 64
    lr: float = 5e-4
    dropout: float = 0.2
    acai_weight: float = 1.0            # weight of the distillation loss beside the class loss
    seed: int = 1
    max_minutes: float = 9.0
    max_per_class: int = 300            # each epoch draws at most this many alerts of a class (stars are 77 %)
    threads: int = 2
    init_from: str | None = None        # a state dict of the same body (alertclass 1.0.0, or a 2.x run to go on
                                        # from): matching tensors, and a 2.x file's class rows
    balanced: bool = False              # each epoch draws max_per_class alerts of every class (with replacement
                                        # below it) instead of at most max_per_class; the class weights then ~1
    shift_px: int = 0                   # random shift of up to this many pixels (research.training.stamp_augment)
    noise_sigma: float = 0.0            # Gaussian noise, in units of each stamp's own standard deviation
    cosine: bool = False                # learning rate on a cosine from lr to 0 over the epochs the budget allows
    select_by: str = "macro_recall"     # "macro_recall" (validation macro recall over the stamp classes) or
                                        # "balanced_nll" (mean over those classes of their alerts' mean -log P(class),
                                        # every validation alert counting, less noisy with 10 galaxy hosts)


def alert_classes(pool: PoolAlerts) -> np.ndarray:
    """(N,) index into :data:`PACKET_CLASS_LABELS` from the weak label, -1 where none applies."""
    index = {name: i for i, name in enumerate(PACKET_CLASS_LABELS)}
    return np.asarray([index.get(str(w), -1) for w in pool.weak_label], dtype=np.int64)


def _training_network(config: DistillConfig) -> IICNet:
    network = IICNet(dropout=config.dropout, num_classes=len(PACKET_CLASS_LABELS) + len(ACAI_HEADS))
    if config.init_from:
        state = torch.load(config.init_from, map_location="cpu", weights_only=True)
        own = network.state_dict()
        own.update({k: v.float() for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)})
        k = len(PACKET_CLASS_LABELS)
        for name in ("classifier.5.weight", "classifier.5.bias"):   # a shipped 2.x file: its class rows
            if name in state and state[name].shape[0] == k and state[name].shape[1:] == own[name].shape[1:]:
                own[name][:k] = state[name].float()
        network.load_state_dict(own)
    return network


def shipped_network(trained: IICNet, temperature: float = 1.0) -> PacketAlertClassNet:
    """The serving network: the trained body, the output layer's class rows only."""
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    k = len(PACKET_CLASS_LABELS)
    state["classifier.5.weight"] = state["classifier.5.weight"][:k]
    state["classifier.5.bias"] = state["classifier.5.bias"][:k]
    network = PacketAlertClassNet(temperature=temperature)
    network.load_state_dict(state)
    return network.eval()


def reference_fields(pool: PoolAlerts) -> np.ndarray:
    """(N, 5) float32: the pool alerts' reference-source fields (alertclass 3.x), NaN where absent."""
    return np.stack([pool.fields[f] for f in REFERENCE_SOURCE_FIELDS], axis=1).astype(np.float32)


def stamp_logits(network: torch.nn.Module, inputs: np.ndarray, batch_size: int = 128,
                 fields: np.ndarray | None = None) -> np.ndarray:
    """(N, K) logits of the body (a training network or a shipped one) on the stamps; for a 3.x
    network given ``fields`` ((N, 5), :func:`reference_fields`), its class logits (weighted stamp
    logits plus the reference-source head's)."""
    network = network.eval()
    if fields is not None and not isinstance(network, ReferenceAlertClassNet):
        raise ValueError("reference-source fields given to a network without the head")
    body = network.stamp_logits if isinstance(network, PacketAlertClassNet) else network
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size]))
            if fields is not None:
                assert isinstance(network, ReferenceAlertClassNet)
                logits = network.class_logits(x, torch.from_numpy(np.ascontiguousarray(fields[start:start + batch_size])))
            else:
                logits = body(x)
            out.append(logits.float().numpy())
    return np.concatenate(out) if out else np.empty((0, len(PACKET_CLASS_LABELS)), np.float32)


def predict(network: torch.nn.Module, inputs: np.ndarray, known_solar_system: np.ndarray,
            temperature: float = 1.0, batch_size: int = 128) -> np.ndarray:
    """(N, 4) shipped probabilities: the asteroid column from the flag, the others from the stamps."""
    logits = stamp_logits(network, inputs, batch_size)[:, :len(PACKET_CLASS_LABELS)]
    return combine(logits, known_solar_system, temperature)


def combine(logits: np.ndarray, known_solar_system: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """What :class:`PacketAlertClassNet` computes, in numpy (for studies over stored logits)."""
    z = np.asarray(logits, dtype=np.float64)[:, 1:] / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    others = z / z.sum(axis=1, keepdims=True)
    flag = np.asarray(known_solar_system, dtype=np.float64)[:, None]
    return np.concatenate([flag, (1 - flag) * others], axis=1).astype(np.float32)


def macro_recall(probabilities: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> float:
    """Mean recall of the top class over ``classes`` (those with alerts)."""
    top = probabilities.argmax(1)
    recalls = []
    for name in classes:
        c = PACKET_CLASS_LABELS.index(name)
        if (labels == c).any():
            recalls.append(float((top[labels == c] == c).mean()))
    return float(np.mean(recalls)) if recalls else float("nan")


def balanced_nll(probabilities: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> float:
    """Mean over ``classes`` (those with alerts) of their alerts' mean -log P(true class): a
    selection score that every validation alert moves, unlike the top-class recall."""
    values = []
    for name in classes:
        c = PACKET_CLASS_LABELS.index(name)
        if (labels == c).any():
            values.append(float(-np.log(np.clip(probabilities[labels == c, c], 1e-7, 1.0)).mean()))
    return float(np.mean(values)) if values else float("nan")


def distillation_losses(out: torch.Tensor, labels: np.ndarray, acai: np.ndarray,
                        class_weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(class loss, ACAI loss) of a batch: weighted cross-entropy of the first four logits on the
    alerts with a weak label, mean binary cross-entropy of the last five against ACAI's scores on
    the alerts ACAI scored (0 where a batch has none)."""
    k = len(PACKET_CLASS_LABELS)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    hard = y >= 0
    class_loss = F.cross_entropy(out[hard, :k], y[hard], weight=class_weights) if hard.any() else out.sum() * 0
    scored = torch.from_numpy(np.isfinite(acai).all(axis=1))
    if scored.any():
        teacher = torch.from_numpy(np.asarray(acai, dtype=np.float32)[scored.numpy()])
        acai_loss = F.binary_cross_entropy_with_logits(out[scored, k:], teacher)
    else:
        acai_loss = out.sum() * 0
    return class_loss, acai_loss


def _epoch_sample(train: np.ndarray, labels: np.ndarray, max_per_class: int,
                  rng: np.random.Generator, balanced: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's alerts: every alert of a class up to ``max_per_class`` (a random draw above;
    ``balanced``: exactly ``max_per_class``, drawn with replacement where a class has fewer),
    and every alert without a class (ACAI targets only); returns (indices, their class labels)."""
    parts = [train[labels[train] < 0]]
    for c in range(len(PACKET_CLASS_LABELS)):
        members = train[labels[train] == c]
        if balanced and 0 < len(members) < max_per_class:
            parts.append(rng.choice(members, max_per_class, replace=True))
        else:
            parts.append(rng.choice(members, max_per_class, replace=False) if len(members) > max_per_class else members)
    chosen = np.concatenate(parts)
    return chosen, labels[chosen][labels[chosen] >= 0]


def train_alertclass(pool: PoolAlerts, targets: AlertClassTargets, split: SourceSplit, config: DistillConfig,
                     out_dir: Path) -> dict[str, Any]:
    """Train; writes ``alertclass.pt`` (the shipped network's state, float32) and
    ``alertclass.train.json`` (config, data, history) in ``out_dir``; returns the record."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    set_seed(config.seed)
    labels = alert_classes(pool)
    acai = targets.acai
    has_acai = np.isfinite(acai).all(axis=1)
    train = split.train[(labels[split.train] >= 0) | has_acai[split.train]]
    validation = split.validation[labels[split.validation] >= 0]
    rng = np.random.default_rng(config.seed)
    if config.select_by not in ("macro_recall", "balanced_nll"):
        raise ValueError(f"select_by must be 'macro_recall' or 'balanced_nll', not {config.select_by!r}")
    weights = torch.tensor(balanced_class_weights(_epoch_sample(train, labels, config.max_per_class, rng,
                                                                config.balanced)[1],
                                                  len(PACKET_CLASS_LABELS)), dtype=torch.float32)
    network = _training_network(config)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    x_all = pool.arcsec_inputs
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    started = time.monotonic()
    stopped = f"{config.epochs} epochs"
    planned = config.epochs
    for epoch in range(1, config.epochs + 1):
        if config.cosine:
            # the cosine runs over the epochs the budget allows (re-estimated from the epochs so far)
            if epoch > 1:
                per_epoch = (time.monotonic() - started) / 60 / (epoch - 1)
                planned = max(epoch, min(config.epochs, int(config.max_minutes / per_epoch)))
            for group in optimizer.param_groups:
                group["lr"] = config.lr * 0.5 * (1 + np.cos(np.pi * (epoch - 1) / planned))
        network.train()
        order = rng.permutation(_epoch_sample(train, labels, config.max_per_class, rng, config.balanced)[0])
        class_loss_sum = acai_loss_sum = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            x = dihedral_augment(torch.from_numpy(np.ascontiguousarray(x_all[idx])), rng)
            x = noise_augment(shift_augment(x, rng, config.shift_px), rng, config.noise_sigma)
            out = network(x)
            class_loss, acai_loss = distillation_losses(out, labels[idx], acai[idx], weights)
            loss = class_loss + config.acai_weight * acai_loss
            n_class, n_acai = int((labels[idx] >= 0).sum()), int(has_acai[idx].sum())
            class_loss_sum += float(class_loss.detach()) * n_class
            acai_loss_sum += float(acai_loss.detach()) * n_acai
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        probabilities = predict(network, x_all[validation], targets.known_solar_system[validation])
        val_recall = macro_recall(probabilities, labels[validation], STAMP_CLASSES)
        val_nll = balanced_nll(probabilities, labels[validation], STAMP_CLASSES)
        score = val_recall if config.select_by == "macro_recall" else -val_nll
        row = {"epoch": epoch, "class_loss": class_loss_sum / max(1, int((labels[order] >= 0).sum())),
               "acai_loss": acai_loss_sum / max(1, int(has_acai[order].sum())), "val_macro_recall_stamp_classes": val_recall,
               "val_balanced_nll_stamp_classes": val_nll, "lr": optimizer.param_groups[0]["lr"],
               "minutes": round((time.monotonic() - started) / 60, 2)}
        history.append(row)
        print(json.dumps(row), flush=True)
        if best is None or score > best[0]:
            best = (score, epoch, {n: t.detach().clone() for n, t in network.state_dict().items()})
        elapsed = (time.monotonic() - started) / 60
        if elapsed * (epoch + 1) / epoch > config.max_minutes:
            stopped = f"time budget of {config.max_minutes} min would be spent by another epoch"
            break
    assert best is not None
    network.load_state_dict(best[2])
    torch.save(shipped_network(network).state_dict(), out_dir / "alertclass.pt")
    torch.save(network.state_dict(), out_dir / "alertclass.training.pt")     # with the ACAI heads, to go on from
    chosen = history[best[1] - 1]
    record = {"config": asdict(config), "best_epoch": best[1],
              "best_val_macro_recall_stamp_classes": chosen["val_macro_recall_stamp_classes"],
              "best_val_balanced_nll_stamp_classes": chosen["val_balanced_nll_stamp_classes"],
              "stopped_because": stopped, "history": history, "class_rule": CLASS_RULE,
              "train_alerts": len(train), "train_with_class": int((labels[train] >= 0).sum()),
              "train_with_acai": int(has_acai[train].sum()), "validation_alerts": len(validation),
              "train_per_class": {c: int((labels[train] == i).sum()) for i, c in enumerate(PACKET_CLASS_LABELS)},
              "class_weights": [round(float(w), 4) for w in weights],
              "heldout_sources": list(split.heldout_sources),
              "train_sources": pool.subset(train).counts()["per_source"],
              "train_seconds": round(time.monotonic() - started, 1)}
    (out_dir / "alertclass.train.json").write_text(json.dumps(record, indent=2))
    return record
