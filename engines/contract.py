"""The engine contract every backend honours: load once, ``infer(batch) -> scores``, ``close()``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from schemas.provenance import ModelProvenance

import numpy as np

__all__ = ["InputContract", "ModelProvenance", "Engine", "EngineError"]  # ModelProvenance lives in schemas


class EngineError(RuntimeError):
    """An engine could not be built, loaded or run. Never caught to fall back silently."""


@dataclass(frozen=True)
class InputContract:
    """What an engine takes and gives: one named float input (N, C, H, W), one output (N, K)."""

    input_name: str
    output_name: str
    shape: tuple[int, int, int]          # (C, H, W) of one preprocessed input
    labels: tuple[str, ...]              # output column names, e.g. ("bogus", "real")
    dtype: str = "float32"
    max_batch: int = 1024
    opt_batch: int = 256


@runtime_checkable
class Engine(Protocol):
    """A loaded network on one backend."""

    contract: InputContract
    backend: str

    def infer(self, batch: Any) -> np.ndarray:
        """Scores for a batch: ``batch`` is a float32 array or torch tensor (N, C, H, W) with
        ``N <= contract.max_batch``; returns a float32 numpy array (N, len(labels))."""

    def close(self) -> None:
        """Release the backend's resources; the engine is unusable afterwards."""
