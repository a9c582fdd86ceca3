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
    #: The surveys the model was trained and checked on (its card's ``surveys``): a score of an
    #: input of another survey is published as ``validated = false``.
    #: None: not stated (records before v1.3 and hand-built provenance).
    surveys: tuple[str, ...] | None = None

    def validated_on(self, survey: str) -> bool | None:
        """Whether the model was checked on ``survey``; None where the provenance does not say."""
        return None if self.surveys is None else survey in self.surveys
