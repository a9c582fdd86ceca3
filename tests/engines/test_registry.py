"""Registry, model cards and runners: kinds, untrained refusal, weight hashes, scoring in chunks."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from engines.cards import card_to_toml, load_card, write_card
from engines.contract import EngineError
from engines.registry import CARDS_DIR, WEIGHTS_DIR, ModelRunner, load_network, load_registry
from schemas.alert import SURVEYS, InputKind
from schemas.decode import decode_message
from tests.engines.real_stamps import real_alerts
from tests.schemas.decode.packets import SAMPLES


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_cards_for_each_input_kind(registry) -> None:
    alert_models = [c.name for c in registry.cards_for(InputKind.DIFFERENCE_ALERT)]
    assert alert_models == sorted(alert_models) and {"realbogus", "braai", "acai", "alertclass"} <= set(alert_models)
    assert [c.name for c in registry.cards_for(InputKind.MULTIBAND_CUTOUT)] == ["iicnet"]
    assert [c.name for c in registry.cards_for(InputKind.RAW_EXPOSURE)] == ["hrcelestialnet"]
    assert registry.card("realbogus").labels == ("bogus", "real")
    assert registry.card("alertclass").labels == ("asteroid", "galaxy_host", "hostless_or_faint", "star")
    assert registry.card("alertclass@1.0.0-pool").labels == ("asteroid", "bogus", "galaxy_host", "hostless_or_faint", "star")
    assert registry.card("iicnet").labels == ("galaxy", "quasar", "star")
    assert registry.card("hrcelestialnet").labels == ("galaxy", "nebula_star_cluster")


def test_untrained_model_is_refused_unless_allowed(tmp_path: Path) -> None:
    """A card marked untrained is refused unless allowed, whatever the shipped cards say now."""
    card = dataclasses.replace(load_card(CARDS_DIR / "realbogus.toml"), trained=False)
    write_card(card, tmp_path / "realbogus.toml")
    registry = load_registry(tmp_path, WEIGHTS_DIR)
    with pytest.raises(EngineError, match="not trained"):
        registry.load_runner("realbogus", "torch", cache_dir=str(tmp_path))
    runner = registry.load_runner("realbogus", "torch", cache_dir=str(tmp_path), allow_untrained=True)
    assert runner.provenance.trained is False
    runner.close()


def test_card_round_trips_through_toml(tmp_path: Path) -> None:
    card = load_card(CARDS_DIR / "iicnet.toml")
    path = write_card(card, tmp_path / "iicnet.toml")
    again = load_card(path)
    assert dataclasses.replace(again, path=None) == dataclasses.replace(card, path=None)
    assert f"trained = {str(card.trained).lower()}" in card_to_toml(card)


def test_weights_hash_mismatch_is_refused(tmp_path: Path) -> None:
    card = load_card(CARDS_DIR / "realbogus.toml")
    shutil.copy(WEIGHTS_DIR / card.weights_file, tmp_path / card.weights_file)
    with open(tmp_path / card.weights_file, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(EngineError, match="sha256"):
        load_network(card, tmp_path)


def test_hrcelestialnet_card_rebuilds_its_seeded_base_and_applies_the_delta() -> None:
    """HR-CelestialNet ships a delta file over a seeded network (97 M parameters, 388 MB, cannot
    ship whole): the registry rebuilds the seed, checks its hash, then applies the file."""
    card = load_card(CARDS_DIR / "hrcelestialnet.toml")
    assert card.trained and card.weights_file and card.init_seed is not None and card.base_sha256
    assert (WEIGHTS_DIR / card.weights_file).stat().st_size < 4 << 20
    network = load_network(card)
    assert sum(p.numel() for p in network.parameters()) == 97_048_130
    assert tuple(card.contract.shape) == (1, *card.network_args["input_hw"])
    with pytest.raises(EngineError, match="seeded weights"):
        load_network(dataclasses.replace(card, base_sha256="0" * 64))   # a torch whose init differs
    with pytest.raises(EngineError, match="seed"):
        load_network(dataclasses.replace(card, init_seed=card.init_seed + 1))


def test_bad_card_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text('name = "broken"\ntrained = "yes"\n')
    with pytest.raises(EngineError, match="broken.toml"):
        load_registry(tmp_path)


def test_score_chunks_by_max_batch_and_keeps_order(registry, real_data_roots: tuple[Path, ...], tmp_path: Path) -> None:
    alerts = list(real_alerts(real_data_roots, 20))
    runner = registry.load_runner("realbogus", "torch", cache_dir=str(tmp_path), allow_untrained=True)
    whole = runner.infer(runner.preprocess(alerts))
    small = ModelRunner(runner.card, runner.engine, runner.provenance, "cpu")
    small.max_batch = 7
    scored = small.score(alerts)
    np.testing.assert_allclose(scored, whole, atol=1e-5, rtol=0)  # batch size changes kernel order
    assert runner.provenance.name == "realbogus" and runner.provenance.trained is registry.card("realbogus").trained
    assert runner.provenance.weights_sha256 == registry.card("realbogus").weights_sha256
    runner.close()


def test_runner_averages_chip_scores_of_raw_exposures(registry) -> None:
    """(N, chips, H, W) rows for a 1-channel network: each chip scored, mean per exposure."""
    import torch
    from torch import nn

    from engines.backends.torch_backend import TorchEngine
    from engines.contract import InputContract

    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    contract = InputContract("input", "probabilities", (1, 16, 16), ("galaxy", "nebula_star_cluster"), max_batch=4)
    card = dataclasses.replace(registry.card("hrcelestialnet"), contract=contract)
    engine = TorchEngine(tiny, contract)
    runner = ModelRunner(card, engine, None, "cpu")  # provenance unused by infer
    batch = torch.rand(3, 2, 16, 16)
    got = runner.infer(batch)                               # 6 chip rows, engine chunks of 4
    chips = batch.reshape(6, 1, 16, 16)
    per_chip = np.concatenate([engine.infer(chips[:3]), engine.infer(chips[3:])]).reshape(3, 2, 2)
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, per_chip.mean(axis=1), atol=1e-6)
    assert not np.allclose(per_chip[:, 0], per_chip[:, 1])  # the chips really differ


def test_imported_keras_cards_round_trip(tmp_path: Path) -> None:
    """The fields braai/ACAI cards add (feature input, activation, surveys, versions, class keys,
    several weight files) survive write_card -> load_card."""
    for name in ("acai", "braai_d6_m9"):
        card = load_card(CARDS_DIR / f"{name}.toml")
        again = load_card(write_card(card, tmp_path / f"{name}.toml"))
        assert dataclasses.replace(again, path=None) == dataclasses.replace(card, path=None)
    acai = load_card(CARDS_DIR / "acai.toml")
    assert acai.contract.input_names == ("triplets", "features") and acai.contract.feature_count == 25
    assert acai.class_score_keys["hosted"] == "acai.hosted" and "drb_from_braai_d6_m9" not in acai.class_score_keys
    assert load_card(CARDS_DIR / "braai_d6_m9.toml").default is False
def test_superseded_versions_stay_loadable_by_name_at_version(registry) -> None:
    """engine.models may name "name" (current) or "name@version" (kept in cards/versions/)."""
    import numpy as np
    import torch

    current = registry.card("realbogus")
    old = registry.card("realbogus@1.0.0-synthetic")
    assert old.version == "1.0.0-synthetic" and old.weights_file != current.weights_file
    assert registry.card(f"realbogus@{current.version}") is current
    assert registry.selected(InputKind.DIFFERENCE_ALERT, ["realbogus@1.0.0-synthetic"]) == [old]
    # an empty models list: the cards that pass the default bar (alertclass 3.0.0 does; 2.0.0 did not: by name only)
    assert [c.name for c in registry.selected(InputKind.DIFFERENCE_ALERT)] == ["acai", "alertclass", "braai", "realbogus",
                                                                             "rubin_realbogus"]
    assert registry.selected(InputKind.DIFFERENCE_ALERT, ["alertclass@2.0.0-pool-distilled"])[0].passes_bar is False
    assert registry.selected(InputKind.MULTIBAND_CUTOUT, ["realbogus"]) == []
    with pytest.raises(EngineError, match="two versions"):
        registry.selected(InputKind.DIFFERENCE_ALERT, ["realbogus", "realbogus@1.0.0-synthetic"])
    with pytest.raises(EngineError, match="no model card"):
        registry.card("realbogus@0.0.0")
    distilled = registry.card("realbogus@2.0.0-pool-distilled")    # min-max stamps; the current one reads braai's input
    assert distilled.preprocessing == old.preprocessing == "difference_stamps_69"
    assert current.preprocessing == "difference_stamps_rownorm_69" and current.version == "2.2.0-pool-distilled"
    previous = registry.card("realbogus@2.1.0-pool-distilled")     # the same input; trained without braai on each view
    assert previous.preprocessing == current.preprocessing and previous.weights_sha256 != current.weights_sha256
    x = torch.rand(2, 3, 69, 69)
    a = registry.load_runner("realbogus@1.0.0-synthetic", "torch").infer(x)
    b = registry.load_runner("realbogus", "torch").infer(x)
    assert a.shape == b.shape == (2, 2) and not np.allclose(a, b)


# --- survey scope ---------------------------------------------------------------------------------


def test_every_shipped_card_names_its_surveys_with_figures(registry) -> None:
    """A model scores only the surveys it was trained and checked on; its card says how it did on each."""
    for (name, version), card in registry.versions.items():
        assert card.surveys, f"{name}@{version} names no survey"
        for survey in card.surveys:
            assert survey in SURVEYS and card.survey_figures.get(survey), f"{name}@{version}: no figures for {survey}"
    real_bogus = {survey: sorted(c.name for c in registry.cards.values() if c.real_bogus and survey in c.surveys)
                  for survey in ("ztf", "rubin")}
    assert real_bogus == {"ztf": ["realbogus"], "rubin": ["rubin_realbogus"]}, "one real/bogus model per survey"
    assert "rubin" not in registry.card("realbogus").surveys and "NOT validated" in registry.card("realbogus").survey_figures["rubin"]
    assert "rubin" not in registry.card("alertclass").surveys   # no class model is checked on Rubin


def test_a_card_without_surveys_is_refused(tmp_path: Path) -> None:
    text = (CARDS_DIR / "realbogus.toml").read_text()
    (tmp_path / "realbogus.toml").write_text("\n".join(line for line in text.splitlines() if not line.startswith("surveys")))
    with pytest.raises(EngineError, match=r"missing key 'surveys'.*trained and checked on"):
        load_registry(tmp_path)


def test_a_runner_scores_its_surveys_and_the_unvalidated_ones_it_is_given(registry) -> None:
    files = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[:4] + sorted((SAMPLES / "rubin" / "alerce-kafka").glob("*.avro"))
    alerts = [alert for path in files for alert in decode_message(path.read_bytes())]
    surveys = [a.survey for a in alerts]
    assert {"ztf", "rubin"} <= set(surveys)
    plain = registry.load_runner("realbogus", "torch")
    assert [surveys[i] for i in plain.select(alerts)] == [s for s in surveys if s == "ztf"]
    assert plain.provenance.surveys == ("ztf",) and plain.provenance.extra["real_bogus"] is True
    widened = registry.load_runner("realbogus", "torch", unvalidated_surveys=("rubin",))
    assert widened.select(alerts) == list(range(len(alerts))) and widened.unvalidated_surveys == ("rubin",)
    assert widened.provenance.validated_on("rubin") is False and widened.provenance.validated_on("ztf") is True
