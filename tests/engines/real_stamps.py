"""Real ZTF alerts for engine tests: the bundled packets (schemas/samples), plus ../shared/data
where it sits beside the repo (more alerts, and edge-cut stamps the bundled ones lack)."""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from schemas.alert import Alert
from schemas.decode import iter_file

__all__ = ["real_alerts", "is_edge", "has_nan"]


def is_edge(alert: Alert) -> bool:
    """A stamp cut by the detector edge (smaller than ZTF's 63 x 63)."""
    return any(s.shape != (63, 63) for s in (alert.science, alert.template, alert.difference))


def has_nan(alert: Alert) -> bool:
    return any(not np.isfinite(s.data).all() for s in (alert.science, alert.template, alert.difference))


@lru_cache(maxsize=4)
def real_alerts(roots: Sequence[Path], limit: int = 64) -> tuple[Alert, ...]:
    """Up to ``limit`` decoded real ZTF alerts under each root's ``ztf/``: edge-cut stamps first,
    then stamps holding NaN pixels, then the rest (so a small prefix exercises both paths)."""
    alerts: list[Alert] = []
    for root in roots:
        for path in sorted((root / "ztf").rglob("*.avro")):
            for _index, item in iter_file(path):
                if isinstance(item, Alert):
                    alerts.append(item)
    ordered = sorted(alerts, key=lambda a: (not is_edge(a), not has_nan(a)))  # stable within each group
    return tuple(ordered[:limit])
