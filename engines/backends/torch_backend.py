"""The PyTorch engine: the reference every other backend is checked against."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from engines.backends import check_batch, split_inputs
from engines.contract import EngineError, InputContract
from engines.networks import ScoredNetwork

__all__ = ["TorchEngine"]


class TorchEngine:
    """Eager PyTorch on ``device`` (cpu or cuda); same graph as the export (logits + softmax)."""

    backend = "torch"
    #: a module in inference mode may be called from several threads at once
    concurrent_calls = True

    def __init__(self, network: nn.Module, contract: InputContract, device: str = "cpu") -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError(f"torch backend asked for {device!r} but CUDA is not available")
        self.contract = contract
        self.device = torch.device(device)
        self.precision = "fp32"
        self._model: nn.Module | None = ScoredNetwork(network, activation=contract.output_activation).eval().to(self.device)

    def infer(self, batch: Any) -> np.ndarray:
        if self._model is None:
            raise EngineError("torch engine is closed")
        inputs = [t if isinstance(t, torch.Tensor) else torch.from_numpy(np.asarray(t, dtype=np.float32)) for t in split_inputs(batch, self.contract)]
        check_batch(tuple(tuple(t.shape) for t in inputs), self.contract)
        inputs = [t.to(self.device, dtype=torch.float32, non_blocking=True) for t in inputs]
        with torch.inference_mode():
            return self._model(*inputs).float().cpu().numpy()

    def close(self) -> None:
        self._model = None
