"""Real alerts' stamps as a folder-per-class training set, labelled from a list or a score.

Brokers and survey teams hold labelled alerts as lists (a scanning campaign's alert ids and
verdicts, a spectroscopic sample's object ids); the training command reads images. This turns
alert packets plus such labels into the folder-per-class layout of
:mod:`engines.training.datasets`:

* ``OUT/<label>/<survey>_<alert_id>.fits``: one FITS cube (science, template, difference),
  each plane framed to 63 x 63 the way the service frames it (edge stamps placed away from the
  detector edge, NaN outside the stamp), float32, with SURVEY / ALERTID / OBJECTID / LABEL /
  LABELSRC in the header;
* ``OUT/metadata.csv``: ``path, objectId, alert_id, survey, label, label_source``: train with
  ``--group-column objectId`` so an object never sits in train and test.

Labels come from a CSV (``alert_id`` or ``objectId`` column + ``label``) or from a score the
packets carry (``score_label``, e.g. ZTF's ``drb`` at 0.5). A score is another model's output:
a set labelled that way teaches agreement with that model, and says so in ``label_source``.
"""
from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from engines.training.ztf_files import TrainingDataError
from schemas.alert import Alert

__all__ = ["score_label", "labels_from_csv", "write_stamp_folder"]

Labeller = Callable[[Alert], "tuple[str, str] | None"]


def score_label(score: str, threshold: float = 0.5, classes: tuple[str, str] = ("bogus", "real")) -> Labeller:
    """(label, source) from a survey score the alert carries: ``classes[1]`` at or above ``threshold``."""
    def label(alert: Alert) -> tuple[str, str] | None:
        value = alert.survey_scores.get(score)
        if value is None or not np.isfinite(value):
            return None
        version = alert.survey_score_versions.get(score, "")
        source = f"{alert.survey} {score}{' ' + version if version else ''} >= {threshold} (a model's score, not a human label)"
        return (classes[1] if value >= threshold else classes[0]), source
    return label


def labels_from_csv(path: Path, label_column: str = "label") -> Labeller:
    """(label, source) from a CSV keyed by ``alert_id`` (preferred) or ``objectId``."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error) as exc:
        raise TrainingDataError(f"{path}: cannot read labels CSV: {exc}") from exc
    if not rows or label_column not in rows[0] or not ({"alert_id", "objectId"} & set(rows[0])):
        raise TrainingDataError(f"{path}: needs a {label_column!r} column and an 'alert_id' or 'objectId' column")
    by_alert = {r["alert_id"]: r[label_column] for r in rows if r.get("alert_id")}
    by_object = {r["objectId"]: r[label_column] for r in rows if r.get("objectId")}

    def label(alert: Alert) -> tuple[str, str] | None:
        value = by_alert.get(str(alert.alert_id)) or by_object.get(str(alert.object_id))
        return (value, f"labels file {path.name}") if value else None
    return label


def _cube(alert: Alert) -> np.ndarray:
    from engines.preprocess import frame_stamp

    return np.stack([frame_stamp(np.asarray(s.data), position_px=alert.position_px, detector_shape=alert.detector_shape)
                     for s in (alert.science, alert.template, alert.difference)]).astype(np.float32)


def write_stamp_folder(alerts: Iterable[Alert], labeller: Labeller, out: Path) -> Mapping[str, object]:
    """Write every labelled alert (duplicates by survey:alert_id once); returns a summary."""
    from astropy.io import fits

    out = Path(out)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    unlabelled = duplicates = 0
    for alert in alerts:
        key = f"{alert.survey}:{alert.alert_id}"
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        labelled = labeller(alert)
        if labelled is None:
            unlabelled += 1
            continue
        label, source = labelled
        if not label or "/" in label or label.startswith("."):
            raise TrainingDataError(f"label {label!r} of {key} cannot be a folder name")
        relative = Path(label) / f"{alert.survey}_{alert.alert_id}.fits"
        (out / label).mkdir(parents=True, exist_ok=True)
        hdu = fits.PrimaryHDU(_cube(alert))
        hdu.header.update(SURVEY=alert.survey, ALERTID=str(alert.alert_id), OBJECTID=str(alert.object_id),
                          LABEL=label, LABELSRC=source[:68], PLANES="science,template,difference")
        hdu.writeto(out / relative, overwrite=True)
        rows.append({"path": str(relative), "objectId": str(alert.object_id), "alert_id": str(alert.alert_id),
                     "survey": alert.survey, "label": label, "label_source": source})
    if not rows:
        raise TrainingDataError("no alert was labelled: check the labels file or the score name")
    with open(out / "metadata.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    counts = Counter(r["label"] for r in rows)
    return {"out": str(out), "written": len(rows), "per_label": dict(sorted(counts.items())),
            "objects": len({r["objectId"] for r in rows}), "unlabelled": unlabelled, "duplicates": duplicates,
            "label_sources": sorted({r["label_source"] for r in rows})}
