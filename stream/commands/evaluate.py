"""``survey-classifier evaluate MODEL --data PATH``: the papers' figures for a network on labelled data.

Per class: accuracy, precision, recall, specificity, F1, ROC AUC; the confusion matrix; a ROC
PNG and a confusion PNG; JSON + Markdown in ``--report``. Weights: ``--weights FILE`` (a
``train`` output), else the shipped weights named by the model's card (sha256 checked).
``--synthetic N`` evaluates on a freshly simulated set (use a seed the weights were not trained
with) instead of ``--data``. All of ``--data`` is scored: evaluate on data the weights never saw.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stream.errors import UsageError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="per-class figures, confusion matrix and ROC for a network on labelled data")
    p.add_argument("model", help="network / card name: realbogus, iicnet, hrcelestialnet")
    p.add_argument("--data", type=Path, default=None, help="folder per class, or .npz/.h5 (+ labels CSV)")
    p.add_argument("--labels", type=Path, default=None, help="labels CSV for --data arrays")
    p.add_argument("--group-column", default=None, help="(recorded only; every example is scored)")
    p.add_argument("--synthetic", type=int, default=None, metavar="N", help="evaluate on N fresh simulated examples")
    p.add_argument("--seed", type=int, default=1, help="seed of the simulated set (--synthetic)")
    p.add_argument("--weights", type=Path, default=None, help="weights file (default: the card's shipped weights)")
    p.add_argument("--binning", type=int, default=4, help="hrcelestialnet: input binning")
    p.add_argument("--views-per-body", type=int, default=3, help="hrcelestialnet --synthetic: exposures of each body")
    p.add_argument("--report", type=Path, default=Path("var/evaluation"), help="report folder")
    p.add_argument("--threshold", type=float, default=None, help="two-class decision threshold (default: arg-max)")
    p.add_argument("--cards-dir", type=Path, default=None, help="where the model's card lives (default engines/cards)")
    p.add_argument("--weights-dir", type=Path, default=None, help="where its weights live (default engines/weights)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from engines.contract import EngineError
    from engines.training.runs import evaluate_model
    from engines.training.ztf_files import TrainingDataError

    torch.set_num_threads(max(1, args.threads))
    if args.synthetic is None and args.data is None:
        raise UsageError("give --data PATH or --synthetic N")
    try:
        metrics, paths = evaluate_model(
            args.model, report=args.report, weights=args.weights, binning=args.binning, threshold=args.threshold,
            device=args.device, data=args.data, labels=args.labels, group_column=args.group_column,
            synthetic=args.synthetic, seed=args.seed, views_per_body=args.views_per_body,
            cards_dir=args.cards_dir, weights_dir=args.weights_dir)
    except (TrainingDataError, EngineError, KeyError, ValueError) as exc:
        print(f"evaluation failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"report": str(paths.json), "accuracy": metrics["accuracy"],
                      "per_class": {k: {m: v[m] for m in ("precision", "recall", "f1", "roc_auc")}
                                    for k, v in metrics["per_class"].items()}}))
    return 0
