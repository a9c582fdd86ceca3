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
    """``candid -> {name: value}`` for candidate fields the Alert model does not carry (e.g. fwhm)."""
    import fastavro  # noqa: PLC0415

    out: dict[int, dict[str, float]] = {}
    try:
        with open(path, "rb") as fh:
            for record in fastavro.reader(fh):
                cand = record.get("candidate") or {}
                if "candid" in cand:
                    out[int(cand["candid"])] = {n: cand.get(n) for n in names if cand.get(n) is not None}
    except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise TrainingDataError(f"cannot read candidate fields of {path}: {exc}") from exc
    return out


def iter_alerts(paths: Iterable[Path]) -> Iterator[tuple[Path, Alert]]:
    """Every decodable ZTF :class:`Alert` in the files (decode errors are logged and skipped:
    these are training inputs, not the stream; the stream dead-letters them)."""
    from schemas.decode import iter_file  # noqa: PLC0415

    for path in paths:
        for _, item in iter_file(path):
            if isinstance(item, Alert) and item.survey == "ztf":
                yield path, item
            elif isinstance(item, Exception):
                log.info("training_input_skipped", path=str(path), reason=str(item))


def split_ztf_alerts(root: Path) -> ZtfAlertSplit:
    """All ZTF alerts under ``root``: with drb -> checks; without drb and of another object -> bases."""
    paths = sorted(Path(root).rglob("*.avro"))
    if not paths:
        raise TrainingDataError(f"no .avro files under {root}")
    with_drb: list[Alert] = []
    without_drb: list[Alert] = []
    fwhm: dict[int, float] = {}
    for path, alert in iter_alerts(paths):
        (with_drb if "drb" in alert.survey_scores else without_drb).append(alert)
        try:
            fields = candidate_fields(path)
        except TrainingDataError:
            fields = {}
        for candid, values in fields.items():
            if "fwhm" in values:
                fwhm[candid] = float(values["fwhm"])
    check_objects = {a.object_id for a in with_drb}
    bases = tuple(a for a in without_drb if a.object_id not in check_objects)
    log.info("ztf_split", checks=len(with_drb), bases=len(bases),
             dropped_shared_objects=len(without_drb) - len(bases))
    return ZtfAlertSplit(bases=bases, checks=tuple(with_drb), fwhm_by_alert_id=fwhm)
