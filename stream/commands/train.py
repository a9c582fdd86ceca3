"""``survey-classifier train MODEL``: train a network on labelled data, with a grouped split.

Data (``--data PATH``): a folder per class (FITS / PNG / JPEG / .npy), or an .npz / HDF5 of
arrays with a labels CSV (see :mod:`engines.training.datasets`). Class names must be the
network's outputs (realbogus: bogus, real; iicnet: galaxy, quasar, star; hrcelestialnet: galaxy,
nebula_star_cluster). ``--group-column`` names the object / field id column so no group sits
on two sides of the split.

``--synthetic N`` instead trains on this project's simulators (engines/training/README.md):
realbogus injects into real ZTF alerts found under ``--data`` (required);
iicnet simulates N WISE cutouts; hrcelestialnet simulates N raw ACS/WFC frames. The run itself
(data, training, report) is :mod:`engines.training.runs` and :mod:`engines.training.recipes`.

Writes ``<model>.pt``, ``<model>.train.json`` (config, data hashes, history) and
``checkpoint.pt`` to ``--out``; the held-out test report to ``--report`` (default ``--out/report``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import structlog

from stream.errors import UsageError

__all__ = ["register", "DEFAULTS", "initial_weights"]

log = structlog.get_logger(__name__)

#: Per-network defaults (the papers' optimiser where it fits a CPU budget).
DEFAULTS: dict[str, dict] = {
    "realbogus": {"lr": 1e-3, "batch_size": 128, "dropout": 0.5, "optimizer": "adam"},
    "iicnet": {"lr": 1e-3, "batch_size": 64, "dropout": 0.2, "optimizer": "adam"},
    "hrcelestialnet": {"lr": 1e-3, "batch_size": 4, "dropout": 0.0, "optimizer": "sgd"},
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a network on labelled data (or the synthetic sets) with a grouped split")
    p.add_argument("model", choices=sorted(DEFAULTS), help="network to train")
    p.add_argument("--data", type=Path, default=None, help="folder per class, or .npz/.h5 (+ labels CSV)")
    p.add_argument("--labels", type=Path, default=None, help="labels CSV for --data arrays (default: beside it)")
    p.add_argument("--group-column", default=None, help="CSV column with the object/field id for grouped splits")
    p.add_argument("--synthetic", type=int, default=None, metavar="N", help="train on N simulated examples instead")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay of the optimiser")
    p.add_argument("--views-per-body", type=int, default=3,
                   help="hrcelestialnet --synthetic: exposures simulated of each body (the split is by body)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop after this many epochs without a better validation loss (default 3; with --data and a "
                        "budget, at least a third of the epochs the budget affords)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time (wall clock)")
    p.add_argument("--max-cpu-minutes", type=float, default=None,
                   help="stop after this much process CPU time in training (all threads; what a shared machine gives)")
    p.add_argument("--schedule", choices=("constant", "cosine"), default=None,
                   help="learning rate: constant, or a cosine to 1%% over the epochs the budget affords "
                        "(default: cosine with --data, constant for --synthetic)")
    p.add_argument("--no-augment", action="store_true",
                   help="--data stamps: no dihedral flips / small shifts / noise on training batches (on by default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--binning", type=int, default=4, help="hrcelestialnet: input binning (1, 2 or 4)")
    p.add_argument("--head-blocks", type=int, default=None, metavar="K",
                   help="train only the last K pooled conv blocks + dense layers of the seeded network, on features of "
                        "its frozen prefix (low-rank updates; the CPU route for hrcelestialnet; see engines/training/head.py)")
    p.add_argument("--rank", type=int, default=8, help="with --head-blocks: rank of the conv/dense weight updates")
    p.add_argument("--init-seed", type=int, default=None,
                   help="with --head-blocks: seed of the frozen initialisation (default: the cards' seed, 20261122)")
    p.add_argument("--calibration-examples", type=int, default=48,
                   help="with --head-blocks: training inputs over which BatchNorm statistics are recomputed")
    p.add_argument("--name", default=None,
                   help="register the result as this model (card + weights; a user's own classes need it): "
                        "engines list shows it, engine.models runs it; an existing name gets a new version")
    p.add_argument("--version", default=None, help="with --name: the card's version (default 1.0.0-user)")
    p.add_argument("--init-from", default=None, metavar="MODEL|PT|none",
                   help="fine-tune from shipped weights: a registered model (name or name@version) of the same "
                        "network and input, or a .pt state dict; an output layer of another size starts fresh. "
                        "--data runs start from the network's own shipped model when it reads the same input kind "
                        "(iicnet); 'none': seeded initialisation")
    p.add_argument("--no-balance", action="store_true",
                   help="--data: do not weigh the loss by inverse class frequency (weighted by default)")
    p.add_argument("--cards-dir", type=Path, default=None, help="with --name: where cards live (default engines/cards)")
    p.add_argument("--weights-dir", type=Path, default=None, help="with --name: where weights live (default engines/weights)")
    p.add_argument("--out", type=Path, default=Path("var/training"), help="output folder (weights, record, checkpoint)")
    p.add_argument("--report", type=Path, default=None, help="test-report folder (default: OUT/report)")
    p.add_argument("--resume", type=Path, default=None, metavar="CKPT", help="continue from a checkpoint.pt")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.set_defaults(func=_run)


#: networks whose user inputs are stamps / cutouts (augmented by default); not raw frames
STAMP_NETWORKS = ("realbogus", "iicnet")


def user_recipe(args: argparse.Namespace, head_route: bool) -> dict:
    """The recipe for a user's labelled data (engines/training/README.md): cosine schedule,
    patience in epochs of the budget (unless --patience is given), augmentation of stamps."""
    return {"lr_schedule": args.schedule or "cosine", "budget_patience": args.patience is None,
            "augment": args.model in STAMP_NETWORKS and not args.no_augment and not head_route}


def initial_weights(args: argparse.Namespace, head_route: bool) -> str | None:
    """The weights a ``--data`` run starts from: ``--init-from`` (``none``: seeded), else the
    network's own shipped model where it reads the same input kind
    (:func:`engines.training.register.default_init_weights`); the head route and ``--resume``
    keep their own starting point."""
    from engines.training.register import default_init_weights, resolve_init_weights

    if args.init_from == "none":
        return None
    if args.init_from:
        return str(resolve_init_weights(args.init_from, args.model, args.cards_dir, args.weights_dir))
    if head_route or args.resume is not None:
        return None
    path, why = default_init_weights(args.model, args.cards_dir, args.weights_dir)
    log.info("training_default_init", network=args.model, weights=str(path) if path else "seeded initialisation",
             why=why)
    return str(path) if path else None


def _run(args: argparse.Namespace) -> int:
    from engines.seed_weights import INIT_SEED
    from engines.training.head import HeadPlan
    from engines.training.recipes import train_and_evaluate
    from engines.training.runs import REALBOGUS_SYNTHETIC_NEEDS_DATA, network_kwargs, run_data
    from engines.training.train import TrainConfig
    from engines.training.user_labels import register_trained, user_label_config
    from engines.training.ztf_files import TrainingDataError

    defaults = DEFAULTS[args.model]
    try:
        kwargs = network_kwargs(args.model, args.binning)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.synthetic is None and args.data is None:
        raise UsageError("give --data PATH (labelled data) or --synthetic N")
    if args.synthetic is not None and args.model == "realbogus" and args.data is None:
        raise UsageError(REALBOGUS_SYNTHETIC_NEEDS_DATA)
    config = TrainConfig(
        model=args.model, epochs=args.epochs,
        batch_size=args.batch_size or defaults["batch_size"], lr=args.lr or defaults["lr"],
        dropout=defaults["dropout"] if args.dropout is None else args.dropout, seed=args.seed, device=args.device,
        weight_decay=args.weight_decay, patience=3 if args.patience is None else args.patience,
        max_minutes=args.max_minutes, max_cpu_minutes=args.max_cpu_minutes, lr_schedule=args.schedule or "constant",
        # the head route trains low-rank factors that start at zero: Adam, whatever the paper used
        optimizer="adam" if args.head_blocks is not None else defaults["optimizer"], threads=args.threads,
        network_kwargs=kwargs,
    )
    head = None
    if args.head_blocks is not None:
        head = HeadPlan(init_seed=INIT_SEED if args.init_seed is None else args.init_seed, blocks=args.head_blocks,
                        rank=args.rank, calibration_examples=args.calibration_examples)
    try:
        run = run_data(args.model, purpose="train", data=args.data, labels=args.labels, group_column=args.group_column,
                       synthetic=args.synthetic, seed=args.seed, views_per_body=args.views_per_body, binning=args.binning)
        user_data = args.synthetic is None
        if user_data:
            config = user_label_config(config, run.data.class_names, args.name)
            config = replace(config, **user_recipe(args, head is not None))
            config = replace(config, init_from=initial_weights(args, head is not None))
        trained = train_and_evaluate(
            run.data, config, args.out, args.report or args.out / "report", run.description, preprocessed=run.preprocessed,
            binning=args.binning, resume=args.resume, progress=not args.no_progress, notes=run.notes, head=head,
            balance_classes=user_data and not args.no_balance)
        card_path = None
        if args.name:
            card_path = register_trained(args.name, args.version, config, trained, run.description, args.cards_dir,
                                         args.weights_dir)
    except TrainingDataError as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        return 1
    m = trained.test_metrics
    print(json.dumps({"weights": str(trained.result.weights_path), "record": str(trained.result.record_path),
                      "report": str(trained.report_json), "best_epoch": trained.result.best_epoch,
                      "stopped_because": trained.result.stopped_because, "test_accuracy": m["accuracy"],
                      "test_examples": m["examples"], "balanced_accuracy": m.get("balanced_accuracy"),
                      "init_from": config.init_from or "seeded initialisation",
                      "card": str(card_path) if card_path else None}))
    return 0
