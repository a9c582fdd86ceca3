"""research.training.realbogus_ensemble: K seed-architecture networks, their probabilities
averaged (not their weights), read back through the study's softmax scoring."""
from __future__ import annotations

import numpy as np
import torch

from engines.networks.realbogus import REALBOGUS_PARAMS, RealBogusCNN
from research.training.pool_realbogus import score_inputs
from research.training.realbogus_ensemble import MeanOfMembers, seconds_per_alert


def test_the_ensemble_scores_the_mean_probability_of_unchanged_members() -> None:
    torch.manual_seed(0)
    members = [RealBogusCNN().eval() for _ in range(3)]
    assert all(sum(p.numel() for p in m.parameters()) == REALBOGUS_PARAMS for m in members)
    x = np.random.default_rng(0).normal(size=(5, 3, 69, 69)).astype(np.float32)
    each = np.stack([score_inputs(m, x) for m in members])
    ensemble = MeanOfMembers(members)
    np.testing.assert_allclose(score_inputs(ensemble, x), each.mean(0), atol=1e-6)
    averaged_weights = RealBogusCNN().eval()
    averaged_weights.load_state_dict({k: sum(m.state_dict()[k] for m in members) / 3 for k in members[0].state_dict()})
    assert not np.allclose(score_inputs(averaged_weights, x), each.mean(0), atol=1e-3)   # not the same thing
    assert seconds_per_alert(ensemble, x, repeats=1) > 0
