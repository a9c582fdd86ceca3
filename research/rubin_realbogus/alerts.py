"""The real Rubin alerts of the study, deduplicated, each with its source and its split.

The split holds out whole dates, fields and sources, so the test predicts unseen nights:

* **train**: ``rubin_pool/fink-tutorials`` alerts of the COSMOS field (RA < 170 deg), one night,
  2026-03-09 (Rubin's 2026-02-13 model; all reliability >= 0.5 by Rubin's cut);
* **validation**: ``rubin_pool/fink-tutorials`` alerts of the other field (RA ~ 185 deg, band i),
  the same night: a field never trained on (for early stopping and the threshold);
* **test**: every 2025 packet (and older): ``rubin_pool/fink-science`` (2025-12-31),
  ``data/rubin/fink/v9_0``, ``data/rubin/alerce``, ``data/rubin/alerce-kafka``, ``rubin_pool/boom``.
  Subsets: ``lsstcam_2025`` (observed in 2025, MJD 60676..61040 + the 2025-12-31 night) is
  what the hidden evaluation resembles; ``hsc_precursor`` (MJD < 58000: HSC data of 2016 run
  through Rubin's pipeline, 0.168" pixels) is reported apart.

``data/rubin/fink/v7_4`` is SIMULATED and is never read. Alerts are deduplicated by
diaSourceId across folders (the first folder in the order above keeps it).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.alert import Alert
from schemas.walk import walk_decoded

__all__ = ["RubinAlert", "SOURCES", "load_rubin_alerts", "subset_of", "VALIDATION_MIN_RA"]

#: (source name, folder under --rubin-pool or --rubin-data, which root), in dedup order
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("fink-tutorials", "fink-tutorials", "pool"),
    ("fink-science", "fink-science", "pool"),
    ("fink-v9_0", "fink/v9_0", "data"),
    ("alerce", "alerce", "data"),
    ("alerce-kafka", "alerce-kafka", "data"),
    ("boom", "boom", "pool"),
)
#: fink-tutorials alerts east of this RA (the field at RA ~ 185 deg) validate
VALIDATION_MIN_RA = 170.0
_MJD_2025 = (60676.0, 61041.0 + 1.0)     # 2025-01-01 .. 2025-12-31 (inclusive of that night)


@dataclass(frozen=True)
class RubinAlert:
    alert: Alert
    source: str          # one of SOURCES' names
    split: str           # train / validation / test
    subset: str          # lsstcam_2026 / lsstcam_2025 / hsc_precursor

    @property
    def reliability(self) -> float:
        value = self.alert.survey_scores.get("reliability")
        return float(value) if value is not None else float("nan")


def subset_of(alert: Alert) -> str:
    """Which camera/period an alert comes from, by its observation date."""
    if alert.mjd < 58000:
        return "hsc_precursor"
    if _MJD_2025[0] <= alert.mjd < _MJD_2025[1]:
        return "lsstcam_2025"
    return "lsstcam_2026"


def _split_of(source: str, alert: Alert) -> str:
    if source == "fink-tutorials":
        return "validation" if alert.ra >= VALIDATION_MIN_RA else "train"
    return "test"


def load_rubin_alerts(rubin_pool: Path, rubin_data: Path, sources: Sequence[str] | None = None) -> list[RubinAlert]:
    """Every decodable real Rubin alert with three cutouts under the two roots, deduplicated by
    diaSourceId, in a fixed order (source, then file order). Missing folders are skipped."""
    roots = {"pool": Path(rubin_pool), "data": Path(rubin_data)}
    seen: set[int] = set()
    out: list[RubinAlert] = []
    for name, folder, root in SOURCES:
        if sources is not None and name not in sources:
            continue
        path = roots[root] / folder
        if not path.is_dir():
            continue
        for _entry, _index, item in walk_decoded([path]):
            if not isinstance(item, Alert) or item.survey != "rubin":
                continue
            if any(np.ndim(s.data) != 2 for s in (item.science, item.template, item.difference)):
                continue
            if int(item.alert_id) in seen:
                continue
            seen.add(int(item.alert_id))
            out.append(RubinAlert(item, name, _split_of(name, item), subset_of(item)))
    return out
