"""Real ZTF alert files for the injection bases and the drb-agreement check.

The split is by *object* and by *what the packet carries*: alerts with ZTF's ``drb`` score are
kept for the agreement check (they are the only ones we can compare against); alerts without
``drb`` (older schemas) become injection bases, minus any object that also appears in the
check set. So no check alert, and no object of a check alert, is ever an injection base.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from schemas.alert import Alert

__all__ = ["ZtfAlertSplit", "TrainingDataError", "candidate_fields", "iter_alerts", "split_ztf_alerts"]

log = structlog.get_logger(__name__)


class TrainingDataError(RuntimeError):
    """Training or evaluation data could not be read or is unusable."""


@dataclass(frozen=True)
class ZtfAlertSplit:
    """Injection bases and drb-check alerts, disjoint by object id."""

    bases: tuple[Alert, ...]
    checks: tuple[Alert, ...]
    fwhm_by_alert_id: dict[int, float]


def candidate_fields(path: Path, names: tuple[str, ...] = ("fwhm",)) -> dict[int, dict[str, float]]:
    """``candid -> {name: value}`` of candidate fields in the ZTF alerts under ``path`` (e.g. fwhm).

    Read through the one walker, so files, directories, tarballs and Parquet dumps all work;
    the values come from each alert's candidate record (``Alert.candidate``).
    """
    out: dict[int, dict[str, float]] = {}
    for _, alert in iter_alerts([path]):
        out[alert.alert_id] = {n: alert.candidate[n] for n in names if alert.candidate.get(n) is not None}
    return out


def iter_alerts(paths: Iterable[Path]) -> Iterator[tuple[Path, Alert]]:
    """Every decodable ZTF :class:`Alert` under ``paths`` (files, directories, tarballs, Parquet
    dumps: :func:`schemas.walk.walk_decoded`); decode errors are logged and skipped: these are
    training inputs, not the stream; the stream dead-letters them."""
    from schemas.walk import walk_decoded

    for entry, index, item in walk_decoded(list(paths)):
        if isinstance(item, Alert) and item.survey == "ztf":
            yield Path(entry.source), item
        elif isinstance(item, Exception):
            log.info("training_input_skipped", path=entry.source, index=index, reason=str(item))


def split_ztf_alerts(root: Path) -> ZtfAlertSplit:
    """All ZTF alerts under ``root``: with drb -> checks; without drb and of another object -> bases.

    ``root`` is anything the walker reads: a directory of packets, a tarball, a Parquet dump.
    """
    with_drb: list[Alert] = []
    without_drb: list[Alert] = []
    fwhm: dict[int, float] = {}
    for _, alert in iter_alerts([Path(root)]):
        (with_drb if "drb" in alert.survey_scores else without_drb).append(alert)
        value = alert.candidate.get("fwhm")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            fwhm[alert.alert_id] = float(value)
    if not with_drb and not without_drb:
        raise TrainingDataError(f"no ZTF alert under {root}")
    check_objects = {a.object_id for a in with_drb}
    bases = tuple(a for a in without_drb if a.object_id not in check_objects)
    log.info("ztf_split", checks=len(with_drb), bases=len(bases),
             dropped_shared_objects=len(without_drb) - len(bases))
    return ZtfAlertSplit(bases=bases, checks=tuple(with_drb), fwhm_by_alert_id=fwhm)
