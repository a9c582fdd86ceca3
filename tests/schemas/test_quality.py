"""The quality block: the survey's own flags, read from real packets, and the stated rules."""
from __future__ import annotations

import numpy as np
import pytest

from schemas.alert import Exposure, InputKind
from schemas.decode import decode_message
from schemas.quality import QUALITY_FIELDS, RUBIN_RULE, ZTF_RULE, quality_fields
from tests.schemas.decode.packets import SAMPLES


def _alert(path: str):
    (alert,) = decode_message((SAMPLES / path).read_bytes())
    return alert


def test_ztf_fields_and_finks_rule_on_real_packets():
    good = quality_fields(_alert("ztf/alerce/3044341005815015012.avro"))
    assert set(good) == set(QUALITY_FIELDS) and good["rule"] == ZTF_RULE
    assert (good["nbad"], good["good"], good["known_solar_system"], good["is_negative"]) == (0, True, False, False)
    assert good["fwhm"] == pytest.approx(2.93, abs=1e-6) and good["magdiff"] == pytest.approx(0.0478, abs=1e-4)
    assert good["snr"] == pytest.approx(7.1, abs=0.05)      # 1.0857 / sigmapsf
    assert good["reliability"] is None and good["saturated"] is None   # Rubin's fields: null for ZTF
    # rb 0.293 < 0.55 and |magdiff| 0.33 > 0.1: Fink's cut drops it
    assert quality_fields(_alert("ztf/fink/697252845015010002.avro"))["good"] is False


def test_ztf_known_solar_system_object_within_5_arcsec():
    asteroid = quality_fields(_alert("ztf/fink/697252845015015004.avro"))
    assert asteroid["known_solar_system"] is True and asteroid["solar_system_name"] == "2830"
    assert 0 <= asteroid["solar_system_distance_arcsec"] <= 5


def test_rubin_flags_on_real_packets():
    dipole = quality_fields(_alert("rubin/alerce/sample_v9.avro"))
    assert dipole["rule"] == RUBIN_RULE and dipole["dipole"] is True and dipole["good"] is False
    assert dipole["reliability"] == pytest.approx(0.48634, abs=1e-5)
    assert dipole["known_solar_system"] is False and dipole["nbad"] is None
    for flag in ("saturated", "bad", "cosmic_ray", "edge", "interpolated", "suspect", "shape_flag"):
        assert dipole[flag] in (True, False)
    low = quality_fields(_alert("rubin/alerce-kafka/message_1.avro"))   # reliability 0.0005: below Rubin's cut
    assert low["good"] is False and low["snr"] == pytest.approx(6.0, abs=0.05)


def test_rubin_rule_needs_every_field_it_reads():
    alert = _alert("rubin/alerce/sample_v9.avro")
    fields = dict(alert.candidate)
    clean = dict(fields, isDipole=False, pixelFlags_saturatedCenter=False, pixelFlags_bad=False, pixelFlags_crCenter=False,
                 pixelFlags_edge=False, pixelFlags_interpolatedCenter=False, pixelFlags_suspectCenter=False,
                 shape_flag=False, snr=30.0)
    from dataclasses import replace

    from schemas.alert import ReadOnlyFields

    good = replace(alert, candidate=ReadOnlyFields(clean), survey_scores={"reliability": 0.9})
    assert quality_fields(good)["good"] is True
    assert quality_fields(replace(good, survey_scores={"reliability": 0.4}))["good"] is False
    missing = dict(clean)
    del missing["isDipole"]                                   # lsst.v7 packets carry no isDipole
    assert quality_fields(replace(good, candidate=ReadOnlyFields(missing)))["good"] is None
    cosmic = dict(clean, pixelFlags_crCenter=True)
    assert quality_fields(replace(good, candidate=ReadOnlyFields(cosmic)))["good"] is False
    asteroid = dict(clean, ssObjectId=21163611289913)
    block = quality_fields(replace(good, candidate=ReadOnlyFields(asteroid)))
    assert block["known_solar_system"] is True and block["solar_system_name"] == "21163611289913"


def test_exposures_have_no_quality_block():
    exposure = Exposure(exposure_id="x", instrument="ACS/WFC", filter="F606W", exposure_time_s=1.0, mjd=1.0,
                        kind=InputKind.RAW_EXPOSURE, images={"SCI,1": np.zeros((2, 2), np.float32)})
    assert quality_fields(exposure) is None
