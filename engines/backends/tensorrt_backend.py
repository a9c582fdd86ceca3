"""TensorRT engine: the production path on a GPU host.

Build: ONNX -> ``trt.Builder`` network via ``trt.OnnxParser`` -> one optimization profile over
the batch dimension of every input (min 1, opt ``contract.opt_batch``, max ``contract.max_batch``;
the image input, and the feature input where the contract declares one) -> a
serialized engine, with a timing cache kept beside the engines so rebuilds are fast.

Precision: TensorRT 11 builds strongly typed networks only (the FP16 builder flag is gone), so
the precision is carried by the ONNX types: for FP16 the registry exports the body in half
precision with float32 input/output (:func:`engines.export.export_onnx`, ``precision="fp16"``).
``precision_for_device`` picks fp16 on GPUs with tensor cores (compute capability >= 7.0).
On TensorRT 10 the ``STRONGLY_TYPED`` creation flag is set so the same ONNX means the same.

Engine files are named by what they were built from: ONNX sha256, TensorRT version, GPU
compute capability and precision, so a stale engine is never loaded.

Run: device buffers (torch CUDA tensors) are allocated once at ``max_batch`` per input and output
and bound by name with ``set_tensor_address``; each batch sets every input's shape by name with
``set_input_shape`` and calls ``execute_async_v3`` on a dedicated CUDA stream. Inputs already on the GPU (torch tensors from the device preprocessing)
are copied device-to-device; host inputs go through pinned memory. If CUDA or TensorRT cannot
load, EngineError is raised: there is no CPU fallback here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from engines.backends import ENGINE_CACHE_DIR, check_batch, split_inputs
from engines.contract import EngineError, InputContract

__all__ = [
    "TensorRtEngine",
    "import_tensorrt",
    "precision_for_device",
    "engine_file_name",
    "build_serialized_engine",
    "TENSORRT_API_NAMES",
]

log = structlog.get_logger(__name__)

#: Every TensorRT Python name this module uses (checked against the installed bindings' strings
#: by tests/engines/test_tensorrt.py, so a renamed or removed API fails a CPU-only test run).
TENSORRT_API_NAMES: tuple[str, ...] = (
    "Logger", "WARNING", "Builder", "create_network", "NetworkDefinitionCreationFlag", "STRONGLY_TYPED",
    "OnnxParser", "parse_from_file", "num_errors", "get_error", "create_builder_config",
    "set_memory_pool_limit", "MemoryPoolType", "WORKSPACE", "create_optimization_profile", "set_shape",
    "add_optimization_profile", "create_timing_cache", "set_timing_cache", "get_timing_cache", "serialize",
    "build_serialized_network", "Runtime", "deserialize_cuda_engine", "create_execution_context",
    "num_io_tensors", "get_tensor_name", "get_tensor_mode", "TensorIOMode", "INPUT", "OUTPUT",
    "get_tensor_dtype", "DataType", "FLOAT", "HALF", "set_tensor_address", "set_input_shape",
    "execute_async_v3", "__version__",
)


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or EngineError saying why it cannot load (never a fallback)."""
    errors = []
    for module_name in ("tensorrt", "tensorrt_bindings"):
        try:
            return __import__(module_name)
        except (ImportError, OSError) as exc:  # OSError: a shared library is missing
            errors.append(f"{module_name}: {exc}")
    raise EngineError("TensorRT cannot be loaded (" + "; ".join(errors) + "). Install tensorrt-cu12 with its libraries on a CUDA host.")


def _require_cuda(device: str) -> Any:
    if not device.startswith("cuda"):
        raise EngineError(f"the TensorRT backend runs on a CUDA device, not {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise EngineError("the TensorRT backend needs CUDA, and torch reports no CUDA device here")
    return torch


def precision_for_device(device: str = "cuda", precision: str | None = None) -> str:
    """``precision`` if given, else 'fp16' on GPUs with tensor cores (compute capability >= 7.0),
    else 'fp32'. Raises EngineError when ``device`` is not an available CUDA device."""
    torch = _require_cuda(device)
    if precision is not None:
        if precision not in ("fp16", "fp32"):
            raise EngineError(f"TensorRT precision must be fp16 or fp32, not {precision!r}")
        return precision
    major, _minor = torch.cuda.get_device_capability(torch.device(device))
    return "fp16" if major >= 7 else "fp32"


def engine_file_name(stem: str, onnx_sha256: str, trt_version: str, capability: tuple[int, int], precision: str) -> str:
    """``<stem>-<onnx sha256>-trt<version>-sm<major><minor>-<precision>.engine``."""
    return f"{stem}-{onnx_sha256}-trt{trt_version}-sm{capability[0]}{capability[1]}-{precision}.engine"


def _write_atomic(path: Path, data: bytes | memoryview) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(bytes(data))
    tmp.replace(path)


def cached_or_built(engine_path: Path, build: Any) -> bytes:
    """A plan's bytes: the cached file when its sha256 matches the one recorded when it was built
    (:mod:`engines.cache_records`), else ``build()`` now, written and recorded. A plan planted in
    the cache, or cut short, is rebuilt rather than deserialized."""
    from engines.cache_records import record_sha256, why_untrusted

    why = why_untrusted(engine_path)
    if why is None:
        log.info("trt_engine_cached", path=str(engine_path))
        return engine_path.read_bytes()
    if why != "missing":
        log.warning("trt_engine_cache_untrusted", path=str(engine_path), why=why, note="rebuilt from the ONNX export")
    serialized = build()
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(engine_path, serialized)
    record_sha256(engine_path)
    log.info("trt_engine_build_done", path=str(engine_path), bytes=len(serialized))
    return serialized


def build_serialized_engine(
    trt: Any,
    onnx_path: Path,
    contract: InputContract,
    timing_cache_path: Path,
    workspace_bytes: int = 1 << 30,
) -> bytes:
    """Parse the ONNX file and build a serialized engine with a batch profile and timing cache."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 11:  # 11.x: always strongly typed, flag deprecated
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    opt = min(contract.opt_batch, contract.max_batch)
    for name, one, best, most in zip(contract.input_names, contract.input_shapes(1), contract.input_shapes(opt),
                                     contract.input_shapes(contract.max_batch)):
        profile.set_shape(name, one, best, most)
    config.add_optimization_profile(profile)
    cached = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(cached)
    config.set_timing_cache(timing_cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    timing_cache_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(timing_cache_path, config.get_timing_cache().serialize())
    return bytes(serialized)


class TensorRtEngine:
    """A deserialized engine, one execution context, buffers bound once, one CUDA stream.

    ``onnx_path`` must already carry the wanted ``precision`` (see module docstring);
    ``cache_dir`` holds the engine files and the timing cache.
    """

    backend = "tensorrt"
    #: one execution context and its buffers: one call at a time
    concurrent_calls = False

    def __init__(
        self,
        onnx_path: str | Path,
        contract: InputContract,
        device: str = "cuda",
        precision: str = "fp16",
        cache_dir: str | Path = ENGINE_CACHE_DIR,
        onnx_sha256: str | None = None,
        workspace_bytes: int = 1 << 30,
    ) -> None:
        torch = _require_cuda(device)
        trt = import_tensorrt()
        self.contract = contract
        self.device = device
        self.precision = precision
        self._torch = torch
        self._torch_device = torch.device(device)
        serialized = self._serialized_engine(trt, Path(onnx_path), Path(cache_dir), onnx_sha256, workspace_bytes)
        self._deserialize(trt, serialized)
        self._bind_buffers(self._io_dtypes(trt))
        log.info("trt_engine_loaded", path=str(self.engine_path), trt=trt.__version__, precision=precision)

    def _serialized_engine(self, trt: Any, onnx_path: Path, cache_dir: Path, onnx_sha256: str | None,
                           workspace_bytes: int) -> bytes:
        """The engine's bytes: from ``cache_dir`` when this ONNX file, TensorRT version, GPU and
        precision were built before, else built now (and cached, with the timing cache)."""
        from engines.export import file_sha256

        capability = self._torch.cuda.get_device_capability(self._torch_device)
        sha = onnx_sha256 or file_sha256(onnx_path)
        self.engine_path = cache_dir / engine_file_name(onnx_path.stem, sha, trt.__version__, capability, self.precision)

        def build() -> bytes:
            log.info("trt_engine_build_start", onnx=str(onnx_path), precision=self.precision, capability=capability)
            return build_serialized_engine(
                trt, onnx_path, self.contract, cache_dir / f"timing-trt{trt.__version__}-sm{capability[0]}{capability[1]}.cache",
                workspace_bytes)

        return cached_or_built(self.engine_path, build)

    def _deserialize(self, trt: Any, serialized: bytes) -> None:
        """The runtime, the engine and its one execution context."""
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(serialized)
        if self._engine is None:
            raise EngineError(f"TensorRT could not deserialize {self.engine_path}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError("TensorRT could not create an execution context")

    def _io_dtypes(self, trt: Any) -> dict[str, Any]:
        """The torch dtype of each tensor the contract names, checked against the engine's I/O."""
        torch = self._torch
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        io = {}
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            io[name] = (self._engine.get_tensor_mode(name), self._engine.get_tensor_dtype(name))
        contract = self.contract
        wanted = [(name, trt.TensorIOMode.INPUT) for name in contract.input_names] + [(contract.output_name, trt.TensorIOMode.OUTPUT)]
        for name, mode in wanted:
            if name not in io or io[name][0] != mode:
                raise EngineError(f"engine {self.engine_path.name} has no {mode} tensor {name!r} (has {sorted(io)})")
            if io[name][1] not in dtypes:
                raise EngineError(f"engine tensor {name!r} has unsupported type {io[name][1]}")
        return {name: dtypes[io[name][1]] for name, _ in wanted}

    def _bind_buffers(self, dtypes: dict[str, Any]) -> None:
        """Device buffers for the largest batch, bound to the context once; a pinned host output."""
        torch, contract, n_max = self._torch, self.contract, self.contract.max_batch
        self._stream = torch.cuda.Stream(device=self._torch_device)
        self._inputs = {
            name: torch.empty(shape, dtype=dtypes[name], device=self._torch_device)
            for name, shape in zip(contract.input_names, contract.input_shapes(n_max))
        }
        self._output = torch.empty((n_max, len(contract.labels)), dtype=dtypes[contract.output_name], device=self._torch_device)
        self._host_output = torch.empty(self._output.shape, dtype=self._output.dtype, pin_memory=True)
        for name, buffer in self._inputs.items():
            self._context.set_tensor_address(name, buffer.data_ptr())
        self._context.set_tensor_address(contract.output_name, self._output.data_ptr())

    def infer(self, batch: Any) -> np.ndarray:
        """Probabilities (N, K) for a (N, C, H, W) batch (with its (N, F) features where the
        contract declares them): numpy, host tensors or CUDA tensors."""
        if self._context is None:
            raise EngineError("tensorrt engine is closed")
        torch = self._torch
        xs = [t if isinstance(t, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32))
              for t in split_inputs(batch, self.contract)]
        check_batch(tuple(tuple(t.shape) for t in xs), self.contract)
        n = int(xs[0].shape[0])
        xs = [x.pin_memory() if x.device.type == "cpu" and not x.is_pinned() else x for x in xs]  # truly asynchronous copies
        producer = torch.cuda.current_stream(self._torch_device)
        with torch.cuda.stream(self._stream):
            self._stream.wait_stream(producer)  # the batch may still be written by preprocessing
            for (name, buffer), x, shape in zip(self._inputs.items(), xs, self.contract.input_shapes(n)):
                buffer[:n].copy_(x, non_blocking=True)
                self._context.set_input_shape(name, shape)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise EngineError("TensorRT execute_async_v3 reported failure")
            self._host_output[:n].copy_(self._output[:n], non_blocking=True)
        for x in xs:
            if x.device.type == "cuda":
                x.record_stream(self._stream)
        self._stream.synchronize()
        return self._host_output[:n].float().numpy().copy()

    def close(self) -> None:
        if self._context is not None:
            self._stream.synchronize()
        self._context = None
        self._engine = None
        self._runtime = None
        self._inputs = {}
        self._output = self._host_output = None
