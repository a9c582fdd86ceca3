"""The alert-class model 3.x: alertclass 2.x's body kept as shipped, a head on the packet's
nearest reference-image source fitted beside it.

Why: on the held-out sources 2.x's stamps recall galaxy hosts 0.50 and stars 0.64. ZTF's packet
describes the nearest source in ZTF's own reference image (``distnr``, ``magnr``, ``sigmagnr``,
``chinr``, ``sharpnr``: the PSF catalogue of the image the template stamp is cut from), which is
what tells a variable star (a bright point source under the alert) from a transient on a galaxy.
These are not the fields the weak labels are made of (PS1's ``distpsnr1`` / ``sgscore1``), but
they look at the same sky: agreement with the labels is partly two catalogues agreeing, which
the report says beside every figure.

What is fitted (seconds, full batch): :class:`engines.networks.alertclass.ReferenceSourceHead`
(standardised on the training alerts, ``5 -> hidden -> 3``) on the training alerts of the three
stamp classes, cross-entropy weighted by inverse class frequency, with ``w`` x the frozen body's
stamp logits added, for each ``w`` of a grid; the ``w`` kept is the one with the lowest
validation balanced NLL (:func:`research.training.pool_alertclass.balanced_nll`). The test
sources are never looked at. Alerts whose packet lacks a field are left out (the shipped model
does not score them: ``engines.preprocess.reference_source_applies``).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engines.networks.alertclass import PACKET_CLASS_LABELS, PacketAlertClassNet, ReferenceAlertClassNet, ReferenceSourceHead
from engines.training.train import set_seed
from research.training.alertclass_targets import AlertClassTargets
from research.training.pool_alertclass import (
    CLASS_RULE,
    STAMP_CLASSES,
    alert_classes,
    balanced_nll,
    combine,
    macro_recall,
    reference_fields,
    stamp_logits,
)
from research.training.pool_realbogus import SourceSplit
from research.training.ztf_pool import PoolAlerts

__all__ = ["ReferenceConfig", "fit_head", "fit_reference_model", "load_body"]


@dataclass(frozen=True)
class ReferenceConfig:
    body: str = "engines/weights/alertclass-2.0.0-pool-distilled.pt"   # the 2.x body, kept as it is
    stamp_weights: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0)      # the grid for w, chosen on validation
    hidden: int = 16
    steps: int = 500
    lr: float = 1e-2
    weight_decay: float = 1e-2
    seed: int = 0


def load_body(path: Path | str) -> PacketAlertClassNet:
    """The 2.x network whose body 3.x keeps (float32, eval mode)."""
    network = PacketAlertClassNet()
    state = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict({k: v.float() for k, v in state.items()})
    return network.eval()


def fit_head(fields: np.ndarray, logits: np.ndarray, labels: np.ndarray, stamp_weight: float,
             config: ReferenceConfig, seed: int | None = None) -> ReferenceSourceHead:
    """The head on (N, 5) raw ``fields`` with ``stamp_weight`` x the body's stamp-class ``logits``
    (N, 3) added; ``labels`` (N,) in 0..2 (galaxy_host, hostless_or_faint, star)."""
    set_seed(config.seed if seed is None else seed)
    head = ReferenceSourceHead(config.hidden)
    x = torch.from_numpy(np.asarray(fields, dtype=np.float32))
    with torch.no_grad():
        z = head.transform(x)
        head.mean.copy_(z.mean(0))
        head.std.copy_(z.std(0).clamp(min=1e-6))
    counts = np.bincount(labels, minlength=3).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"every stamp class needs training alerts, counts {counts.tolist()}")
    weights = torch.tensor(len(labels) / (3 * counts), dtype=torch.float32)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    s = torch.from_numpy(np.asarray(logits, dtype=np.float32)) * stamp_weight
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    head.train()
    for _ in range(config.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(head(x) + s, y, weight=weights)
        loss.backward()
        optimizer.step()
    return head.eval()


def _served(head: ReferenceSourceHead, fields: np.ndarray, logits: np.ndarray, flag: np.ndarray,
            stamp_weight: float) -> np.ndarray:
    with torch.no_grad():
        z = head(torch.from_numpy(np.asarray(fields, dtype=np.float32))).numpy() + stamp_weight * logits
    return combine(np.concatenate([np.zeros((len(z), 1), np.float32), z], axis=1), flag)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fit_reference_model(pool: PoolAlerts, targets: AlertClassTargets, split: SourceSplit, config: ReferenceConfig,
                        out_dir: Path, repo: Path = Path(".")) -> dict[str, Any]:
    """Fit; writes ``alertclass.pt`` (the 3.x network's state, float32) and ``alertclass.train.json``
    in ``out_dir``; returns the record."""
    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = alert_classes(pool)
    fields = reference_fields(pool)
    usable = np.isfinite(fields).all(axis=1)
    stamp = labels >= 1                                  # the three stamp classes (asteroid is the flag)
    train = split.train[stamp[split.train] & usable[split.train]]
    validation = split.validation[stamp[split.validation] & usable[split.validation]]
    body_path = Path(config.body) if Path(config.body).is_absolute() else repo / config.body
    body = load_body(body_path)
    logits = np.zeros((len(pool), len(STAMP_CLASSES)), np.float32)
    seen = np.concatenate([train, validation])
    logits[seen] = stamp_logits(body, pool.arcsec_inputs[seen])[:, 1:]
    flag = targets.known_solar_system
    grid = []
    best: tuple[float, float, ReferenceSourceHead] | None = None
    for w in config.stamp_weights:
        head = fit_head(fields[train], logits[train], labels[train] - 1, w, config)
        p = _served(head, fields[validation], logits[validation], flag[validation], w)
        nll = balanced_nll(p, labels[validation], STAMP_CLASSES)
        grid.append({"stamp_weight": w, "val_balanced_nll_stamp_classes": nll,
                     "val_macro_recall_stamp_classes": macro_recall(p, labels[validation], STAMP_CLASSES)})
        print(json.dumps(grid[-1]), flush=True)
        if best is None or nll < best[0]:
            best = (nll, w, head)
    assert best is not None
    _, chosen_weight, head = best
    network = ReferenceAlertClassNet(stamp_weight=chosen_weight, hidden=config.hidden)
    state = {**body.state_dict(), **{f"reference.{k}": v for k, v in head.state_dict().items()}}
    network.load_state_dict(state)
    torch.save(network.state_dict(), out_dir / "alertclass.pt")
    chosen = next(row for row in grid if row["stamp_weight"] == chosen_weight)
    record = {"family": "reference", "config": asdict(config), "stamp_weight": chosen_weight,
              "best_val_macro_recall_stamp_classes": chosen["val_macro_recall_stamp_classes"],
              "best_val_balanced_nll_stamp_classes": chosen["val_balanced_nll_stamp_classes"],
              "grid": grid, "class_rule": CLASS_RULE, "body_sha256": _sha256(body_path),
              "train_alerts": len(train), "validation_alerts": len(validation),
              "left_out_missing_fields": int((~usable[split.train] & stamp[split.train]).sum()),
              "train_per_class": {c: int((labels[train] == i).sum()) for i, c in enumerate(PACKET_CLASS_LABELS) if i >= 1},
              "validation_per_class": {c: int((labels[validation] == i).sum()) for i, c in enumerate(PACKET_CLASS_LABELS) if i >= 1},
              "heldout_sources": list(split.heldout_sources),
              "train_sources": pool.subset(train).counts()["per_source"],
              "train_seconds": round(time.monotonic() - started, 1)}
    (out_dir / "alertclass.train.json").write_text(json.dumps(record, indent=2))
    return record
