"""Backends behind :class:`engines.contract.Engine`; each imports its runtime lazily.

``open_engine(backend, ...)`` is the one place that maps a backend name to its class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engines.contract import Engine, EngineError, InputContract

__all__ = ["BACKENDS", "ENGINE_CACHE_DIR", "open_onnx_engine", "as_numpy_batch", "check_batch"]

#: Backend names the registry accepts, in order of preference on a CPU host.
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino", "tensorrt")

#: Where exported ONNX files and built TensorRT engines are cached unless a caller names a folder.
ENGINE_CACHE_DIR = "var/engines"


def open_onnx_engine(backend: str, onnx_path: Path, contract: InputContract, **options: Any) -> Engine:
    """Load an ONNX file on ``backend`` (onnxruntime, openvino or tensorrt)."""
    if backend == "onnxruntime":
        from engines.backends.onnxruntime_backend import OnnxRuntimeEngine  # noqa: PLC0415

        return OnnxRuntimeEngine(onnx_path, contract, **options)
    if backend == "openvino":
        from engines.backends.openvino_backend import OpenVinoEngine  # noqa: PLC0415

        return OpenVinoEngine(onnx_path, contract, **options)
    if backend == "tensorrt":
        from engines.backends.tensorrt_backend import TensorRtEngine  # noqa: PLC0415

        return TensorRtEngine(onnx_path, contract, **options)
    raise EngineError(f"unknown ONNX backend {backend!r}; known: onnxruntime, openvino, tensorrt")


def check_batch(shape: tuple[int, ...], contract: InputContract) -> None:
    """Raise EngineError unless ``shape`` is (N, C, H, W) with 1 <= N <= max_batch."""
    if len(shape) != 4 or tuple(shape[1:]) != tuple(contract.shape):
        raise EngineError(f"batch shape {tuple(shape)} does not match (N, {', '.join(map(str, contract.shape))})")
    if not 1 <= shape[0] <= contract.max_batch:
        raise EngineError(f"batch of {shape[0]} is outside 1..{contract.max_batch}")


def as_numpy_batch(batch: Any, contract: InputContract) -> np.ndarray:
    """A C-contiguous float32 numpy copy (or view) of a numpy array or torch tensor batch."""
    if hasattr(batch, "detach"):  # torch tensor, possibly on a GPU
        batch = batch.detach().to("cpu").numpy()
    array = np.ascontiguousarray(batch, dtype=np.float32)
    check_batch(array.shape, contract)
    return array
