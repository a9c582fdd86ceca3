"""IICnet: star / galaxy / quasar from WISE W1, W2, W3 cutouts (card: engines/cards/iicnet.toml).

The paper (Figs. 7, 9, 10; Table 3) gives the plan but not every width: five convolution layers
(the first 5x5 + BN + ReLU), three max-pool down-samplings, one Receptive Field Block (Liu et
al. 2018: 1x1 / 3x3 / two-3x3 branches ending in dilated 3x3 convs at rates 1, 3, 5, a 1x1
fuse and a 1x1 shortcut) followed by a CBAM block, and a second CBAM after the last conv
(Woo et al. 2018: shared-MLP channel attention over avg- and max-pooled vectors, then a 7x7
spatial attention over channel-avg and channel-max maps), then the classifier. The widths
below were chosen so the build lands on the paper's size: 1.75 M parameters and 218.66 M
multiply-accumulates at 80 x 80 (checked by tests/engines/test_networks.py, within 10%).

Layout (80 x 80 input)::

    conv5x5 3->32 BN ReLU            80x80
    maxpool 2                        40x40
    RFB 32->32, CBAM(32)             40x40
    conv3x3 32->64 BN ReLU           40x40
    maxpool 2                        20x20
    conv3x3 64->128 BN ReLU          20x20
    maxpool 2                        10x10
    conv3x3 128->256 BN ReLU         10x10
    conv3x3 256->384 BN ReLU, CBAM   10x10
    global avg pool, linear 384->1024 ReLU, dropout, linear 1024->3

That is 1,706,751 parameters (-2.5%) and 215.69 M MACs (-1.4%).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["IICNet", "ReceptiveFieldBlock", "CBAM", "IICNET_INPUT", "IICNET_LABELS", "IICNET_PARAMS", "IICNET_MACS"]

IICNET_INPUT: tuple[int, int, int] = (3, 80, 80)
IICNET_LABELS: tuple[str, ...] = ("galaxy", "quasar", "star")
IICNET_PARAMS = 1_750_000          # paper, Table 3 ("1.75M")
IICNET_MACS = 218_660_000          # paper, Table 3 ("218.66M Flops", i.e. multiply-accumulates)


def conv_bn(cin: int, cout: int, kernel: int, *, dilation: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (no bias: BN follows) + BN (+ ReLU), 'same' padding for odd kernels."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ReceptiveFieldBlock(nn.Module):
    """RFB (Liu et al. 2018, 'RFB Net'): three branches of growing kernel with dilated 3x3 convs
    at rates 1, 3, 5, concatenated, fused by a 1x1 conv, scaled and added to a 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, scale: float = 0.1) -> None:
        super().__init__()
        inter = max(cin // 4, 8)
        self.scale = scale
        self.branch0 = nn.Sequential(conv_bn(cin, 2 * inter, 1), conv_bn(2 * inter, 2 * inter, 3, dilation=1, relu=False))
        self.branch1 = nn.Sequential(
            conv_bn(cin, inter, 1), conv_bn(inter, 2 * inter, 3), conv_bn(2 * inter, 2 * inter, 3, dilation=3, relu=False)
        )
        self.branch2 = nn.Sequential(  # the 5x5 receptive field as two 3x3 convs
            conv_bn(cin, inter, 1),
            conv_bn(inter, (inter // 2) * 3, 3),
            conv_bn((inter // 2) * 3, 2 * inter, 3),
            conv_bn(2 * inter, 2 * inter, 3, dilation=5, relu=False),
        )
        self.fuse = conv_bn(6 * inter, cout, 1, relu=False)
        self.shortcut = conv_bn(cin, cout, 1, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), dim=1)
        return self.relu(self.fuse(branches) * self.scale + self.shortcut(x))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018): channel then spatial attention."""

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(  # shared by the avg- and max-pooled vectors (eq. 1)
            nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1, bias=False)
        )
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2, bias=False)  # eq. 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = torch.mean(x, dim=(2, 3), keepdim=True)
        mx = torch.amax(x, dim=(2, 3), keepdim=True)
        x = x * torch.sigmoid(self.mlp(avg) + self.mlp(mx))
        pooled = torch.cat((torch.mean(x, dim=1, keepdim=True), torch.amax(x, dim=1, keepdim=True)), dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class IICNet(nn.Module):
    """IICnet; returns 3 logits (galaxy, quasar, star) by default. ``dropout`` only acts in
    training; ``num_classes`` sets the output layer for another label set (the same body
    serves the difference-alert class model and users' own classes)."""

    def __init__(self, dropout: float = 0.0, num_classes: int = len(IICNET_LABELS)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 32, 5),
            nn.MaxPool2d(2),
            ReceptiveFieldBlock(32, 32),
            CBAM(32),
            conv_bn(32, 64, 3),
            nn.MaxPool2d(2),
            conv_bn(64, 128, 3),
            nn.MaxPool2d(2),
            conv_bn(128, 256, 3),
            conv_bn(256, 384, 3),
            CBAM(384),
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(384, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
