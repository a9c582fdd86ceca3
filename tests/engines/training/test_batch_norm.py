"""BatchNorm recalibration in the training loop (engines.training.train.recalibrate_batch_norm)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from engines.training.train import recalibrate_batch_norm


def _network() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_running_statistics_become_the_average_over_the_examples() -> None:
    network = _network()
    network[1].running_mean.fill_(123.0)            # stale values, as training leaves them
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(40, 3, 8, 8)).astype(np.float32)
    rng_before = torch.get_rng_state()
    reset = recalibrate_batch_norm(network, x, torch.from_numpy, 16, torch.device("cpu"))
    assert reset == 1
    assert torch.equal(torch.get_rng_state(), rng_before)      # dropout stayed off
    assert not network.training and network[1].momentum == 0.1
    with torch.no_grad():
        conv = network[0](torch.from_numpy(x))
    batch_means = [conv[i:i + 16].mean(dim=(0, 2, 3)) for i in range(0, 40, 16)]
    torch.testing.assert_close(network[1].running_mean, torch.stack(batch_means).mean(0), atol=1e-5, rtol=1e-5)
    assert int(network[1].num_batches_tracked) == 3


def test_network_without_batch_norm_is_left_alone() -> None:
    network = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert recalibrate_batch_norm(network, np.ones((4, 3, 2, 2), np.float32), torch.from_numpy, 2,
                                  torch.device("cpu")) == 0
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
