"""Weights shipped as a *delta* over a seeded initialisation: full tensors plus low-rank updates.

Why: HR-CelestialNet has 97 M parameters (388 MB in float32) whatever the input binning, far too
big for the repository, and only part of it can be trained on a CPU (``engines.training.head``).
The parts that were not trained are exactly ``torch.manual_seed(seed)`` + the network's default
initialisation, so they need not ship: a small file says how the trained network differs from
that seeded one, and the loader rebuilds the seeded network and applies the file.

File format: a flat ``{name: tensor}`` dict (``torch.save``; loads with ``weights_only=True``):

* ``_delta.init_seed``: int64 scalar, the seed of the base network;
* ``<tensor>``: a full tensor that replaces the seeded one (trained scales, shifts, biases, the
  output layer, and every BatchNorm running statistic);
* ``<param>.lora_a`` (r, fan_in) and ``<param>.lora_b`` (out, r): a rank-r update added to the
  seeded ``<param>`` (``W = W0 + (b @ a).reshape(W0.shape)``; LoRA, Hu et al. 2021); the scale
  is folded into ``b``.

The merged network is an ordinary network of the same architecture and parameter count, so
export, backends and the service treat it as any other.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["SEED_KEY", "LORA_A", "LORA_B", "LowRankDelta", "is_delta_state", "apply_delta_state", "delta_state_dict"]

SEED_KEY = "_delta.init_seed"
LORA_A = ".lora_a"
LORA_B = ".lora_b"


class LowRankDelta(nn.Module):
    """A parametrisation (``torch.nn.utils.parametrize``) ``W0 -> W0 + scale * (B @ A)``.

    ``B`` starts at zero, so training starts from the seeded weights exactly; ``A`` is drawn
    with Kaiming-uniform bounds from the generator given (not the global RNG).
    """

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        out_features = int(weight.shape[0])
        fan_in = int(weight[0].numel())
        if not 0 < rank <= min(out_features, fan_in):
            raise ValueError(f"rank {rank} is outside 1..{min(out_features, fan_in)} for a weight of shape {tuple(weight.shape)}")
        bound = 1.0 / fan_in ** 0.5
        a = (torch.rand(rank, fan_in, generator=generator) * 2 - 1) * bound
        self.lora_a = nn.Parameter(a.to(weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(out_features, rank, dtype=weight.dtype))
        self.scale = (alpha if alpha is not None else rank) / rank

    def delta(self) -> torch.Tensor:
        return self.scale * (self.lora_b @ self.lora_a)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().reshape(weight.shape)


def is_delta_state(state: Mapping[str, torch.Tensor]) -> bool:
    return SEED_KEY in state


def apply_delta_state(network: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Apply a delta file's tensors to ``network`` (which must hold the seeded weights), in place.

    Every name must exist in the network with a matching shape; a ``lora_a`` needs its
    ``lora_b``. Raises ``KeyError``/``RuntimeError`` (as ``load_state_dict`` would) otherwise.
    """
    own = network.state_dict()
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    with torch.no_grad():
        for name, tensor in state.items():
            if name == SEED_KEY:
                continue
            for suffix in (LORA_A, LORA_B):
                if name.endswith(suffix):
                    pairs.setdefault(name[: -len(suffix)], {})[suffix] = tensor
                    break
            else:
                if name not in own:
                    raise KeyError(f"delta tensor {name!r} is not in the network")
                if own[name].shape != tensor.shape:
                    raise RuntimeError(f"delta tensor {name} {tuple(tensor.shape)} != network {tuple(own[name].shape)}")
                own[name].copy_(tensor)
        for name, pair in pairs.items():
            if set(pair) != {LORA_A, LORA_B}:
                raise KeyError(f"low-rank update of {name!r} needs both {LORA_A} and {LORA_B}")
            if name not in own:
                raise KeyError(f"low-rank update for {name!r}, which is not in the network")
            base = own[name]
            delta = pair[LORA_B].to(torch.float32) @ pair[LORA_A].to(torch.float32)
            if delta.numel() != base.numel():
                raise RuntimeError(f"low-rank update of {name} has {delta.numel()} values, the weight {base.numel()}")
            base.add_(delta.reshape(base.shape).to(base.dtype))
    return network


def delta_state_dict(network: nn.Module, seed: int, full: list[str]) -> dict[str, torch.Tensor]:
    """The delta file of a network trained with :class:`LowRankDelta` parametrisations.

    ``full``: names (as the plain network's state dict has them) of tensors to ship whole;
    every parametrised weight ships as its ``lora_a``/``lora_b`` pair (scale folded in).
    """
    from torch.nn.utils import parametrize

    out: dict[str, torch.Tensor] = {SEED_KEY: torch.tensor(seed, dtype=torch.int64)}
    plain = {}
    for module_name, module in network.named_modules():
        if parametrize.is_parametrized(module):
            for param_name, plist in module.parametrizations.items():
                for p in plist:
                    if isinstance(p, LowRankDelta):
                        key = f"{module_name}.{param_name}" if module_name else param_name
                        out[key + LORA_A] = p.lora_a.detach().cpu().clone()
                        out[key + LORA_B] = (p.scale * p.lora_b.detach()).cpu().clone()
    for name, tensor in network.state_dict().items():
        plain[name.replace(".parametrizations.weight.original", ".weight")] = tensor
    for name in full:
        if name not in plain:
            raise KeyError(f"{name!r} is not a tensor of the network")
        out[name] = plain[name].detach().cpu().clone()
    return out
