"""Every real packet decodes (counted), except the JPEG pre-survey ones, refused with their reason."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from astropy.io import fits

from schemas.alert import Alert
from schemas.decode import DecodeError, Reason, decode_message, iter_file
from tests.schemas.decode.packets import (
    JPEG_FILE_COUNT,
    JPEG_PACKET_IDS,
    SAMPLES,
    SHARED_PACKET_COUNT,
    cutout_bytes,
    packet_files,
    raw_records,
)

ZTF_BANDS = {1: "g", 2: "r", 3: "i"}


def _astropy_image(raw: bytes) -> tuple[np.ndarray, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(io.BytesIO(raw)) as hdul:
            return np.array(hdul[0].data), hdul


def _check_against_raw(alert: Alert, record: dict) -> None:
    """Fields and pixels against values read independently (fastavro + astropy)."""
    if alert.survey == "ztf":
        cand = record["candidate"]
        assert alert.alert_id == record["candid"]
        assert alert.object_id == record["objectId"]
        assert alert.ra == cand["ra"] and alert.dec == cand["dec"]
        assert alert.mjd == pytest.approx(cand["jd"] - 2400000.5, abs=1e-9)
        assert alert.band == ZTF_BANDS[cand["fid"]]
        if cand.get("drb") is not None:
            assert alert.survey_scores["drb"] == pytest.approx(cand["drb"])
            assert alert.survey_score_versions["drb"] == cand["drbversion"]
        if cand.get("rb") is not None:
            assert alert.survey_scores["rb"] == pytest.approx(cand["rb"])
        assert alert.schema_version == (record.get("schemavsn") or "unversioned")
    else:
        src = record["diaSource"]
        assert alert.alert_id == src["diaSourceId"]
        assert alert.object_id == str(src["diaObjectId"])
        assert alert.ra == src["ra"] and alert.dec == src["dec"]
        assert alert.mjd == src["midpointMjdTai"]
        assert alert.band == src["band"]
        assert alert.survey_scores.get("reliability") == pytest.approx(src["reliability"])
    for name, field in (("science", "cutoutScience"), ("template", "cutoutTemplate"), ("difference", "cutoutDifference")):
        stamp = getattr(alert, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(cutout_bytes(record, field))) as hdul:
                expected = np.asarray(hdul[0].data).astype(np.float32)
                assert stamp.data.dtype == np.float32
                assert stamp.data.tobytes() == expected.tobytes()  # bit for bit, NaN payloads too
                assert stamp.header["NAXIS1"] == hdul[0].header["NAXIS1"]
                if alert.survey == "rubin":
                    assert stamp.extra["variance"].tobytes() == np.asarray(hdul["UNCERT"].data).astype(np.float32).tobytes()
                    assert stamp.extra["psf"].shape == hdul["PSFIMAGE"].data.shape


def test_every_shared_packet_decodes_or_is_refused_as_jpeg(shared_data):
    files = packet_files(shared_data)
    assert len(files) == SHARED_PACKET_COUNT
    decoded, jpeg = 0, []
    surveys = {"ztf": 0, "rubin": 0}
    for path in files:
        results = list(iter_file(path))
        assert len(results) == 1, path
        index, result = results[0]
        assert index == 0
        if isinstance(result, DecodeError):
            assert result.reason is Reason.JPEG_CUTOUT, f"{path}: {result}"
            jpeg.append(path)
            assert raw_records(path)[0]["candid"] in JPEG_PACKET_IDS
            continue
        decoded += 1
        surveys[result.survey] += 1
        _check_against_raw(result, raw_records(path)[0])
    assert len(jpeg) == JPEG_FILE_COUNT
    assert decoded == SHARED_PACKET_COUNT - JPEG_FILE_COUNT == 197
    assert surveys == {"ztf": 156, "rubin": 41}


def test_schema_versions_seen(shared_data):
    versions = set()
    for path in packet_files(shared_data):
        for _, result in iter_file(path):
            if isinstance(result, Alert):
                versions.add(result.schema_version)
    assert {"2.0", "3.0", "3.1", "3.2", "3.3", "3.5", "4.01", "4.02", "unversioned"} <= versions
    assert {"lsst.v7_4", "lsst.v9_0"} <= versions


def test_edge_stamps_kept_as_sent(shared_data):
    shapes = set()
    for path in packet_files(shared_data / "ztf" / "ztf-avro-alert"):
        for _, result in iter_file(path):
            if isinstance(result, Alert):
                shapes.add(result.science.shape)
    assert {(63, 63), (63, 53), (41, 63), (45, 63)} <= shapes


def test_bundled_samples_decode():
    files = packet_files(SAMPLES)
    assert len(files) == 84
    for path in files:
        items = decode_message(path.read_bytes())
        assert len(items) == 1
        _check_against_raw(items[0], raw_records(path)[0])


def test_rubin_wire_id_comes_from_the_message():
    value = (SAMPLES / "rubin" / "alerce-kafka" / "message_0.avro").read_bytes()
    assert value[0] == 0 and int.from_bytes(value[1:5], "big") == 704
    (alert,) = decode_message(value)
    assert alert.schema_version == "lsst.v7_4"
    assert alert.science.shape == alert.science.extra["variance"].shape


def test_fink_rewritten_rubin_containers():
    for path in packet_files(SAMPLES / "rubin" / "fink"):
        (alert,) = decode_message(path.read_bytes())
        record = raw_records(path)[0]
        assert alert.survey == "rubin"
        assert alert.alert_id == record["diaSource"]["diaSourceId"] == record["alertId"]
        assert alert.schema_version.startswith("fink:")


def test_multi_record_container(tmp_path):
    import fastavro

    paths = packet_files(SAMPLES / "ztf" / "fink")[:3]
    records = [raw_records(p)[0] for p in paths]
    schema = fastavro.reader(paths[0].open("rb")).writer_schema
    buf = io.BytesIO()
    fastavro.writer(buf, schema, records, codec="deflate")
    items = decode_message(buf.getvalue())
    assert [a.alert_id for a in items] == [r["candid"] for r in records]
    target = tmp_path / "three.avro"
    target.write_bytes(buf.getvalue())
    assert [i for i, _ in iter_file(target)] == [0, 1, 2]
