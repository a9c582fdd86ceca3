"""alertclass 3.x: 2.x's stamps plus a head on the packet's nearest reference-image source. The
fields travel through engines.preprocess as the packet gives them, an alert without them is not
scored, and the shipped card's output is the study's on real ZTF packets."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.networks import build_network
from engines.networks.alertclass import PACKET_CLASS_LABELS, REFERENCE_SOURCE_FIELDS, ReferenceAlertClassNet
from engines.preprocess import APPLIES, PREPROCESSORS, PreprocessError, known_solar_system, reference_source_applies
from schemas.alert import Alert
from schemas.decode import iter_file

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples" / "ztf"
KEY = "difference_stamps_arcsec_63_reference_source"


def _ztf_alerts() -> list[Alert]:
    return [item for path in sorted(SAMPLES.rglob("*.avro")) for _, item in iter_file(path) if isinstance(item, Alert)]


def _without(alert: Alert, field: str) -> Alert:
    return replace(alert, candidate={**alert.candidate, field: None})


def test_flag_sets_the_asteroid_column_and_weighted_stamps_plus_head_the_rest() -> None:
    torch.manual_seed(0)
    network = ReferenceAlertClassNet(stamp_weight=0.5).eval()
    x = torch.rand(3, 3, 63, 63)
    fields = torch.tensor([[0.4, 21.0, 0.05, 0.55, -0.02], [16.0, 23.0, 0.34, 1.1, -0.3], [0.07, 14.1, 0.03, 1.7, -0.09]])
    flag = torch.tensor([[0.0], [1.0], [0.0]])
    with torch.inference_mode():
        p = network(x, torch.cat([flag, fields], 1))
        expected = torch.softmax(0.5 * network.stamp_logits(x)[:, 1:] + network.reference(fields), 1)
    assert torch.equal(p[1], torch.tensor([1.0, 0, 0, 0]))
    assert torch.allclose(p[[0, 2], 1:], expected[[0, 2]], atol=1e-6) and torch.allclose(p.sum(1), torch.ones(3))


def test_head_takes_logarithms_where_asked_then_standardises() -> None:
    head = build_network("alertclass_reference").reference
    with torch.no_grad():
        head.mean.copy_(torch.tensor([1.0, 17.0, -3.0, 0.0, 0.0]))
        head.std.copy_(torch.tensor([2.0, 2.0, 1.0, 0.5, 0.1]))
    raw = torch.tensor([[np.e, 19.0, np.exp(-2.0), 1.0, 0.05]])
    z = head.transform(raw)
    assert [name for name, logged in zip(REFERENCE_SOURCE_FIELDS, head.log_mask.tolist()) if logged] == ["distnr", "sigmagnr", "chinr"]
    assert torch.allclose(z, torch.tensor([[0.0, 1.0, 1.0, 0.0, 0.5]]), atol=1e-6)


def test_preprocessing_carries_the_flag_and_the_packets_reference_fields() -> None:
    alerts = _ztf_alerts()
    stamps, features = PREPROCESSORS[KEY](alerts, "cpu")
    assert stamps.shape == (len(alerts), 3, 63, 63) and features.shape == (len(alerts), 6)
    assert torch.equal(stamps, PREPROCESSORS["difference_stamps_arcsec_63"](alerts, "cpu"))
    assert features[:, 0].tolist() == [known_solar_system(a) for a in alerts]
    raw = np.asarray([[float(a.candidate[f]) for f in REFERENCE_SOURCE_FIELDS] for a in alerts], dtype=np.float32)
    assert np.array_equal(features[:, 1:].numpy(), raw)


def test_an_alert_without_a_reference_source_is_not_scored() -> None:
    from engines.registry import load_registry

    alerts = _ztf_alerts()[:4]
    bare = _without(alerts[1], "magnr")
    assert APPLIES[KEY] is reference_source_applies
    assert reference_source_applies(alerts[0]) and not reference_source_applies(bare)
    assert not reference_source_applies(_without(alerts[2], "distnr"))
    # placeholders and sentinels are not a reference source either: no confident class from them
    for field, value in (("magnr", -999.0), ("distnr", -999.0), ("chinr", 0.0), ("sharpnr", -3.4e38), ("sigmagnr", float("inf"))):
        broken = replace(alerts[0], candidate={**alerts[0].candidate, field: value})
        assert not reference_source_applies(broken), (field, value)
        with pytest.raises(PreprocessError, match=field):
            PREPROCESSORS[KEY]([broken], "cpu")
    assert reference_source_applies(replace(alerts[0], candidate={**alerts[0].candidate, "sharpnr": -0.4}))
    runner = load_registry().load_runner("alertclass", "torch")
    try:
        assert runner.select([alerts[0], bare, alerts[2]]) == [0, 2]
    finally:
        runner.close()


def test_the_shipped_card_is_the_studys_network_on_torch_and_onnxruntime(tmp_path: Path) -> None:
    from engines.registry import WEIGHTS_DIR, load_registry
    from research.training.pool_alertclass import combine, stamp_logits

    registry = load_registry()
    card = registry.card("alertclass")
    assert card.network == "alertclass_reference" and card.labels == PACKET_CLASS_LABELS and card.passes_bar
    assert card.contract.feature_name == "packet_fields" and card.contract.feature_count == 6
    assert card.network_args["stamp_weight"] > 0
    alerts = _ztf_alerts()
    scores = {}
    for backend in ("torch", "onnxruntime"):
        runner = registry.load_runner("alertclass", backend, cache_dir=str(tmp_path))
        scores[backend] = runner.score(alerts)
        runner.close()
    for p in scores.values():
        assert p.shape == (len(alerts), 4) and np.allclose(p.sum(1), 1, atol=1e-4)
    assert np.allclose(scores["torch"], scores["onnxruntime"], atol=1e-4)
    # the study's own computation (research.training: what the report measured) on the same packets
    network = build_network("alertclass_reference", **card.network_args)
    state = torch.load(WEIGHTS_DIR / card.weights_file, map_location="cpu", weights_only=True)
    network.load_state_dict({k: v.float() for k, v in state.items()})
    stamps, features = PREPROCESSORS[KEY](alerts, "cpu")
    logits = stamp_logits(network, stamps.numpy(), fields=features[:, 1:].numpy())
    study = combine(logits, features[:, 0].numpy(), card.network_args["temperature"])
    assert np.allclose(scores["torch"], study, atol=1e-4)
