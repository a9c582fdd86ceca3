"""The stamp augmentation: shapes and labels kept, what each step does to known pixels."""
from __future__ import annotations

import numpy as np
import torch

from engines.training.augment import StampAugment, add_noise, shift_examples


def _point_sources(n: int = 8, size: int = 15) -> torch.Tensor:
    x = torch.zeros(n, 3, size, size)
    for i in range(n):
        x[i, :, 3 + i % 4, 5] = 1.0 + i      # one bright pixel off centre, a different flux per example
    return x


def test_augmenting_a_batch_keeps_shape_dtype_order_and_each_examples_light():
    x = _point_sources()
    labels = torch.arange(len(x))
    out = StampAugment(max_shift=2, noise=0.0)(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    # no noise, shifts within the edge: each example is its own pixel moved (flux = its label + 1), in order
    assert torch.equal(out.amax(dim=(1, 2, 3)), (labels + 1).float())
    assert torch.equal(out.sum(dim=(1, 2, 3)), 3 * (labels + 1).float())
    assert not torch.equal(out, x)


def test_same_seed_same_batch_and_another_seed_another():
    x = _point_sources()
    a = StampAugment()(x, np.random.default_rng(5))
    b = StampAugment()(x, np.random.default_rng(5))
    c = StampAugment()(x, np.random.default_rng(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_shift_moves_by_the_given_pixels_and_repeats_the_edge():
    x = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    out = shift_examples(x, np.array([[1, -2]]))
    # output (y, x) reads input (y - 1, x + 2), clamped at the border
    assert out[0, 0, 2, 1] == x[0, 0, 1, 3]
    assert out[0, 0, 0, 0] == x[0, 0, 0, 2]          # top row repeated
    assert out[0, 0, 4, 4] == x[0, 0, 3, 4]          # right column repeated
    assert torch.equal(shift_examples(x, np.array([[0, 0]])), x)


def test_noise_is_scaled_by_each_examples_robust_sigma():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(2, 1, 64, 64, generator=gen) * torch.tensor([1.0, 10.0]).view(2, 1, 1, 1)
    out = add_noise(base, np.array([0.5, 0.5]), torch.Generator().manual_seed(1))
    added = (out - base).reshape(2, -1).std(dim=1)
    assert abs(float(added[0]) - 0.5) < 0.05 and abs(float(added[1]) - 5.0) < 0.5
    assert torch.equal(add_noise(base, np.array([0.0, 0.0])), base)
