"""Parameter counts, multiply-accumulates and shapes of the three networks (their cards in engines/cards/)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from engines.macs import count_macs, count_params, output_shape
from engines.networks import build_network
from engines.networks.hrcelestial import (
    HRCELESTIAL_PARAMS,
    TABLE2_LAYER_PARAMS,
    HRCelestialNet,
    feature_map_hw,
    reduced_hrcelestialnet,
)
from engines.networks.iicnet import IICNET_MACS, IICNET_PARAMS, IICNet
from engines.networks.realbogus import REALBOGUS_PARAMS, RealBogusCNN


def _layer_params(model: nn.Module) -> list[int]:
    return [sum(p.numel() for p in m.parameters()) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_realbogus_exact_parameter_count_with_and_without_dropout(dropout: float) -> None:
    model = RealBogusCNN(dropout=dropout)
    assert count_params(model) == REALBOGUS_PARAMS == 1_420_738
    assert _layer_params(model) == [896, 18_496, 73_856, 1_327_232, 258]
    assert any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()) == (dropout > 0)


def test_realbogus_shapes_follow_keras_same_padding() -> None:
    model = RealBogusCNN().eval()
    assert output_shape(model.features, (2, 3, 69, 69)) == (2, 128, 9, 9)  # 69 -> 35 -> 18 -> 9
    assert output_shape(model, (2, 3, 69, 69)) == (2, 2)


def test_realbogus_dropout_variant_loads_the_same_weights() -> None:
    plain, training = RealBogusCNN(), RealBogusCNN(dropout=0.5)
    training.load_state_dict(plain.state_dict())  # strict: same names and shapes
    x = torch.rand(3, 3, 69, 69)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), training.eval()(x))


def test_iicnet_within_ten_percent_of_paper_params_and_macs() -> None:
    model = IICNet()
    params, macs = count_params(model), count_macs(model, (1, 3, 80, 80))
    assert abs(params / IICNET_PARAMS - 1) < 0.10, params
    assert abs(macs / IICNET_MACS - 1) < 0.10, macs
    assert output_shape(model, (2, 3, 80, 80)) == (2, 3)


def test_iicnet_structure_matches_the_paper() -> None:
    model = IICNet()
    body = list(model.features)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.kernel_size == (5, 5) and first_conv.in_channels == 3
    kinds = [type(m).__name__ for m in body]
    assert kinds.count("ReceptiveFieldBlock") == 1 and kinds.count("CBAM") == 2 and kinds.count("MaxPool2d") == 3
    assert kinds[-1] == "CBAM" and kinds.index("CBAM") == kinds.index("ReceptiveFieldBlock") + 1
    assert sum(1 for m in body if isinstance(m, nn.Sequential)) == 5  # the five conv layers
    rfb = body[kinds.index("ReceptiveFieldBlock")]
    dilations = sorted({m.dilation[0] for m in rfb.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)})
    assert dilations == [1, 3, 5]


def test_macs_counter_counts_conv_and_linear() -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 5 * 5, 7))
    assert count_macs(model, (1, 2, 5, 5)) == 4 * 5 * 5 * 2 * 9 + 100 * 7


def test_hrcelestialnet_every_layer_matches_table2_and_total() -> None:
    with torch.device("meta"):
        model = HRCelestialNet()
    assert _layer_params(model) == list(TABLE2_LAYER_PARAMS)
    assert count_params(model) == HRCELESTIAL_PARAMS == 97_048_130
    bn = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert sum(TABLE2_LAYER_PARAMS) + bn == HRCELESTIAL_PARAMS


def test_hrcelestialnet_full_size_shapes_on_meta_device() -> None:
    with torch.device("meta"):
        model = HRCelestialNet().eval()
    assert output_shape(model.features, (1, 1, 2048, 4096), "meta") == (1, 512, 3, 11)
    assert output_shape(model, (2, 1, 2048, 4096), "meta") == (2, 2)
    conv1_out = output_shape(model.features[:3], (1, 1, 2048, 4096), "meta")
    assert conv1_out == (1, 32, 2042, 4090)


@pytest.mark.parametrize("binning", [2, 4])
def test_hrcelestialnet_reduced_resolution_keeps_the_dense_layer_in_step(binning: int) -> None:
    with torch.device("meta"):
        model = reduced_hrcelestialnet(binning).eval()
    h, w = model.map_hw
    assert model.classifier[1].in_features == 512 * h * w
    assert output_shape(model, (1, 1, 2048 // binning, 4096 // binning), "meta") == (1, 2)


def test_hrcelestialnet_input_size_sets_first_dense_layer() -> None:
    with torch.device("meta"):
        model = HRCelestialNet((1400, 2000))
    h, w = feature_map_hw((1400, 2000))
    assert model.classifier[1].in_features == 512 * h * w != 16_896
    with pytest.raises(ValueError, match="too small"):
        HRCelestialNet((256, 512))


def test_build_network_by_name() -> None:
    assert isinstance(build_network("realbogus"), RealBogusCNN)
    assert not build_network("iicnet").training
    with pytest.raises(KeyError):
        build_network("resnet")
