"""Real ZTF alerts from ../shared/data, decoded with the project's decoder, for engine tests."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from schemas.alert import Alert
from schemas.decode import iter_file

__all__ = ["real_alerts"]


@lru_cache(maxsize=4)
def real_alerts(shared_data: Path, limit: int = 64) -> tuple[Alert, ...]:
    """Up to ``limit`` decoded real ZTF alerts, edge-cut stamps (smaller than 63x63) first."""
    alerts: list[Alert] = []
    for path in sorted((shared_data / "ztf").rglob("*.avro")):
        for _index, item in iter_file(path):
            if isinstance(item, Alert):
                alerts.append(item)
    def is_edge(alert: Alert) -> bool:
        return any(s.shape != (63, 63) for s in (alert.science, alert.template, alert.difference))

    ordered = sorted(alerts, key=lambda a: not is_edge(a))  # stable: edge stamps first
    return tuple(ordered[:limit])
