"""Delta weights: trained tensors + low-rank updates over a seeded network, merged at load."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from engines.networks import load_weights, seeded_network
from engines.networks.delta_weights import SEED_KEY, LowRankDelta, apply_delta_state, delta_state_dict, is_delta_state


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def test_low_rank_delta_starts_at_the_seeded_weight_and_merges_exactly() -> None:
    torch.manual_seed(0)
    trained, fresh = _tiny(), _tiny()
    fresh.load_state_dict(trained.state_dict())
    x = torch.rand(5, 1, 8, 8)
    trained.eval(), fresh.eval()
    for module in (trained[0], trained[4]):
        parametrize.register_parametrization(module, "weight", LowRankDelta(module.weight, 2, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(trained(x), fresh(x))            # B = 0: nothing changed yet
    with torch.no_grad():
        for module in (trained[0], trained[4]):
            module.parametrizations.weight[0].lora_b.normal_()
        trained[1].running_mean.fill_(0.3)
        trained[4].bias.add_(1.0)
    delta = delta_state_dict(trained, seed=7, full=["1.running_mean", "4.bias"])
    assert is_delta_state(delta) and int(delta[SEED_KEY]) == 7
    assert {"0.weight.lora_a", "0.weight.lora_b", "4.weight.lora_a", "4.weight.lora_b"} <= set(delta)
    assert "0.weight" not in delta                                # the big seeded weights never ship
    merged = apply_delta_state(fresh, delta)
    torch.testing.assert_close(merged(x), trained(x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(merged(x), _tiny().eval()(x))


def test_apply_delta_refuses_what_does_not_fit() -> None:
    net = _tiny()
    seed = {SEED_KEY: torch.tensor(1)}
    with pytest.raises(KeyError, match="not in the network"):
        apply_delta_state(net, {**seed, "9.bias": torch.zeros(2)})
    with pytest.raises(RuntimeError, match="!= network"):
        apply_delta_state(net, {**seed, "4.bias": torch.zeros(3)})
    with pytest.raises(KeyError, match="needs both"):
        apply_delta_state(net, {**seed, "4.weight.lora_a": torch.zeros(1, 144)})
    with pytest.raises(RuntimeError, match="values"):
        apply_delta_state(net, {**seed, "4.weight.lora_a": torch.zeros(1, 10), "4.weight.lora_b": torch.zeros(2, 1)})
    with pytest.raises(ValueError, match="rank"):
        LowRankDelta(net[4].weight, 3)


def test_load_weights_rebuilds_the_seeded_base_from_a_delta_file(tmp_path: Path) -> None:
    output_bias = [name for name in seeded_network("realbogus", 5).state_dict() if name.endswith(".bias")][-1]
    torch.save({SEED_KEY: torch.tensor(5), output_bias: torch.tensor([3.0, -3.0])}, tmp_path / "delta.pt")
    loaded = load_weights("realbogus", tmp_path / "delta.pt").state_dict()
    seeded = seeded_network("realbogus", 5).state_dict()
    torch.testing.assert_close(loaded.pop(output_bias), torch.tensor([3.0, -3.0]))
    seeded.pop(output_bias)
    assert all(torch.equal(loaded[name], seeded[name]) for name in seeded)
    assert not torch.equal(seeded_network("realbogus", 6).state_dict()[output_bias], seeded_network("realbogus", 5).state_dict()[output_bias])
