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
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415

    from engines.contract import EngineError  # noqa: PLC0415
    from engines.training.datasets import load_labelled  # noqa: PLC0415
    from engines.training.evaluate import write_report  # noqa: PLC0415
    from engines.training.recipes import (  # noqa: PLC0415
        SYNTHETIC_NOTE,
        load_trained,
        predict,
        prepare_inputs,
        synthetic_hst,
        synthetic_realbogus,
        synthetic_wise,
    )
    from engines.training.recipes import _reorder_to_network as reorder  # noqa: PLC0415
    from engines.training.ztf_files import TrainingDataError  # noqa: PLC0415
    from stream.commands.train import network_kwargs  # noqa: PLC0415

    torch.set_num_threads(max(1, args.threads))
    notes: list[str] = []
    try:
        if args.weights is not None:
            network_name = args.model
            kwargs = network_kwargs(network_name, args.binning)
            network = load_trained(network_name, args.weights, kwargs)
            weights_id = {"weights": str(args.weights)}
        else:
            from engines.registry import load_network, load_registry  # noqa: PLC0415

            card = load_registry().card(args.model)
            network_name = card.network
            kwargs = dict(card.network_args)
            network = load_network(card)
            weights_id = {"card": card.name, "version": card.version, "weights_sha256": card.weights_sha256,
                          "trained": card.trained}
        from engines.networks import NETWORKS  # noqa: PLC0415

        spec = NETWORKS[network_name]
        input_shape = (spec.input_shape[0], *kwargs["input_hw"]) if kwargs.get("input_hw") else spec.input_shape
        preprocessed = False
        if args.synthetic is not None:
            notes.append(SYNTHETIC_NOTE)
            if network_name == "realbogus":
                data, _ = synthetic_realbogus(args.data or Path("../shared/data/ztf"), args.synthetic, args.seed)
            elif network_name == "iicnet":
                data, _ = synthetic_wise(args.synthetic, args.seed)
            else:
                views = max(1, args.views_per_body)
                data, _ = synthetic_hst(max(1, args.synthetic // (2 * views)), views, args.seed, args.binning)
                preprocessed = True
        elif args.data is not None:
            data = load_labelled(args.data, labels_csv=args.labels, group_column=args.group_column)
            notes.append(f"Evaluated on {args.data}: every example scored; the figures mean something only if "
                         f"the weights never saw these examples or their groups.")
        else:
            print("give --data PATH or --synthetic N", file=sys.stderr)
            return 2
        data = reorder(network_name, data)
        inputs = prepare_inputs(network_name, data, input_shape, preprocessed, args.binning)
        probabilities = predict(network, inputs, device=args.device)
        metrics, paths = write_report(args.report, "evaluation", f"{args.model}: evaluation", probabilities,
                                      data.labels, data.class_names, notes=notes, threshold=args.threshold,
                                      extra={**weights_id, "data_sha256": data.data_sha256, "examples": len(data)})
    except (TrainingDataError, EngineError, KeyError, ValueError) as exc:
        print(f"evaluation failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"report": str(paths.json), "accuracy": metrics["accuracy"],
                      "per_class": {k: {m: v[m] for m in ("precision", "recall", "f1", "roc_auc")}
                                    for k, v in metrics["per_class"].items()}}))
    return 0
