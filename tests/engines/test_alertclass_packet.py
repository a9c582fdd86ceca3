"""alertclass 2.x: the asteroid column is the packet's known-Solar-System flag, the others the stamps'
softmax; the flag travels through engines.preprocess like ACAI's features, on real ZTF packets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engines.networks import build_network
from engines.networks.alertclass import PACKET_CLASS_LABELS, PacketAlertClassNet
from engines.preprocess import PREPROCESSORS, known_solar_system
from schemas.alert import Alert
from schemas.decode import iter_file
from schemas.quality import quality_fields

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples" / "ztf"


def _ztf_alerts() -> list[Alert]:
    return [item for path in sorted(SAMPLES.rglob("*.avro")) for _, item in iter_file(path) if isinstance(item, Alert)]


def test_flag_sets_the_asteroid_column_and_the_stamps_the_rest() -> None:
    torch.manual_seed(0)
    network = PacketAlertClassNet().eval()
    x = torch.rand(4, 3, 63, 63)
    flag = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    with torch.inference_mode():
        p = network(x, flag)
        logits = network.stamp_logits(x)
    assert p.shape == (4, len(PACKET_CLASS_LABELS)) and PACKET_CLASS_LABELS[0] == "asteroid"
    assert torch.equal(p[[0, 2]], torch.tensor([[1.0, 0, 0, 0]] * 2))
    assert torch.allclose(p[[1, 3], 0], torch.zeros(2)) and torch.allclose(p.sum(1), torch.ones(4))
    assert torch.allclose(p[[1, 3], 1:], torch.softmax(logits[[1, 3], 1:], 1), atol=1e-6)


def test_temperature_softens_without_changing_the_top_class() -> None:
    torch.manual_seed(1)
    sharp = PacketAlertClassNet().eval()
    soft = build_network("alertclass_packet", temperature=3.0)
    soft.load_state_dict(sharp.state_dict())
    x, flag = torch.rand(6, 3, 63, 63), torch.zeros(6, 1)
    with torch.inference_mode():
        a, b = sharp(x, flag), soft(x, flag)
    assert torch.equal(a.argmax(1), b.argmax(1)) and (b.max(1).values <= a.max(1).values + 1e-6).all()


def test_preprocessing_carries_the_packets_solar_system_flag() -> None:
    alerts = _ztf_alerts()
    stamps, flags = PREPROCESSORS["difference_stamps_arcsec_63_solar_system"](alerts, "cpu")
    expected = [1.0 if quality_fields(a)["known_solar_system"] else 0.0 for a in alerts]
    assert stamps.shape == (len(alerts), 3, 63, 63) and flags.shape == (len(alerts), 1)
    assert flags[:, 0].tolist() == expected and 0 < sum(expected) < len(alerts)   # the samples hold both
    assert torch.equal(stamps, PREPROCESSORS["difference_stamps_arcsec_63"](alerts, "cpu"))
    for alert, flag in zip(alerts, expected):
        distance = alert.candidate.get("ssdistnr")
        assert flag == (1.0 if distance is not None and 0 <= float(distance) <= 5 and alert.candidate.get("ssnamenr") else 0.0)
        assert known_solar_system(alert) == flag


def test_the_2_0_0_card_scores_real_packets_on_torch_and_onnxruntime(tmp_path: Path) -> None:
    from engines.registry import load_registry

    registry = load_registry()
    card = registry.card("alertclass@2.0.0-pool-distilled")
    assert card.network == "alertclass_packet" and card.labels == PACKET_CLASS_LABELS
    assert card.contract.feature_name == "known_solar_system" and card.contract.feature_count == 1
    alerts = _ztf_alerts()
    flags = np.asarray([known_solar_system(a) for a in alerts])
    scores = {}
    for backend in ("torch", "onnxruntime"):
        runner = registry.load_runner("alertclass", backend, cache_dir=str(tmp_path), version="2.0.0-pool-distilled")
        scores[backend] = runner.score(alerts)
        runner.close()
    for p in scores.values():
        assert p.shape == (len(alerts), 4) and np.allclose(p.sum(1), 1, atol=1e-4)
        assert np.array_equal(p[:, 0] > 0.5, flags > 0.5)
    assert np.allclose(scores["torch"], scores["onnxruntime"], atol=1e-4)
