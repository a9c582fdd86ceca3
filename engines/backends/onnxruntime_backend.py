"""ONNX Runtime engine: CPU, or CUDA where the CUDA execution provider is installed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import structlog

from engines.backends import as_numpy_inputs
from engines.contract import EngineError, InputContract

__all__ = ["OnnxRuntimeEngine"]

log = structlog.get_logger(__name__)


class OnnxRuntimeEngine:
    """One InferenceSession, created once. ``device='cuda'`` requires the CUDA provider."""

    backend = "onnxruntime"
    #: ``InferenceSession.run`` may be called from several threads at once
    concurrent_calls = True

    def __init__(self, onnx_path: str | Path, contract: InputContract, device: str = "cpu", threads: int = 0) -> None:
        """``threads`` > 0 sets the intra-op threads (and turns busy-waiting off); 0 keeps ONNX Runtime's default."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineError(f"onnxruntime cannot be imported: {exc}") from exc
        available = ort.get_available_providers()
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise EngineError(f"onnxruntime has no CUDAExecutionProvider here (available: {available})")
            providers = ["CUDAExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            # no busy-waiting between operators: the service's decode workers share these cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        #: intra-op threads asked for (0: ONNX Runtime's default, the physical cores)
        self.threads = threads
        try:
            self._session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
        except Exception as exc:  # ort raises its own Fail/InvalidGraph types
            raise EngineError(f"onnxruntime could not load {onnx_path}: {exc}") from exc
        self.contract = contract
        self.device = device
        self.precision = "fp32"
        self.providers = tuple(self._session.get_providers())
        log.info("ort_engine_loaded", path=str(onnx_path), providers=self.providers)

    def infer(self, batch: Any) -> np.ndarray:
        if self._session is None:
            raise EngineError("onnxruntime engine is closed")
        feeds = as_numpy_inputs(batch, self.contract)
        try:
            (out,) = self._session.run([self.contract.output_name], feeds)
        except Exception as exc:
            raise EngineError(f"onnxruntime inference failed: {exc}") from exc
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self._session = None
