"""Markdown tables of a study's ``results.json`` (for the report): split, ablation, comparison,
injection kinds. ``python -m research.rubin_realbogus tables RESULTS.json``."""
from __future__ import annotations

from typing import Any

__all__ = ["split_table", "ablation_table", "kinds_table", "all_tables"]


def _ci(figures: dict[str, Any], key: str) -> str:
    value, ci = figures.get(key), figures.get(f"{key}_95ci")
    if value is None:
        return "n/a"
    return f"{value:.3f} ({ci[0]:.2f}-{ci[1]:.2f})" if ci else f"{value:.3f}"


def split_table(results: dict[str, Any]) -> str:
    rows = ["| split | source | alerts | reliability >= 0.5 | MJD | subsets |", "|---|---|---|---|---|---|"]
    for split in ("train", "validation", "test"):
        for source, row in results["split"].get(split, {}).items():
            subsets = ", ".join(f"{k} {v}" for k, v in row["subsets"].items())
            rows.append(f"| {split} | {source} | {row['alerts']} | {row['reliability_ge_0_5']} | "
                        f"{row['mjd'][0]}..{row['mjd'][1]} | {subsets} |")
    return "\n".join(rows)


def ablation_table(results: dict[str, Any], rows_of: dict[str, dict[str, Any]] | None = None) -> str:
    """One row per variant (and compared model): held-out AUCs with 95 % intervals, threshold,
    recall of reliability-real and reliability-bogus passed on LSSTCam 2025."""
    head = ["| model | val. loss | val. inj. AUC | test LSSTCam 2025 AUC vs reliability | same, without 0.48634 | "
            "test HSC AUC | test injections AUC | threshold | LSSTCam 2025 recall / bogus passed | "
            "injections recall / bogus passed |", "|---|---|---|---|---|---|---|---|---|---|"]
    entries = dict(results["variants"])
    entries.update(rows_of if rows_of is not None else results.get("compared", {}))
    for name, f in entries.items():
        if "error" in f:
            head.append(f"| {name} | {f['error']} |" + " |" * 8)
            continue
        lsst = f.get("test_alerts_lsstcam_2025", {})
        inj = f.get("test_injections", {})
        loss = f.get("best_validation_loss")
        val_auc = f.get("validation_injection_roc_auc")
        head.append(" | ".join([
            f"| {name}", f"{loss:.3f}" if loss is not None else "-", f"{val_auc:.3f}" if val_auc is not None else "-",
            _ci(lsst, "roc_auc"), _ci(f.get("test_alerts_lsstcam_2025_without_0.48634", {}), "roc_auc"),
            _ci(f.get("test_alerts_hsc_precursor", {}), "roc_auc"), _ci(inj, "roc_auc"), f"{f['threshold']:.3f}",
            f"{lsst.get('recall_of_real', float('nan')):.2f} / {lsst.get('bogus_passed', float('nan')):.2f}",
            f"{inj.get('recall_of_real', float('nan')):.2f} / {inj.get('bogus_passed', float('nan')):.2f} |"]))
    return "\n".join(head)


def kinds_table(results: dict[str, Any]) -> str:
    """Share of each injected kind passed at each model's threshold (test injections)."""
    entries = {**results["variants"], **results.get("compared", {})}
    kinds: list[str] = []
    for f in entries.values():
        for kind in f.get("test_injections_per_kind", {}):
            if kind not in kinds:
                kinds.append(kind)
    rows = ["| model | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for name, f in entries.items():
        per = f.get("test_injections_per_kind", {})
        rows.append(f"| {name} | " + " | ".join(f"{per[k]['passed']:.2f}" if k in per else "-" for k in kinds) + " |")
    return "\n".join(rows)


def all_tables(results: dict[str, Any]) -> str:
    return "\n\n".join([split_table(results), ablation_table(results), kinds_table(results)])
