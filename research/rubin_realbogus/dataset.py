"""Network inputs and targets for each split: real alerts (soft teacher) and injections.

Every example goes through the serving preprocessing (``engines.preprocess.PREPROCESSORS``)
as an :class:`~schemas.alert.Alert`, once, so training sees exactly what the service feeds
the network. Targets are class probabilities (bogus, real): an injection's known label, or
for a real alert Rubin's ``reliability`` r as a soft target (1 - r, r), the "soft teacher".
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engines.preprocess import PREPROCESSORS
from research.rubin_realbogus.alerts import RubinAlert
from research.rubin_realbogus.injections import Base, Injection, as_alert, base_from_alert, injection_set
from schemas.alert import Alert

__all__ = ["Examples", "preprocess", "real_examples", "injection_examples", "concatenate"]


@dataclass(frozen=True)
class Examples:
    """Preprocessed inputs with targets and what each row is."""

    x: np.ndarray            # (N, 3, 69, 69) float32
    y: np.ndarray            # (N, 2) float32 (bogus, real) probabilities
    kind: np.ndarray         # "alert" or the injection kind
    label: np.ndarray        # injections: 1 real / 0 bogus; real alerts: reliability >= 0.5
    group: np.ndarray        # diaObjectId of the (base) alert: the bootstrap / split unit
    reliability: np.ndarray  # real alerts: Rubin's score; injections: NaN

    def __len__(self) -> int:
        return len(self.y)

    def take(self, mask: np.ndarray) -> Examples:
        return Examples(*(getattr(self, f)[mask] for f in ("x", "y", "kind", "label", "group", "reliability")))


def preprocess(alerts: Sequence[Alert], preprocessing: str, chunk: int = 512) -> np.ndarray:
    """(N, 3, 69, 69) float32 network inputs by the named serving preprocessing."""
    fn = PREPROCESSORS[preprocessing]
    parts = [fn(list(alerts[i:i + chunk]), "cpu").numpy() for i in range(0, len(alerts), chunk)]
    return np.concatenate(parts) if parts else np.empty((0, 3, 69, 69), np.float32)


def real_examples(rubin: Sequence[RubinAlert], preprocessing: str) -> Examples:
    """Real alerts with Rubin's reliability as the soft target (alerts without one are left out)."""
    rubin = [r for r in rubin if np.isfinite(r.reliability)]
    rel = np.array([r.reliability for r in rubin], dtype=np.float32)
    y = np.stack([1 - rel, rel], axis=1).astype(np.float32)
    return Examples(preprocess([r.alert for r in rubin], preprocessing), y, np.array(["alert"] * len(rubin)),
                    (rel >= 0.5).astype(np.int64), np.array([r.alert.object_id for r in rubin]), rel)


def injection_examples(rubin: Sequence[RubinAlert], per_base: int, seed: int, preprocessing: str,
                       psf_spread: tuple[float, float] | None = None) -> tuple[Examples, list[Injection], list[Base]]:
    """``per_base`` injections on every alert of ``rubin``; also the injections and bases (for
    scoring them with other models' preprocessing)."""
    bases = [base_from_alert(r.alert) for r in rubin]
    injections = injection_set(bases, per_base, seed, psf_spread=psf_spread)
    by_id = {int(b.alert.alert_id): b for b in bases}
    alerts = [as_alert(inj, by_id[inj.base_id]) for inj in injections]
    labels = np.array([inj.label for inj in injections], dtype=np.int64)
    y = np.stack([1 - labels, labels], axis=1).astype(np.float32)
    groups = np.array([by_id[inj.base_id].alert.object_id for inj in injections])
    examples = Examples(preprocess(alerts, preprocessing), y, np.array([inj.kind for inj in injections]), labels,
                        groups, np.full(len(injections), np.nan, np.float32))
    return examples, injections, bases


def concatenate(parts: Sequence[Examples]) -> Examples:
    parts = [p for p in parts if len(p)]
    return Examples(*(np.concatenate([getattr(p, f) for p in parts])
                      for f in ("x", "y", "kind", "label", "group", "reliability")))
