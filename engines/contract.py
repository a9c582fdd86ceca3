"""The engine contract every backend honours: load once, ``infer(batch) -> scores``, ``close()``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from schemas.provenance import ModelProvenance

__all__ = ["InputContract", "ModelProvenance", "Engine", "EngineError"]  # ModelProvenance lives in schemas


class EngineError(RuntimeError):
    """An engine could not be built, loaded or run. Never caught to fall back silently."""


@dataclass(frozen=True)
class InputContract:
    """What an engine takes and gives: one named float image input (N, C, H, W), optionally a
    second named float feature input (N, F), and one output (N, K).

    ``feature_name``/``feature_count``: a model that also reads a feature vector per item (ACAI:
    25 alert catalogue values) declares it here; it is exported as the ONNX graph's second input
    and every backend binds it by name. Without it (``feature_count == 0``) a batch is one
    array; with it a batch is the pair ``(images, features)``.

    ``output_activation``: ``"softmax"`` when the network gives logits (our networks), ``"none"``
    when it already gives probabilities (imported Keras models end in a sigmoid).
    """

    input_name: str
    output_name: str
    shape: tuple[int, ...]               # (C, H, W) of one preprocessed input (as read from a card)
    labels: tuple[str, ...]              # output column names, e.g. ("bogus", "real")
    dtype: str = "float32"
    max_batch: int = 1024
    opt_batch: int = 256
    feature_name: str = ""
    feature_count: int = 0
    output_activation: str = "softmax"

    @property
    def input_names(self) -> tuple[str, ...]:
        """The engine's input names in the order a batch carries them."""
        return (self.input_name, self.feature_name) if self.feature_count else (self.input_name,)

    def input_shapes(self, n: int) -> tuple[tuple[int, ...], ...]:
        """The shape of each input for a batch of ``n``, in :attr:`input_names` order."""
        image = (n, *self.shape)
        return (image, (n, self.feature_count)) if self.feature_count else (image,)


@runtime_checkable
class Engine(Protocol):
    """A loaded network on one backend."""

    contract: InputContract
    backend: str

    def infer(self, batch: Any) -> np.ndarray:
        """Scores for a batch: ``batch`` is a float32 array or torch tensor (N, C, H, W) with
        ``N <= contract.max_batch`` (a pair ``(images, features)`` when the contract declares a
        feature input); returns a float32 numpy array (N, len(labels))."""

    def close(self) -> None:
        """Release the backend's resources; the engine is unusable afterwards."""
