"""What the alert-class model 2.x learns from, per pool alert: the packet's Solar-System match,
the weak class label, and ACAI's five heads scored by the product's own ``acai`` model.

* ``known_solar_system``: the packet's MPC match, ``0 <= ssdistnr < 5"`` (ZTF sets ``ssnamenr``
  for the nearest known object within 30", so a name alone is not a match: 2 pool alerts name one
  at 23" and 27"). The same rule as :func:`engines.preprocess.known_solar_system`, read here from
  the Parquet columns, and checked against it in the tests.
* ``acai``: (N, 5) ACAI scores (hosted, variable, orphan, nuclear, bogus), NaN where ACAI cannot
  score the alert (schema 1.8 packets lack its features). Scored with the shipped ``acai`` card
  through the registry (the port matches ZTF's Keras models to 3e-6), so alerts with a missing
  ``drb`` (schema 3.2) are scored too, with the drb filled from braai d6_m9 as ACAI's own code
  did: 1,240 alerts, against 767 in ``teacher_scores_ztf_pool.csv``. Cached in ``var/cache``.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ACAI_HEADS", "AlertClassTargets", "acai_csv_scores", "acai_pool_scores", "load_targets", "packet_solar_system",
           "weak_label"]

ACAI_HEADS: tuple[str, ...] = ("hosted", "variable", "orphan", "nuclear", "bogus")
SOLAR_SYSTEM_RADIUS_ARCSEC = 5.0


@dataclass(frozen=True)
class AlertClassTargets:
    candid: np.ndarray                # (N,) int64, the pool's order
    known_solar_system: np.ndarray    # (N,) bool
    acai: np.ndarray                  # (N, 5) float32, NaN where ACAI does not apply

    def subset(self, index: np.ndarray) -> AlertClassTargets:
        return AlertClassTargets(self.candid[index], self.known_solar_system[index], self.acai[index])


def _number(candidate: Mapping[str, Any], name: str) -> float | None:
    try:
        value = float(candidate[name])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def weak_label(candidate: Mapping[str, Any]) -> str:
    """The pool's ``weak_label`` rule on a packet's candidate fields, for alerts outside the pool:
    asteroid (0 <= ssdistnr < 5"), else star (a PS1 source within 1.5" with sgscore1 >= 0.5),
    else galaxy_host (within 5", sgscore1 < 0.5), else hostless_or_faint (the nearest PS1
    source beyond 5"), else ambiguous (ZTF's -999: no PS1 match). Checked against every pool
    row's label in the tests."""
    ss, distance, score = _number(candidate, "ssdistnr"), _number(candidate, "distpsnr1"), _number(candidate, "sgscore1")
    if ss is not None and 0 <= ss < SOLAR_SYSTEM_RADIUS_ARCSEC:
        return "asteroid"
    if distance is not None and score is not None and distance >= 0 and score >= 0:
        if distance <= 1.5 and score >= 0.5:
            return "star"
        if distance <= 5 and score < 0.5:
            return "galaxy_host"
    if distance is not None and distance > 5:
        return "hostless_or_faint"
    return "ambiguous"


def packet_solar_system(pool_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(candid, known Solar-System object within 5") from the Parquet's candidate fields."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(Path(pool_dir) / "alerts.parquet", columns=["candid", "candidate"])
    candidate = table.column("candidate").combine_chunks()
    distance = pc.struct_field(candidate, "ssdistnr").to_numpy(zero_copy_only=False).astype(np.float64)
    candid = table.column("candid").to_numpy().astype(np.int64)
    known = np.isfinite(distance) & (distance >= 0) & (distance < SOLAR_SYSTEM_RADIUS_ARCSEC)
    return candid, known


def acai_pool_scores(pool_dir: Path, cache_dir: Path | None = Path("var/cache")) -> tuple[np.ndarray, np.ndarray]:
    """(candid, (N, 5) ACAI scores, NaN where ACAI does not apply) for every pool alert, by the
    shipped ``acai`` model on torch; cached by the Parquet file's size and time."""
    from engines.registry import load_registry
    from schemas.alert import Alert
    from schemas.decode.parquet import iter_parquet

    parquet = Path(pool_dir) / "alerts.parquet"
    st = parquet.stat()
    key = hashlib.sha256(f"acai-v1|{parquet.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"ztf_pool_acai-{key}.npz" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return z["candid"], z["acai"]
    alerts = [item for _, item in iter_parquet(parquet) if isinstance(item, Alert)]
    runner = load_registry().load_runner("acai", "torch")
    candid = np.asarray([int(a.alert_id) for a in alerts], dtype=np.int64)
    scores = np.full((len(alerts), len(ACAI_HEADS)), np.nan, dtype=np.float32)
    chosen = runner.select(alerts)
    if chosen:
        out = runner.score([alerts[i] for i in chosen])
        columns = [runner.labels.index(head) for head in ACAI_HEADS]
        scores[chosen] = out[:, columns]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, candid=candid, acai=scores)
    return candid, scores


def acai_csv_scores(teacher_csv: Path) -> tuple[np.ndarray, np.ndarray]:
    """(candid, (N, 5) ACAI scores) from ``teacher_scores_ztf_pool.csv`` (the original Keras models'
    outputs; NaN where ``acai_inputs_complete`` is not True: 767 of 2,075 rows have them)."""
    import csv

    candid, rows = [], []
    with open(teacher_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            candid.append(int(row["candid"]))
            complete = row.get("acai_inputs_complete") == "True"
            rows.append([float(row[f"acai_{head[0]}"]) if complete else np.nan for head in ACAI_HEADS])
    return np.asarray(candid, dtype=np.int64), np.asarray(rows, dtype=np.float32).reshape(len(rows), len(ACAI_HEADS))


def load_targets(pool_dir: Path, candid: np.ndarray, cache_dir: Path | None = Path("var/cache"),
                 acai_from: str = "product") -> AlertClassTargets:
    """The targets of the alerts ``candid`` (a pool's order); KeyError if one is unknown.
    ``acai_from``: ``"product"`` (the shipped acai model on every alert it applies to) or ``"csv"``
    (the reference file's 767 rows, no scoring: for quick tests)."""
    from research.training.ztf_pool import teacher_csv_for

    ss_candid, known = packet_solar_system(pool_dir)
    if acai_from == "csv":
        acai_candid, acai = acai_csv_scores(teacher_csv_for(Path(pool_dir)))
    elif acai_from == "product":
        acai_candid, acai = acai_pool_scores(pool_dir, cache_dir)
    else:
        raise ValueError(f"acai_from must be 'product' or 'csv', not {acai_from!r}")
    ss_row = {int(c): i for i, c in enumerate(ss_candid)}
    acai_row = {int(c): i for i, c in enumerate(acai_candid)}
    ss_index = np.asarray([ss_row[int(c)] for c in candid], dtype=np.int64)
    acai_index = np.asarray([acai_row[int(c)] for c in candid], dtype=np.int64)
    return AlertClassTargets(np.asarray(candid, dtype=np.int64), known[ss_index], acai[acai_index])
