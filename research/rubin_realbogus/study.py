"""Train the seed real/bogus network on Rubin data in several variants and score each on the
same held-out test (the ablation), plus the project's existing real/bogus models.

Variants (what each ingredient adds; all the seed architecture, 3 x 69 x 69):

* ``real_only``: the training night's real alerts with Rubin's reliability as soft target only
  (they are all >= 0.5: the network sees almost one class);
* ``injections_own_psf``: injections into the training night's pairs at each pair's own PSF;
* ``injections``: the same with the injected PSF's width spread (0.5..1.1 x the pair's, at least
  2.5 px) because the training night's seeing was poor (see :mod:`.injections`);
* ``injections_teacher``: ``injections`` plus the real alerts (repeated ``REAL_REPEAT`` times)
  with soft targets from Rubin's reliability;
* ``injections_teacher_w30``: as before on the central 30 x 30 pixels of every cutout
  (``rubin_triplet_w30_69``) instead of the whole cutout up to 69 x 69.

Validation (the held-out field's injections at their own PSF and its real alerts, soft
targets) is the same for every variant. The shipped variant is the one of lowest validation
loss among those with injections (their validation injection AUCs are all >= 0.99, too close
to tell apart), never chosen on the test. The threshold is the highest keeping 95 % of the
validation field's real injections.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from engines.networks.realbogus import RealBogusCNN
from engines.training.train import TrainConfig, TrainingData, dihedral_augment, train_network
from research.rubin_realbogus.alerts import RubinAlert, load_rubin_alerts
from research.rubin_realbogus.dataset import Examples, concatenate, injection_examples, real_examples
from research.rubin_realbogus.injections import BOGUS_KINDS, REAL_KINDS, as_alert
from research.training.heldout import agreement_figures, fast_auc, threshold_at_recall

__all__ = ["Variant", "VARIANTS", "REAL_REPEAT", "StudyConfig", "run_study", "compare_models", "score_inputs", "COMPARED_MODELS"]

log = structlog.get_logger(__name__)

REAL_REPEAT = 5
#: training injections' PSF FWHM: the base's times U(0.5, 1.1) (at least 2.5 px)
PSF_SPREAD = (0.5, 1.1)
#: the project's earlier real/bogus models, scored on the same test alerts
COMPARED_MODELS = ("realbogus@2.1.0-pool-distilled", "realbogus@1.0.0-synthetic")


@dataclass(frozen=True)
class Variant:
    name: str
    injections: bool
    real_alerts: bool
    preprocessing: str
    psf_spread: tuple[float, float] | None = PSF_SPREAD


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("real_only", False, True, "rubin_triplet_69", None),
    Variant("injections_own_psf", True, False, "rubin_triplet_69", None),
    Variant("injections", True, False, "rubin_triplet_69"),
    Variant("injections_teacher", True, True, "rubin_triplet_69"),
    Variant("injections_teacher_w30", True, True, "rubin_triplet_w30_69"),
)}


@dataclass(frozen=True)
class StudyConfig:
    rubin_pool: Path
    rubin_data: Path
    out: Path
    variants: tuple[str, ...] = tuple(VARIANTS)
    per_base: int = 24            # injections per training / validation alert
    test_per_base: int = 20       # injections per test alert
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    dropout: float = 0.3
    patience: int = 3
    seed: int = 20261206
    threads: int = 2
    draws: int = 1000             # bootstrap draws
    compare: bool = True          # score the earlier models too
    max_alerts: int | None = None  # per split, for quick runs (tests)


def score_inputs(state: dict[str, torch.Tensor], x: np.ndarray, batch: int = 256) -> np.ndarray:
    """P(real) of the seed network with ``state`` on preprocessed inputs."""
    network = RealBogusCNN()
    network.load_state_dict(state)
    network.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out.append(torch.softmax(network(torch.from_numpy(x[i:i + batch])), 1)[:, 1].numpy())
    return np.concatenate(out) if out else np.empty(0, np.float32)


def _split(alerts: Sequence[RubinAlert], name: str, limit: int | None) -> list[RubinAlert]:
    chosen = [a for a in alerts if a.split == name]
    return chosen[:limit] if limit else chosen


def _training_data(variant: Variant, train: dict[str, Examples], val: dict[str, Examples]) -> TrainingData:
    def side(parts: dict[str, Examples]) -> Examples:
        chosen = []
        if variant.injections:
            chosen.append(parts["injections"])
        if variant.real_alerts:
            chosen += [parts["alerts"]] * REAL_REPEAT
        return concatenate(chosen)

    tr = side(train)
    # validation always holds the held-out field's injections and real alerts (the same for
    # every variant, so their validation figures compare)
    va = concatenate([val["injections"], val["alerts"]])
    return TrainingData(tr.x, tr.y, va.x, va.y, ("bogus", "real"),
                        {"variant": variant.name, "preprocessing": variant.preprocessing,
                         "train_injections": int(variant.injections) * len(train["injections"]),
                         "train_real_alerts": int(variant.real_alerts) * len(train["alerts"]),
                         "real_repeat": REAL_REPEAT if variant.real_alerts else 0})


def _figures(scores: np.ndarray, ex: Examples, threshold: float, draws: int, seed: int, reference: str) -> dict[str, Any]:
    ref = ex.reliability if reference == "reliability" else ex.label.astype(np.float64)
    return agreement_figures(scores, ref, ex.group, threshold, draws, seed)


def _per_kind(scores: np.ndarray, ex: Examples, threshold: float) -> dict[str, dict[str, float]]:
    out = {}
    for kind in REAL_KINDS + BOGUS_KINDS:
        mask = ex.kind == kind
        if mask.any():
            out[kind] = {"n": int(mask.sum()), "passed": float((scores[mask] >= threshold).mean())}
    return out


def _evaluate(scores: dict[str, np.ndarray], data: dict[str, dict[str, Examples]], threshold: float,
              draws: int, seed: int, subsets: np.ndarray) -> dict[str, Any]:
    test_alerts, test_inj = data["test"]["alerts"], data["test"]["injections"]
    out: dict[str, Any] = {"threshold": threshold}
    for subset in ("all", "lsstcam_2025", "hsc_precursor"):
        mask = np.ones(len(test_alerts), bool) if subset == "all" else subsets == subset
        if mask.any():
            out[f"test_alerts_{subset}"] = _figures(scores["test_alerts"][mask], test_alerts.take(mask), threshold,
                                                    draws, seed, "reliability")
    quirk = np.abs(test_alerts.reliability - 0.48634) < 1e-4
    lsst = (subsets == "lsstcam_2025") & ~quirk
    if lsst.any():
        out["test_alerts_lsstcam_2025_without_0.48634"] = _figures(
            scores["test_alerts"][lsst], test_alerts.take(lsst), threshold, draws, seed, "reliability")
    out["test_injections"] = _figures(scores["test_injections"], test_inj, threshold, draws, seed, "label")
    out["test_injections_per_kind"] = _per_kind(scores["test_injections"], test_inj, threshold)
    if "val_injections" in scores:
        out["validation_injection_roc_auc"] = fast_auc(scores["val_injections"], data["val"]["injections"].label == 1)
    return out


def _compare(data: dict[str, dict[str, Examples]], test_alerts: list[RubinAlert], test_inj_alerts: list,
             val_inj_alerts: list, draws: int, seed: int, subsets: np.ndarray,
             models: Sequence[str] = COMPARED_MODELS) -> dict[str, Any]:
    """Other registered models (``name@version``) on the same test alerts and injections (their
    own preprocessing; their threshold chosen the same way, on the validation injections)."""
    from engines.contract import EngineError
    from engines.registry import load_registry

    registry = load_registry()
    out = {}
    for ref in models:
        try:
            runner = registry.load_runner(ref, "torch")
        except EngineError as exc:        # a model that cannot load here is reported, not fatal
            out[ref] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        real_col = list(runner.labels).index("real")
        scores = {"test_alerts": runner.score([a.alert for a in test_alerts])[:, real_col],
                  "test_injections": runner.score(test_inj_alerts)[:, real_col],
                  "val_injections": runner.score(val_inj_alerts)[:, real_col]}
        threshold = threshold_at_recall(scores["val_injections"], data["val"]["injections"].label == 1, 0.95)
        out[ref] = _evaluate(scores, data, threshold, draws, seed, subsets)
        runner.close()
    return out


def compare_models(config: StudyConfig, models: Sequence[str], preprocessing: str = "rubin_triplet_w30_69") -> dict[str, Any]:
    """Registered models scored on the study's held-out test alone, no training: the same split,
    injections and figures as :func:`run_study`'s comparison (the injections depend on the seed
    and counts, not on ``preprocessing``, which only shapes the unused training inputs)."""
    torch.set_num_threads(config.threads)
    alerts = load_rubin_alerts(config.rubin_pool, config.rubin_data)
    test_alerts = _split(alerts, "test", config.max_alerts)
    data, injected = build_data(config, preprocessing, alerts)
    compared = _compare(data, test_alerts, injected["test"], injected["val"], config.draws, config.seed,
                        np.array([a.subset for a in test_alerts]), models)
    # what fixes the split, the injections and the intervals (the training settings play no part)
    kept = ("rubin_pool", "rubin_data", "per_base", "test_per_base", "seed", "draws", "max_alerts", "threads")
    return {"config": {k: str(v) if isinstance(v, Path) else v for k, v in config.__dict__.items() if k in kept},
            "test_alert_ids": sorted(int(a.alert.alert_id) for a in test_alerts), "compared": compared}


def _split_table(alerts: Sequence[RubinAlert]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for a in alerts:
        row = table.setdefault(a.split, {}).setdefault(a.source, {"alerts": 0, "reliability_ge_0_5": 0, "subsets": {},
                                                                   "mjd": [1e9, 0]})
        row["alerts"] += 1
        row["reliability_ge_0_5"] += int(a.reliability >= 0.5)
        row["subsets"][a.subset] = row["subsets"].get(a.subset, 0) + 1
        row["mjd"] = [round(min(row["mjd"][0], a.alert.mjd), 2), round(max(row["mjd"][1], a.alert.mjd), 2)]
    return table


def build_data(config: StudyConfig, preprocessing: str, alerts: list[RubinAlert]) -> tuple[dict, dict]:
    """Examples per split for one preprocessing (every injection at its base's own PSF), and
    the injection Alerts (for scoring other models)."""
    data: dict[str, dict[str, Examples]] = {}
    injected_alerts: dict[str, list] = {}
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        chosen = _split(alerts, name, config.max_alerts)
        per_base = config.test_per_base if split == "test" else config.per_base
        inj, injections, bases = injection_examples(chosen, per_base, _SEEDS[split] + config.seed, preprocessing)
        data[split] = {"alerts": real_examples(chosen, preprocessing), "injections": inj}
        by_id = {int(b.alert.alert_id): b for b in bases}
        injected_alerts[split] = [as_alert(i, by_id[i.base_id]) for i in injections]
    return data, injected_alerts


_SEEDS = {"train": 0, "val": 1, "test": 2}


def _variant_data(config: StudyConfig, variant: Variant, alerts: list[RubinAlert], cache: dict) -> tuple[dict, dict]:
    """The examples of ``variant``: shared validation and test; its own training injections
    when their PSF is spread."""
    if variant.preprocessing not in cache:
        cache[variant.preprocessing] = build_data(config, variant.preprocessing, alerts)
    data, injected = cache[variant.preprocessing]
    if variant.psf_spread is None:
        return data, injected
    key = (variant.preprocessing, variant.psf_spread)
    if key not in cache:
        train = _split(alerts, "train", config.max_alerts)
        cache[key] = injection_examples(train, config.per_base, config.seed, variant.preprocessing, variant.psf_spread)[0]
    return {**data, "train": {**data["train"], "injections": cache[key]}}, injected


def run_study(config: StudyConfig) -> dict[str, Any]:
    """Train every variant, evaluate each on the test, compare; writes ``out/results.json``."""
    torch.set_num_threads(config.threads)
    started = time.monotonic()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    alerts = load_rubin_alerts(config.rubin_pool, config.rubin_data)
    test_alerts = _split(alerts, "test", config.max_alerts)
    subsets = np.array([a.subset for a in test_alerts])
    results: dict[str, Any] = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in config.__dict__.items()},
                               "split": _split_table(alerts), "variants": {},
                               "test_alert_ids": {a.source: [] for a in test_alerts}}
    for a in test_alerts:
        results["test_alert_ids"][a.source].append(int(a.alert.alert_id))
    cache: dict[str, tuple[dict, dict]] = {}
    for name in config.variants:
        variant = VARIANTS[name]
        data, injected = _variant_data(config, variant, alerts, cache)
        training = _training_data(variant, data["train"], data["val"])
        train_config = TrainConfig(model="realbogus", epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                   seed=config.seed, dropout=config.dropout, patience=config.patience,
                                   threads=config.threads, bn_recalibration_examples=0)
        result = train_network(training, torch.from_numpy, train_config, out / name, progress=False,
                               augment=dihedral_augment)
        state = torch.load(result.weights_path, map_location="cpu", weights_only=True)
        scores = {key: score_inputs(state, data[split][part].x) for key, split, part in (
            ("test_alerts", "test", "alerts"), ("test_injections", "test", "injections"),
            ("val_injections", "val", "injections"))}
        threshold = threshold_at_recall(scores["val_injections"], data["val"]["injections"].label == 1, 0.95)
        figures = _evaluate(scores, data, threshold, config.draws, config.seed, subsets)
        figures.update({"weights": str(result.weights_path), "record": str(result.record_path),
                        "best_epoch": result.best_epoch, "stopped_because": result.stopped_because,
                        "train_examples": len(training.train_y), "validation_examples": len(training.val_y),
                        "best_validation_loss": result.best_val_loss, "preprocessing": variant.preprocessing,
                        "psf_spread": variant.psf_spread})
        results["variants"][name] = figures
        np.savez_compressed(out / name / "test_scores.npz", **scores)
        log.info("variant_done", variant=name, test=figures.get("test_alerts_lsstcam_2025", {}).get("roc_auc"),
                 injections=figures["test_injections"]["roc_auc"], minutes=round((time.monotonic() - started) / 60, 1))
    eligible = {n: f["best_validation_loss"] for n, f in results["variants"].items() if VARIANTS[n].injections}
    results["selected"] = min(eligible, key=lambda n: (eligible[n], list(VARIANTS).index(n))) if eligible else None
    results["selection_rule"] = ("lowest validation loss (held-out field: its injections and its real alerts with soft "
                                 "targets) among variants with injections; no test figure used")
    if config.compare and results["selected"]:
        data, injected = cache[VARIANTS[results["selected"]].preprocessing]
        results["compared"] = _compare(data, test_alerts, injected["test"], injected["val"], config.draws,
                                       config.seed, subsets)
    first = next((v for k, v in cache.items() if isinstance(k, str)), None)
    results["counts"] = {split: {part: len(ex) for part, ex in parts.items()} for split, parts in first[0].items()} if first else {}
    results["minutes"] = round((time.monotonic() - started) / 60, 2)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    return results
