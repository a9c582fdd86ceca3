"""The star / galaxy study's table: each run's held-out fields, with field-bootstrap intervals.

For each ``--run LABEL=DIR`` (a ``train iicnet --data SET --group-column field`` output folder:
``iicnet.pt``, ``iicnet.train.json``, ``report/test.json``) the run's own grouped split is made
again from the set's ``field`` column and the run's seed (the same call ``train`` makes; the
test figures are checked against the run's own report), the held-out test fields are scored,
and balanced accuracy, per-class recall and precision get 95 % intervals from 2,000 resamples of
whole fields. Also the process CPU minutes the run spent in training (its record) and what
ended it. Writes ``OUT/results.md`` (the table) and ``OUT/results.json``.

``--extra-ztf DIR`` (e.g. ``../shared/data/ztf``: real alerts, none of them in the pool) adds a
second held-out set: the template stamps of the alerts there labelled by the same rule, whose
ZTF field is in none of the run's training or validation rows and whose object is not in the
set; scored the same way (the pool's test fields hold few galaxies).

    python -m research.training.star_galaxy_report --set var/star_galaxy \\
        --run old=var/sg_runs/old --run new=var/sg_runs/new --out research/reports/star_galaxy
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from research.calibration.metrics import clustered_bootstrap

__all__ = ["extra_alerts", "field_figures", "run_figures", "score_run", "table", "table_head", "table_row", "training_summary", "main"]

CLASSES = ["galaxy", "star"]


def _ci(values: list[float]) -> list[float] | None:
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)] if values else None


def field_figures(probabilities: np.ndarray, labels: np.ndarray, names: list[str], groups: np.ndarray,
             draws: int) -> dict[str, Any]:
    """Balanced accuracy, per-class recall / precision / AUC, with whole-field bootstrap intervals."""
    from engines.training.evaluate import classification_metrics

    metrics = classification_metrics(probabilities, labels, names)

    def stat(key: str, cls: str | None = None):
        def f(idx: np.ndarray) -> float | None:
            m = classification_metrics(probabilities[idx], labels[idx], names)
            return m[key] if cls is None else m["per_class"][cls][key]
        return f

    def r(x: float | None) -> float | None:
        return None if x is None else round(float(x), 4)

    return {
        "test_examples": int(len(labels)), "test_fields": int(len(set(groups.tolist()))),
        "support": {c: metrics["per_class"][c]["support"] for c in names},
        "balanced_accuracy": r(metrics["balanced_accuracy"]),
        "balanced_accuracy_95ci": _ci(clustered_bootstrap(groups, stat("balanced_accuracy"), draws)),
        "accuracy": r(metrics["accuracy"]),
        "per_class": {c: {"recall": r(metrics["per_class"][c]["recall"]),
                          "precision": r(metrics["per_class"][c]["precision"]),
                          "roc_auc": r(metrics["per_class"][c]["roc_auc"]),
                          "recall_95ci": _ci(clustered_bootstrap(groups, stat("recall", c), draws)),
                          "precision_95ci": _ci(clustered_bootstrap(groups, stat("precision", c), draws))}
                      for c in names},
        "confusion_matrix": metrics["confusion_matrix"],
    }


def extra_alerts(folder: Path) -> tuple[np.ndarray, np.ndarray, list[int], list[str]]:
    """Template stamps (N, 1, 63, 63), labels (0 galaxy, 1 star), ZTF fields and object ids of
    the star / galaxy alerts in the alert files under ``folder`` (other files skipped)."""
    from research.training.star_galaxy_set import BLANK_ABOVE, STAMP_SIZE, label_for
    from schemas.alert import Alert
    from schemas.decode import iter_file

    images, labels, fields, objects = [], [], [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            alerts = [a for _, a in iter_file(path) if isinstance(a, Alert)]
        except Exception:                 # noqa: BLE001 - READMEs, schemas: not alert files
            continue
        for a in alerts:
            c = a.candidate
            label = label_for(c.get("distpsnr1"), c.get("sgscore1"), c.get("ssdistnr"))
            if label is None or a.template is None or a.template.data.shape != (STAMP_SIZE, STAMP_SIZE):
                continue
            image = np.asarray(a.template.data, dtype=np.float32)
            images.append(np.where(np.abs(image) < BLANK_ABOVE, image, np.nan)[None])
            labels.append(CLASSES.index(label))
            fields.append(int(c.get("field")))
            objects.append(str(a.object_id))
    return np.stack(images), np.asarray(labels, dtype=np.int64), fields, objects


def score_run(run_dir: Path, data, test: np.ndarray):
    """The run's network (``iicnet.pt``) and its class probabilities on ``data``'s rows ``test``,
    which must be the run's own held-out rows: the figures are checked against its ``report/test.json``."""
    from engines.training.evaluate import classification_metrics
    from engines.training.recipes import load_trained, predict, prepare_inputs

    record = json.loads((run_dir / "iicnet.train.json").read_text())
    network = load_trained("iicnet", run_dir / "iicnet.pt", record["config"]["network_kwargs"])
    probabilities = predict(network, prepare_inputs("iicnet", data.subset(test), (3, 80, 80), preprocessed=False))
    own = json.loads((run_dir / "report" / "test.json").read_text())
    if own["confusion_matrix"] != classification_metrics(probabilities, data.labels[test], list(data.class_names))["confusion_matrix"]:
        raise SystemExit(f"{run_dir}: the remade split's test figures are not the run's own ({own['confusion_matrix']})")
    return network, probabilities


def training_summary(record: dict[str, Any]) -> dict[str, Any]:
    """Epochs, best epoch, why it stopped, training CPU / wall minutes and the recipe of a ``.train.json`` record."""
    history, config = record["history"], record["config"]
    return {
        "epochs_run": len(history), "best_epoch": record["best_epoch"], "stopped_because": record["stopped_because"],
        "training_cpu_minutes": round(history[-1].get("cpu_seconds", float("nan")) / 60, 2),
        "training_wall_minutes": round(history[-1]["seconds"] / 60, 2),
        "recipe": {k: config.get(k) for k in ("lr", "lr_schedule", "augment", "budget_patience", "patience", "epochs",
                                              "max_cpu_minutes", "batch_size", "dropout", "class_weights", "init_from",
                                              "threads", "seed")},
    }


def run_figures(set_dir: Path, run_dir: Path, draws: int = 2000, extra_ztf: Path | None = None) -> dict[str, Any]:
    from engines.training.datasets import LabelledImages, load_labelled
    from engines.training.recipes import predict, prepare_inputs
    from engines.training.splits import grouped_split

    record = json.loads((run_dir / "iicnet.train.json").read_text())
    config = record["config"]
    data = load_labelled(set_dir / "star_galaxy.npz", labels_csv=set_dir / "star_galaxy.csv", group_column="field")
    names = list(data.class_names)
    if names != record["class_names"] or names != CLASSES:
        raise SystemExit(f"{run_dir}: classes {record['class_names']} / the set's {names}, expected {CLASSES}")
    split = grouped_split(data.groups, tuple(record["data"]["split"]["fractions"]), seed=config["seed"])
    test = np.asarray(split.test)
    network, probabilities = score_run(run_dir, data, test)
    labels = data.labels[test]
    out: dict[str, Any] = {
        "run": str(run_dir),
        **field_figures(probabilities, labels, names, np.asarray([data.groups[i] for i in test]), draws),
        **training_summary(record),
    }
    if extra_ztf is not None:
        with open(set_dir / "star_galaxy.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))          # array order
        seen_fields = {int(rows[i]["ztf_field"]) for i in (*split.train, *split.validation)}
        set_objects = {row["objectId"] for row in rows}
        images, extra_labels, fields, objects = extra_alerts(extra_ztf)
        keep = np.asarray([f not in seen_fields and o not in set_objects for f, o in zip(fields, objects)])
        extra = LabelledImages(images=images[keep], labels=extra_labels[keep], class_names=tuple(names),
                               groups=tuple(str(f) for f, k in zip(fields, keep) if k),
                               sources=tuple(o for o, k in zip(objects, keep) if k), data_sha256="")
        p_extra = predict(network, prepare_inputs("iicnet", extra, (3, 80, 80), preprocessed=False))
        out["extra_ztf"] = {"source": str(extra_ztf), "alerts_labelled": int(len(keep)),
                            "left_out_field_or_object_seen_in_training": int((~keep).sum()),
                            **field_figures(p_extra, extra.labels, names, np.asarray(extra.groups), draws)}
    return out


def _fmt_ci(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def table_row(label: str, r: dict[str, Any], extra: str = "") -> list[str]:
    row = [label, _fmt_ci(r["balanced_accuracy"], r["balanced_accuracy_95ci"])]
    for c in CLASSES:
        pc = r["per_class"][c]
        row += [_fmt_ci(pc["recall"], pc["recall_95ci"]), _fmt_ci(pc["precision"], pc["precision_95ci"])]
    support = ", ".join(f"{c} {n}" for c, n in r["support"].items())
    return row + [f"{r['test_examples']} ({support}; {r['test_fields']} fields)", extra]


def table_head(first: str, last: list[str]) -> list[str]:
    """The two header lines of a markdown table of :func:`table_row` rows (+ ``last`` columns)."""
    head = [first, "balanced accuracy [95 % CI]"]
    for c in CLASSES:
        head += [f"{c} recall", f"{c} precision"]
    head += ["examples (per class; fields)", *last]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = table_head("run, test set", ["epochs (best); training CPU min; why it stopped"])
    for label, r in results.items():
        run = f"{r['epochs_run']} ({r['best_epoch']}); {r['training_cpu_minutes']}; {r['stopped_because']}"
        lines.append("| " + " | ".join(table_row(f"{label}, pool test fields", r, run)) + " |")
        if "extra_ztf" in r:
            lines.append("| " + " | ".join(table_row(f"{label}, ../shared/data/ztf unseen fields", r["extra_ztf"])) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", type=Path, required=True, help="star_galaxy_set output folder")
    p.add_argument("--run", action="append", required=True, metavar="LABEL=DIR")
    p.add_argument("--extra-ztf", type=Path, default=None, help="a folder of real ZTF alerts outside the pool")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--draws", type=int, default=2000)
    args = p.parse_args(argv)
    results = {}
    for item in args.run:
        label, _, folder = item.partition("=")
        results[label] = run_figures(args.set, Path(folder), args.draws, args.extra_ztf)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
