"""Train and compare the real/bogus variants on the real-alert pool; write the report; ship one.

    DATA="--pool ../shared/ztf_pool --data-ztf ../shared/data/ztf"     # both required: where the data is
    python -m research.training.realbogus_study train teacher --out var/study $DATA
    python -m research.training.realbogus_study train both --out var/study $DATA
    python -m research.training.realbogus_study train both --preprocessing difference_stamps_rownorm_69 --tag both-rownorm $DATA
    python -m research.training.realbogus_study report --out var/study --ship both-rownorm $DATA

``train VARIANT``: teacher (braai soft targets on the pool's training sources), injection
(the synthetic injection set only), both (the two mixed); weights, training record and
figures go to ``OUT/VARIANT/`` (or ``OUT/TAG/``). ``--preprocessing`` picks the network's
input: the min-max stamps of 1.0.0 and 2.0.0 (``difference_stamps_69``) or braai's own
row-wise L2 triplet resampled to 69 x 69 (``difference_stamps_rownorm_69``). The shipped 1.0.0-synthetic model (injection set, 12,000
examples) is scored the same way as ``shipped-1.0.0``. ``report`` writes the ablation
table and per-source figures to ``research/reports/realbogus/`` and, with ``--ship``,
registers that variant as the new ``realbogus`` version (the old one stays loadable as
``realbogus@1.0.0-synthetic``).

Figures on held-out sources (:mod:`research.training.pool_realbogus`) and on the bundled
``../shared/data/ztf`` alerts that carry ``drb`` (none of them in the pool), all against
ZTF's own model (agreement, not accuracy).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from engines.training.train import TrainConfig
from engines.training.ztf_files import TrainingDataError
from research.training.heldout import figures_by_source
from research.training.pool_realbogus import (
    HELDOUT_SOURCES,
    SourceSplit,
    heldout_report,
    score_inputs,
    split_by_source,
    train_on_pool,
)
from research.training.ztf_pool import PoolAlerts, load_pool

__all__ = ["PREPROCESSING_CHOICES", "SHIPPED_VERSION", "STUDY_CONFIG", "VARIANT_TAGS", "data_ztf_figures",
           "evaluate_weights", "main"]

SHIPPED_VERSION = "2.2.0-pool-distilled"
#: the real/bogus inputs a variant may be trained on (engines.preprocess keys)
PREPROCESSING_CHOICES: tuple[str, ...] = ("difference_stamps_69", "difference_stamps_rownorm_69",
                                          "difference_stamps_rownorm_pad69")
#: the ablation's rows, in report order (folders under --out)
VARIANT_TAGS: tuple[str, ...] = ("teacher", "injection", "both", "both-from-shipped", "teacher-rownorm", "both-rownorm",
                                  "pad69", "pad69-cos20", "rownorm-ft-cos-shift2", "pad69-cos40-shift2",
                                  "rownorm-cos40-shift2", "ensemble-rownorm-x2", "ensemble-pad69-x2",
                                  "consistent-rownorm", "consistent-mixup-rownorm", "consistent-cos60-rownorm",
                                  "consistent-mixup-cos60-rownorm", "consistent-cos60-rownorm-seed2",
                                  "consistent-mixup-cos60-rownorm-seed2", "ensemble-consistent-mixup-x2",
                                  "ensemble-consistent-x6", "srcval-rownorm", "srcval-consistent-cos60-rownorm",
                                  "srcval-consistent-mixup-cos60-rownorm")
#: the recipe of every variant (the seed CNN's training variant: dropout 0.2)
STUDY_CONFIG = dict(epochs=30, batch_size=64, lr=1e-3, dropout=0.2, patience=5, seed=1, max_minutes=9.0, threads=2)
INJECTION_EXAMPLES = 1500
INJECTION_SEED = 20261122


def _injection(count: int, seed: int, ztf_root: Path, preprocessing: str) -> tuple[np.ndarray, np.ndarray]:
    from engines.training.adapters import realbogus_inputs
    from engines.training.recipes import synthetic_realbogus

    data, _ = synthetic_realbogus(ztf_root, count, seed)
    return realbogus_inputs(data.images, preprocessing=preprocessing), data.labels


def data_ztf_alerts(root: Path, preprocessing: str = PREPROCESSING_CHOICES[0]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, drb, object ids) of the FITS-stamp ZTF alerts under ``root`` that carry drb."""
    from engines.preprocess import PREPROCESSORS
    from engines.training.ztf_files import split_ztf_alerts

    checks = list(split_ztf_alerts(root).checks)
    inputs = PREPROCESSORS[preprocessing](checks, "cpu").numpy()
    return inputs, np.asarray([a.survey_scores["drb"] for a in checks]), np.asarray([a.object_id for a in checks])


def data_ztf_figures(network, root: Path, threshold: float, draws: int = 1000,
                     preprocessing: str = PREPROCESSING_CHOICES[0]) -> dict[str, Any]:
    inputs, drb, objects = data_ztf_alerts(root, preprocessing)
    scores = score_inputs(network, inputs)
    return figures_by_source(scores, drb, objects, np.asarray(["data/ztf"] * len(drb)), threshold, draws)["all"]


def evaluate_weights(weights: Path, pool: PoolAlerts, split: SourceSplit, data_root: Path | None,
                     draws: int = 1000, half: bool = False) -> dict[str, Any]:
    """Held-out-source and data/ztf figures of a weights file (``half``: as shipped in float16);
    the network's inputs are the pool's (its ``realbogus_preprocessing``)."""
    from engines.training.recipes import load_trained
    from engines.training.register import round_to_half

    network = load_trained("realbogus", weights)
    if half:
        network = round_to_half(network)
    report = heldout_report(network, pool, split, draws=draws)
    if data_root is not None and data_root.is_dir():
        report["data_ztf_vs_drb"] = data_ztf_figures(network, data_root, report["threshold"], draws,
                                                     pool.realbogus_preprocessing)
    report["preprocessing"] = pool.realbogus_preprocessing
    return report


def _train(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    pool = load_pool(args.pool, realbogus_preprocessing=args.preprocessing)
    heldout = tuple(args.heldout.split(",")) if args.heldout else HELDOUT_SOURCES
    split = split_by_source(pool, heldout, seed=0, validation_sources=args.validation_source)
    out = args.out / (args.tag or args.variant)
    injection = (_injection(INJECTION_EXAMPLES, INJECTION_SEED, args.data_ztf, args.preprocessing)
                 if args.variant != "teacher" else None)
    config = TrainConfig(model="realbogus", **{**STUDY_CONFIG, "max_minutes": args.max_minutes, "epochs": args.epochs,
                                               "lr": args.lr, "seed": args.seed, "patience": args.patience,
                                               "threads": args.threads},
                         init_from=args.init_from, lr_schedule=args.lr_schedule)
    run = train_on_pool(pool, split, args.variant, config, out, injection=injection, resume=args.resume,
                        max_shift=args.max_shift, smoothing=args.smoothing,
                        training_batch_for=_consistent_teacher(args) if args.consistent else None)
    figures = evaluate_weights(run.weights, pool, split, args.data_ztf)
    figures["fit"] = _fit_figures(run.weights, pool, split)
    if args.validation_source:
        figures["validation_source"] = _validation_source_counts(pool, args.validation_source, heldout)
    command = " ".join(["python -m research.training.realbogus_study", *(argv or [])])
    (out / "figures.json").write_text(json.dumps({"variant": args.tag or args.variant, "command": command,
                                                  "description": run.description,
                                                  "train_seconds": run.seconds, **figures}, indent=2, default=str))
    print(json.dumps({"variant": args.variant, **figures["vs_braai_d6_m7"]["all"]}, default=str))
    return 0


def _validation_source_counts(pool: PoolAlerts, sources: list[str],
                              heldout: tuple[str, ...] = HELDOUT_SOURCES) -> dict[str, Any]:
    """The validation alerts (with a teacher score) of a whole-source validation split."""
    split = split_by_source(pool, heldout, seed=0, validation_sources=sources)
    scored = split.validation[np.isfinite(pool.teacher[split.validation])]
    return {"sources": list(sources), "alerts": len(scored), "real": int((pool.teacher[scored] >= 0.5).sum()),
            "bogus": int((pool.teacher[scored] < 0.5).sum())}


def _consistent_teacher(args: argparse.Namespace):
    """``--consistent``: braai scores every training view (research.training.consistent_teacher)."""
    from research.training.consistent_teacher import TEACHER_PREPROCESSING, ConsistentTeacher, load_braai, student_view

    to_student = student_view(args.preprocessing)
    triplets = load_pool(args.pool, realbogus_preprocessing=TEACHER_PREPROCESSING).realbogus_inputs
    # variant both: the injections too, labelled by braai instead of their one-hot kind, after the pool rows
    extra = (_injection(INJECTION_EXAMPLES, INJECTION_SEED, args.data_ztf, TEACHER_PREPROCESSING)[0]
             if args.variant == "both" else triplets[:0])
    teacher = load_braai()
    return lambda rows: ConsistentTeacher(teacher, np.concatenate([triplets[rows], extra]), to_student,
                                          mixup_alpha=args.mixup, max_shift=args.max_shift)


def _turns(args: argparse.Namespace) -> int:
    """How far the square's turns move braai's score on every pool alert (the report's targets bullet)."""
    from research.training.consistent_teacher import TEACHER_PREPROCESSING, load_braai, turn_sensitivity

    pool = load_pool(args.pool, realbogus_preprocessing=TEACHER_PREPROCESSING)
    figures = {"alerts": len(pool), "teacher": "braai d6_m7", "turns": turn_sensitivity(load_braai(), pool.realbogus_inputs)}
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / "braai_turns.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    return 0


def _figures(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Figures of a run folder whose training ended but whose scoring did not (a run stopped by
    a wall-clock limit after its weights were written): as ``train`` would have written them.
    ``command`` is this step's; the report prefers a ``train_command`` key when one is added."""
    out = args.out / args.tag
    record = json.loads((out / "realbogus.train.json").read_text())
    pool = load_pool(args.pool, realbogus_preprocessing=args.preprocessing)
    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    figures = evaluate_weights(out / "realbogus.pt", pool, split, args.data_ztf)
    figures["fit"] = _fit_figures(out / "realbogus.pt", pool, split)
    command = " ".join(["python -m research.training.realbogus_study", *(argv or [])])
    (out / "figures.json").write_text(json.dumps({"variant": args.tag, "command": command, "description": record["data"],
                                                  "train_seconds": record["history"][-1]["seconds"], **figures},
                                                 indent=2, default=str))
    print(json.dumps({"variant": args.tag, **figures["vs_braai_d6_m7"]["all"]}, default=str))
    return 0


def _shipped(args: argparse.Namespace, pool: PoolAlerts, split: SourceSplit) -> dict[str, Any]:
    from engines.registry import WEIGHTS_DIR

    path = args.out / "shipped-1.0.0" / "figures.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        figures = evaluate_weights(WEIGHTS_DIR / "realbogus.pt", pool, split, args.data_ztf)
        path.write_text(json.dumps({"variant": "shipped-1.0.0", **figures}, indent=2, default=str))
    return json.loads(path.read_text())


def _fit_figures(weights: Path, pool: PoolAlerts, split: SourceSplit) -> dict[str, float | None]:
    """ROC AUC against braai d6_m7 >= 0.5 on the variant's own training and validation alerts:
    whether the network fits its teacher at all (a check, not a result)."""
    from engines.training.recipes import load_trained
    from research.training.heldout import fast_auc

    network = load_trained("realbogus", weights)
    out: dict[str, float | None] = {}
    for name, index in (("train", split.train), ("validation", split.validation)):
        index = index[np.isfinite(pool.teacher[index])]
        out[f"{name}_roc_auc"] = fast_auc(score_inputs(network, pool.realbogus_inputs[index]), pool.teacher[index] >= 0.5)
    return out


def _report(args: argparse.Namespace) -> int:
    from research.training.realbogus_report import SOURCE_VALIDATION, ship_variant, write_study_report

    pools = {key: load_pool(args.pool, realbogus_preprocessing=key) for key in PREPROCESSING_CHOICES}
    pool = pools[PREPROCESSING_CHOICES[0]]
    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    results = {"shipped-1.0.0": _shipped(args, pool, split)}
    for variant in VARIANT_TAGS:
        path = args.out / variant / "figures.json"
        if path.is_file():
            results[variant] = json.loads(path.read_text())
            record = path.parent / "realbogus.train.json"
            if record.is_file():
                r = json.loads(record.read_text())
                results[variant]["record"] = {"epochs_run": len(r["history"]), "best_epoch": r["best_epoch"],
                                              "best_val_loss": r["best_val_loss"], "stopped_because": r["stopped_because"],
                                              "seconds": r["history"][-1]["seconds"]}
            if variant.startswith("srcval-") and "validation_source" not in results[variant]:
                results[variant]["validation_source"] = _validation_source_counts(pool, [SOURCE_VALIDATION])
                path.write_text(json.dumps(results[variant], indent=2, default=str))
            if "fit" not in results[variant] and (path.parent / "realbogus.pt").is_file():
                variant_pool = pools[results[variant].get("preprocessing", PREPROCESSING_CHOICES[0])]
                results[variant]["fit"] = _fit_figures(path.parent / "realbogus.pt", variant_pool, split)
                path.write_text(json.dumps(results[variant], indent=2, default=str))
    if args.ship:  # the shipped file holds float16 weights: its figures are measured on exactly those
        ship_pool = pools[results[args.ship].get("preprocessing", PREPROCESSING_CHOICES[0])]
        results[args.ship] = {**results[args.ship], **evaluate_weights(args.out / args.ship / "realbogus.pt", ship_pool,
                                                                       split, args.data_ztf, half=True),
                              "weights": "float16 (as shipped)"}
    folds = {path.parent.name: json.loads(path.read_text()) for path in sorted(args.out.glob("fold-*/figures.json"))}
    report = write_study_report(results, pool, split, args.reports, args.ship, folds)
    print(json.dumps({"report": str(report)}))
    if args.ship:
        from engines.cards import load_card
        from engines.registry import CARDS_DIR

        if load_card(CARDS_DIR / "realbogus.toml").version == SHIPPED_VERSION:
            print(json.dumps({"card": "already shipped as " + SHIPPED_VERSION + "; report rewritten only"}))
            return 0
        card = ship_variant(args.ship, args.out / args.ship, results[args.ship], pool, split)
        print(json.dumps({"card": str(card)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.training.realbogus_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    t = sub.add_parser("train")
    t.add_argument("variant", choices=("teacher", "injection", "both"))
    t.add_argument("--max-minutes", type=float, default=STUDY_CONFIG["max_minutes"])
    t.add_argument("--epochs", type=int, default=STUDY_CONFIG["epochs"])
    t.add_argument("--resume", type=Path, default=None, help="continue this variant's checkpoint.pt")
    t.add_argument("--tag", default=None, help="output folder name under --out (default: the variant)")
    t.add_argument("--init-from", default=None, help="start from these weights (.pt), e.g. the shipped injection model")
    t.add_argument("--lr", type=float, default=STUDY_CONFIG["lr"])
    t.add_argument("--threads", type=int, default=STUDY_CONFIG["threads"], help="CPU threads for torch")
    t.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant")
    t.add_argument("--seed", type=int, default=STUDY_CONFIG["seed"])
    t.add_argument("--patience", type=int, default=STUDY_CONFIG["patience"],
                   help="stop after this many epochs without a better validation loss")
    t.add_argument("--max-shift", type=int, default=0, help="shift augmentation: up to this many px (0: dihedral only)")
    t.add_argument("--smoothing", type=float, default=0.0, help="label smoothing of the teacher's soft targets")
    t.add_argument("--consistent", action="store_true",
                   help="braai scores each training view (turned, shifted, mixed) instead of the unturned alert "
                        "(consistent teaching; needs a rownorm preprocessing); variant both: the injections too, "
                        "labelled by braai rather than by their kind")
    t.add_argument("--mixup", type=float, default=0.0,
                   help="with --consistent: mix each view with another alert's, weight ~ Beta(a, a) (0: off)")
    t.add_argument("--preprocessing", choices=PREPROCESSING_CHOICES, default=PREPROCESSING_CHOICES[0],
                   help="the network's input (default: the min-max stamps of 1.0.0 and 2.0.0)")
    t.add_argument("--validation-source", action="append", default=[],
                   help="validate on this whole training source instead of 15 %% of the training objects (repeatable; "
                        "its objects leave training): a selection set from sources never trained on")
    t.add_argument("--heldout", default=None,
                   help="comma-separated sources to hold out instead of the standard set (another fold; tag it fold-*)")
    f = sub.add_parser("figures", help="score a finished run folder OUT/TAG (weights and record) as train would")
    f.add_argument("tag")
    f.add_argument("--preprocessing", choices=PREPROCESSING_CHOICES, required=True)
    tu = sub.add_parser("turns", help="how far each of the square's 8 turns moves braai's score (pool alerts)")
    tu.add_argument("--pool", type=Path, required=True, help="the real-alert pool folder, e.g. ../shared/ztf_pool")
    tu.add_argument("--reports", type=Path, default=Path(__file__).resolve().parents[1] / "reports" / "realbogus")
    r = sub.add_parser("report")
    r.add_argument("--ship", choices=VARIANT_TAGS, default=None)
    r.add_argument("--reports", type=Path, default=Path(__file__).resolve().parents[1] / "reports" / "realbogus")
    for p in (t, f, r):
        p.add_argument("--out", type=Path, default=Path("var/study"))
        p.add_argument("--pool", type=Path, required=True, help="the real-alert pool folder (alerts.parquet, labels.csv), "
                                                               "e.g. ../shared/ztf_pool")
        p.add_argument("--data-ztf", type=Path, required=True,
                       help="folder of FITS-stamp ZTF alerts: injection bases and the drb check, e.g. ../shared/data/ztf")
    args = parser.parse_args(argv)
    try:
        given = argv if argv is not None else sys.argv[1:]
        if args.step == "train":
            return _train(args, given)
        if args.step == "turns":
            return _turns(args)
        return _figures(args, given) if args.step == "figures" else _report(args)
    except TrainingDataError as exc:
        print(f"realbogus study failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
