"""Train the alert-class model on the real-alert pool, report it, measure it on Rubin, ship it.

    python -m research.training.alertclass_study train --out var/alertclass --pool ../shared/ztf_pool
    python -m research.training.alertclass_study report --out var/alertclass --pool ../shared/ztf_pool [--ship]

``train``: classes and split as in :mod:`research.training.pool_alertclass` (held-out sources
:data:`research.training.pool_realbogus.HELDOUT_SOURCES`). ``report``: per-class precision,
recall, F1, ROC AUC and the confusion matrix on the held-out sources
(``research/reports/alertclass/heldout_sources.*``), the bundled Rubin alerts scored through the
service's preprocessing (``rubin.json``), and ``README.md``; ``--ship`` writes the card and
weights (``engines/cards/alertclass.toml``), so the service scores difference alerts with it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from engines.networks.alertclass import ALERTCLASS_INPUT, ALERTCLASS_LABELS
from engines.training.register import round_to_half
from engines.training.train import TrainConfig
from engines.training.ztf_files import TrainingDataError
from research.training.pool_alertclass import (
    CLASS_RULE,
    alert_classes,
    alertclass_report,
    train_alertclass,
)
from research.training.pool_realbogus import HELDOUT_SOURCES, split_by_source
from research.training.ztf_pool import load_pool

__all__ = ["CONFIG", "VERSION", "main", "rubin_check"]

VERSION = "1.0.0-pool"
CONFIG = dict(epochs=20, batch_size=64, lr=1e-3, dropout=0.2, patience=4, seed=1, max_minutes=10.0, threads=2,
              bn_recalibration_examples=1024)
REPO = Path(__file__).resolve().parents[2]
REPORTS = REPO / "research" / "reports" / "alertclass"


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3:
        return None
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    c = np.corrcoef(ra, rb)[0, 1]
    return None if not np.isfinite(c) else float(c)


def rubin_check(network, samples: Path = REPO / "schemas" / "samples") -> dict[str, Any]:
    """Score the bundled Rubin (and, for scale, ZTF) sample alerts; compare what their fields allow."""
    import torch

    from engines.preprocess import difference_alert_batch_by_scale
    from schemas.alert import Alert
    from schemas.decode import iter_file

    out: dict[str, Any] = {}
    for survey in ("rubin", "ztf"):
        alerts = [item for path in sorted((samples / survey).rglob("*.avro")) for _, item in iter_file(path)
                  if isinstance(item, Alert)]
        if not alerts:
            continue
        with torch.inference_mode():
            probabilities = torch.softmax(network(difference_alert_batch_by_scale(alerts, 63, 1.01)), 1).numpy()
        top = [ALERTCLASS_LABELS[i] for i in probabilities.argmax(1)]
        row: dict[str, Any] = {"alerts": len(alerts), "top_class_counts": {c: top.count(c) for c in ALERTCLASS_LABELS},
                               "stamp_sizes_px": sorted({int(a.science.data.shape[0]) for a in alerts})}
        if survey == "rubin":
            ss = [a.candidate.get("ssObjectId") for a in alerts]
            known = np.asarray([bool(v) and int(v) != 0 for v in ss])
            asteroid = probabilities[:, ALERTCLASS_LABELS.index("asteroid")]
            row["known_solar_system"] = int(known.sum())
            row["asteroid_top_class_without_ssObjectId"] = int(sum(1 for k, t in zip(known, top) if not k and t == "asteroid"))
            row["asteroid_score_mean_without_ssObjectId"] = float(asteroid[~known].mean()) if (~known).any() else None
            reliability = np.asarray([a.survey_scores.get("reliability", np.nan) for a in alerts], dtype=float)
            ok = np.isfinite(reliability)
            row["reliability_alerts"] = int(ok.sum())
            row["spearman_real_score_vs_reliability"] = _spearman(1 - probabilities[ok, ALERTCLASS_LABELS.index("bogus")],
                                                                  reliability[ok])
        out[survey] = row
    return out


def _train(args: argparse.Namespace) -> int:
    pool = load_pool(args.pool)
    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    config = TrainConfig(model="alertclass", **{**CONFIG, "max_minutes": args.max_minutes})
    result, description = train_alertclass(pool, split, config, args.out)
    (args.out / "description.json").write_text(json.dumps(description, indent=2))
    print(json.dumps({"weights": str(result.weights_path), "best_epoch": result.best_epoch}))
    return 0


def _report(args: argparse.Namespace) -> int:
    from engines.training.recipes import load_trained

    pool = load_pool(args.pool)
    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    network = round_to_half(load_trained("alertclass", args.out / "alertclass.pt"))   # as shipped (float16 file)
    description = json.loads((args.out / "description.json").read_text())
    record = json.loads((args.out / "alertclass.train.json").read_text())
    metrics = alertclass_report(network, pool, split, REPORTS, extra={"training": description,
                                                                    "best_epoch": record["best_epoch"]})
    rubin = rubin_check(network)
    (REPORTS / "rubin.json").write_text(json.dumps(rubin, indent=2))
    labels = alert_classes(pool)
    test_counts = {c: int((labels[split.test] == i).sum()) for i, c in enumerate(ALERTCLASS_LABELS)}
    _write_readme(metrics, rubin, description, record, test_counts)
    if args.ship:
        print(json.dumps({"card": str(_ship(args.out, metrics, rubin, description, record))}))
    print(json.dumps({"accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
                      "per_class_f1": {c: r["f1"] for c, r in metrics["per_class"].items()}, "rubin": rubin}))
    return 0


def verdict(metrics: dict[str, Any]) -> str:
    """One honest line: how far the held-out balanced accuracy is from chance (1 / classes)."""
    chance = 1.0 / len(ALERTCLASS_LABELS)
    ba = metrics["balanced_accuracy"]
    if ba < 0.6:
        return (f"WEAK: balanced accuracy {ba:.3f} on held-out sources (chance {chance:.2f}); the class scores are "
                "not for science, only a starting point")
    return f"balanced accuracy {ba:.3f} on held-out sources (chance {chance:.2f})"


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _write_readme(metrics: dict[str, Any], rubin: dict[str, Any], description: dict[str, Any],
                  record: dict[str, Any], test_counts: dict[str, int]) -> None:
    r = rubin.get("rubin", {})
    lines = [
        "# alertclass: a class model for difference-image alerts (IICnet's body, trained on real ZTF alerts)",
        "",
        "## Trained on",
        "",
        f"- {description['train_alerts']} alerts of the training sources of `../shared/ztf_pool` "
        f"({', '.join(sorted(description['train_sources']))}); validation {description['validation_alerts']} alerts "
        "(split by object). Per class: " + ", ".join(f"{k} {v}" for k, v in description["train_per_class"].items()) + ".",
        f"- Labels: {CLASS_RULE}.",
        "- Why these classes: they are the only labels every pool alert has (the weak rule, plus the teacher for "
        "bogus). SIMBAD / TNS / variable-star labels exist for tens of alerts per class: too few to train or test.",
        "- Imbalance: the loss weighs classes by n / (5 n_c): " + ", ".join(
            f"{c} {w}" for c, w in zip(ALERTCLASS_LABELS, description["class_weights"])) + ".",
        f"- Input: the three stamps on ZTF's 1.01\"/px grid, 63 x 63 (`difference_stamps_arcsec_63`); random "
        f"rotations / reflections; best epoch {record['best_epoch']} of {len(record['history'])} "
        f"({record['stopped_because']}).",
        "",
        "## Held-out sources (" + ", ".join(description["heldout_sources"]) + ")",
        "",
        "Alerts per class: " + ", ".join(f"{k} {v}" for k, v in test_counts.items())
        + f". Accuracy {_f(metrics['accuracy'])}, balanced accuracy {_f(metrics['balanced_accuracy'])}.",
        "",
        "| class | support | precision | recall | F1 | ROC AUC |",
        "|---|---|---|---|---|---|",
    ]
    for c, row in metrics["per_class"].items():
        lines.append(f"| {c} | {row['support']} | {_f(row['precision'])} | {_f(row['recall'])} | {_f(row['f1'])} | "
                     f"{_f(row['roc_auc'])} |")
    lines += [
        "",
        "Confusion matrix (rows true, columns predicted, order " + ", ".join(ALERTCLASS_LABELS) + "): "
        f"`{metrics['confusion_matrix']}`. Files: [heldout_sources.md](heldout_sources.md), ROC and confusion plots beside it.",
        "",
        "## Rubin",
        "",
        f"- Checked: the {r.get('alerts', 0)} bundled Rubin alerts (`schemas/samples/rubin`, stamps "
        f"{r.get('stamp_sizes_px')} px at 0.2\"/px) run through the same preprocessing, resampled to 1.01\"/px "
        "(a 30 px Rubin stamp becomes 6 x 6 px in the 63 x 63 frame), and score without error.",
        f"- Known Solar-System association (`ssObjectId`): {r.get('known_solar_system', 0)} of {r.get('alerts', 0)} "
        f"alerts have one, so asteroid recall on Rubin **could not be measured**. Alerts without one called asteroid: "
        f"{r.get('asteroid_top_class_without_ssObjectId')} (mean asteroid score {_f(r.get('asteroid_score_mean_without_ssObjectId'))}).",
        f"- Rubin's own `reliability` vs our 1 - P(bogus): Spearman {_f(r.get('spearman_real_score_vs_reliability'))} "
        f"over {r.get('reliability_alerts', 0)} alerts (too few to conclude anything).",
        f"- Top classes on Rubin: {r.get('top_class_counts')}.",
        "- Not checked: any class figure on Rubin (no labelled Rubin alert here); whether ZTF-trained filters carry to "
        "Rubin's sharper PSF (0.7\" vs 2\") and smaller field of view per stamp (6\" vs 64\").",
        "",
        "## What these figures do not show",
        "",
        "- Accuracy against human vetting: labels are catalogue rules and ZTF's braai.",
        "- The weak labels come from positions in catalogues; the network sees only stamps, so a star under a "
        "transient and a galaxy host can look alike at 1\"/px.",
        "- One held-out set of sources, one seed.",
        "",
        "Reproduce: `python -m research.training.alertclass_study train --pool ../shared/ztf_pool`, then `... report --ship` (same `--pool`).",
        "",
    ]
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "README.md").write_text("\n".join(lines))


def _ship(run_dir: Path, metrics: dict[str, Any], rubin: dict[str, Any], description: dict[str, Any],
          record: dict[str, Any]) -> Path:
    from engines.cards import ModelCard, write_card
    from engines.contract import InputContract
    from engines.registry import CARDS_DIR, WEIGHTS_DIR
    from engines.training.register import register_model
    from engines.training.user_labels import card_figures
    from schemas.alert import InputKind

    card_path = CARDS_DIR / "alertclass.toml"
    if card_path.is_file() and f'version = "{VERSION}"' in card_path.read_text():   # this study's own earlier output
        card_path.unlink()
    r = rubin.get("rubin", {})
    training = {
        "synthetic": False,
        "data": "real ZTF public alerts of ../shared/ztf_pool, training sources " + ", ".join(sorted(description["train_sources"])),
        "train_alerts": description["train_alerts"], "validation_alerts": description["validation_alerts"],
        "train_per_class": [f"{k} {v}" for k, v in description["train_per_class"].items()],
        "label_rule": CLASS_RULE,
        "why_these_classes": "the only labels every pool alert has; catalogue types (SIMBAD, TNS) number tens per class",
        "class_weights": description["class_weights"],
        "split": "held-out sources for the test (their objects out of training); the rest by object, 85/15",
        "epochs_run": len(record["history"]), "best_epoch": record["best_epoch"], "stopped_because": record["stopped_because"],
        "lr": CONFIG["lr"], "batch_size": CONFIG["batch_size"], "dropout": CONFIG["dropout"], "seed": CONFIG["seed"],
        "record": f"engines/weights/alertclass-{VERSION}.train.json",
        "command": "python -m research.training.alertclass_study train --pool ../shared/ztf_pool",
    }
    evaluation = {
        "verdict": verdict(metrics),
        "summary": (verdict(metrics) + f"; held-out sources ({metrics['examples']} alerts): accuracy {metrics['accuracy']:.3f}, balanced "
                    f"accuracy {metrics['balanced_accuracy']:.3f}; F1 " + ", ".join(
                        f"{c} {row['f1']:.2f}" for c, row in metrics["per_class"].items() if row["f1"] is not None)
                    + "; labels are catalogue rules + braai, not human vetting"),
        **card_figures(metrics, "heldout"),
        "heldout_sources": list(description["heldout_sources"]),
        "rubin_checked": f"{r.get('alerts', 0)} bundled Rubin alerts score without error after resampling 0.2 -> 1.01 arcsec/px",
        "rubin_not_measured": "class figures (no labelled Rubin alert); asteroid recall (no ssObjectId among the samples)",
        "report": "research/reports/alertclass/README.md",
    }
    # the family's first card: register_model takes preprocessing and contract from a template card,
    # written to a temporary folder (the shipped card is then copied into engines/cards)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        contract = InputContract(input_name="input", output_name="probabilities", shape=ALERTCLASS_INPUT,
                                 labels=ALERTCLASS_LABELS, dtype="float32", max_batch=1024, opt_batch=256)
        template = Path(tmp) / "alertclass.toml"
        write_card(ModelCard(name="alertclass", version="0.0.0-template", network="alertclass", trained=False,
                             input_kinds=(InputKind.DIFFERENCE_ALERT,), preprocessing="difference_stamps_arcsec_63",
                             labels=ALERTCLASS_LABELS, contract=contract, weights_file="", weights_sha256=""), template)
        cards_dir = CARDS_DIR if card_path.is_file() else Path(tmp)
        path = register_model("alertclass", "alertclass", ALERTCLASS_LABELS, run_dir / "alertclass.pt", VERSION,
                              training, evaluation,
                              description="IICnet's body (RFB + two CBAM) on the (science, template, difference) stamps of "
                                          "a difference alert on a 1.01 arcsec/px grid -> asteroid, bogus, galaxy_host, "
                                          "hostless_or_faint, star. Trained on real ZTF alerts; ZTF and Rubin inputs.",
                              cards_dir=cards_dir, weights_dir=WEIGHTS_DIR, half=True)
        if cards_dir != CARDS_DIR:
            final = CARDS_DIR / "alertclass.toml"
            final.write_text(path.read_text())
            path = final
    (WEIGHTS_DIR / f"alertclass-{VERSION}.train.json").write_text(json.dumps(record, indent=2))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.training.alertclass_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    t = sub.add_parser("train")
    t.add_argument("--max-minutes", type=float, default=CONFIG["max_minutes"])
    r = sub.add_parser("report")
    r.add_argument("--ship", action="store_true")
    for p in (t, r):
        p.add_argument("--out", type=Path, default=Path("var/alertclass"))
        p.add_argument("--pool", type=Path, required=True, help="the real-alert pool folder (alerts.parquet, labels.csv), "
                                                               "e.g. ../shared/ztf_pool")
    args = parser.parse_args(argv)
    try:
        return _train(args) if args.step == "train" else _report(args)
    except TrainingDataError as exc:
        print(f"alertclass study failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
