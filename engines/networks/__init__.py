"""The networks and the one place that builds them by name.

``build_network(name)`` returns the inference (eval-mode, no dropout) network; training code
passes ``dropout`` for the training variants, which have the same parameters.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from engines.networks.alertclass import (
    ALERTCLASS_INPUT,
    ALERTCLASS_LABELS,
    PACKET_CLASS_LABELS,
    REFERENCE_SOURCE_FIELDS,
    AlertClassNet,
    PacketAlertClassNet,
    ReferenceAlertClassNet,
)
from engines.networks.delta_weights import SEED_KEY, apply_delta_state, is_delta_state
from engines.networks.hrcelestial import HRCELESTIAL_INPUT, HRCELESTIAL_LABELS, HRCelestialNet
from engines.networks.iicnet import IICNET_INPUT, IICNET_LABELS, IICNet
from engines.networks.realbogus import REALBOGUS_INPUT, REALBOGUS_LABELS, RealBogusCNN

__all__ = ["NetworkSpec", "NETWORKS", "build_network", "seeded_network", "load_weights", "ScoredNetwork"]


@dataclass(frozen=True)
class NetworkSpec:
    """A network family: how to build it, its input (C, H, W) and output labels."""

    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]
    labels: tuple[str, ...]
    #: shapes (batch left out) of further inputs after the image, e.g. alertclass_packet's (1,) flag
    extra_inputs: tuple[tuple[int, ...], ...] = ()


NETWORKS: dict[str, NetworkSpec] = {
    "realbogus": NetworkSpec("realbogus", RealBogusCNN, REALBOGUS_INPUT, REALBOGUS_LABELS),
    "iicnet": NetworkSpec("iicnet", IICNet, IICNET_INPUT, IICNET_LABELS),
    "hrcelestialnet": NetworkSpec("hrcelestialnet", HRCelestialNet, HRCELESTIAL_INPUT, HRCELESTIAL_LABELS),
    "alertclass": NetworkSpec("alertclass", AlertClassNet, ALERTCLASS_INPUT, ALERTCLASS_LABELS),
    "alertclass_packet": NetworkSpec("alertclass_packet", PacketAlertClassNet, ALERTCLASS_INPUT, PACKET_CLASS_LABELS,
                                       extra_inputs=((1,),)),
    # 3.x: the flag and the five reference-source fields of the packet
    "alertclass_reference": NetworkSpec("alertclass_reference", ReferenceAlertClassNet, ALERTCLASS_INPUT,
                                          PACKET_CLASS_LABELS, extra_inputs=((1 + len(REFERENCE_SOURCE_FIELDS),),)),
}


def build_network(name: str, **kwargs) -> nn.Module:
    """A fresh network of family ``name`` (eval mode); ``kwargs`` go to its constructor."""
    try:
        spec = NETWORKS[name]
    except KeyError:
        raise KeyError(f"unknown network {name!r}; known: {sorted(NETWORKS)}") from None
    return spec.factory(**kwargs).eval()


def load_weights(name: str, path, check_base: Callable[[int, nn.Module], None] | None = None, **kwargs) -> nn.Module:
    """Network ``name`` with the state dict saved at ``path``, in eval mode.

    Raises ``OSError``/``RuntimeError``/``KeyError`` as torch does; callers re-raise their own error.
    A delta file (:mod:`engines.networks.delta_weights`: trained tensors and low-rank updates
    over a seeded initialisation) is applied to the network built from its seed, after
    ``check_base(seed, seeded_network)`` (when given) has had its say.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if is_delta_state(state):
        seed = int(state[SEED_KEY])
        base = seeded_network(name, seed, **kwargs)
        if check_base is not None:
            check_base(seed, base)
        return apply_delta_state(base, state).eval()
    network = build_network(name, **kwargs)
    network.load_state_dict(state)
    return network.eval()


def seeded_network(name: str, seed: int, **kwargs) -> nn.Module:
    """``torch.manual_seed(seed)`` then the network's default initialisation (eval mode); the
    global RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_network(name, **kwargs)


class ScoredNetwork(nn.Module):
    """Logits -> probabilities, the graph every backend runs (exported to ONNX as is).

    ``compute_dtype`` float16 runs the body in half precision with float32 input and output
    (the input is cast inside the graph), which is how a strongly typed TensorRT 11 engine
    gets FP16 kernels; softmax is always float32. ``activation="none"`` is for bodies that
    already return probabilities (imported Keras models ending in a sigmoid). Extra inputs
    (a feature vector) are passed to the body after the image.
    """

    def __init__(self, body: nn.Module, compute_dtype: torch.dtype = torch.float32, activation: str = "softmax") -> None:
        super().__init__()
        if activation not in ("softmax", "none"):
            raise ValueError(f"output activation must be 'softmax' or 'none', not {activation!r}")
        self.body = body.to(compute_dtype)
        self.compute_dtype = compute_dtype
        self.activation = activation

    def forward(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        out = self.body(x.to(self.compute_dtype), *(e.to(self.compute_dtype) for e in extra)).float()
        return torch.softmax(out, dim=1) if self.activation == "softmax" else out
