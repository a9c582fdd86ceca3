"""What every published record says about a model that scored it (the record schema's ``models`` entry)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelProvenance"]


@dataclass(frozen=True)
class ModelProvenance:
    """What every published record says about the model that scored it."""

    name: str
    version: str
    weights_sha256: str
    trained: bool
    backend: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
