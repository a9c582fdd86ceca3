"""The validation and test scores of the two real/bogus models, through the serving path.

Each model is loaded as the service loads it (``engines.registry`` ``load_runner(name,
"torch")``: the card's weights, checked against its sha256, and its output softmax) and scores
inputs made by its card's own preprocessing, via ``ModelRunner.infer``: the scores here are the
record's ``real_bogus`` (before any temperature). The splits are the studies' own:

* ``realbogus`` (ZTF): :func:`research.training.pool_realbogus.split_by_source` with the
  standard held-out sources (seed 0): validation = the training sources' validation objects,
  test = the four held-out sources; reference braai d6_m7 >= 0.5 (ZTF's ``drb`` model), as the
  card's figures.
* ``rubin_realbogus`` (Rubin): :mod:`research.rubin_realbogus.alerts` (validation = the other
  field of the training night, test = every 2025 / 2016 packet), injections rebuilt with the
  study's seeds and counts (``StudyConfig`` defaults: 24 per validation alert, 20 per test
  alert), so they are the very injections of the card's figures. Test sets: the 41 LSSTCam
  2025 alerts against Rubin's reliability >= 0.5, and the held-out injections (known labels).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["ScoreSet", "rubin_sets", "served_scores", "ztf_sets"]


@dataclass(frozen=True)
class ScoreSet:
    """Scores of one model on one set, with the reference and the bootstrap unit."""

    name: str
    p: np.ndarray             # served P(real)
    positives: np.ndarray     # reference-real (bool)
    groups: np.ndarray        # object ids
    reference: str            # what ``positives`` is

    def __len__(self) -> int:
        return len(self.p)

    def head(self, n: int | None) -> ScoreSet:
        if n is None:
            return self
        return ScoreSet(self.name, self.p[:n], self.positives[:n], self.groups[:n], self.reference)


def served_scores(runner, inputs: np.ndarray, batch: int = 256) -> np.ndarray:
    """P(real) of ``runner`` (engines.registry.ModelRunner) on inputs already preprocessed by its
    card's preprocessing: ``runner.infer``, the service's call."""
    real = list(runner.labels).index("real")
    out = [runner.infer(torch.from_numpy(np.ascontiguousarray(inputs[i:i + batch])))[:, real]
           for i in range(0, len(inputs), batch)]
    return np.concatenate(out).astype(np.float64) if out else np.empty(0, np.float64)


def _runner(name: str):
    from engines.registry import load_registry

    return load_registry().load_runner(name, "torch")


def ztf_sets(pool_dir: Path, max_alerts: int | None = None) -> tuple[dict[str, ScoreSet], dict[str, str]]:
    """{"validation", "test"} score sets of realbogus on the pool, and what was scored."""
    from research.training.pool_realbogus import HELDOUT_SOURCES, split_by_source
    from research.training.ztf_pool import load_pool

    runner = _runner("realbogus")
    pool = load_pool(pool_dir, realbogus_preprocessing=runner.card.preprocessing)
    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    sets = {}
    for name, index in (("validation", split.validation), ("test", split.test)):
        index = index[np.isfinite(pool.teacher[index])][:max_alerts]
        p = served_scores(runner, pool.realbogus_inputs[index])
        sets[name] = ScoreSet(f"ztf_{name}", p, pool.teacher[index] >= 0.5, pool.object_id[index],
                              "braai d6_m7 >= 0.5")
    runner.close()
    model = {"model": f"{runner.card.name} {runner.card.version}", "weights_sha256": runner.card.weights_sha256,
             "preprocessing": runner.card.preprocessing, "heldout_sources": ", ".join(HELDOUT_SOURCES)}
    return sets, model


def rubin_sets(rubin_pool: Path, rubin_data: Path, max_alerts: int | None = None
               ) -> tuple[dict[str, ScoreSet], dict[str, str]]:
    """Validation (its field's injections and real alerts) and test (LSSTCam 2025 alerts,
    injections into the test alerts) score sets of rubin_realbogus."""
    from research.rubin_realbogus.alerts import load_rubin_alerts
    from research.rubin_realbogus.dataset import injection_examples, real_examples
    from research.rubin_realbogus.study import _SEEDS, StudyConfig

    runner = _runner("rubin_realbogus")
    preprocessing = runner.card.preprocessing
    config = StudyConfig(rubin_pool=rubin_pool, rubin_data=rubin_data, out=Path("."))
    alerts = load_rubin_alerts(rubin_pool, rubin_data)
    sets: dict[str, ScoreSet] = {}
    for split, name, per_base in (("val", "validation", config.per_base), ("test", "test", config.test_per_base)):
        chosen = [a for a in alerts if a.split == name][:max_alerts]
        injections, _, _ = injection_examples(chosen, per_base, _SEEDS[split] + config.seed, preprocessing)
        sets[f"{name}_injections"] = ScoreSet(f"rubin_{name}_injections", served_scores(runner, injections.x),
                                              injections.label == 1, injections.group, "injection's known kind")
        if split == "test":
            chosen = [a for a in chosen if a.subset == "lsstcam_2025"]
        real = real_examples(chosen, preprocessing)
        key = "test_lsstcam_2025_alerts" if split == "test" else "validation_alerts"
        sets[key] = ScoreSet(f"rubin_{key}", served_scores(runner, real.x), real.reliability >= 0.5, real.group,
                             "Rubin reliability >= 0.5")
    runner.close()
    model = {"model": f"{runner.card.name} {runner.card.version}", "weights_sha256": runner.card.weights_sha256,
             "preprocessing": preprocessing}
    return sets, model
