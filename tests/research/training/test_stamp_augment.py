"""Shifts and noise of research.training.stamp_augment on real pool stamps and a point source."""
from __future__ import annotations

import numpy as np
import torch

from research.training.stamp_augment import noise_augment, shift_augment


def test_shift_moves_a_point_source_by_at_most_max_px_without_wrapping() -> None:
    x = torch.zeros(64, 3, 21, 21)
    x[:, :, 10, 10] = 1.0                       # a point source at the centre
    x[:, 0, 0, 20] = 5.0                        # a pixel in the corner: must never reappear elsewhere by wrap-around
    out = shift_augment(x, np.random.default_rng(0), max_px=2)
    assert out.shape == x.shape
    moves = set()
    for i in range(len(x)):
        peaks = torch.nonzero(out[i, 1] == 1.0)
        assert len(peaks) == 1
        dy, dx = int(peaks[0, 0]) - 10, int(peaks[0, 1]) - 10
        assert abs(dy) <= 2 and abs(dx) <= 2
        moves.add((dy, dx))
        assert torch.equal(out[i, 0, 10 + dy, 10 + dx], torch.tensor(1.0))   # channels move together
        assert not (out[i, 0, 10:, :10] == 5.0).any()                        # the corner never wraps to the far side
    assert len(moves) > 10                          # shifts are drawn, not one fixed move
    assert torch.equal(shift_augment(x, np.random.default_rng(0), max_px=0), x)


def test_noise_is_sigma_times_each_stamps_own_spread() -> None:
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((8, 3, 63, 63)).astype(np.float32))
    x[:4] *= 1000.0                             # stamps of very different scales
    out = noise_augment(x, np.random.default_rng(2), sigma=0.1)
    added = (out - x).flatten(2).std(dim=2)
    spread = x.flatten(2).std(dim=2)
    assert torch.allclose(added / spread, torch.full_like(added, 0.1), rtol=0.05)
    assert torch.equal(noise_augment(x, np.random.default_rng(2), sigma=0.0), x)
