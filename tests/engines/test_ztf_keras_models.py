"""braai and ACAI in the registry: versions, the surveys they apply to, ACAI's feature rules,
and where their scores land in the classified record (bundled samples only)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.contract import EngineError
from engines.preprocess import (
    ACAI_FEATURES,
    PreprocessError,
    acai_features,
    ztf_triplet_batch,
)
from engines.registry import load_registry
from schemas.alert import Alert, InputKind, ReadOnlyFields
from schemas.classified_record import build_classified_record
from schemas.decode import iter_file

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples"


def _alerts(survey: str) -> list[Alert]:
    out = []
    for path in sorted((SAMPLES / survey).rglob("*.avro")):
        out += [a for _, a in iter_file(path) if isinstance(a, Alert)]
    return out


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def ztf():
    return [a for a in _alerts("ztf") if a.candidate.get("drbversion") == "d6_m7"][:8]


@pytest.fixture(scope="module")
def acai(registry):
    return registry.load_runner("acai", "torch")


def _without(alert: Alert, *names: str, **values) -> Alert:
    fields = {k: v for k, v in alert.candidate.items() if k not in names}
    fields.update(values)
    return dataclasses.replace(alert, candidate=ReadOnlyFields(fields))


def test_versions_and_surveys(registry):
    assert registry.card("braai").version == "d6_m7"
    assert registry.card("braai", "d6_m9").preprocessing == "braai_l2norm_63"
    with pytest.raises(EngineError, match="d6_m8"):
        registry.card("braai", "d6_m8")
    ztf_models = {c.name for c in registry.cards_for(InputKind.DIFFERENCE_ALERT, survey="ztf")}
    rubin_models = {c.name for c in registry.cards_for(InputKind.DIFFERENCE_ALERT, survey="rubin")}
    assert {"braai", "acai", "realbogus"} <= ztf_models
    assert rubin_models == {"rubin_realbogus"}   # the ZTF models were never checked on Rubin


def test_rubin_alerts_are_not_scored_by_ztf_models(registry, acai, ztf):
    rubin = _alerts("rubin")
    assert rubin
    braai = registry.load_runner("braai", "torch")
    mixed = [rubin[0], ztf[0], rubin[-1], ztf[1]]
    assert braai.select(mixed) == [1, 3]
    assert acai.select(mixed) == [1, 3]


def test_alert_missing_a_feature_gets_no_acai_score(acai, ztf):
    lacking = _without(ztf[0], "sgscore1")
    assert acai.select([ztf[1], lacking]) == [0]
    with pytest.raises(PreprocessError, match="sgscore1"):
        acai_features(lacking)
    assert acai.select([_without(ztf[0], neargaia=None)]) == []
    for unusable in (float("inf"), float("-inf"), float("nan"), "0.5", b"1"):   # present but not a finite number
        assert acai.select([_without(ztf[0], sgscore1=unusable)]) == []


def test_missing_drb_is_filled_with_braai_d6_m9_and_flagged(registry, acai, ztf):
    alert = ztf[2]
    no_drb = _without(alert, "drb", "drbversion")
    placeholder = _without(alert, drb=0.0, drbversion="")
    assert acai.select([no_drb, placeholder]) == [0, 1]
    scores = acai.score([alert, no_drb, placeholder])
    flag = list(acai.labels).index("drb_from_braai_d6_m9")
    assert scores[:, flag].tolist() == [0.0, 1.0, 1.0]
    # the fill is braai d6_m9's score on the same triplet, fed through the same heads
    d6_m9 = registry.load_runner("braai", "torch", version="d6_m9").score([alert])[0, 0]
    features = acai_features(alert)
    features[0] = d6_m9
    expected = acai.infer((ztf_triplet_batch([alert], False), torch.from_numpy(features[None])))
    np.testing.assert_allclose(scores[1], expected[0] * np.array([1, 1, 1, 1, 1, 0]) + np.eye(6)[flag], atol=1e-6)
    assert not np.allclose(scores[0, :5], scores[1, :5], atol=1e-6)  # the drb feature matters


def test_features_are_raw_values_in_order(ztf):
    values = acai_features(ztf[0])
    assert values.shape == (len(ACAI_FEATURES),) and ACAI_FEATURES[0] == "drb" and ACAI_FEATURES[-1] == "neargaiabright"
    assert values[ACAI_FEATURES.index("ra")] == pytest.approx(ztf[0].candidate["ra"], rel=1e-6)
    assert values[ACAI_FEATURES.index("ncovhist")] == ztf[0].candidate["ncovhist"]  # unscaled


def test_record_carries_acai_class_scores_and_braai_beside_realbogus(registry, acai, ztf):
    braai = registry.load_runner("braai", "torch")
    alert = ztf[0]
    results = []
    for runner in (acai, braai):
        row = runner.score([alert])[0]
        results.append((runner.provenance, dict(zip(runner.labels, map(float, row)))))
    record = build_classified_record(alert, results, source_topic="t", source_partition=0, source_offset=0,
                                     source_timestamp_ms=0, ingested_ms=0, classified_ms=0, classifier_version="x")
    assert set(record["class_scores"]) == {"acai.hosted", "acai.variable", "acai.orphan", "acai.nuclear", "acai.bogus"}
    models = {m["name"]: m for m in record["models"]}
    assert models["braai"]["version"] == "d6_m7"
    assert models["braai"]["scores"]["real"] == pytest.approx(alert.candidate["drb"], abs=2e-6)
    assert models["acai"]["scores"]["drb_from_braai_d6_m9"] == 0.0


@pytest.mark.parametrize("row_wise", [True, False])
def test_triplet_batch_equals_one_alert_at_a_time_bit_for_bit(ztf, row_wise):
    from engines.preprocess import ztf_triplet
    from schemas.alert import Stamp

    edge = dataclasses.replace(ztf[0], science=Stamp(np.asarray(ztf[0].science.data)[:50, :40]))   # cut at the detector edge
    holes = np.array(ztf[1].difference.data, dtype=np.float32)
    holes[:3, :] = np.nan
    holes[10, 10] = np.inf
    nans = dataclasses.replace(ztf[1], difference=Stamp(holes))
    zero = dataclasses.replace(ztf[2], template=Stamp(np.zeros((63, 63), np.float32)))                # norm 0 -> left as is
    big = dataclasses.replace(ztf[3], science=Stamp(np.pad(np.asarray(ztf[3].science.data), 4)),     # oversized: cropped
                              template=Stamp(np.pad(np.asarray(ztf[3].template.data), 4)),
                              difference=Stamp(np.pad(np.asarray(ztf[3].difference.data), 4)))
    rubin = _alerts("rubin")                                    # whole groups of smaller shapes, each normalised as a block
    assert len({np.shape(a.science.data) for a in rubin}) > 1
    alerts = [*ztf[:5], edge, nans, zero, big, *rubin, ztf[4]]
    batch = ztf_triplet_batch(alerts, row_wise).numpy()
    one_by_one = np.stack([ztf_triplet(a, row_wise) for a in alerts])
    assert batch.dtype == np.float32 and np.array_equal(batch, one_by_one)
