"""Stamp augmentation for the pool studies beyond the dihedral turns: small shifts and noise.

* :func:`shift_augment`: each (C, H, W) example moved by up to ``max_px`` pixels in x and y,
  the edge pixels repeated into the gap (no wrap-around: a source never reappears on the other
  side); the alert's centre stays within ``max_px`` of the stamp's centre.
* :func:`noise_augment`: Gaussian noise of ``sigma`` times each example's own per-channel
  standard deviation (the stamps' scale differs by orders of magnitude between alerts).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["noise_augment", "shift_augment"]


def shift_augment(x: torch.Tensor, rng: np.random.Generator, max_px: int) -> torch.Tensor:
    """(N, C, H, W) -> the same shape, each example shifted by (dy, dx) in [-max_px, max_px]."""
    if max_px <= 0 or len(x) == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (max_px, max_px, max_px, max_px), mode="replicate")
    shifts = rng.integers(-max_px, max_px + 1, size=(len(x), 2))
    out = torch.empty_like(x)
    for i, (dy, dx) in enumerate(shifts):
        top, left = max_px - int(dy), max_px - int(dx)
        out[i] = padded[i, :, top:top + h, left:left + w]
    return out


def noise_augment(x: torch.Tensor, rng: np.random.Generator, sigma: float) -> torch.Tensor:
    """(N, C, H, W) plus N(0, (sigma * std of that example's channel)^2) per pixel."""
    if sigma <= 0 or len(x) == 0:
        return x
    scale = x.flatten(2).std(dim=2).clamp_min(0)[:, :, None, None]
    noise = torch.from_numpy(rng.standard_normal(tuple(x.shape)).astype(np.float32))
    return x + sigma * scale * noise
