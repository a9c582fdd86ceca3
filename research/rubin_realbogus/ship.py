"""Put the selected variant into the registry: its weights in ``engines/weights/``, card
``engines/cards/rubin_realbogus.toml`` with the study's split, recipe and held-out figures.

The card is built from the seed network's card (``engines/cards/realbogus.toml``: input
contract) and written with :func:`engines.cards.write_card`; the existing cards are not touched.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from engines.cards import load_card, write_card
from engines.export import file_sha256

__all__ = ["CARD_NAME", "VERSION", "ship", "card_sections"]

CARD_NAME = "rubin_realbogus"
VERSION = "1.0.0"
REPORT = "research/rubin_realbogus/README.md"
REFERENCE = "Rubin reliability >= 0.5 (Rubin's own model; agreement, not accuracy)"


def _r(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [_r(v, digits) for v in value]
    return value


def card_sections(results: dict[str, Any], command: str, record: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """([training], [evaluation]) of the card from the study's ``results.json``."""
    name = results["selected"]
    figures = results["variants"][name]
    config = results["config"]
    split = results["split"]
    counts = results["counts"]

    def split_text(side: str) -> str:
        return "; ".join(f"{src}: {row['alerts']} (MJD {row['mjd'][0]}..{row['mjd'][1]})"
                         for src, row in split.get(side, {}).items())

    training = {
        "synthetic": False,
        "data": ("real Rubin alerts (rubin_pool/fink-tutorials, 2026-03-09) with Rubin's reliability as soft target, "
                 "plus injections into their real science/template pairs (research/rubin_realbogus/injections.py)"),
        "sources": ["github:astrolabsoftware/fink-tutorials (lsst/data_transfer, Apache-2.0)"],
        "variant": name,
        "selection_rule": results["selection_rule"],
        "split": ("held out by date, field and source: train = COSMOS field of 2026-03-09, validation = the other field "
                  "of that night (RA ~ 185 deg), test = every 2025 (and HSC 2016) packet; deduplicated by diaSourceId"),
        "train_alerts": split_text("train"),
        "validation_alerts": split_text("validation"),
        "test_alerts": split_text("test"),
        "train_examples": figures["train_examples"],
        "validation_examples": figures["validation_examples"],
        "injections_per_alert": config["per_base"],
        "injection_counts": f"train {counts['train']['injections']}, validation {counts['val']['injections']}, "
                            f"test {counts['test']['injections']}",
        "recipe": ("injections at each alert's PSF (Gaussian of its PSF plane's FWHM; training injections spread to "
                   f"{figures.get('psf_spread')} x it, at least 2.5 px) and noise (variance plane): point "
                   "sources S/N 5-200 and variable stars (either sign) as real; dipoles, cosmic rays, bad subtractions, "
                   "detector edges, blank/NaN cutouts and sub-threshold noise as bogus; difference = science - matched "
                   "template kept exactly; real alerts repeated 5 x with soft targets (1 - r, r); 8 dihedral "
                   "augmentations"),
        "label_rule": "injections: their known kind; real alerts: soft targets (1 - reliability, reliability)",
        "preprocessing": figures["preprocessing"],
        "geometry": GEOMETRY,
        "optimizer": "adam",
        "lr": config["lr"],
        "batch_size": config["batch_size"],
        "dropout": config["dropout"],
        "epochs": config["epochs"],
        "best_epoch": figures["best_epoch"],
        "stopped_because": figures["stopped_because"],
        "seed": config["seed"],
        "record": record,
        "command": command,
    }
    lsst = figures.get("test_alerts_lsstcam_2025", {})
    no_quirk = figures.get("test_alerts_lsstcam_2025_without_0.48634", {})
    hsc = figures.get("test_alerts_hsc_precursor", {})
    every = figures.get("test_alerts_all", {})
    inj = figures["test_injections"]
    evaluation: dict[str, Any] = {
        "summary": (f"agreement with Rubin's reliability >= 0.5 on {lsst.get('alerts')} LSSTCam 2025 alerts never seen "
                    f"(other dates, fields, sources): ROC AUC {_r(lsst.get('roc_auc'), 3)} "
                    f"({_r(lsst.get('roc_auc_95ci', [None, None])[0], 2)}-{_r(lsst.get('roc_auc_95ci', [None, None])[1], 2)}); "
                    f"held-out injections ROC AUC {_r(inj.get('roc_auc'), 3)}"),
        "reference": REFERENCE,
        "heldout_lsstcam_2025_alerts": lsst.get("alerts"),
        "heldout_lsstcam_2025_reference_real": lsst.get("reference_real"),
        "heldout_roc_auc": _r(lsst.get("roc_auc")),
        "heldout_roc_auc_95ci": _r(lsst.get("roc_auc_95ci")),
        "heldout_recall_of_real": _r(lsst.get("recall_of_real")),
        "heldout_recall_of_real_95ci": _r(lsst.get("recall_of_real_95ci")),
        "heldout_bogus_passed": _r(lsst.get("bogus_passed")),
        "heldout_bogus_passed_95ci": _r(lsst.get("bogus_passed_95ci")),
        "heldout_without_0_48634_alerts": no_quirk.get("alerts"),
        "heldout_without_0_48634_roc_auc": _r(no_quirk.get("roc_auc")),
        "heldout_without_0_48634_roc_auc_95ci": _r(no_quirk.get("roc_auc_95ci")),
        "heldout_hsc_precursor_alerts": hsc.get("alerts"),
        "heldout_hsc_precursor_roc_auc": _r(hsc.get("roc_auc")),
        "heldout_hsc_precursor_roc_auc_95ci": _r(hsc.get("roc_auc_95ci")),
        "heldout_all_alerts": every.get("alerts"),
        "heldout_all_roc_auc": _r(every.get("roc_auc")),
        "heldout_all_roc_auc_95ci": _r(every.get("roc_auc_95ci")),
        "injection_test_examples": inj.get("alerts"),
        "injection_test_roc_auc": _r(inj.get("roc_auc")),
        "injection_test_roc_auc_95ci": _r(inj.get("roc_auc_95ci")),
        "injection_test_recall_of_real": _r(inj.get("recall_of_real")),
        "injection_test_bogus_passed": _r(inj.get("bogus_passed")),
        "threshold": _r(figures["threshold"]),
        "threshold_rule": ("highest threshold keeping 0.95 of the validation field's real injections; it does not "
                           "transfer across nights (test-date injections: recall above)"),
        "bootstrap": "1000 draws resampling objects (diaObjectId; an injection's base object)",
        "report": REPORT,
        "not_shown": ("accuracy against human vetting (no vetted Rubin labels here); alerts after the 2026-02-25 cut "
                      "below 0.5 (none exist); bands and fields beyond g/z COSMOS and i; other seeds"),
    }
    for ref, comp in results.get("compared", {}).items():
        key = ref.split("@")[1].replace(".", "_").replace("-", "_")
        got = comp.get("test_alerts_lsstcam_2025", {})
        evaluation[f"compared_{key}_roc_auc"] = _r(got.get("roc_auc"))
        evaluation[f"compared_{key}_injection_roc_auc"] = _r(comp.get("test_injections", {}).get("roc_auc"))
    return training, evaluation


#: How the input geometry was chosen (the report's "Preprocessing and why").
GEOMETRY = ("Rubin's own 0.2\"/px, never resampled (a 30 px cutout would be 6 px at ZTF's scale, too few for the "
            "network's three pooling stages; stretching each size to 69 px would give each its own scale); the source "
            "pixel (n + 1) // 2 at the frame centre, the central 30 x 30 pixels kept (the smallest cutout: every "
            "cutout shows the same sky), zero-padded to 69; one WCS parity (mirrored cutouts flipped, mismatched "
            "WCS refused); NaN as 0 like Rubin's own model")


def survey_figures(evaluation: dict[str, Any]) -> dict[str, str]:
    """One line per survey for the card's ``[survey_figures]``: checked on Rubin, never on ZTF."""
    lo, hi = evaluation["heldout_roc_auc_95ci"]
    return {
        "rubin": (f"checked: ROC AUC {evaluation['heldout_roc_auc']:.3f} (95% CI {lo:.2f}-{hi:.2f}) against Rubin's "
                  f"reliability >= 0.5 on {evaluation['heldout_lsstcam_2025_alerts']} LSSTCam alerts of 2025 dates and fields never seen "
                  f"(agreement with Rubin's model, not accuracy); injections into the test alerts ROC AUC "
                  f"{evaluation['injection_test_roc_auc']:.3f}"),
        "ztf": "NOT validated: trained on Rubin stamps only (0.2\"/px); never checked on ZTF",
    }


def ship(results: dict[str, Any], command: str, cards_dir: Path, weights_dir: Path) -> Path:
    """Copy the selected variant's weights and record, write the card; returns its path."""
    name = results["selected"]
    figures = results["variants"][name]
    weights_dir.mkdir(parents=True, exist_ok=True)
    weights = weights_dir / f"{CARD_NAME}-{VERSION}.pt"
    record = weights_dir / f"{CARD_NAME}-{VERSION}.train.json"
    shutil.copyfile(figures["weights"], weights)
    shutil.copyfile(figures["record"], record)
    training, evaluation = card_sections(results, command, f"engines/weights/{record.name}")
    template = load_card(cards_dir / "realbogus.toml")
    card_path = cards_dir / f"{CARD_NAME}.toml"
    card = replace(template, name=CARD_NAME, version=VERSION, trained=True, preprocessing=figures["preprocessing"],
                   labels=("bogus", "real"), contract=replace(template.contract, labels=("bogus", "real")),
                   weights_file=weights.name, weights_sha256=file_sha256(weights), init_seed=None, base_sha256="",
                   network_args={}, training=training, evaluation=evaluation, surveys=("rubin",), default=True,
                   real_bogus=True, class_prefix="", survey_figures=survey_figures(evaluation),
                   description=("Rubin real/bogus: the seed real/bogus CNN (architecture unchanged) on Rubin triplets at "
                                f"0.2\"/px ({figures['preprocessing']}), trained on injections into real Rubin pairs of "
                                "one night plus Rubin's reliability as soft teacher; figures on 2025 alerts never seen"),
                   path=card_path)
    write_card(card, card_path)
    load_card(card_path)
    return card_path
