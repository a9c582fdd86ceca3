"""OpenVINO engine on the CPU.

OpenVINO picks bf16 inference precision by default on CPUs with AVX-512 BF16 / AMX (this
host's); ``precision`` makes the choice explicit: ``"f32"`` (default, used by the parity
tests) or ``"bf16"`` (faster, ~1e-2 relative error). ``self.precision`` reports the precision
the compiled model actually uses (read back from the device).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import structlog

from engines.backends import as_numpy_inputs
from engines.contract import EngineError, InputContract

__all__ = ["OpenVinoEngine", "OPENVINO_PRECISIONS"]

log = structlog.get_logger(__name__)

OPENVINO_PRECISIONS: tuple[str, ...] = ("f32", "bf16")


class OpenVinoEngine:
    """A compiled model and one infer request, created once."""

    backend = "openvino"
    #: one infer request: one call at a time (requests per thread on one compiled model deadlocked here)
    concurrent_calls = False

    def __init__(
        self,
        onnx_path: str | Path,
        contract: InputContract,
        device: str = "cpu",
        precision: str = "f32",
        threads: int = 0,
        performance_hint: str = "LATENCY",
    ) -> None:
        if device != "cpu":
            raise EngineError(f"the OpenVINO backend here runs on the CPU only, not {device!r}")
        if precision not in OPENVINO_PRECISIONS:
            raise EngineError(f"OpenVINO precision must be one of {OPENVINO_PRECISIONS}, not {precision!r}")
        try:
            import openvino as ov
            import openvino.properties.hint as hints
        except ImportError as exc:
            raise EngineError(f"openvino cannot be imported: {exc}") from exc
        config: dict[str, Any] = {
            hints.inference_precision: ov.Type.f32 if precision == "f32" else ov.Type.bf16,
            hints.performance_mode: getattr(hints.PerformanceMode, performance_hint),
        }
        if threads:
            import openvino.properties as props

            config[props.inference_num_threads] = threads
        try:
            core = ov.Core()
            model = core.read_model(str(onnx_path))
            self._compiled = core.compile_model(model, "CPU", config)
            self._request = self._compiled.create_infer_request()
            actual = self._compiled.get_property(hints.inference_precision)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise EngineError(f"OpenVINO could not compile {onnx_path}: {exc}") from exc
        self.contract = contract
        self.device = device
        #: inference threads asked for (0: OpenVINO's default)
        self.threads = threads
        self.precision = actual.get_type_name() if hasattr(actual, "get_type_name") else str(actual)
        self._output = self._compiled.output(contract.output_name)
        log.info("openvino_engine_loaded", path=str(onnx_path), precision=self.precision)

    def infer(self, batch: Any) -> np.ndarray:
        if self._request is None:
            raise EngineError("openvino engine is closed")
        feeds = as_numpy_inputs(batch, self.contract)
        try:
            result = self._request.infer(feeds)
        except Exception as exc:
            raise EngineError(f"OpenVINO inference failed: {exc}") from exc
        return np.array(result[self._output], dtype=np.float32)  # copy: the request reuses its buffer

    def close(self) -> None:
        self._request = None
        self._compiled = None
