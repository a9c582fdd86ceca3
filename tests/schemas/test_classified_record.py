"""The classified output record: built from real alerts, encoded, decoded, across versions."""
from __future__ import annotations

import io
import math
import struct

import fastavro
import numpy as np
import pytest

import schemas
from engines.contract import ModelProvenance
from schemas.alert import Exposure, InputKind
from schemas.classified_record import (
    LATEST_CLASSIFIED_VERSION,
    build_classified_record,
    classified_schema_id,
    decode_classified,
    encode_classified,
)
from schemas.decode import DecodeError, Reason, decode_message
from tests.schemas.decode.packets import SAMPLES

RB = ModelProvenance("realbogus", "0.3.0", "a" * 64, trained=True, backend="onnxruntime", extra={"real_bogus": True},
                     surveys=("ztf",))
CLS = ModelProvenance("alert-class", "0.1.0", "b" * 64, trained=False, backend="onnxruntime")
SOURCE = dict(source_topic="ztf-alerts", source_partition=3, source_offset=123456789012,
              source_timestamp_ms=1_700_000_000_000, ingested_ms=1_700_000_000_100, classified_ms=1_700_000_000_150,
              classifier_version="0.1.0")


def _ztf_alert():
    (alert,) = decode_message((SAMPLES / "ztf" / "alerce" / "3044341005815015012.avro").read_bytes())
    return alert


def test_build_from_ztf_alert():
    alert = _ztf_alert()
    record = build_classified_record(alert, [(RB, {"bogus": 0.25, "real": 0.75}), (CLS, {"sn": 0.6, "agn": 0.4})], **SOURCE)
    assert record["schema_version"] == f"{LATEST_CLASSIFIED_VERSION[0]}.{LATEST_CLASSIFIED_VERSION[1]}"
    assert record["survey"] == "ztf" and record["kind"] == "difference_alert"
    assert record["alert_id"] == str(alert.alert_id) and record["object_id"] == alert.object_id
    assert (record["ra"], record["dec"], record["band"]) == (alert.ra, alert.dec, alert.band)
    assert record["mjd"] == pytest.approx(alert.mjd + 37.0 / 86400, abs=1e-9)  # ZTF's UTC in TAI
    assert record["real_bogus"] == 0.75
    assert record["class_scores"] == {"alert-class.sn": 0.6, "alert-class.agn": 0.4}   # grouped per model (v1.3)
    assert [m["name"] for m in record["models"]] == ["realbogus", "alert-class"]
    assert record["untrained"] is True
    assert record["survey_scores"] == dict(alert.survey_scores) and "drb" in record["survey_scores"]
    assert record["survey_score_versions"]["drb"] == alert.survey_score_versions["drb"]


def test_real_bogus_absent_and_label_clash():
    record = build_classified_record(_ztf_alert(), [(CLS, {"sn": 0.5}), (ModelProvenance("x", "1", "c" * 64, True), {"sn": 0.1})], **SOURCE)
    assert record["real_bogus"] is None
    assert record["class_scores"] == {"alert-class.sn": 0.5, "x.sn": 0.1}
    record = build_classified_record(_ztf_alert(), [], **SOURCE)
    assert record["models"] == [] and record["untrained"] is False and record["class_scores"] == {}


def test_round_trip_wire_framing():
    record = build_classified_record(_ztf_alert(), [(RB, {"bogus": 0.1, "real": 0.9})], **SOURCE)
    value = encode_classified(record)
    assert value[0] == 0 and struct.unpack(">i", value[1:5])[0] == classified_schema_id(*LATEST_CLASSIFIED_VERSION) == 103
    assert decode_classified(value) == record


def test_exposure_record():
    exposure = Exposure(exposure_id="j8xi01x1q", instrument="ACS/WFC", filter="F606W", exposure_time_s=507.0,
                        mjd=52345.25, kind=InputKind.RAW_EXPOSURE, images={"SCI,1": np.zeros((2, 2), np.float32)})
    record = build_classified_record(exposure, [(ModelProvenance("deepcr", "1", "d" * 64, True, "torch"), {"cosmic_ray_fraction": 0.02})], **SOURCE)
    assert (record["survey"], record["kind"], record["alert_id"], record["band"]) == ("exposure", "raw_exposure", "j8xi01x1q", "F606W")
    assert record["ra"] is None and record["real_bogus"] is None
    assert decode_classified(encode_classified(record)) == record


def test_version_1_0_is_written_and_resolved_to_latest():
    record = build_classified_record(_ztf_alert(), [(RB, {"real": 0.5, "bogus": 0.5})], **SOURCE, processing_host="pod-7")
    old = dict(record, schema_version="1.0")
    value = encode_classified(old)
    assert struct.unpack(">i", value[1:5])[0] == 100
    decoded = decode_classified(value)
    later = {f["name"] for f in schemas.load_schema("classified", *LATEST_CLASSIFIED_VERSION)["fields"]} - {
        f["name"] for f in schemas.load_schema("classified", 1, 0)["fields"]}
    assert "processing_host" in later and "magpsf" in later
    assert all(decoded[k] is None for k in later)  # fields added after v1.0 read as their defaults
    assert [m["validated"] for m in decoded["models"]] == [None]  # v1.3's nested field: "not stated"
    old["models"] = [dict(m, validated=None) for m in old["models"]]
    assert {k: v for k, v in decoded.items() if k not in later} == {k: v for k, v in old.items() if k not in later}


def test_nan_scores_survive():
    record = build_classified_record(_ztf_alert(), [(RB, {"real": float("nan"), "bogus": 0.1})], **SOURCE)
    decoded = decode_classified(encode_classified(record))
    assert math.isnan(decoded["models"][0]["scores"]["real"]) and math.isnan(decoded["real_bogus"])


def test_bad_values():
    with pytest.raises(DecodeError) as info:
        decode_classified(b"\x00" + struct.pack(">i", 104) + b"\x00")
    assert info.value.reason is Reason.UNKNOWN_SCHEMA_ID
    with pytest.raises(DecodeError) as info:
        decode_classified(b"\x01\x00\x00\x00\x65")
    assert info.value.reason is Reason.BAD_MAGIC
    record = build_classified_record(_ztf_alert(), [], **SOURCE)
    with pytest.raises(DecodeError) as info:
        decode_classified(encode_classified(record)[:20])
    assert info.value.reason is Reason.TRUNCATED_AVRO
    with pytest.raises(ValueError):
        encode_classified(dict(record, schema_version="7.0"))
    with pytest.raises(ValueError):
        encode_classified(dict(record, source_partition="three"))


def test_encoding_uses_the_shipped_schema_independently():
    """Decode our bytes with plain fastavro and the .avsc file, not through schemas.classified_record."""
    record = build_classified_record(_ztf_alert(), [(RB, {"real": 0.2, "bogus": 0.8})], **SOURCE)
    value = encode_classified(record)
    schema = fastavro.parse_schema(schemas.load_schema("classified", *LATEST_CLASSIFIED_VERSION))
    assert fastavro.schemaless_reader(io.BytesIO(value[5:]), schema) == record


def test_v1_2_carries_photometry_typed_ids_and_tai_time_of_real_packets():
    from schemas.classified_record import utc_mjd_to_tai

    ztf = decode_message((SAMPLES / "ztf" / "alerce" / "3044341005815015012.avro").read_bytes())[0]
    record = decode_classified(encode_classified(build_classified_record(ztf, [(RB, {"real": 0.9, "bogus": 0.1})], **SOURCE)))
    c = ztf.candidate
    assert (record["magpsf"], record["sigmapsf"], record["fid"], record["isdiffpos"]) == (
        pytest.approx(c["magpsf"]), pytest.approx(c["sigmapsf"]), c["fid"], c["isdiffpos"])
    assert record["candid"] == c["candid"] == ztf.alert_id and isinstance(record["candid"], int)
    assert record["mjd_time_scale"] == "tai"
    # ZTF's jd is UTC-based: in TAI it is 37 s later (every leap second up to 2017)
    assert (record["mjd"] - (c["jd"] - 2400000.5)) * 86400 == pytest.approx(37.0, abs=1e-3)
    assert utc_mjd_to_tai(50000.0) - 50000.0 == pytest.approx(29.0 / 86400)  # October 1995: TAI - UTC was 29 s

    rubin = decode_message((SAMPLES / "rubin" / "alerce-kafka" / "message_0.avro").read_bytes())[0]
    record = decode_classified(encode_classified(build_classified_record(rubin, [], **SOURCE)))
    s = rubin.candidate
    assert record["mjd"] == pytest.approx(s["midpointMjdTai"]) and record["mjd_time_scale"] == "tai"  # already TAI
    assert record["dia_source_id"] == s["diaSourceId"] and record["dia_object_id"] == s["diaObjectId"]
    assert record["psf_flux"] == pytest.approx(s["psfFlux"]) and record["psf_flux_err"] == pytest.approx(s["psfFluxErr"])
    assert record["is_negative"] == bool(s["is_negative"]) and record["magpsf"] is None and record["candid"] is None


def test_v1_1_records_read_with_the_time_scale_unstated():
    record = build_classified_record(_ztf_alert(), [(RB, {"real": 0.5, "bogus": 0.5})], **SOURCE)
    v11 = {f["name"] for f in schemas.load_schema("classified", 1, 1)["fields"]}
    decoded = decode_classified(encode_classified({k: v for k, v in record.items() if k in v11} | {"schema_version": "1.1"}))
    assert decoded["mjd_time_scale"] is None and decoded["schema_version"] == "1.1"


# --- survey scope (v1.3) -------------------------------------------------------------------------

RUBIN_RB = ModelProvenance("rubin_realbogus", "1.0.0", "e" * 64, True, "torch", {"real_bogus": True}, surveys=("rubin",))
ACAI = ModelProvenance("acai", "1", "f" * 64, True, "torch", {"class_scores": {"hosted": "acai.hosted"}}, surveys=("ztf",))


def _rubin_alert():
    (alert,) = decode_message(next((SAMPLES / "rubin").rglob("*.avro")).read_bytes())
    return alert


def test_real_bogus_comes_from_the_model_validated_on_the_survey():
    ztf = build_classified_record(_ztf_alert(), [(RB, {"bogus": 0.2, "real": 0.8}), (ACAI, {"hosted": 0.3})], **SOURCE)
    assert (ztf["real_bogus"], ztf["real_bogus_model"], ztf["unscored_reason"]) == (0.8, "realbogus", None)
    assert ztf["class_scores"] == {"acai.hosted": 0.3}
    assert [m["validated"] for m in ztf["models"]] == [True, True]
    rubin = build_classified_record(_rubin_alert(), [(RUBIN_RB, {"bogus": 0.4, "real": 0.6})], **SOURCE)
    assert (rubin["real_bogus"], rubin["real_bogus_model"], rubin["unscored_reason"]) == (0.6, "rubin_realbogus", None)
    assert decode_classified(encode_classified(rubin)) == rubin


def test_an_unvalidated_score_stays_in_models_only():
    # the operator ran the ZTF real/bogus model and a ZTF class model on a Rubin alert
    record = build_classified_record(_rubin_alert(), [(RB, {"bogus": 0.9, "real": 0.1}), (ACAI, {"hosted": 0.7})], **SOURCE)
    assert record["real_bogus"] is None and record["real_bogus_model"] is None and record["class_scores"] == {}
    assert [(m["name"], m["validated"]) for m in record["models"]] == [("realbogus", False), ("acai", False)]
    assert "rubin" in record["unscored_reason"] and "realbogus, acai" in record["unscored_reason"]
    assert record["survey_scores"]["reliability"] == pytest.approx(_rubin_alert().survey_scores["reliability"])
    assert record["quality"]["rule"] == "rubin-v1"
    assert decode_classified(encode_classified(record)) == record


def test_a_record_no_model_scored_says_why_and_keeps_the_surveys_scores():
    record = build_classified_record(_rubin_alert(), [], **SOURCE)
    assert record["models"] == [] and record["real_bogus"] is None
    assert record["unscored_reason"] == "no model validated on survey 'rubin' scored this input"
    assert "reliability" in record["survey_scores"] and record["quality"]["reliability"] is not None
    assert decode_classified(encode_classified(record)) == record


def test_version_1_2_records_read_with_the_new_fields_null():
    record = build_classified_record(_ztf_alert(), [(RB, {"real": 0.5, "bogus": 0.5})], **SOURCE)
    old = {k: v for k, v in record.items() if k not in ("real_bogus_model", "unscored_reason", "quality")}
    old["schema_version"] = "1.2"
    old["models"] = [{k: v for k, v in m.items() if k != "validated"} for m in old["models"]]
    decoded = decode_classified(encode_classified(old))
    assert decoded["quality"] is None and decoded["real_bogus_model"] is None and decoded["unscored_reason"] is None
    assert decoded["models"][0]["validated"] is None and decoded["real_bogus"] == 0.5
