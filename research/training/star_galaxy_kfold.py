"""Grouped k-fold cross-validation of the user recipe on the star / galaxy set, over sky fields.

The single grouped test split of ``research/reports/star_galaxy`` holds 6 galaxies; here every
field group of the set (``star_galaxy_set``: ZTF fields that share an object merged) is tested
once. :func:`field_folds` deals the groups into ``k`` folds of equal group count (+-1), the
groups with the most galaxies first in a snake order, so each fold gets about its share of
galaxies; ties are broken by a seeded shuffle. For fold ``i`` the test side is fold ``i``'s
groups; the other groups are split into train and validation by ``grouped_split`` with the
existing recipe's train : validation ratio (80 : 10) and seed.

Each fold is trained by the very command of the report's "new recipe" row
(``train iicnet --data SET --group-column field --name star_galaxy --epochs 100
--max-cpu-minutes 13.5 --threads 1``, the user recipe's defaults), in its own process under
``nice -n 19``, with only the split replaced: the fold's rows stand in for ``train``'s own
grouped 80/10/10 split (:func:`train_fold`). Its start is named explicitly (``--init-from``:
the recipe's own, the shipped iicnet weights, unless ``--init-from none`` asks for the seeded
start the first table used), so each fold's command line shows it. The fold's test rows are
then scored with the trained network and checked against the run's own test report; the out-of-fold predictions
are pooled. Figures (per fold and pooled): balanced accuracy, per-class recall and precision
with 95 % intervals from resamples of whole field groups (``star_galaxy_report.field_figures``),
the confusion matrix, and each fold's CPU minutes (the training loop's, from its record, and the
whole command's, user + system). Writes ``OUT/kfold.json`` and ``OUT/kfold.md`` after every fold,
so a stopped run leaves the folds it finished; scratch runs, models and predictions go to
``--runs`` (under ``var/``).

    python -m research.training.star_galaxy_kfold --set var/star_galaxy --runs var/sg_kfold \\
        --out research/reports/star_galaxy/kfold
    python -m research.training.star_galaxy_kfold --set var/star_galaxy --runs var/sg_kfold \\
        --out research/reports/star_galaxy/kfold --report-only      # the folds done so far
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from research.training.star_galaxy_report import CLASSES, field_figures, table_head, table_row, training_summary

__all__ = ["RECIPE_ARGS", "field_folds", "fold_split", "pooled_figures", "train_fold", "kfold_table", "main"]

#: the report's "new recipe" row: the user recipe's defaults within the 15 CPU-minute budget
RECIPE_ARGS = ("--group-column", "field", "--name", "star_galaxy", "--epochs", "100", "--max-cpu-minutes", "13.5",
               "--threads", "1", "--no-progress")
#: train : validation of ``train``'s own grouped 80/10/10 split, kept for the folds' non-test groups
TRAIN_VALIDATION = (0.8, 0.1, 0.0)


def field_folds(groups: list[str] | np.ndarray, labels: np.ndarray, k: int = 5, seed: int = 0,
                minority: int = 0) -> np.ndarray:
    """Each row's fold (0 .. k-1): whole groups, k folds of equal group count (+-1), groups dealt
    in a snake order by their count of ``minority``-class rows (most first; ties in seeded random
    order), so the minority class spreads evenly."""
    groups_arr = np.asarray([str(g) for g in groups])
    unique, inverse = np.unique(groups_arr, return_inverse=True)
    if len(unique) < k:
        raise ValueError(f"{len(unique)} groups cannot make {k} folds")
    minority_count = np.bincount(inverse, weights=(np.asarray(labels) == minority).astype(float), minlength=len(unique))
    shuffled = np.random.default_rng(seed).permutation(len(unique))
    order = shuffled[np.argsort(-minority_count[shuffled], kind="stable")]
    snake = np.concatenate([np.arange(k), np.arange(k)[::-1]])
    fold_of_group = np.empty(len(unique), dtype=np.int64)
    fold_of_group[order] = snake[np.arange(len(unique)) % (2 * k)]
    return fold_of_group[inverse]


def fold_split(groups: list[str] | np.ndarray, folds: np.ndarray, fold: int, seed: int = 0):
    """The :class:`engines.training.splits.Split` of fold ``fold``: its rows are the test side;
    the other rows go to train / validation by ``grouped_split`` at 80 : 10, seed ``seed``."""
    from engines.training.splits import Split, grouped_split

    groups_arr = np.asarray([str(g) for g in groups])
    rest = np.flatnonzero(folds != fold)
    inner = grouped_split(groups_arr[rest].tolist(), TRAIN_VALIDATION, seed=seed)
    return Split(train=rest[inner.train], validation=rest[inner.validation], test=np.flatnonzero(folds == fold))


def train_fold(split_json: Path, train_argv: list[str]) -> int:
    """``survey-classifier train`` with ``train_argv``, the fold's split (``split_json``: row
    indices ``train``, ``validation``, ``test``) in place of its own grouped 80/10/10 split."""
    import engines.training.recipes as recipes
    from engines.training.splits import Split
    from stream.cli import main as cli_main

    sides = json.loads(Path(split_json).read_text())
    split = Split(**{side: np.asarray(sides[side], dtype=np.int64) for side in ("train", "validation", "test")})

    def fold_split_instead(groups, fractions, seed=0):
        if len(groups) != len(split.train) + len(split.validation) + len(split.test):
            raise SystemExit(f"{split_json}: {len(groups)} rows in the set, the split is for another set")
        return split

    recipes.grouped_split = fold_split_instead
    return cli_main(train_argv)


def pooled_figures(probabilities: np.ndarray, labels: np.ndarray, groups: np.ndarray, draws: int = 2000) -> dict[str, Any]:
    """The figures of a table of predictions (rows: class probabilities in :data:`CLASSES` order,
    true label index, field group): balanced accuracy, per-class recall / precision with
    whole-group bootstrap intervals, the confusion matrix."""
    return field_figures(np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.int64), list(CLASSES),
                         np.asarray(groups), draws)


def _run_fold(set_dir: Path, runs: Path, fold: int, split, nice: int, extra_args: tuple[str, ...] = ()) -> dict[str, Any]:
    fold_dir = runs / f"fold{fold + 1}"
    run_dir = fold_dir / "run"
    if fold_dir.exists():
        shutil.rmtree(fold_dir)                       # a stopped fold starts again from nothing
    fold_dir.mkdir(parents=True)
    shutil.copytree(Path("engines/cards"), fold_dir / "cards")     # a scratch registry: never engines/cards
    (fold_dir / "weights").mkdir()
    (fold_dir / "split.json").write_text(json.dumps({s: getattr(split, s).tolist() for s in ("train", "validation", "test")}))
    train_argv = ["train", "iicnet", "--data", str(set_dir / "star_galaxy.npz"), *RECIPE_ARGS, *extra_args, "--out", str(run_dir),
                  "--cards-dir", str(fold_dir / "cards"), "--weights-dir", str(fold_dir / "weights")]
    command = ["nice", "-n", str(nice), sys.executable, "-m", "research.training.star_galaxy_kfold",
               "--train-fold", str(fold_dir / "split.json"), *train_argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, load = time.time(), os.getloadavg()
    with open(fold_dir / "train.log", "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    done = {"fold": fold + 1, "command": " ".join(["nice", "-n", str(nice), "python", "-m", "stream.cli", *train_argv]),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "ended_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average_at_start": [round(x, 2) for x in load],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "command_cpu_minutes": round(cpu / 60, 2), "command_wall_minutes": round((time.time() - started) / 60, 2)}
    (fold_dir / "timing.json").write_text(json.dumps(done, indent=2))
    return done


def _score_fold(runs: Path, data, fold: int) -> None:
    from research.training.star_galaxy_report import score_run

    fold_dir = runs / f"fold{fold + 1}"
    split = json.loads((fold_dir / "split.json").read_text())
    test = np.asarray(split["test"], dtype=np.int64)
    record = json.loads((fold_dir / "run" / "iicnet.train.json").read_text())
    sides = record["data"]["split"]
    if (sides["test_examples"], sides["train_groups"]) != (len(test), len({data.groups[i] for i in split["train"]})):
        raise SystemExit(f"{fold_dir}: the run did not train on the fold's split ({sides})")
    _, probabilities = score_run(fold_dir / "run", data, test)
    (fold_dir / "predictions.json").write_text(json.dumps({
        "rows": test.tolist(), "groups": [data.groups[i] for i in test], "labels": data.labels[test].tolist(),
        "probabilities": np.round(probabilities, 6).tolist(), "classes": list(CLASSES),
        "sides": _sides(data, split), **training_summary(record),
        **json.loads((fold_dir / "timing.json").read_text())}))


def _sides(data, split: dict[str, list[int]]) -> dict[str, Any]:
    """Examples, groups and examples per class of each side of a split."""
    return {side: {"examples": len(rows), "groups": len({data.groups[i] for i in rows}),
                   "per_class": {c: int((data.labels[np.asarray(rows, dtype=np.int64)] == j).sum()) for j, c in enumerate(CLASSES)}}
            for side, rows in split.items()}


def report(runs: Path, k: int, draws: int) -> dict[str, Any]:
    """Per-fold and pooled figures of the folds with predictions under ``runs``."""
    folds, tables = [], []
    for fold in range(k):
        path = runs / f"fold{fold + 1}" / "predictions.json"
        if path.exists():
            p = json.loads(path.read_text())
            tables.append(p)
            figures = pooled_figures(np.asarray(p["probabilities"]), np.asarray(p["labels"]), np.asarray(p["groups"]), draws)
            folds.append({**{key: v for key, v in p.items() if key not in ("rows", "groups", "labels", "probabilities")},
                          **figures})
    out: dict[str, Any] = {"k": k, "folds_done": len(folds), "complete": len(folds) == k, "bootstrap_draws": draws,
                           "folds": folds}
    if tables:
        out["pooled"] = pooled_figures(np.concatenate([np.asarray(t["probabilities"]) for t in tables]),
                                       np.concatenate([np.asarray(t["labels"]) for t in tables]),
                                       np.concatenate([np.asarray(t["groups"]) for t in tables]), draws)
        out["pooled"]["command_cpu_minutes"] = round(sum(f["command_cpu_minutes"] for f in folds), 2)
        out["pooled"]["training_cpu_minutes"] = round(sum(f["training_cpu_minutes"] for f in folds), 2)
    return out


def kfold_table(result: dict[str, Any]) -> str:
    """The markdown table: one row per fold done, then the pooled out-of-fold row."""
    lines = table_head("fold", ["epochs (best); CPU min training / command; why it stopped",
                                "confusion (rows truth galaxy, star)"])
    for f in result["folds"]:
        run = (f"{f['epochs_run']} ({f['best_epoch']}); {f['training_cpu_minutes']} / {f['command_cpu_minutes']}; "
               f"{f['stopped_because']}")
        lines.append("| " + " | ".join([*table_row(str(f["fold"]), f, run), str(f["confusion_matrix"])]) + " |")
    if "pooled" in result:
        p = result["pooled"]
        name = "pooled" + ("" if result["complete"] else f" ({result['folds_done']} of {result['k']} folds: partial)")
        lines.append("| " + " | ".join([*table_row(f"**{name}**", p, f"{p['training_cpu_minutes']} / "
                                                   f"{p['command_cpu_minutes']} in all"), str(p["confusion_matrix"])]) + " |")
    return "\n".join(lines) + "\n"


def _write(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "kfold.json").write_text(json.dumps(result, indent=2))
    (out / "kfold.md").write_text(kfold_table(result))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--train-fold"]:
        return train_fold(Path(argv[1]), argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", type=Path, required=True, help="star_galaxy_set output folder")
    p.add_argument("--out", type=Path, required=True, help="where kfold.json and kfold.md go")
    p.add_argument("--runs", type=Path, default=Path("var/sg_kfold"), help="scratch: the folds' runs and predictions")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="fold assignment ties and the train / validation split")
    p.add_argument("--folds", type=int, nargs="*", default=None, help="run only these folds (1-based; default: those not done)")
    p.add_argument("--nice", type=int, default=19)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--report-only", action="store_true", help="no training: the figures of the folds done")
    p.add_argument("--init-from", default=None, metavar="PT|none",
                   help="train's --init-from for every fold; default: the recipe's own start, the shipped iicnet "
                        "weights (engines.training.register.default_init_weights); 'none': seeded initialisation "
                        "(the recipe before 2026-12-07)")
    p.add_argument("--lr", type=float, default=None, help="train's --lr for every fold (default: the recipe's)")
    args = p.parse_args(argv)
    if not args.report_only:
        from engines.training.datasets import load_labelled
        from engines.training.register import default_init_weights

        data = load_labelled(args.set / "star_galaxy.npz", labels_csv=args.set / "star_galaxy.csv", group_column="field")
        if list(data.class_names) != CLASSES:
            raise SystemExit(f"classes {list(data.class_names)}, expected {CLASSES}")
        folds = field_folds(data.groups, data.labels, args.k, args.seed, minority=CLASSES.index("galaxy"))
        # the recipe's own start, named explicitly so that each fold's command line shows it
        init_from = args.init_from or str(default_init_weights("iicnet")[0] or "none")
        todo = [f - 1 for f in args.folds] if args.folds else [
            f for f in range(args.k) if not (args.runs / f"fold{f + 1}" / "predictions.json").exists()]
        for fold in todo:
            split = fold_split(data.groups, folds, fold, args.seed)
            extra = ("--init-from", init_from, *(("--lr", str(args.lr)) if args.lr else ()))
            print(json.dumps(_run_fold(args.set, args.runs, fold, split, args.nice, extra)), flush=True)
            _score_fold(args.runs, data, fold)
            _write(args.out, report(args.runs, args.k, args.draws))
    result = report(args.runs, args.k, args.draws)
    _write(args.out, result)
    print(kfold_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
