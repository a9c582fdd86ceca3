"""The Keras .h5 loader against a plain-numpy, channels-last reference of the same layers.

A small Keras-2-format file is written here with h5py (layout and JSON as Keras writes them), with
the cases that make ports silently wrong: 'same' padding with even kernels and strides (TF pads
the odd pixel at the bottom/right), a separable convolution with depth multiplier 2, 'same' max
pooling, channel concatenation, Flatten before Dense (channels-last order), sigmoid output.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engines.networks.keras_h5 import KerasImportError, load_keras_h5

h5py = pytest.importorskip("h5py")


def _same(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pad(x: np.ndarray, k: int, s: int, value: float = 0.0) -> np.ndarray:
    (top, bottom), (left, right) = _same(x.shape[1], k, s), _same(x.shape[2], k, s)
    return np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)], constant_values=value)


def np_conv(x, w, b, s, padding):
    """x (N, H, W, C), w (kh, kw, cin, cout)."""
    k = w.shape[0]
    if padding == "same":
        x = _pad(x, k, s)
    n, h, wd, _ = x.shape
    oh, ow = (h - k) // s + 1, (wd - k) // s + 1
    out = np.zeros((n, oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * s:i * s + k, j * s:j * s + k, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out + (0 if b is None else b)


def np_depthwise(x, dk, s, padding):
    """dk (kh, kw, cin, mult): output channel c * mult + m."""
    cin, mult = dk.shape[2], dk.shape[3]
    outs = []
    for c in range(cin):
        for m in range(mult):
            outs.append(np_conv(x[..., c:c + 1], dk[:, :, c:c + 1, m:m + 1], None, s, padding))
    return np.concatenate(outs, axis=-1)


def np_maxpool(x, k, s, padding):
    if padding == "same":
        x = _pad(x, k, s, -np.inf)
    n, h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j, :] = x[:, i * s:i * s + k, j * s:j * s + k, :].max(axis=(1, 2))
    return out


def _layer(cls, name, inbound, **config):
    return {"class_name": cls, "name": name, "config": {"name": name, **config},
            "inbound_nodes": [[[src, 0, 0, {}] for src in inbound]] if inbound else []}


def _write(path, layers, weights, inputs, output):
    config = {"class_name": "Model", "config": {"name": "toy", "layers": layers,
                                                "input_layers": [[n, 0, 0] for n in inputs], "output_layers": [[output, 0, 0]]}}
    with h5py.File(path, "w") as fh:
        fh.attrs["model_config"] = json.dumps(config).encode()
        fh.attrs["keras_version"] = b"2.3.0-tf"
        group = fh.create_group("model_weights")
        group.attrs["layer_names"] = np.array([layer["name"].encode() for layer in layers])
        for layer in layers:
            g = group.create_group(layer["name"])
            names = []
            for wname, array in weights.get(layer["name"], []):
                full = f"{layer['name']}/{wname}:0"
                g.create_dataset(full, data=array.astype(np.float32))
                names.append(full.encode())
            g.attrs["weight_names"] = np.array(names, dtype="S64")


def test_layers_match_a_channels_last_reference(tmp_path):
    rng = np.random.default_rng(7)
    w = {
        "c1": [("kernel", rng.normal(size=(2, 2, 3, 4))), ("bias", rng.normal(size=4))],
        "s1": [("depthwise_kernel", rng.normal(size=(3, 3, 3, 2))), ("pointwise_kernel", rng.normal(size=(1, 1, 6, 5))),
               ("bias", rng.normal(size=5))],
        "d1": [("kernel", rng.normal(size=(4 * 4 * 9, 1)) * 0.1), ("bias", rng.normal(size=1))],
    }
    layers = [
        _layer("InputLayer", "img", [], batch_input_shape=[None, 8, 7, 3]),
        _layer("Conv2D", "c1", ["img"], filters=4, kernel_size=[2, 2], strides=[2, 2], padding="same", activation="relu",
               data_format="channels_last", dilation_rate=[1, 1], use_bias=True),
        _layer("SeparableConv2D", "s1", ["img"], filters=5, kernel_size=[3, 3], strides=[2, 2], padding="same",
               depth_multiplier=2, activation="linear", data_format="channels_last", dilation_rate=[1, 1], use_bias=True),
        _layer("Concatenate", "cat", ["c1", "s1"], axis=-1),
        _layer("MaxPooling2D", "p1", ["cat"], pool_size=[2, 2], strides=[1, 1], padding="same", data_format="channels_last"),
        _layer("Dropout", "drop", ["p1"], rate=0.5),
        _layer("Flatten", "flat", ["drop"], data_format="channels_last"),
        _layer("Dense", "d1", ["flat"], units=1, activation="sigmoid", use_bias=True),
    ]
    path = tmp_path / "toy.h5"
    _write(path, layers, w, ["img"], "d1")

    x = rng.normal(size=(2, 8, 7, 3))
    c1 = np.maximum(np_conv(x, w["c1"][0][1], w["c1"][1][1], 2, "same"), 0)             # (2, 4, 4, 4)
    s1 = np_conv(np_depthwise(x, w["s1"][0][1], 2, "same"), w["s1"][1][1], w["s1"][2][1], 1, "valid")  # (2, 4, 4, 5)
    pooled = np_maxpool(np.concatenate([c1, s1], axis=-1), 2, 1, "same")               # (2, 4, 4, 9)
    logits = pooled.reshape(2, -1) @ w["d1"][0][1] + w["d1"][1][1]                      # channels-last flatten
    expected = 1 / (1 + np.exp(-logits))

    model = load_keras_h5(path)
    got = model(torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))).numpy()
    assert got.shape == (2, 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    # the ports' usual mistakes give different numbers (so this test can fail)
    wrong_flatten = 1 / (1 + np.exp(-(pooled.transpose(0, 3, 1, 2).reshape(2, -1) @ w["d1"][0][1] + w["d1"][1][1])))
    assert np.abs(wrong_flatten - expected).max() > 1e-3


def test_unknown_layer_is_refused(tmp_path):
    layers = [_layer("InputLayer", "img", [], batch_input_shape=[None, 4, 4, 1]),
              _layer("LSTM", "rnn", ["img"], units=3)]
    _write(tmp_path / "bad.h5", layers, {}, ["img"], "rnn")
    with pytest.raises(KerasImportError, match="LSTM"):
        load_keras_h5(tmp_path / "bad.h5")


def test_weights_only_file_is_refused(tmp_path):
    with h5py.File(tmp_path / "w.h5", "w") as fh:
        fh.create_group("conv1")
    with pytest.raises(KerasImportError, match="model_config"):
        load_keras_h5(tmp_path / "w.h5")
