"""Parameter and multiply-accumulate counts, with forward hooks (no extra dependency).

MACs count Conv2d (output elements x in-channels/groups x kernel area) and Linear
(batch x in x out) layers only, the convention of the usual counters (thop, ptflops) whose
"FLOPs" papers quote. Works on the ``meta`` device, so full-size shapes cost no memory.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["count_params", "count_macs", "output_shape"]


def count_params(model: nn.Module) -> int:
    """All parameters (trainable or not), the figure papers' tables give."""
    return sum(p.numel() for p in model.parameters())


def _zeros(input_shape: tuple[int, ...], extra_shapes: Sequence[tuple[int, ...]], device: str | torch.device) -> list[torch.Tensor]:
    """Zero inputs: the image of ``input_shape`` (batch included), then each extra input with that batch."""
    return [torch.zeros(input_shape, device=device), *(torch.zeros((input_shape[0], *s), device=device) for s in extra_shapes)]


def count_macs(model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device = "cpu",
               extra_shapes: Sequence[tuple[int, ...]] = ()) -> int:
    """Multiply-accumulates of one forward pass on an input of ``input_shape`` (batch included)
    and, for networks with more inputs, zeros of ``extra_shapes`` (batch left out)."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kernel = math.prod(module.kernel_size) * (module.in_channels // module.groups)
        total += output.numel() * kernel

    def linear_hook(module: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(*_zeros(input_shape, extra_shapes, device))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total


def output_shape(model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device = "cpu",
                 extra_shapes: Sequence[tuple[int, ...]] = ()) -> tuple[int, ...]:
    """Shape of the model's output for an input of ``input_shape`` (use device='meta' for big ones)."""
    with torch.no_grad():
        return tuple(model(*_zeros(input_shape, extra_shapes, device)).shape)
