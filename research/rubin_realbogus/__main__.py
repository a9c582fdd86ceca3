"""``python -m research.rubin_realbogus train --rubin-pool DIR --rubin-data DIR --out DIR [--ship]``
(``tables RESULTS.json``: the report's tables; ``compare ... --models NAME@VERSION ... --out FILE``:
registered models on the held-out test alone, no training)

Runs the study (:mod:`research.rubin_realbogus.study`): every variant trained and scored on
the same held-out test, the earlier models compared, ``OUT/results.json`` written; with
``--ship`` the variant chosen on validation goes into ``engines/weights`` and its card into
``engines/cards/rubin_realbogus.toml``. Data paths are required: nothing defaults outside the
checkout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from research.rubin_realbogus.study import VARIANTS, StudyConfig, run_study

REPO = Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m research.rubin_realbogus")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the variants, evaluate on the held-out test, optionally ship")
    train.add_argument("--rubin-pool", type=Path, required=True, help="the Rubin pool (fink-tutorials/, fink-science/, boom/)")
    train.add_argument("--rubin-data", type=Path, required=True, help="real Rubin packets (fink/v9_0, alerce, alerce-kafka)")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--per-base", type=int, default=24)
    train.add_argument("--test-per-base", type=int, default=20)
    train.add_argument("--seed", type=int, default=20261206)
    train.add_argument("--threads", type=int, default=2)
    train.add_argument("--max-alerts", type=int, default=None, help="per split (quick runs)")
    train.add_argument("--no-compare", action="store_true", help="skip scoring the earlier models")
    train.add_argument("--ship", action="store_true", help="register the variant chosen on validation")
    train.add_argument("--cards-dir", type=Path, default=REPO / "engines" / "cards")
    train.add_argument("--weights-dir", type=Path, default=REPO / "engines" / "weights")
    compare = sub.add_parser("compare", help="score registered models on the study's held-out test, no training")
    compare.add_argument("--rubin-pool", type=Path, required=True)
    compare.add_argument("--rubin-data", type=Path, required=True)
    compare.add_argument("--models", nargs="+", required=True, help="registered models, name@version")
    compare.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    compare.add_argument("--threads", type=int, default=2)
    compare.add_argument("--max-alerts", type=int, default=None, help="per split (quick runs)")
    tables = sub.add_parser("tables", help="markdown tables of a results.json (for the report)")
    tables.add_argument("results", type=Path)
    return parser


def _report(args: argparse.Namespace) -> int:
    from research.rubin_realbogus.tables import all_tables

    print(all_tables(json.loads(args.results.read_text())))
    return 0


def _train(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    config = StudyConfig(rubin_pool=args.rubin_pool, rubin_data=args.rubin_data, out=args.out,
                         variants=tuple(args.variants), per_base=args.per_base, test_per_base=args.test_per_base,
                         epochs=args.epochs, seed=args.seed, threads=args.threads, compare=not args.no_compare,
                         max_alerts=args.max_alerts)
    results = run_study(config)
    summary = {name: {"validation_injection_auc": f.get("validation_injection_roc_auc"),
                      "test_lsstcam_2025_auc": f.get("test_alerts_lsstcam_2025", {}).get("roc_auc"),
                      "test_injection_auc": f["test_injections"]["roc_auc"]} for name, f in results["variants"].items()}
    print(json.dumps({"selected": results["selected"], "variants": summary, "minutes": results["minutes"]}, indent=2))
    if args.ship:
        from research.rubin_realbogus.ship import ship

        command = "python -m research.rubin_realbogus " + " ".join(argv if argv is not None else sys.argv[1:])
        print("card:", ship(results, command, args.cards_dir, args.weights_dir))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from research.rubin_realbogus.study import compare_models

    config = StudyConfig(rubin_pool=args.rubin_pool, rubin_data=args.rubin_data, out=args.out.parent, threads=args.threads,
                         max_alerts=args.max_alerts)
    results = compare_models(config, args.models)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float))
    print(json.dumps({ref: f.get("test_alerts_lsstcam_2025", f) for ref, f in results["compared"].items()}, indent=2, default=float))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "tables":
        return _report(args)
    if args.command == "compare":
        return _compare(args)
    return _train(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
