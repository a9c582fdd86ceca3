"""ZTF's production Keras models as torch modules: braai (real/bogus) and ACAI's five heads.

* braai (Duev et al. 2019, MNRAS 489, 3582; github.com/dmitryduev/braai): one Keras file, one
  sigmoid output, the probability that the detection is real. ``d6_m7`` is the model behind the
  ``drb`` in ZTF alerts; ``d6_m9`` is the later version Kowalski runs.
* ACAI (Duev & van der Walt 2021, arXiv:2111.12142; github.com/dmitryduev/acai): five independent
  binary classifiers (hosted, variable, orphan, nuclear, bogus) on the same two inputs, the
  (3, 63, 63) triplet and 25 raw candidate features. :class:`AcaiNetwork` runs the five in one
  graph and gives their five sigmoid scores side by side (they do not sum to 1), plus a sixth
  column saying whether the ``drb`` feature was filled: ACAI's training code fills a missing
  ``drb`` (alert schemas before 3.3) with braai d6_m9's score on the same triplet, and so does
  this graph, for the rows whose ``drb`` feature is NaN.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from engines.networks.keras_h5 import KerasModel, load_keras_h5

__all__ = ["ACAI_HEADS", "ACAI_LABELS", "DRB_FILLED_LABEL", "AcaiNetwork", "load_braai", "load_acai", "KERAS_NETWORKS"]

#: ACAI head letter -> class name (the label letters of acai's config; meanings from the paper)
ACAI_HEADS: tuple[tuple[str, str], ...] = (("h", "hosted"), ("v", "variable"), ("o", "orphan"), ("n", "nuclear"), ("b", "bogus"))
#: the output column that is 1.0 where ``drb`` was filled from braai d6_m9, else 0.0
DRB_FILLED_LABEL = "drb_from_braai_d6_m9"
ACAI_LABELS: tuple[str, ...] = tuple(name for _, name in ACAI_HEADS) + (DRB_FILLED_LABEL,)


def load_braai(path: str | Path) -> KerasModel:
    """A braai ``.h5`` as a torch module: (N, 3, 63, 63) -> (N, 1) probability of real."""
    return load_keras_h5(path)


class AcaiNetwork(nn.Module):
    """``forward(triplets (N, 3, 63, 63), features (N, 25))`` -> (N, 6): the five heads' scores
    and the drb-filled flag (:data:`ACAI_LABELS`)."""

    def __init__(self, heads: Sequence[KerasModel], drb_fill: KerasModel) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.drb_fill = drb_fill

    def forward(self, triplets: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        drb = features[:, :1]
        missing = torch.isnan(drb)
        filled = torch.where(missing, self.drb_fill(triplets), drb)
        features = torch.cat((filled, features[:, 1:]), dim=1)
        scores = [head(triplets, features) for head in self.heads]
        return torch.cat((*scores, missing.to(features.dtype)), dim=1)


def load_acai(head_paths: Sequence[str | Path], drb_fill_path: str | Path) -> AcaiNetwork:
    """ACAI from its five ``.h5`` files (in :data:`ACAI_HEADS` order) and braai d6_m9's."""
    if len(head_paths) != len(ACAI_HEADS):
        raise ValueError(f"ACAI takes {len(ACAI_HEADS)} head files (h, v, o, n, b), got {len(head_paths)}")
    heads = [load_keras_h5(p, input_order=("triplets", "features")) for p in head_paths]
    return AcaiNetwork(heads, load_braai(drb_fill_path)).eval()


#: network name (model cards' ``network``) -> loader from the card's weight files, in order
KERAS_NETWORKS = {
    "braai": lambda paths: load_braai(paths[0]),
    "acai": lambda paths: load_acai(paths[:-1], paths[-1]),
}
