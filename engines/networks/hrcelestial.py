"""HR-CelestialNet: galaxy vs nebula/star cluster from raw HST exposures (card: engines/cards/hrcelestialnet.toml).

Full size: one channel, 2048 x 4096 (H x W); no padding anywhere; every conv is followed by
BN + ReLU; pools 4/4 then 2/2 (x5); 512 x 3 x 11 before the first dense layer. Each conv and
dense layer has exactly the parameter count of the paper's Table 2 (conv with bias); with the
BN layers the total is 97,048,130.

Reduced resolution (for CPU training on binned frames): ``input_hw`` sets the input size and the
first dense layer's in-features follow the final map size. Binning by 2 or 4 replaces part of
the first 4/4 pool (``first_pool = 4 // bin``), which keeps the later maps (and so the dense
layer) close to the full-size plan; :func:`reduced_hrcelestialnet` does that.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "HRCelestialNet",
    "reduced_hrcelestialnet",
    "feature_map_hw",
    "HRCELESTIAL_INPUT",
    "HRCELESTIAL_LABELS",
    "HRCELESTIAL_PARAMS",
    "TABLE2_LAYER_PARAMS",
]

HRCELESTIAL_INPUT: tuple[int, int, int] = (1, 2048, 4096)
HRCELESTIAL_LABELS: tuple[str, ...] = ("galaxy", "nebula_star_cluster")
HRCELESTIAL_PARAMS = 97_048_130

#: (kind, kernel or pool, out channels) in order; "P" is a max pool (kernel = stride).
_PLAN: tuple[tuple[str, int, int], ...] = (
    ("C", 7, 32), ("P", 4, 0),
    ("C", 7, 64), ("P", 2, 0),
    ("C", 5, 128), ("C", 5, 128), ("P", 2, 0),
    ("C", 3, 256), ("C", 3, 256), ("P", 2, 0),
    ("C", 3, 256), ("C", 3, 256), ("P", 2, 0),
    ("C", 3, 512), ("C", 3, 512), ("P", 2, 0),
    ("C", 3, 512), ("C", 3, 512), ("P", 2, 0),
)

#: Table 2, conv and dense layers in order (bias included, BN excluded).
TABLE2_LAYER_PARAMS: tuple[int, ...] = (
    1_600, 100_416, 204_928, 409_728, 295_168, 590_080, 590_080, 590_080,
    1_180_160, 2_359_808, 2_359_808, 2_359_808, 69_210_112, 16_781_312, 8_194,
)


def _plan(first_pool: int) -> list[tuple[str, int, int]]:
    plan = list(_PLAN)
    plan[1] = ("P", first_pool, 0)
    return plan


def feature_map_hw(input_hw: tuple[int, int], first_pool: int = 4) -> tuple[int, int]:
    """(h, w) of the last pooled map for an input of ``input_hw``; raises ValueError if it vanishes."""
    h, w = input_hw
    for kind, k, _ in _plan(first_pool):
        if kind == "C":
            h, w = h - k + 1, w - k + 1
        elif k > 1:
            h, w = h // k, w // k
        if h < 1 or w < 1:
            raise ValueError(f"input {input_hw} is too small for HR-CelestialNet (first_pool={first_pool})")
    return h, w


class HRCelestialNet(nn.Module):
    """The paper's network; ``input_hw`` and ``first_pool`` allow the reduced-resolution variant."""

    def __init__(self, input_hw: tuple[int, int] = HRCELESTIAL_INPUT[1:], first_pool: int = 4) -> None:
        super().__init__()
        self.input_hw: tuple[int, int] = (int(input_hw[0]), int(input_hw[1]))
        self.first_pool = first_pool
        self.map_hw = feature_map_hw(self.input_hw, first_pool)
        layers: list[nn.Module] = []
        cin = 1
        for kind, k, cout in _plan(first_pool):
            if kind == "C":
                layers += [nn.Conv2d(cin, cout, k), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
            elif k > 1:
                layers.append(nn.MaxPool2d(k, k))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * self.map_hw[0] * self.map_hw[1], 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, len(HRCELESTIAL_LABELS)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def reduced_hrcelestialnet(binning: int) -> HRCelestialNet:
    """The network for frames binned ``binning`` x ``binning`` (1, 2 or 4) from 2048 x 4096."""
    if binning not in (1, 2, 4):
        raise ValueError(f"binning must be 1, 2 or 4, not {binning}")
    h, w = HRCELESTIAL_INPUT[1:]
    return HRCelestialNet((h // binning, w // binning), first_pool=4 // binning)
