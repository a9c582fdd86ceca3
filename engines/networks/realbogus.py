"""The real/bogus CNN on difference-image stamps (card: engines/cards/realbogus.toml).

Keras original: 'same' padding, 2x2 max pools, 69 -> 35 -> 18 -> 9. In PyTorch that is
``padding=1`` and ``MaxPool2d(2, ceil_mode=True)``. Output: two logits, columns (bogus, real);
softmax is applied by :class:`engines.networks.scoring.ScoredNetwork`, not here.
Exactly 1,420,738 parameters, with or without dropout (dropout has none).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["RealBogusCNN", "REALBOGUS_INPUT", "REALBOGUS_LABELS", "REALBOGUS_PARAMS"]

REALBOGUS_INPUT: tuple[int, int, int] = (3, 69, 69)
REALBOGUS_LABELS: tuple[str, ...] = ("bogus", "real")
REALBOGUS_PARAMS = 1_420_738


class RealBogusCNN(nn.Module):
    """conv3x3(32)-pool-conv3x3(64)-pool-conv3x3(128)-pool-dense(128)-dense(2).

    ``dropout`` > 0 gives the paper's refined (training) model: dropout after each pool block
    (rate ``dropout / 2``) and before the output layer (rate ``dropout``). Dropout is inert in
    ``eval()`` mode and adds no parameters, so weights load into either variant.
    ``num_classes`` other than 2 is a user's own label set (same body, another output layer).
    """

    def __init__(self, dropout: float = 0.0, num_classes: int = len(REALBOGUS_LABELS)) -> None:
        super().__init__()
        conv_drop = dropout / 2

        def block(cin: int, cout: int) -> list[nn.Module]:
            # Dropout(0) is the identity; keeping the module keeps state-dict names identical.
            return [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
                nn.Dropout(conv_drop),
            ]

        self.features = nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * 9 * 9, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
