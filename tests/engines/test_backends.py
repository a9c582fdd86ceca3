"""ONNX Runtime and OpenVINO against the PyTorch reference on real preprocessed stamps.

Tolerances (absolute, on softmax probabilities in [0, 1]):
* ONNX Runtime, fp32: 1e-5 (same fp32 graph, different kernels / summation order);
* OpenVINO, f32 inference precision: 1e-4;
* OpenVINO, bf16 (its default on this CPU): 5e-2, and the precision must read back as bf16.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.contract import Engine, EngineError
from engines.registry import load_registry
from schemas.alert import Exposure, InputKind
from tests.engines.real_stamps import real_alerts

TOLERANCE = {("onnxruntime", None): 1e-5, ("openvino", "f32"): 1e-4, ("openvino", "bf16"): 5e-2}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def items(real_data_roots: tuple[Path, ...]) -> dict[str, list]:
    alerts = list(real_alerts(real_data_roots, 48))
    cutouts = [
        Exposure(str(a.alert_id), "WISE", "W1W2W3", 0.0, a.mjd, InputKind.MULTIBAND_CUTOUT,
                 images={"W1": a.science.data, "W2": a.template.data, "W3": a.difference.data})
        for a in alerts
    ]
    return {"realbogus": alerts, "iicnet": cutouts}


@pytest.fixture(scope="module")
def reference(registry, items, cache_dir) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    out = {}
    for name in ("realbogus", "iicnet"):
        runner = registry.load_runner(name, "torch", cache_dir=str(cache_dir), allow_untrained=True)
        batch = runner.preprocess(items[name])
        out[name] = (batch, runner.infer(batch))
        runner.close()
    return out


@pytest.mark.parametrize("name", ["realbogus", "iicnet"])
@pytest.mark.parametrize(("backend", "precision"), list(TOLERANCE))
def test_backend_matches_torch_on_real_stamps(registry, reference, cache_dir, name, backend, precision) -> None:
    batch, expected = reference[name]
    runner = registry.load_runner(name, backend, cache_dir=str(cache_dir), allow_untrained=True, precision=precision)
    try:
        assert isinstance(runner.engine, Engine)
        got = runner.infer(batch)
        assert got.shape == expected.shape == (len(batch), len(runner.labels)) and got.dtype == np.float32
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-3)
        np.testing.assert_allclose(got, expected, atol=TOLERANCE[(backend, precision)], rtol=0)
        assert runner.provenance.backend == backend
        assert runner.provenance.extra["precision"] == {None: "fp32", "f32": "f32", "bf16": "bf16"}[precision]
        single = runner.infer(batch[:1])  # dynamic batch: 1 works after N
        np.testing.assert_allclose(single, got[:1], atol=TOLERANCE[(backend, precision)], rtol=0)
    finally:
        runner.close()


def test_seeded_weights_do_not_give_constant_scores(reference) -> None:
    """The parity check would be empty if every input scored the same."""
    _, probabilities = reference["realbogus"]
    assert np.ptp(probabilities[:, 1]) > 1e-4


def test_wrong_batch_shape_is_an_engine_error(registry, cache_dir) -> None:
    runner = registry.load_runner("realbogus", "onnxruntime", cache_dir=str(cache_dir), allow_untrained=True)
    with pytest.raises(EngineError, match="does not match"):
        runner.infer(np.zeros((2, 3, 63, 63), np.float32))
    with pytest.raises(EngineError, match="outside"):  # the engine itself; the runner chunks
        runner.engine.infer(np.zeros((runner.max_batch + 1, 3, 69, 69), np.float32))
    assert runner.infer(np.zeros((runner.max_batch + 1, 3, 69, 69), np.float32)).shape == (runner.max_batch + 1, 2)
    runner.close()
    with pytest.raises(EngineError, match="closed"):
        runner.infer(np.zeros((1, 3, 69, 69), np.float32))
