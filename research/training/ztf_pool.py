"""The labelled real-alert pool (a folder given by ``--pool``, e.g. ``../shared/ztf_pool``) as arrays the trainers read.

The pool is a Fink-style Parquet dump of real ZTF public alerts (``alerts.parquet``), a label
table (``labels.csv``: the source repository or package each alert came from, a weak label from
catalogue fields, sparse catalogue labels) and the scores of ZTF's own production models for
every alert (``reference_models/teacher_scores_ztf_pool.csv``: braai ``d6_m7``, which is the
``drb`` ZTF ships, and ``d6_m9``). All three join on ``candid``.

Each alert goes through the service's own preprocessing (the decoder, then
:mod:`engines.preprocess`; the real/bogus inputs under the preprocessing key asked for), once,
and the arrays are cached as ``.npz`` keyed by the input files' sizes and modification times
and that key, so a training run or a test reads them in a second.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from engines.training.ztf_files import TrainingDataError

__all__ = ["POOL_FIELDS", "REALBOGUS_PREPROCESSING", "PoolAlerts", "load_pool", "pool_arrays_from_alerts", "teacher_csv_for"]

log = structlog.get_logger(__name__)

#: candidate fields kept beside the stamps: the weak-label rule reads the first three; alertclass 3.x's
#: reference-source head the rest (engines.networks.alertclass.REFERENCE_SOURCE_FIELDS)
POOL_FIELDS: tuple[str, ...] = ("ssdistnr", "distpsnr1", "sgscore1", "distnr", "magnr", "sigmagnr", "chinr", "sharpnr")
#: the real/bogus inputs' preprocessing unless asked otherwise (the 1.0.0 and 2.0.0 networks')
REALBOGUS_PREPROCESSING = "difference_stamps_69"


def teacher_csv_for(pool_dir: Path) -> Path:
    """The teacher scores file that belongs to a pool folder (``../reference_models`` beside it)."""
    return Path(pool_dir).parent / "reference_models" / "teacher_scores_ztf_pool.csv"


@dataclass(frozen=True)
class PoolAlerts:
    """One row per alert: network inputs and what is known about the alert."""

    realbogus_inputs: np.ndarray     # (N, 3, 69, 69) under realbogus_preprocessing
    arcsec_inputs: np.ndarray        # (N, 3, 63, 63) difference_stamps_arcsec_63
    candid: np.ndarray               # (N,) int64
    object_id: np.ndarray            # (N,) str
    source: np.ndarray               # (N,) str: the repository / package the alert came from
    weak_label: np.ndarray           # (N,) str: the pool's catalogue rule (star, galaxy_host, ...)
    teacher: np.ndarray              # (N,) float: braai d6_m7 (ZTF's drb model); NaN where unknown
    teacher_m9: np.ndarray           # (N,) float: braai d6_m9; NaN where unknown
    drb: np.ndarray                  # (N,) float: drb the alert itself carries; NaN where absent
    fields: dict[str, np.ndarray]    # POOL_FIELDS, float, NaN where absent
    realbogus_preprocessing: str = REALBOGUS_PREPROCESSING   # engines.preprocess.PREPROCESSORS key

    def __len__(self) -> int:
        return int(self.candid.shape[0])

    def subset(self, index: np.ndarray) -> PoolAlerts:
        idx = np.asarray(index)
        return replace(self, realbogus_inputs=self.realbogus_inputs[idx], arcsec_inputs=self.arcsec_inputs[idx],
                       candid=self.candid[idx], object_id=self.object_id[idx], source=self.source[idx],
                       weak_label=self.weak_label[idx], teacher=self.teacher[idx], teacher_m9=self.teacher_m9[idx],
                       drb=self.drb[idx], fields={k: v[idx] for k, v in self.fields.items()})

    def counts(self) -> dict[str, Any]:
        """Alerts, objects and per-source counts, for cards and reports."""
        sources, per = np.unique(self.source, return_counts=True)
        return {"alerts": len(self), "objects": len(set(self.object_id.tolist())),
                "per_source": {str(s): int(n) for s, n in zip(sources, per)}}


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


def _read_rows(path: Path) -> dict[int, dict[str, str]]:
    try:
        with open(path, newline="") as fh:
            return {int(r["candid"]): r for r in csv.DictReader(fh)}
    except (OSError, KeyError, ValueError, csv.Error) as exc:
        raise TrainingDataError(f"cannot read {path}: {exc}") from exc


def pool_arrays_from_alerts(alerts: list, labels: dict[int, dict[str, str]], teacher: dict[int, dict[str, str]],
                            default_source: str = "", realbogus_preprocessing: str = REALBOGUS_PREPROCESSING) -> PoolAlerts:
    """Preprocess decoded alerts and attach their labels / teacher scores (missing -> NaN or "")."""
    from engines.preprocess import PREPROCESSORS, difference_alert_batch_by_scale

    if realbogus_preprocessing not in PREPROCESSORS:
        raise TrainingDataError(f"unknown preprocessing {realbogus_preprocessing!r}")
    rb, arc = [], []
    for start in range(0, len(alerts), 256):
        chunk = alerts[start:start + 256]
        rb.append(PREPROCESSORS[realbogus_preprocessing](chunk, "cpu").numpy())
        arc.append(difference_alert_batch_by_scale(chunk, 63, 1.01).numpy())
    candid = np.asarray([int(a.alert_id) for a in alerts], dtype=np.int64)
    lab = [labels.get(int(c), {}) for c in candid]
    tea = [teacher.get(int(c), {}) for c in candid]
    return PoolAlerts(
        realbogus_inputs=np.concatenate(rb) if rb else np.empty((0, 3, 69, 69), np.float32),
        arcsec_inputs=np.concatenate(arc) if arc else np.empty((0, 3, 63, 63), np.float32),
        candid=candid,
        object_id=np.asarray([str(a.object_id) for a in alerts]),
        source=np.asarray([r.get("source") or default_source for r in lab]),
        weak_label=np.asarray([r.get("weak_label", "") for r in lab]),
        teacher=np.asarray([_float(r.get("braai_d6_m7")) for r in tea]),
        teacher_m9=np.asarray([_float(r.get("braai_d6_m9")) for r in tea]),
        drb=np.asarray([float(a.survey_scores.get("drb", np.nan)) for a in alerts]),
        fields={f: np.asarray([_float(None if a.candidate.get(f) is None else str(a.candidate.get(f))) for a in alerts])
                for f in POOL_FIELDS},
        realbogus_preprocessing=realbogus_preprocessing,
    )


def _cache_key(*paths: Path, limit: int | None, preprocessing: str = REALBOGUS_PREPROCESSING) -> str:
    # the original key's text for the original preprocessing, so existing caches stay valid
    extra = "" if preprocessing == REALBOGUS_PREPROCESSING else f"|{preprocessing}"
    digest = hashlib.sha256(f"v1|{limit}{extra}".encode())
    for path in paths:
        st = path.stat()
        digest.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _read_cache(cache: Path, realbogus_preprocessing: str) -> PoolAlerts | None:
    """The cached arrays, or None when there are none or they lack a field of :data:`POOL_FIELDS`
    (written before it was added: the pool is read again)."""
    if not cache.is_file():
        return None
    with np.load(cache, allow_pickle=False) as z:
        if any(f"field_{f}" not in z.files for f in POOL_FIELDS):
            return None
        return PoolAlerts(**{k: z[k] for k in z.files if not k.startswith("field_")},
                          fields={k[6:]: z[k] for k in z.files if k.startswith("field_")},
                          realbogus_preprocessing=realbogus_preprocessing)


def load_pool(pool_dir: Path, teacher_csv: Path | None = None, cache_dir: Path | None = Path("var/cache"),
              limit: int | None = None, realbogus_preprocessing: str = REALBOGUS_PREPROCESSING) -> PoolAlerts:
    """The pool as :class:`PoolAlerts` (first ``limit`` rows only, when given), cached in ``cache_dir``;
    the real/bogus inputs under ``realbogus_preprocessing`` (an :mod:`engines.preprocess` key).

    Rows the decoder refuses are logged and left out (the pool's README promises none)."""
    from schemas.alert import Alert
    from schemas.decode.parquet import iter_parquet

    pool_dir = Path(pool_dir)
    parquet, labels_csv = pool_dir / "alerts.parquet", pool_dir / "labels.csv"
    teacher_csv = Path(teacher_csv) if teacher_csv is not None else teacher_csv_for(pool_dir)
    for path in (parquet, labels_csv, teacher_csv):
        if not path.is_file():
            raise TrainingDataError(f"pool file {path} is missing")
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"ztf_pool-{_cache_key(parquet, labels_csv, teacher_csv, limit=limit, preprocessing=realbogus_preprocessing)}.npz"
        cached = _read_cache(cache, realbogus_preprocessing)
        if cached is not None:
            return cached
    alerts = []
    for index, item in iter_parquet(parquet, limit=limit):
        if isinstance(item, Alert):
            alerts.append(item)
        else:
            log.warning("pool_row_skipped", row=index, reason=str(item))
    pool = pool_arrays_from_alerts(alerts, _read_rows(labels_csv), _read_rows(teacher_csv),
                                   realbogus_preprocessing=realbogus_preprocessing)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: getattr(pool, k) for k in ("realbogus_inputs", "arcsec_inputs", "candid", "object_id", "source",
                                                "weak_label", "teacher", "teacher_m9", "drb")}
        np.savez(cache, **arrays, **{f"field_{k}": v for k, v in pool.fields.items()})
    log.info("pool_loaded", **pool.counts())
    return pool
