"""Keras HDF5 models (``model.save("x.h5")``, Keras 2.x) rebuilt as ordinary torch modules.

Reads the file with h5py only (no TensorFlow): the ``model_config`` attribute gives the layer
graph, ``model_weights/<layer>`` the tensors in the order of the group's ``weight_names``.
The result (:class:`KerasModel`) runs in eval mode (dropout is the identity), goes through the
same ONNX export and backends as our own networks, and reproduces the Keras model's outputs to
float32 rounding. What makes such ports silently wrong, and how it is handled here:

* **layout**: Keras is channels-last (N, H, W, C); the module takes channels-first (N, C, H, W)
  like our other networks and keeps 4-D tensors channels-first inside. Every layer whose result
  depends on the layout follows Keras's order: ``Flatten`` flattens in (H, W, C) order (so the
  next ``Dense`` kernel rows match), ``Concatenate`` on axis -1 joins channels,
  ``GlobalAveragePooling2D`` averages H and W;
* **kernels**: Conv2D (kh, kw, in, out) -> (out, in, kh, kw); Dense (in, out) -> (out, in);
  SeparableConv2D = depthwise (kh, kw, in, multiplier) as a grouped convolution whose output
  channel ``c * multiplier + m`` is Keras's, then the 1x1 pointwise kernel, then the bias;
* **padding**: ``valid`` is no padding; ``same`` pads like TensorFlow, the odd pixel at the
  bottom/right (asymmetric for even kernels or strides), max pooling with -inf;
* **activations** are applied exactly where Keras applies them (``sigmoid`` outputs stay
  probabilities: the model's output is Keras's output, not a logit).

Layers not listed in :data:`SUPPORTED_LAYERS` raise :class:`KerasImportError` rather than
being guessed.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "KerasImportError",
    "KerasModel",
    "KerasLayer",
    "SUPPORTED_LAYERS",
    "load_keras_h5",
    "read_keras_h5",
]


class KerasImportError(ValueError):
    """A Keras file this loader cannot rebuild faithfully (unknown layer, option or format)."""


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda x: torch.softmax(x, dim=1 if x.ndim == 4 else -1),
    "elu": F.elu,
    "selu": F.selu,
    "softplus": F.softplus,
    "swish": F.silu,
}


def _activation(name: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    name = "linear" if name is None else name
    if isinstance(name, dict):  # Keras >= 2.13 may serialise {"class_name": ..., "config": ...}
        name = name.get("config", {}).get("name", name.get("class_name"))
    try:
        return ACTIVATIONS[str(name)]
    except KeyError:
        raise KerasImportError(f"unsupported activation {name!r}; known: {sorted(ACTIVATIONS)}") from None


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    a, b = value
    return int(a), int(b)


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis: (before, after), the extra pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    top, bottom = _same_pad(int(x.shape[2]), kernel[0], stride[0], dilation[0])
    left, right = _same_pad(int(x.shape[3]), kernel[1], stride[1], dilation[1])
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


def _check_channels_last(config: Mapping[str, Any], name: str) -> None:
    if config.get("data_format", "channels_last") != "channels_last":
        raise KerasImportError(f"layer {name}: data_format {config.get('data_format')!r} (only channels_last is supported)")


class KerasLayer(nn.Module):
    """One rebuilt Keras layer (channels-first inside); ``forward`` takes its inbound tensors."""

    def __init__(self, class_name: str, config: Mapping[str, Any], weights: Sequence[np.ndarray]) -> None:
        super().__init__()
        self.class_name = class_name
        self.layer_name = str(config.get("name", class_name))
        self._build(class_name, dict(config), [np.asarray(w, dtype=np.float32) for w in weights])

    # -- construction -----------------------------------------------------------------
    def _param(self, name: str, array: np.ndarray) -> None:
        self.register_parameter(name, nn.Parameter(torch.from_numpy(np.ascontiguousarray(array)), requires_grad=False))

    def _build(self, cls: str, cfg: dict[str, Any], w: list[np.ndarray]) -> None:
        name = self.layer_name
        self.act = _activation(cfg.get("activation"))
        if cls in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
            _check_channels_last(cfg, name)
            self.kernel = _pair(cfg["kernel_size"])
            self.stride = _pair(cfg.get("strides", 1))
            self.dilation = _pair(cfg.get("dilation_rate", 1))
            self.padding = str(cfg.get("padding", "valid"))
            if self.padding not in ("valid", "same"):
                raise KerasImportError(f"layer {name}: padding {self.padding!r}")
            self.use_bias = bool(cfg.get("use_bias", True))
            if cls == "Conv2D":
                if int(cfg.get("groups", 1)) != 1:
                    raise KerasImportError(f"layer {name}: grouped Conv2D")
                self._param("weight", w[0].transpose(3, 2, 0, 1))
            else:
                depthwise = w[0]                          # (kh, kw, in, multiplier)
                kh, kw, cin, mult = depthwise.shape
                if int(cfg.get("depth_multiplier", 1)) != mult:
                    raise KerasImportError(f"layer {name}: depth_multiplier {cfg.get('depth_multiplier')} != kernel's {mult}")
                self.groups = cin
                self._param("depthwise", depthwise.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw))
                if cls == "SeparableConv2D":
                    self._param("pointwise", w[1].transpose(3, 2, 0, 1))  # (1, 1, in*mult, out) -> (out, in*mult, 1, 1)
            if self.use_bias:
                self._param("bias", w[-1])
            return
        if cls == "Dense":
            self.use_bias = bool(cfg.get("use_bias", True))
            self._param("weight", w[0].T)
            if self.use_bias:
                self._param("bias", w[1])
            return
        if cls in ("MaxPooling2D", "AveragePooling2D"):
            _check_channels_last(cfg, name)
            self.kernel = _pair(cfg["pool_size"])
            self.stride = _pair(cfg.get("strides") or cfg["pool_size"])
            self.padding = str(cfg.get("padding", "valid"))
            if self.padding == "same" and cls == "AveragePooling2D":
                raise KerasImportError(f"layer {name}: AveragePooling2D with padding 'same' (Keras excludes the padding)")
            return
        if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten"):
            _check_channels_last(cfg, name)
            if cfg.get("keepdims"):
                raise KerasImportError(f"layer {name}: keepdims")
            return
        if cls == "Concatenate":
            self.axis = int(cfg.get("axis", -1))
            return
        if cls == "BatchNormalization":
            axis = cfg.get("axis", -1)
            axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
            if axis not in (-1, 3, 1):
                raise KerasImportError(f"layer {name}: BatchNormalization axis {axis}")
            weights = list(w)
            gamma = weights.pop(0) if cfg.get("scale", True) else None
            beta = weights.pop(0) if cfg.get("center", True) else None
            mean, var = weights
            scale = (gamma if gamma is not None else 1.0) / np.sqrt(var + float(cfg.get("epsilon", 1e-3)))
            shift = (beta if beta is not None else 0.0) - mean * scale
            self._param("scale", np.asarray(scale, np.float32))
            self._param("shift", np.asarray(shift, np.float32))
            return
        if cls in ("InputLayer", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "Activation"):
            return
        raise KerasImportError(f"layer {name}: unsupported Keras layer {cls!r}; supported: {sorted(SUPPORTED_LAYERS)}")

    # -- run -------------------------------------------------------------------------------
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        cls = self.class_name
        if cls == "Concatenate":
            axis = self.axis
            if inputs[0].ndim == 4:  # Keras (N, H, W, C) axis -> ours (N, C, H, W)
                axis = {-1: 1, 3: 1, 1: 2, 2: 3}[axis]
            return torch.cat(inputs, dim=axis)
        (x,) = inputs
        if cls in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
            if self.padding == "same":
                x = _pad_same(x, self.kernel, self.stride, self.dilation)
            bias = self.bias if self.use_bias else None
            if cls == "Conv2D":
                x = F.conv2d(x, self.weight, bias, self.stride, 0, self.dilation)
            elif cls == "DepthwiseConv2D":
                x = F.conv2d(x, self.depthwise, bias, self.stride, 0, self.dilation, self.groups)
            else:
                x = F.conv2d(x, self.depthwise, None, self.stride, 0, self.dilation, self.groups)
                x = F.conv2d(x, self.pointwise, bias)
            return self.act(x)
        if cls == "Dense":
            if x.ndim != 2:
                raise KerasImportError(f"layer {self.layer_name}: Dense on a {x.ndim}-D tensor")
            return self.act(F.linear(x, self.weight, self.bias if self.use_bias else None))
        if cls == "MaxPooling2D":
            if self.padding == "same":
                x = _pad_same(x, self.kernel, self.stride, (1, 1), value=float("-inf"))
            return F.max_pool2d(x, self.kernel, self.stride)
        if cls == "AveragePooling2D":
            return F.avg_pool2d(x, self.kernel, self.stride)
        if cls == "GlobalAveragePooling2D":
            return x.mean(dim=(2, 3))
        if cls == "GlobalMaxPooling2D":
            return x.amax(dim=(2, 3))
        if cls == "Flatten":
            if x.ndim == 4:
                x = x.permute(0, 2, 3, 1)  # Keras flattens (H, W, C)
            return x.reshape(x.shape[0], -1)
        if cls == "BatchNormalization":
            shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
            return x * self.scale.reshape(shape) + self.shift.reshape(shape)
        return self.act(x)  # InputLayer, dropouts (identity at inference), Activation


SUPPORTED_LAYERS: frozenset[str] = frozenset({
    "InputLayer", "Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Dense", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Concatenate", "BatchNormalization", "Dropout",
    "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "Activation",
})


class KerasModel(nn.Module):
    """A Keras model's layer graph in torch. ``forward(*inputs)`` takes the model's inputs in
    ``input_names`` order, images channels-first (N, C, H, W); returns the one output."""

    def __init__(self, name: str, layers: Sequence[KerasLayer], inbound: Mapping[str, Sequence[str]],
                 input_names: Sequence[str], output_name: str) -> None:
        super().__init__()
        self.model_name = name
        self.layers = nn.ModuleList(layers)
        self.inbound = {k: tuple(v) for k, v in inbound.items()}
        self.input_names = tuple(input_names)
        self.output_name = output_name

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.model_name} takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        values: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs))
        for layer in self.layers:
            if layer.class_name == "InputLayer":
                continue
            values[layer.layer_name] = layer(*(values[src] for src in self.inbound[layer.layer_name]))
        return values[self.output_name]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras_h5(path: str | Path) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """(model_config, layer name -> weight arrays in Keras order) from a Keras 2 ``.h5`` file."""
    import h5py

    with h5py.File(path, "r") as fh:
        if "model_config" not in fh.attrs:
            raise KerasImportError(f"{path}: no model_config (a weights-only file? save the whole model)")
        config = json.loads(_text(fh.attrs["model_config"]))
        group = fh["model_weights"] if "model_weights" in fh else fh
        weights: dict[str, list[np.ndarray]] = {}
        for layer_name in (_text(n) for n in group.attrs.get("layer_names", [])):
            layer_group = group[layer_name]
            weights[layer_name] = [np.asarray(layer_group[_text(w)]) for w in layer_group.attrs.get("weight_names", [])]
    return config, weights


def load_keras_h5(path: str | Path, input_order: Sequence[str] | None = None) -> KerasModel:
    """The Keras model in ``path`` as a :class:`KerasModel` (eval mode, no gradients).

    ``input_order`` names the model's inputs in the order ``forward`` takes them (default: the
    file's ``input_layers`` order; a Sequential model has one input).
    """
    config, weights = read_keras_h5(path)
    cls, body = config.get("class_name"), config.get("config")
    layer_specs = body["layers"] if isinstance(body, dict) else body
    layers: list[KerasLayer] = []
    inbound: dict[str, list[str]] = {}
    if cls == "Sequential":
        previous = "input"
        input_names = ["input"]
        for spec in layer_specs:
            layer = KerasLayer(spec["class_name"], spec["config"], weights.get(spec["config"]["name"], []))
            layers.append(layer)
            inbound[layer.layer_name] = [previous]
            previous = layer.layer_name
        output_name = previous
    elif cls in ("Model", "Functional"):
        for spec in layer_specs:
            name = spec.get("name") or spec["config"]["name"]
            layer = KerasLayer(spec["class_name"], {**spec["config"], "name": name}, weights.get(name, []))
            layers.append(layer)
            nodes = spec.get("inbound_nodes") or []
            if len(nodes) > 1:
                raise KerasImportError(f"layer {name} is called {len(nodes)} times (shared layers are not supported)")
            inbound[name] = [src[0] for src in nodes[0]] if nodes else []
        input_names = [entry[0] for entry in body["input_layers"]]
        outputs = body["output_layers"]
        if len(outputs) != 1:
            raise KerasImportError(f"{path}: {len(outputs)} outputs (one is supported)")
        output_name = outputs[0][0]
        layers = _topological(layers, inbound, input_names)
    else:
        raise KerasImportError(f"{path}: model class {cls!r} (Sequential, Model or Functional)")
    if input_order is not None:
        if sorted(input_order) != sorted(input_names):
            raise KerasImportError(f"{path}: inputs are {input_names}, asked for {list(input_order)}")
        input_names = list(input_order)
    name = str(body.get("name", Path(path).stem)) if isinstance(body, dict) else Path(path).stem
    model = KerasModel(name, layers, inbound, input_names, output_name).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _topological(layers: list[KerasLayer], inbound: Mapping[str, Sequence[str]], inputs: Sequence[str]) -> list[KerasLayer]:
    """Layers ordered so each comes after its inbound layers (files list them in any order)."""
    done = set(inputs)
    ordered: list[KerasLayer] = [layer for layer in layers if layer.class_name == "InputLayer"]
    pending = [layer for layer in layers if layer.class_name != "InputLayer"]
    while pending:
        ready = [layer for layer in pending if all(src in done for src in inbound[layer.layer_name])]
        if not ready:
            raise KerasImportError(f"layer graph has a cycle or a dangling input at {[layer.layer_name for layer in pending]}")
        for layer in ready:
            ordered.append(layer)
            done.add(layer.layer_name)
        pending = [layer for layer in pending if layer.layer_name not in done]
    return ordered
