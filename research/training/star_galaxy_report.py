"""The star / galaxy study's table: each run's held-out fields, with field-bootstrap intervals.

For each ``--run LABEL=DIR`` (a ``train iicnet --data SET --group-column field`` output folder:
``iicnet.pt``, ``iicnet.train.json``, ``report/test.json``) the run's own grouped split is made
again from the set's ``field`` column and the run's seed (the same call ``train`` makes; the
test figures are checked against the run's own report), the held-out test fields are scored,
and balanced accuracy, per-class recall and precision get 95 % intervals from 2,000 resamples of
whole fields. Also the process CPU minutes the run spent in training (its record) and what
ended it. Writes ``OUT/README.md``'s table (``results.md``) and ``results.json``.

    python -m research.training.star_galaxy_report --set var/star_galaxy \\
        --run old=var/sg_runs/old --run new=var/sg_runs/new --out research/reports/star_galaxy
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from research.calibration.metrics import clustered_bootstrap

__all__ = ["run_figures", "main"]


def _ci(values: list[float]) -> list[float] | None:
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)] if values else None


def run_figures(set_dir: Path, run_dir: Path, draws: int = 2000) -> dict[str, Any]:
    from engines.training.datasets import load_labelled
    from engines.training.evaluate import classification_metrics
    from engines.training.recipes import load_trained, predict, prepare_inputs
    from engines.training.splits import grouped_split

    record = json.loads((run_dir / "iicnet.train.json").read_text())
    config = record["config"]
    data = load_labelled(set_dir / "star_galaxy.npz", labels_csv=set_dir / "star_galaxy.csv", group_column="field")
    if list(data.class_names) != record["class_names"]:
        raise SystemExit(f"{run_dir}: classes {record['class_names']} != the set's {list(data.class_names)}")
    split = grouped_split(data.groups, tuple(record["data"]["split"]["fractions"]), seed=config["seed"])
    test = np.asarray(split.test)
    network = load_trained("iicnet", run_dir / "iicnet.pt", config["network_kwargs"])
    inputs = prepare_inputs("iicnet", data.subset(test), (3, 80, 80), preprocessed=False)
    probabilities = predict(network, inputs)
    labels = data.labels[test]
    names = list(data.class_names)
    metrics = classification_metrics(probabilities, labels, names)
    own = json.loads((run_dir / "report" / "test.json").read_text())
    if own["confusion_matrix"] != metrics["confusion_matrix"]:
        raise SystemExit(f"{run_dir}: the remade split's confusion {metrics['confusion_matrix']} != the run's "
                         f"{own['confusion_matrix']}")
    groups = np.asarray([data.groups[i] for i in test])

    def stat(key: str, cls: str | None = None):
        def f(idx: np.ndarray) -> float | None:
            m = classification_metrics(probabilities[idx], labels[idx], names)
            return m[key] if cls is None else m["per_class"][cls][key]
        return f

    history = record["history"]
    out: dict[str, Any] = {
        "run": str(run_dir), "test_examples": int(len(test)), "test_fields": int(len(set(groups.tolist()))),
        "support": {c: metrics["per_class"][c]["support"] for c in names},
        "balanced_accuracy": round(float(metrics["balanced_accuracy"]), 4),
        "balanced_accuracy_95ci": _ci(clustered_bootstrap(groups, stat("balanced_accuracy"), draws)),
        "accuracy": round(float(metrics["accuracy"]), 4),
        "per_class": {c: {k: (None if metrics["per_class"][c][k] is None else round(float(metrics["per_class"][c][k]), 4))
                          for k in ("recall", "precision", "roc_auc")}
                      | {"recall_95ci": _ci(clustered_bootstrap(groups, stat("recall", c), draws)),
                         "precision_95ci": _ci(clustered_bootstrap(groups, stat("precision", c), draws))}
                      for c in names},
        "confusion_matrix": metrics["confusion_matrix"],
        "epochs_run": len(history), "best_epoch": record["best_epoch"], "stopped_because": record["stopped_because"],
        "training_cpu_minutes": round(history[-1].get("cpu_seconds", float("nan")) / 60, 2),
        "training_wall_minutes": round(history[-1]["seconds"] / 60, 2),
        "recipe": {k: config.get(k) for k in ("lr", "lr_schedule", "augment", "budget_patience", "patience", "epochs",
                                              "max_cpu_minutes", "batch_size", "dropout", "class_weights", "init_from",
                                              "threads", "seed")},
    }
    return out


def _fmt_ci(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(next(iter(results.values()))["per_class"])
    head = ["run", "balanced accuracy [95 % CI]"]
    for c in names:
        head += [f"{c} recall", f"{c} precision"]
    head += ["test (fields)", "epochs (best)", "training CPU min", "stopped because"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in results.items():
        row = [label, _fmt_ci(r["balanced_accuracy"], r["balanced_accuracy_95ci"])]
        for c in names:
            pc = r["per_class"][c]
            row += [_fmt_ci(pc["recall"], pc["recall_95ci"]), _fmt_ci(pc["precision"], pc["precision_95ci"])]
        support = ", ".join(f"{c} {n}" for c, n in r["support"].items())
        row += [f"{r['test_examples']} ({support}; {r['test_fields']} fields)", f"{r['epochs_run']} ({r['best_epoch']})",
                f"{r['training_cpu_minutes']}", r["stopped_because"]]
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", type=Path, required=True, help="star_galaxy_set output folder")
    p.add_argument("--run", action="append", required=True, metavar="LABEL=DIR")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--draws", type=int, default=2000)
    args = p.parse_args(argv)
    results = {}
    for item in args.run:
        label, _, folder = item.partition("=")
        results[label] = run_figures(args.set, Path(folder), args.draws)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
