"""Training-batch augmentation for cutouts: what a stamp may undergo and keep its class.

A star is a star upside down, a pixel or two off centre, or under a little more noise, so a
user's stamp set is augmented by default (``train --no-augment`` turns it off):

* one of the 8 rotations / reflections of the square (the sky has no preferred orientation);
* a shift of up to ``max_shift`` pixels in each axis (the edge pixels repeated into the gap,
  never wrapped round), so a counterpart a little off centre is no new thing;
* Gaussian noise of standard deviation U(0, ``noise``) times the example's own robust noise
  (1.4826 x the median absolute deviation of its pixels): deeper and shallower exposures.

It runs on network inputs (after the service's preprocessing), on training batches only,
never on validation or test examples; draws come from the run's seeded generator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engines.training.train import dihedral_augment

__all__ = ["StampAugment", "shift_examples", "add_noise"]


def shift_examples(x: torch.Tensor, shifts: np.ndarray) -> torch.Tensor:
    """Each (C, H, W) example of ``x`` moved by ``shifts[i]`` = (dy, dx) pixels (edge pixels
    repeated into the gap). Shapes are kept."""
    if len(x) == 0:
        return x
    m = int(np.abs(shifts).max())
    if m == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (m, m, m, m), mode="replicate")
    out = torch.empty_like(x)
    for i, (dy, dx) in enumerate(np.asarray(shifts, dtype=int)):
        out[i] = padded[i, :, m - dy:m - dy + h, m - dx:m - dx + w]
    return out


def add_noise(x: torch.Tensor, scale: np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` plus Gaussian noise of ``scale[i]`` times example i's robust standard deviation."""
    flat = x.reshape(len(x), -1)
    median = flat.median(dim=1, keepdim=True).values
    robust = 1.4826 * (flat - median).abs().median(dim=1).values
    sigma = torch.as_tensor(scale, dtype=x.dtype, device=x.device) * robust
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x + sigma.view(-1, *([1] * (x.ndim - 1))) * noise


@dataclass(frozen=True)
class StampAugment:
    """Dihedral turn + shift + noise of a batch (module docstring); call as ``augment(x, rng)``."""

    max_shift: int = 2
    noise: float = 0.2

    def __call__(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        x = dihedral_augment(x, rng)
        if self.max_shift > 0:
            x = shift_examples(x, rng.integers(-self.max_shift, self.max_shift + 1, (len(x), 2)))
        if self.noise > 0:
            generator = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
            x = add_noise(x, rng.uniform(0.0, self.noise, len(x)), generator)
        return x
