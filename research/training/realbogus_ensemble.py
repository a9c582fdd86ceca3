"""An ensemble of K realbogus networks (each the seed architecture, unchanged): the mean of
their P(real), scored like one variant, and what it costs per alert.

    python -m research.training.realbogus_ensemble --members pad69-cos20-shift2,pad69-cos20-shift2-s2 \\
        --tag ensemble-2 --out var/levers --pool ../shared/ztf_pool --data-ztf ../shared/data/ztf

Members are variant folders under ``--out`` (their ``realbogus.pt`` and ``figures.json``, which
names the preprocessing; all members must share it). The mean of probabilities (not of
weights: averaging weights of separately trained networks is not an ensemble) is returned as
log-probabilities, so the study's scoring (softmax of the output) reads the mean itself.
Figures go to ``OUT/TAG/figures.json`` like a trained variant's; ``cost`` is the measured CPU
time per alert of one member and of the ensemble (1 thread, batches of 256).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["MeanOfMembers", "main", "seconds_per_alert"]


class MeanOfMembers(nn.Module):
    """log(mean_k softmax(member_k(x))): K independent networks, their probabilities averaged."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members]).mean(0)
        return torch.log(probabilities.clamp_min(1e-12))


def seconds_per_alert(network: nn.Module, inputs: np.ndarray, repeats: int = 3, batch: int = 256) -> float:
    """Best of ``repeats`` wall times of scoring ``inputs`` (batches of ``batch``), per alert."""
    network = network.eval()
    x = torch.from_numpy(np.ascontiguousarray(inputs))
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            started = time.perf_counter()
            for i in range(0, len(x), batch):
                network(x[i:i + batch])
            best = min(best, time.perf_counter() - started)
    return best / max(len(x), 1)


def main(argv: list[str] | None = None) -> int:
    from engines.training.recipes import load_trained
    from research.training.heldout import fast_auc
    from research.training.pool_realbogus import HELDOUT_SOURCES, heldout_report, score_inputs, split_by_source
    from research.training.realbogus_study import data_ztf_figures
    from research.training.ztf_pool import load_pool

    parser = argparse.ArgumentParser(prog="python -m research.training.realbogus_ensemble", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", required=True, help="comma-separated variant folders under --out")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--out", type=Path, default=Path("var/study"))
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--data-ztf", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.members.split(",")
    figures = {name: json.loads((args.out / name / "figures.json").read_text()) for name in names}
    preprocessing = {f.get("preprocessing") for f in figures.values()}
    if len(preprocessing) != 1:
        parser.error(f"members differ in preprocessing: {sorted(map(str, preprocessing))}")
    key = str(preprocessing.pop())
    pool = load_pool(args.pool, realbogus_preprocessing=key)
    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    ensemble = MeanOfMembers([load_trained("realbogus", args.out / name / "realbogus.pt") for name in names]).eval()
    report: dict[str, Any] = heldout_report(ensemble, pool, split)
    if args.data_ztf is not None and args.data_ztf.is_dir():
        report["data_ztf_vs_drb"] = data_ztf_figures(ensemble, args.data_ztf, report["threshold"], 1000, key)
    fit: dict[str, float | None] = {}
    for role, index in (("train", split.train), ("validation", split.validation)):
        index = index[np.isfinite(pool.teacher[index])]
        fit[f"{role}_roc_auc"] = fast_auc(score_inputs(ensemble, pool.realbogus_inputs[index]), pool.teacher[index] >= 0.5)
    sample = pool.realbogus_inputs[split.test[:512]]
    one, all_k = seconds_per_alert(ensemble.members[0], sample), seconds_per_alert(ensemble, sample)
    command = " ".join(["python -m research.training.realbogus_ensemble", *(argv if argv is not None else sys.argv[1:])])
    out = {"variant": args.tag, "command": command, "members": names, "preprocessing": key, "fit": fit,
           "description": {"variant": "ensemble", "members": names,
                           "heldout_sources": figures[names[0]]["description"]["heldout_sources"],
                           "pool_train_alerts": figures[names[0]]["description"]["pool_train_alerts"],
                           "injection_examples": 0},
           "cost": {"threads": args.threads, "batch": 256, "alerts_timed": len(sample),
                    "member_ms_per_alert": one * 1e3, "ensemble_ms_per_alert": all_k * 1e3},
           **report}
    (args.out / args.tag).mkdir(parents=True, exist_ok=True)
    (args.out / args.tag / "figures.json").write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps({"variant": args.tag, "fit": fit, "cost": out["cost"], **report["vs_braai_d6_m7"]["all"]},
                     default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
