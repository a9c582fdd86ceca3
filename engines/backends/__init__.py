"""Backends behind :class:`engines.contract.Engine`; each imports its runtime lazily.

``open_engine(backend, ...)`` is the one place that maps a backend name to its class.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np

from engines.contract import Engine, EngineError, InputContract

__all__ = ["BACKENDS", "BackendName", "ENGINE_CACHE_DIR", "state_dir", "usable_cores", "open_onnx_engine", "as_numpy_batch", "as_numpy_inputs",
           "check_batch", "split_inputs"]

#: A backend's name, as the settings type it (``engine.backend``, ``engine.backends``).
BackendName = Literal["torch", "onnxruntime", "openvino", "tensorrt"]
#: Backend names the registry accepts, in order of preference on a CPU host.
BACKENDS: tuple[str, ...] = get_args(BackendName)

def state_dir() -> Path:
    """The service's state directory, absolute: ``SC_STATE_DIR``, else ``$XDG_STATE_HOME`` (or
    ``~/.local/state``) ``/survey-classifier``. Never relative to wherever a command starts."""
    named = os.environ.get("SC_STATE_DIR")
    if named:
        return Path(named).absolute()
    base = os.environ.get("XDG_STATE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".local" / "state")
        except (RuntimeError, KeyError):   # a container user with neither HOME nor a passwd entry
            base = str(Path(tempfile.gettempdir()) / f"uid-{os.getuid()}")
    return Path(base).absolute() / "survey-classifier"


#: Where exported ONNX files and built TensorRT engines are cached unless a setting or a command
#: names a folder (``engine.cache_dir``; the shipped configs do): ``<state dir>/engines``.
ENGINE_CACHE_DIR = str(state_dir() / "engines")


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def open_onnx_engine(backend: str, onnx_path: Path, contract: InputContract, **options: Any) -> Engine:
    """Load an ONNX file on ``backend`` (onnxruntime, openvino or tensorrt)."""
    if backend == "onnxruntime":
        from engines.backends.onnxruntime_backend import OnnxRuntimeEngine

        return OnnxRuntimeEngine(onnx_path, contract, **options)
    if backend == "openvino":
        from engines.backends.openvino_backend import OpenVinoEngine

        return OpenVinoEngine(onnx_path, contract, **options)
    if backend == "tensorrt":
        from engines.backends.tensorrt_backend import TensorRtEngine

        return TensorRtEngine(onnx_path, contract, **options)
    raise EngineError(f"unknown ONNX backend {backend!r}; known: onnxruntime, openvino, tensorrt")


def split_inputs(batch: Any, contract: InputContract) -> tuple[Any, ...]:
    """A batch as one entry per contract input: ``(images,)`` or ``(images, features)``."""
    if contract.feature_count:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise EngineError(f"this model takes (images, features) batches ({contract.input_names}), got {type(batch).__name__}")
        return tuple(batch)
    if isinstance(batch, (tuple, list)):
        if len(batch) != 1:
            raise EngineError(f"this model takes one input ({contract.input_name}), got {len(batch)}")
        return tuple(batch)
    return (batch,)


def check_batch(shape: tuple[int, ...] | tuple[tuple[int, ...], ...], contract: InputContract) -> None:
    """Raise EngineError unless the batch matches the contract: the image input (N, C, H, W)
    with 1 <= N <= max_batch, and a feature input (N, F) where declared. ``shape`` is the image
    shape, or a tuple of every input's shape."""
    shapes = cast(tuple[tuple[int, ...], ...], tuple(shape) if shape and isinstance(shape[0], tuple) else (tuple(shape),))
    if len(shapes) != len(contract.input_names):
        raise EngineError(f"batch has {len(shapes)} inputs, the model takes {contract.input_names}")
    image = shapes[0]
    if len(image) != 4 or tuple(image[1:]) != tuple(contract.shape):
        raise EngineError(f"batch shape {tuple(image)} does not match (N, {', '.join(map(str, contract.shape))})")
    if not 1 <= image[0] <= contract.max_batch:
        raise EngineError(f"batch of {image[0]} is outside 1..{contract.max_batch}")
    if contract.feature_count and tuple(shapes[1]) != (image[0], contract.feature_count):
        raise EngineError(f"feature input {contract.feature_name!r} shape {tuple(shapes[1])} != ({image[0]}, {contract.feature_count})")


def _to_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor, possibly on a GPU
        array = array.detach().to("cpu").numpy()
    return np.ascontiguousarray(array, dtype=np.float32)


def as_numpy_inputs(batch: Any, contract: InputContract) -> dict[str, np.ndarray]:
    """Input name -> C-contiguous float32 numpy array, checked against the contract."""
    arrays = tuple(_to_numpy(a) for a in split_inputs(batch, contract))
    check_batch(tuple(a.shape for a in arrays), contract)
    return dict(zip(contract.input_names, arrays))


def as_numpy_batch(batch: Any, contract: InputContract) -> np.ndarray:
    """A C-contiguous float32 numpy copy (or view) of a numpy array or torch tensor batch."""
    return as_numpy_inputs(batch, contract)[contract.input_name]
